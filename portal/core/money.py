"""Cents, written for people: 123456 -> "$1,234.56". The ledger itself never leaves integers."""


def format_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(int(cents)), 100)
    return f"{sign}${whole:,}.{part:02d}"
