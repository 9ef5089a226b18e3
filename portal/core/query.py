"""Numbers from query strings and page links, bounded before anything converts or stores them.

A query parameter is untrusted text: `int()` refuses more than 4,300 digits with a ValueError,
and a number past a bigint makes the database driver raise. Every page and endpoint that takes
a number from the URL reads it through `bounded_int`, and gets None for anything else.
"""

BIGINT_MAX = 2**63 - 1
_BIGINT_DIGITS = len(str(BIGINT_MAX))


def bounded_int(value: object, *, lo: int = 0, hi: int = BIGINT_MAX) -> int | None:
    """`value` as an int within [lo, hi], or None: ASCII digits with an optional leading minus
    only (str.isdigit() also accepts "²" and "٣", which are not page numbers)."""
    text = str(value).strip() if value is not None else ""
    digits = text[1:] if text.startswith("-") else text
    if not digits or len(digits) > _BIGINT_DIGITS or not (digits.isascii() and digits.isdigit()):
        return None
    number = int(text)
    return number if lo <= number <= hi else None
