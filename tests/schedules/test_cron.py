"""When schedules fire (schedules/cron.py): cron in an IANA zone, daylight saving as people
expect it, and the messages a person sees for expressions and zones that cannot work."""

import datetime as dt

import pytest

from schedules import cron


def utc(*args):
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("zone", "after", "expected"),
    [
        # the night clocks skip 02:00-03:00: 02:30 fires once, at 03:00 local
        ("Europe/Berlin", utc(2026, 3, 28, 12), [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]),
        ("America/New_York", utc(2026, 3, 7, 12), [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]),
        # the night 02:00-03:00 happens twice in Berlin: 02:30 fires once, the first time
        (
            "Europe/Berlin",
            utc(2026, 10, 24, 12),
            [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        ),
        (
            "America/New_York",
            utc(2026, 10, 31, 12),
            [utc(2026, 11, 1, 7, 30), utc(2026, 11, 2, 7, 30)],
        ),
    ],
)
def test_a_daily_0230_fires_once_on_daylight_saving_days(zone, after, expected):
    assert cron.next_occurrences("30 2 * * *", zone, after=after, count=2) == expected


def test_a_time_new_york_passes_twice_fires_once():
    # 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST) on 1 November 2026
    occurrences = cron.next_occurrences(
        "30 1 * * *", "America/New_York", after=utc(2026, 10, 31, 12), count=2
    )
    assert occurrences == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_occurrences_after_an_instant_in_the_repeated_hour_never_go_back():
    # after 06:00Z (01:00 EST, the second pass), the 01:30 of the first pass is not "next"
    assert cron.next_occurrence("30 1 * * *", "America/New_York", after=utc(2026, 11, 1, 6)) == utc(
        2026, 11, 2, 6, 30
    )


def test_due_between_finds_the_latest_missed_occurrence_and_counts_them():
    due = cron.due_between(
        "0 * * * *", "UTC", first=utc(2026, 5, 1, 9), now=utc(2026, 5, 1, 12, 20)
    )
    assert due == cron.Due(latest=utc(2026, 5, 1, 12), count=4, capped=False)
    assert (
        cron.due_between("0 * * * *", "UTC", first=utc(2026, 5, 1, 9), now=utc(2026, 5, 1, 8))
        is None
    )


def test_a_long_outage_of_a_frequent_schedule_is_not_walked_minute_by_minute():
    due = cron.due_between(
        "* * * * *", "UTC", first=utc(2025, 1, 1), now=utc(2026, 5, 1, 12, 0, 30)
    )
    assert due is not None and due.latest == utc(2026, 5, 1, 12) and due.capped


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "the minute field takes 0–59"),
        ("0 25 * * *", "the hour field takes 0–23"),
        ("0 0 30 2 *", "day-of-month"),
        ("* * *", "has 3"),
        ("", "Give a cron expression"),
        ("every day", "has 2"),
    ],
)
def test_impossible_cron_expressions_say_why(expression, message):
    with pytest.raises(cron.InvalidSchedule) as refused:
        cron.validate_cron(expression)
    assert message in str(refused.value)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../../etc/passwd", "europe berlin"])
def test_unknown_zones_are_refused_with_an_example(zone):
    with pytest.raises(cron.InvalidSchedule) as refused:
        cron.zone_for(zone)
    assert "IANA name like Europe/Berlin" in str(refused.value)


@pytest.mark.parametrize(
    ("preset", "kwargs", "expression", "words"),
    [
        ("hourly", {}, "15 * * * *", "every hour at :15"),
        ("daily", {}, "15 7 * * *", "every day at 07:15"),
        ("weekdays", {}, "15 7 * * 1-5", "weekdays at 07:15"),
        ("weekly", {"weekday": 3}, "15 7 * * 3", "every Wednesday at 07:15"),
        ("monthly", {"day_of_month": "L"}, "15 7 L * *", "monthly on the last day at 07:15"),
    ],
)
def test_presets_are_cron_expressions_and_read_back(preset, kwargs, expression, words):
    assert cron.cron_for_preset(preset, at=dt.time(7, 15), **kwargs) == expression
    assert cron.validate_cron(expression) == expression
    assert cron.preset_of(expression)["preset"] == preset
    assert cron.describe(expression) == words
