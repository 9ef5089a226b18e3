"""Small template helpers every page may use: `{% load portal_tags %}` (money is in `money`)."""

from django import template

register = template.Library()


@register.filter
def percent_of(part, whole) -> int:
    try:
        return min(100, max(0, round(100 * int(part) / int(whole)))) if int(whole) else 0
    except (TypeError, ValueError):
        return 0


@register.simple_tag(takes_context=True)
def query_with(context, **changes) -> str:
    """The current query string with some parameters replaced (or removed when None/"")."""
    params = context["request"].GET.copy()
    for key, value in changes.items():
        if value in (None, ""):
            params.pop(key, None)
        else:
            params[key] = value
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.filter
def words(value) -> str:
    """An identifier for people: "tool_call" -> "Tool call"."""
    return str(value or "").replace("_", " ").capitalize()


@register.filter
def duration(seconds) -> str:
    """Seconds for people: 42 -> "42 s", 125 -> "2 min 5 s", 7260 -> "2 h 1 min"; "—" if unknown."""
    if seconds is None or seconds == "":
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@register.filter
def as_json(value) -> str:
    """A JSON value as readable, stable JSON (not Python's repr)."""
    import json

    return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False, default=str)
