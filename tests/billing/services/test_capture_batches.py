"""Capturing several steps of one hold at once (billing.services.hold_capture_steps), as the
event follower does for each batch of a run's events: each step is still charged at most once,
and a step the hold cannot pay for is refused alone."""

import pytest
from django.db import connection

from billing import services
from billing.models import Hold, Transfer, TransferKind
from tests.factories import place_hold, top_up

pytestmark = pytest.mark.django_db


def captured_steps(hold):
    return sorted(
        Transfer.objects.filter(hold=hold, kind=TransferKind.CAPTURE).values_list("step", flat=True)
    )


def test_a_batch_of_new_steps_charges_each_once(team):
    # given an open hold for ten steps
    top_up(team, 1000)
    hold = place_hold(team, 50)
    # when three steps arrive together
    result = services.hold_capture_steps(
        reference=hold.reference, steps=[3, 1, 2], amount_cents=5, caused_by="run:x"
    )
    # then each is one capture under its own key
    assert sorted(result) == [1, 2, 3]
    assert all(t is not None and t.step == n for n, t in result.items())
    assert captured_steps(hold) == [1, 2, 3]
    hold.refresh_from_db()
    assert (hold.captured_cents, hold.captured_steps) == (15, 3)
    # and the returned transfers are the stored ones
    assert {t.pk for t in result.values()} == set(
        Transfer.objects.filter(hold=hold, kind=TransferKind.CAPTURE).values_list("pk", flat=True)
    )


def test_the_totalled_capture_returns_the_holds_total_or_none_to_read_it(team):
    # given an open hold with one step charged
    top_up(team, 1000)
    hold = place_hold(team, 50)
    services.hold_capture(reference=hold.reference, step=1, amount_cents=5, caused_by="run:x")
    # when a batch brings two new steps
    result, total = services.hold_capture_steps_totalled(
        reference=hold.reference, steps=[2, 3], amount_cents=5, caused_by="run:x"
    )
    hold.refresh_from_db()
    assert sorted(result) == [2, 3] and hold.captured_cents == 15
    # then PostgreSQL's one statement gives the hold's own total (elsewhere the caller reads it)
    assert total == (15 if connection.vendor == "postgresql" else None)
    # and a replayed batch, decided step by step, never claims a total it did not read
    again, total = services.hold_capture_steps_totalled(
        reference=hold.reference, steps=[2, 3, 4], amount_cents=5, caused_by="run:x"
    )
    hold.refresh_from_db()
    assert again[2].pk == result[2].pk and hold.captured_cents == 20
    assert total is None


def test_a_batch_that_repeats_charged_steps_charges_only_the_new_ones(team):
    # given steps 1 and 2 were charged already
    top_up(team, 1000)
    hold = place_hold(team, 50)
    first = services.hold_capture_steps(
        reference=hold.reference, steps=[1, 2], amount_cents=5, caused_by="run:x"
    )
    # when a replayed batch brings 1, 2 and 3
    again = services.hold_capture_steps(
        reference=hold.reference, steps=[1, 2, 3], amount_cents=5, caused_by="run:x"
    )
    # then 1 and 2 return their first captures and only 3 is charged
    assert again[1].pk == first[1].pk and again[2].pk == first[2].pk
    assert captured_steps(hold) == [1, 2, 3]
    hold.refresh_from_db()
    assert hold.captured_cents == 15


def test_a_batch_beyond_the_hold_charges_what_fits_and_refuses_the_rest(team):
    # given a hold for two steps
    top_up(team, 1000)
    hold = place_hold(team, 10)
    # when three steps arrive together
    result = services.hold_capture_steps(
        reference=hold.reference, steps=[1, 2, 3], amount_cents=5, caused_by="run:x"
    )
    # then the first two are charged and the third is refused, alone
    assert result[1] is not None and result[2] is not None
    assert result[3] is None
    assert captured_steps(hold) == [1, 2]
    assert Hold.objects.get(pk=hold.pk).remaining_cents == 0


