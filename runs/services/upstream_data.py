"""What Coasty sends, made safe to store: every value from upstream is untrusted input."""

from __future__ import annotations

from typing import Any


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {"value": value}


def without_nul(value: Any) -> Any:
    """The event's data with NUL characters replaced by U+FFFD.

    PostgreSQL's jsonb refuses "\\u0000"; one such character from upstream would otherwise fail
    the run's every batch, and its stream would stall on that event for good.
    """
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value
