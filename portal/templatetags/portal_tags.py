from django import template

register = template.Library()


@register.filter
def cents(value) -> str:
    """Integer cents as money: 1234 -> $12.34, -50 -> −$0.50."""
    try:
        amount = int(value)
    except (TypeError, ValueError):
        return "—"
    sign = "−" if amount < 0 else ""
    dollars, rest = divmod(abs(amount), 100)
    return f"{sign}${dollars:,}.{rest:02d}"


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
