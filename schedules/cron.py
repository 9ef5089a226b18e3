"""When a schedule fires: cron expressions in an IANA zone, turned into UTC instants.

cronsim (Healthchecks' cron evaluator) does the calendar work. It follows Debian's cron on
daylight-saving days, which is what people expect of a daily job: a time the clocks skip fires
once, right after the jump (02:30 on the spring-forward night fires at 03:00), and a time the
clocks pass twice fires once, the first time. Jobs whose hour is a wildcard ("every 15
minutes") fire through both passes of the repeated hour, as cron does.

Nothing here touches the database: the tick and the forms ask these functions, and the tests
pin the daylight-saving behaviour on them.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass

from cronsim import CronSim, CronSimError

UTC = dt.UTC
CRON_MAX_LENGTH = 100

# How far back the tick looks for the latest occurrence it missed, widening until it finds
# one: a schedule that fires every minute is found in the first window, a yearly one in the
# last, and no search walks through more than a few thousand occurrences.
_LOOKBACK_WINDOWS = (
    dt.timedelta(hours=1),
    dt.timedelta(days=1),
    dt.timedelta(days=32),
    dt.timedelta(days=367),
    dt.timedelta(days=366 * 30),
)
_MAX_STEPS = 5000


class InvalidSchedule(ValueError):
    """A cron expression or zone a person gave that cannot be used; the message says why."""


def zone_for(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone called `name`, or InvalidSchedule."""
    if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
        raise InvalidSchedule(f"Unknown time zone {name!r}: give an IANA name like Europe/Berlin.")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(
            f"Unknown time zone {name!r}: give an IANA name like Europe/Berlin or America/New_York."
        ) from None


_CRONSIM_WORDS = {
    "Bad minute": "the minute field takes 0–59",
    "Bad hour": "the hour field takes 0–23",
    "Bad day-of-month": "the day-of-month field takes 1–31 or L, on a day the months given have",
    "Bad month": "the month field takes 1–12 or JAN–DEC",
    "Bad day-of-week": "the day-of-week field takes 0–7 or SUN–SAT",
}


def validate_cron(expression: str) -> str:
    """The expression, normalised (single spaces), or InvalidSchedule saying what is wrong."""
    expr = " ".join(expression.split())
    if not expr:
        raise InvalidSchedule("Give a cron expression, e.g. “0 9 * * 1-5” for 09:00 on weekdays.")
    if len(expr) > CRON_MAX_LENGTH:
        raise InvalidSchedule(f"A cron expression has at most {CRON_MAX_LENGTH} characters.")
    fields = expr.split(" ")
    if len(fields) != 5:
        raise InvalidSchedule(
            f"A cron expression has five fields (minute hour day-of-month month day-of-week); "
            f"“{expr}” has {len(fields)}."
        )
    start = dt.datetime(2000, 1, 1, tzinfo=UTC)
    try:
        it = CronSim(expr, start)
    except CronSimError as exc:
        why = _CRONSIM_WORDS.get(str(exc).rstrip("."), str(exc))
        raise InvalidSchedule(f"“{expr}” is not a cron expression we can use: {why}.") from None
    try:
        # An expression can parse and still never fire (30 February): cronsim gives up
        # searching after a few decades, which is our "never".
        next(it)
    except (CronSimError, StopIteration):
        raise InvalidSchedule(f"“{expr}” never happens (no such date on any calendar).") from None
    return expr


def _iterate(expr: str, zone: zoneinfo.ZoneInfo, after: dt.datetime) -> Iterator[dt.datetime]:
    """Occurrences strictly after the instant `after`, as UTC instants, in order.

    cronsim walks local wall-clock time; on the night the clocks go back it can hand back a
    time from the first pass of the repeated hour after one from the second. Whatever does
    not move forward is dropped, so callers see a strictly increasing sequence.
    """
    last = after
    for local in CronSim(expr, after.astimezone(zone)):
        instant = local.astimezone(UTC)
        if instant > last:
            last = instant
            yield instant


def next_occurrences(
    expr: str, zone_name: str, *, after: dt.datetime, count: int = 5
) -> list[dt.datetime]:
    """The next `count` occurrences strictly after `after`, as UTC instants."""
    zone = zone_for(zone_name)
    out: list[dt.datetime] = []
    for instant in _iterate(expr, zone, after):
        out.append(instant)
        if len(out) == count:
            break
    return out


def next_occurrence(expr: str, zone_name: str, *, after: dt.datetime) -> dt.datetime | None:
    found = next_occurrences(expr, zone_name, after=after, count=1)
    return found[0] if found else None


@dataclass(frozen=True)
class Due:
    """What fell due between a schedule's next occurrence and now."""

    latest: dt.datetime  # the latest occurrence at or before now
    count: int  # how many occurrences fell due (a lower bound when `capped`)
    capped: bool


