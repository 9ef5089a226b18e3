"""Budget months: calendar months in TIME_ZONE (settings), whatever the person's own zone.

A hold counts against the month it was placed in, for its whole life: captured in the next
month, or released then, its cents stay (or come back) in the month where they were held.
"""

import calendar
import datetime as dt

from django.utils import timezone


def month_of(when: dt.datetime | None = None) -> dt.date:
    """The first day of the budget month `when` (default: now) falls in."""
    local = timezone.localtime(when or timezone.now(), timezone.get_default_timezone())
    return local.date().replace(day=1)


def month_label(month: dt.date) -> str:
    """`YYYY-MM`, as the API names a month."""
    return f"{month:%Y-%m}"


def month_bounds(month: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The month's first instant and the next month's, aware, in TIME_ZONE."""
    zone = timezone.get_default_timezone()
    start = timezone.make_aware(dt.datetime.combine(month, dt.time.min), zone)
    following = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    end = timezone.make_aware(dt.datetime.combine(following, dt.time.min), zone)
    return start, end


def month_elapsed_fraction(month: dt.date, now: dt.datetime | None = None) -> float:
    """How much of the month has passed (0..1), for a month-end projection."""
    start, end = month_bounds(month)
    now = now or timezone.now()
    total = (end - start).total_seconds()
    return min(1.0, max(0.0, (now - start).total_seconds() / total))


def days_in(month: dt.date) -> int:
    return calendar.monthrange(month.year, month.month)[1]
