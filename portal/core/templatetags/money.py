"""Money in templates: `{% load money %}`. Every figure goes through `format_cents`."""

import re

from django import template

from portal.core.money import format_cents

register = template.Library()

MINUS = "\u2212"  # typographic minus: lines up with "+" in the ledger's number columns


@register.filter
def cents(value) -> str:
    """Integer cents as money, 123456 -> "$1,234.56"; "—" for a figure that is not known
    (None, or anything that is not a number), never a made-up "$0.00"."""
    try:
        return format_cents(int(value))
    except (TypeError, ValueError):
        return "—"


@register.filter
def signed_cents(value) -> str:
    """A change to a balance: "+$0.05", "\u2212$0.05" (a true minus sign), or "" for none."""
    value = int(value or 0)
    if value == 0:
        return ""
    return ("+" if value > 0 else MINUS) + format_cents(abs(value))


@register.filter
def dollars(value) -> str:
    """Cents as a plain dollar figure for a form field: 500 -> "5.00"."""
    value = int(value or 0)
    return f"{value // 100}.{value % 100:02d}"


UUID = re.compile(r"\b([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


@register.filter
def short_ids(value) -> str:
    """ "run:c0af2f8d-f290-48f1-9264-3c09e2408c90" -> "run:c0af2f8d…" (the title keeps it all)."""
    return UUID.sub(r"\1…", str(value or ""))
