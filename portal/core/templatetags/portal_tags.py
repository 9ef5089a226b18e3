"""Small template helpers every page may use: `{% load portal_tags %}` (money is in `money`)."""

from django import template
from django.utils.safestring import mark_safe

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


# Line icons drawn for the portal, in SVG: emoji show as empty boxes where no emoji font is
# installed (many servers, some phones). 24×24, stroked in the text's colour.
ICONS = {
    "search": '<circle cx="11" cy="11" r="7"/><path d="M16.5 16.5 21 21"/>',
    "launch": '<path d="M12 2.5c3 2.2 5 6 5 9.8L15 16H9l-2-3.7c0-3.8 2-7.6 5-9.8z"/>'
    '<circle cx="12" cy="10" r="2"/><path d="M9 16l-3 3v-4.5M15 16l3 3v-4.5M12 19v2.5"/>',
    "compass": '<circle cx="12" cy="12" r="9"/><path d="M15.5 8.5 13.4 13.4 8.5 15.5l2.1-4.9z"/>',
    "bank": '<path d="M3 10 12 4l9 6M4 20h16M6 11v6M10 11v6M14 11v6M18 11v6"/>',
    "card": '<rect x="3" y="6" width="18" height="12" rx="2"/><path d="M3 10h18M7 15h4"/>',
    "check": '<circle cx="12" cy="12" r="9"/><path d="m8 12.5 3 3 5-6"/>',
    "lock": '<rect x="5" y="11" width="14" height="10" rx="2"/><path d="M8 11V8a4 4 0 0 1 8 0v3"/>',
    "people": '<circle cx="9" cy="8" r="3"/><path d="M3 20c0-3.3 2.7-5.5 6-5.5s6 2.2 6 5.5"/>'
    '<circle cx="17" cy="9" r="2.5"/><path d="M16 14.6c2.9.2 5 2 5 4.9"/>',
}


@register.simple_tag
def icon(name: str) -> str:
    """`{% icon "search" %}`: one of ICONS as inline SVG, hidden from screen readers (the
    words beside it say what it means)."""
    paths = ICONS.get(name, ICONS["compass"])
    return mark_safe(  # noqa: S308 — fixed markup from ICONS above, nothing from a request
        '<svg class="icon" viewBox="0 0 24 24" width="40" height="40" fill="none" '
        'stroke="currentColor" stroke-width="1.6" stroke-linecap="round" '
        f'stroke-linejoin="round" aria-hidden="true" focusable="false">{paths}</svg>'
    )
