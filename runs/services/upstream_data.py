"""What Coasty sends, made safe to store: every value from upstream is untrusted input."""

from __future__ import annotations

import json
import math
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


# How much of an upstream error the run keeps in words.
ERROR_TEXT_MAX = 2000
_DETAIL_FIELD_KEYS = ("field", "param", "parameter", "loc", "path", "name", "pointer")
_DETAIL_MESSAGE_KEYS = ("message", "msg", "reason", "detail", "description", "error", "code")


def error_text(error: Any, *, prefix: str = "") -> str:
    """Coasty's error object (`{code, message, details?, ...}`) in words for the run's `error`:
    the message, then which fields Coasty refused and why (`error.details`), so "Request
    validation failed; see details." says what the details are. Anything else: its JSON."""
    if isinstance(error, dict):
        message = error.get("message")
        head = message if isinstance(message, str) and message else str(error.get("code") or "")
        if not head:
            head = _compact(error)
        details = details_text(error.get("details"))
        text = f"{head} ({details})" if details else head
    elif isinstance(error, str):
        text = error
    else:
        text = _compact(error)
    return f"{prefix}{text or 'error'}"[:ERROR_TEXT_MAX]


def details_text(details: Any) -> str:
    """`error.details` in words: "max_steps: must be at most 1000; task: required"."""
    if details is None or details == "" or details == [] or details == {}:
        return ""
    if isinstance(details, str):
        return details
    if isinstance(details, dict):
        if any(key in details for key in _DETAIL_MESSAGE_KEYS):
            return _one_detail(details)
        return "; ".join(f"{key}: {_words(value)}" for key, value in details.items())
    if isinstance(details, list):
        return "; ".join(
            _one_detail(item) if isinstance(item, dict) else _words(item) for item in details
        )
    return _compact(details)


def _one_detail(item: dict[str, Any]) -> str:
    where = next((item[k] for k in _DETAIL_FIELD_KEYS if item.get(k) not in (None, "")), None)
    what = next((item[k] for k in _DETAIL_MESSAGE_KEYS if item.get(k) not in (None, "")), None)
    if where is None and what is None:
        return _compact(item)
    if isinstance(where, list):
        where = ".".join(str(part) for part in where)
    if where is None:
        return _words(what)
    return f"{where}: {_words(what) if what is not None else 'refused'}"


def _words(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return _compact(value)


def _compact(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)[:500]
    except (TypeError, ValueError):
        return repr(value)[:500]


def finite(value: Any) -> Any:
    """`value` with every float that is not finite (NaN, ±Infinity) replaced by None: what a
    JSON column can store. Upstream data is decoded strictly already; this guards the rest."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def refusal_text(error: Any) -> str:
    """A `CoastyError` that refused a run, in words for the run's `error`, with Coasty's
    `error.details` (which field it refused) when the envelope has them."""
    envelope = getattr(error, "envelope", None)
    details = details_text(envelope.get("details")) if isinstance(envelope, dict) else ""
    code = getattr(error, "code", None) or getattr(error, "status", None)
    message = getattr(error, "message", None) or str(error)
    text = f"Coasty refused the run ({code}): {message}"
    return (f"{text} ({details})" if details else text)[:ERROR_TEXT_MAX]
