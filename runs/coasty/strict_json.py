"""One strict JSON decoder for everything that comes from Coasty: HTTP bodies, stream event
data, webhook bodies.

Python's `json` accepts `NaN`, `Infinity` and `-Infinity`, which no JSON store takes back
(SQLite's JSON check and PostgreSQL's jsonb refuse them), and turns `1e400` into an infinite
float and a 5,000-digit integer into an exception. One such value from upstream would fail
every transaction that stores it, for ever. So `loads`:

- refuses every non-finite number (the constants and floats that overflow): the value becomes
  `null` and its place is recorded;
- clamps integers beyond a signed 64-bit column (what a bigint holds) to the nearest bound, and
  records the place;
- raises `ValueError` for anything that is not JSON at all (including nesting too deep to
  walk), as `json.loads` does.

What was refused or clamped comes back in `Decoded.refused` ("result.score: NaN refused"), and
`annotate` files it under `REFUSED_KEY` in a decoded object, so the record travels with the
data it concerns.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["INT_MAX", "INT_MIN", "PORTAL_KEY", "Decoded", "annotate", "loads", "loads_object"]

INT_MAX = 2**63 - 1
INT_MIN = -(2**63)
# Integers with more digits than this are clamped without being converted (Python refuses to
# convert strings of more than 4,300 digits, and the bound is 19 digits anyway).
_INT_DIGITS_MAX = 19

# The key under which the portal notes what it did to a value from upstream (refused numbers,
# an oversize event). Coasty's own keys never start with an underscore.
PORTAL_KEY = "_portal"


class _Refused:
    """Stands where a number was refused until the walk replaces it with None."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _Clamped:
    """Stands where an integer was clamped until the walk replaces it with the bound."""

    __slots__ = ("text", "value")

    def __init__(self, text: str, value: int) -> None:
        self.text = text
        self.value = value


@dataclass(frozen=True, slots=True)
class Decoded:
    value: Any
    refused: list[str] = field(default_factory=list)  # "<path>: <what was done>"


def _short(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:12]}…({len(text)} chars)"


# How many values the hooks below refused or clamped in this thread's current `loads`: counted
# (not walked for) so that the common document, with nothing refused, is returned as parsed.
_marks = threading.local()


def _mark() -> None:
    _marks.count = getattr(_marks, "count", 0) + 1


def _constant(name: str) -> _Refused:
    _mark()
    return _Refused(name)


def _number_float(token: str) -> float | _Refused:
    value = float(token)
    if math.isfinite(value):
        return value
    _mark()
    return _Refused(_short(token))


def _number_int(token: str) -> int | _Clamped:
    digits = token.lstrip("-")
    if len(digits) <= _INT_DIGITS_MAX:
        value = int(token)
        if INT_MIN <= value <= INT_MAX:
            return value
    _mark()
    return _Clamped(_short(token), INT_MIN if token.startswith("-") else INT_MAX)


# Made once: json.loads with hooks builds a new decoder (and its scanner) on every call, which
# cost the webhook intake half again what decoding its body did.
_DECODER = json.JSONDecoder(
    parse_constant=_constant, parse_float=_number_float, parse_int=_number_int
)


def loads(text: str | bytes | bytearray) -> Decoded:
    """Decode `text` strictly (see the module docstring). Raises ValueError on bad JSON."""
    if isinstance(text, bytes | bytearray):
        # As json.loads decodes bytes: UTF-8, -16 or -32, told apart by the first bytes.
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    elif not isinstance(text, str):
        raise TypeError(f"JSON text must be str, bytes or bytearray, not {type(text).__name__}")
    if text.startswith("\ufeff"):
        raise ValueError("Unexpected UTF-8 BOM (decode using utf-8-sig)")
    _marks.count = 0
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    # A lone surrogate arrives escaped ("\\ud800"), or raw in bytes that "surrogatepass" lets
    # through (UTF-8's ED A0 80): only non-ASCII text can hold the second.
    surrogates = (
        "\\ud" in text
        or "\\uD" in text
        or (not text.isascii() and _LONE_SURROGATE.search(text) is not None)
    )
    if not _marks.count and not surrogates:
        return Decoded(value)
    refused: list[str] = []
    try:
        return Decoded(_clean(value, "", refused), refused)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


# A "\ud800" escape with no pair decodes to a lone surrogate, which no UTF-8 page or
# PostgreSQL jsonb can hold: it becomes U+FFFD, as an undecodable byte would.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: str) -> str:
    return _LONE_SURROGATE.sub("\ufffd", value)


def _clean(value: Any, path: str, refused: list[str]) -> Any:
    if isinstance(value, _Refused):
        refused.append(f"{path or '$'}: {value.text} refused")
        return None
    if isinstance(value, _Clamped):
        refused.append(f"{path or '$'}: {value.text} clamped to {value.value}")
        return value.value
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {
            _text(key): _clean(item, f"{path}.{key}" if path else key, refused)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_clean(item, f"{path}[{index}]", refused) for index, item in enumerate(value)]
    return value


def annotate(value: dict[str, Any], refused: list[str]) -> dict[str, Any]:
    """`value` with `refused` noted under `PORTAL_KEY` (unchanged when nothing was refused)."""
    if not refused:
        return value
    note = value.get(PORTAL_KEY)
    note = dict(note) if isinstance(note, dict) else {}
    earlier = note.get("refused")
    note["refused"] = [*(earlier if isinstance(earlier, list) else []), *refused][:50]
    return {**value, PORTAL_KEY: note}


def loads_object(text: str | bytes | bytearray) -> dict[str, Any]:
    """A JSON object, decoded strictly, with what was refused noted in it; ValueError when the
    text is not JSON or not an object."""
    decoded = loads(text)
    if not isinstance(decoded.value, dict):
        raise ValueError(f"JSON {type(decoded.value).__name__}, expected an object")
    return annotate(decoded.value, decoded.refused)