def due_between(expr: str, zone_name: str, *, first: dt.datetime, now: dt.datetime) -> Due | None:
    """The occurrences in [first, now]: the latest of them and how many; None if none.

    `first` is the schedule's stored next occurrence. A long outage of a frequent schedule
    is not walked occurrence by occurrence: the search starts at most a window before now.
    """
    if first > now:
        return None
    zone = zone_for(zone_name)
    before_first = first - dt.timedelta(seconds=1)
    latest: dt.datetime | None = None
    for window in _LOOKBACK_WINDOWS:
        start = max(before_first, now - window)
        for instant in _iterate(expr, zone, start):
            if instant > now:
                break
            latest = instant
        if latest is not None or start == before_first:
            break
    if latest is None:
        return None
    # How many fell due, counted from the first up to a bound (for the skip's reason).
    count = 0
    for instant in _iterate(expr, zone, before_first):
        if instant > latest or count >= _MAX_STEPS:
            break
        count += 1
    return Due(latest=latest, count=count, capped=count >= _MAX_STEPS)


# --- Presets: the form's friendly shapes, each one cron expression --------------------------

WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


class Preset:
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKDAYS = "weekdays"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    CUSTOM = "custom"

    CHOICES = [
        (HOURLY, "Every hour"),
        (DAILY, "Every day at…"),
        (WEEKDAYS, "Weekdays (Monday to Friday) at…"),
        (WEEKLY, "Every week on…"),
        (MONTHLY, "Every month on…"),
        (CUSTOM, "Custom cron expression"),
    ]


def cron_for_preset(preset: str, *, at: dt.time, weekday: int = 1, day_of_month: str = "1") -> str:
    """The cron expression of a preset. `weekday` is 0 (Sunday) to 6; `day_of_month` is 1 to
    28 or "L" (the month's last day)."""
    minute, hour = at.minute, at.hour
    if preset == Preset.HOURLY:
        return f"{minute} * * * *"
    if preset == Preset.DAILY:
        return f"{minute} {hour} * * *"
    if preset == Preset.WEEKDAYS:
        return f"{minute} {hour} * * 1-5"
    if preset == Preset.WEEKLY:
        return f"{minute} {hour} * * {weekday}"
    if preset == Preset.MONTHLY:
        return f"{minute} {hour} {day_of_month} * *"
    raise ValueError(f"not a preset: {preset}")


_PRESET_PATTERNS = [
    (Preset.HOURLY, re.compile(r"^(?P<m>\d{1,2}) \* \* \* \*$")),
    (Preset.DAILY, re.compile(r"^(?P<m>\d{1,2}) (?P<h>\d{1,2}) \* \* \*$")),
    (Preset.WEEKDAYS, re.compile(r"^(?P<m>\d{1,2}) (?P<h>\d{1,2}) \* \* 1-5$")),
    (Preset.WEEKLY, re.compile(r"^(?P<m>\d{1,2}) (?P<h>\d{1,2}) \* \* (?P<w>[0-6])$")),
    (
        Preset.MONTHLY,
        re.compile(r"^(?P<m>\d{1,2}) (?P<h>\d{1,2}) (?P<d>[1-9]|1\d|2[0-8]|L) \* \*$"),
    ),
]


def preset_of(expr: str) -> dict:
    """The form's preset fields for an expression (custom when it is no preset)."""
    for preset, pattern in _PRESET_PATTERNS:
        match = pattern.match(expr)
        if match is None:
            continue
        minute, hour = int(match["m"]), int(match.groupdict().get("h") or 0)
        if minute > 59 or hour > 23:
            break
        return {
            "preset": preset,
            "at": dt.time(hour, minute),
            "weekday": int(match.groupdict().get("w") or 1),
            "day_of_month": match.groupdict().get("d") or "1",
        }
    return {"preset": Preset.CUSTOM, "cron": expr}


def describe(expr: str) -> str:
    """A short phrase for lists: the preset in words, or the expression itself."""
    shape = preset_of(expr)
    preset = shape["preset"]
    if preset == Preset.CUSTOM:
        return f"cron “{expr}”"
    at = shape["at"].strftime("%H:%M")
    if preset == Preset.HOURLY:
        return f"every hour at :{shape['at'].minute:02d}"
    if preset == Preset.DAILY:
        return f"every day at {at}"
    if preset == Preset.WEEKDAYS:
        return f"weekdays at {at}"
    if preset == Preset.WEEKLY:
        return f"every {WEEKDAYS[shape['weekday']]} at {at}"
    day = "the last day" if shape["day_of_month"] == "L" else f"day {shape['day_of_month']}"
    return f"monthly on {day} at {at}"