def test_a_batch_after_settle_charges_nothing(team):
    top_up(team, 1000)
    hold = place_hold(team, 50)
    services.hold_release(reference=hold.reference, caused_by="x")
    result = services.hold_capture_steps(
        reference=hold.reference, steps=[1, 2], amount_cents=5, caused_by="run:x"
    )
    assert result == {1: None, 2: None}
    assert captured_steps(hold) == []


def test_a_batch_is_one_statement_on_postgresql(team, requires_postgres, django_assert_num_queries):
    top_up(team, 1000)
    hold = place_hold(team, 50)
    # one statement (plus the savepoint pair of the test's transaction)
    with django_assert_num_queries(3):
        services.hold_capture_steps(
            reference=hold.reference, steps=[1, 2, 3, 4], amount_cents=5, caused_by="run:x"
        )
    assert captured_steps(hold) == [1, 2, 3, 4]


# --- The wallet's spend per day -------------------------------------------------------------


def test_spend_per_day_counts_closed_days_once_and_today_always(team):
    from collections import Counter
    from datetime import timedelta

    from django.utils import timezone

    from billing.spend import spend_per_day

    # given a step charged two days ago
    top_up(team, 1000)
    hold = place_hold(team, 50)
    old = services.hold_capture(reference=hold.reference, step=1, amount_cents=5, caused_by="x")
    Transfer.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    # (each row's day is read from the row, so a midnight between the calls changes nothing)
    old_day = day_of(Transfer.objects.get(pk=old.pk))
    first = {d.day: d.cents for d in spend_per_day(team, days=30)}
    assert first[old_day] == 5 and sum(first.values()) == 5
    # when more steps are charged today (the closed days now come from the cache)
    new = [
        services.hold_capture(reference=hold.reference, step=step, amount_cents=5, caused_by="x")
        for step in (2, 3)
    ]
    new_days = Counter(day_of(transfer) for transfer in new)
    again = {d.day: d.cents for d in spend_per_day(team, days=30)}
    # then today counts them, and the closed days are unchanged
    assert min(new_days) > old_day
    assert all(again[day] == 5 * n for day, n in new_days.items())
    assert sum(again.values()) == 15
    closed = [day for day in first if day in again and day < min(new_days)]
    assert old_day in closed
    assert [again[day] for day in closed] == [first[day] for day in closed]


def day_of(transfer):
    from django.utils import timezone

    return timezone.localtime(transfer.created_at).date()


def test_spend_per_day_sums_today_live_only_since_the_last_closed_hour(
    team, django_assert_num_queries
):
    import datetime as dt
    from unittest import mock

    from django.core.cache import cache
    from django.utils import timezone

    from billing.spend import spend_per_day

    cache.clear()
    top_up(team, 1000)
    hold = place_hold(team, 100)
    step = iter(range(1, 100))

    def capture_at(at):
        transfer = services.hold_capture(
            reference=hold.reference, step=next(step), amount_cents=5, caused_by="x"
        )
        Transfer.objects.filter(pk=transfer.pk).update(created_at=at)

    def today_at(now):
        with mock.patch.object(timezone, "now", return_value=now), django_assert_num_queries(1):
            days = spend_per_day(team, days=7)
        assert days[-1].day == now.date()
        return days[-1].cents

    noon = dt.datetime(2026, 12, 3, 12, 40, tzinfo=dt.UTC)  # the last closed hour began 12:00
    # given a capture this morning and one in the hour still open
    capture_at(noon.replace(hour=9, minute=0))
    capture_at(noon.replace(hour=12, minute=10))
    assert today_at(noon) == 10
    # when one more lands in the open hour, it counts at once
    capture_at(noon.replace(hour=12, minute=20))
    assert today_at(noon + dt.timedelta(minutes=5)) == 15
    # while a row stamped before 12:00 that appears only now is taken as written too late (the
    # morning's sum is kept, as a closed day's is)
    capture_at(noon.replace(hour=9, minute=30))
    assert today_at(noon + dt.timedelta(minutes=10)) == 15
    # and once the next hour closes the morning is summed again, that row with it
    assert today_at(noon + dt.timedelta(minutes=40)) == 20
    # the day before stays what it was: nothing was charged then
    with mock.patch.object(timezone, "now", return_value=noon):
        assert spend_per_day(team, days=7)[-2].cents == 0
