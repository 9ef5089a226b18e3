"""Capturing the steps of several holds in one commit (billing.services.holds_capture_steps), as
the event follower does for a batch that spans several runs: each (hold, step) is charged at most
once, and a hold that is settled, short or unknown neither blocks nor disturbs the others."""

import uuid

import pytest
from django.db import connection

from billing import services
from billing.errors import IdempotencyConflict, InvalidAmount
from billing.models import Account, AccountKind, Hold, Transfer, TransferKind
from billing.services import StepsToCapture
from tests.factories import TeamFactory, place_hold, top_up

pytestmark = pytest.mark.django_db


def captured_steps(hold):
    return sorted(
        Transfer.objects.filter(hold=hold, kind=TransferKind.CAPTURE).values_list("step", flat=True)
    )


def part(hold, steps, price=5):
    return StepsToCapture(hold.reference, steps, price, f"{hold.reference}")


def balance(team, kind):
    return sum(Account.objects.filter(team=team, kind=kind).values_list("balance_cents", flat=True))


def test_the_steps_of_several_holds_are_charged_once_each(team, other_team):
    # given three open holds: two on one wallet, one on another
    top_up(team, 1000)
    top_up(other_team, 1000)
    a, b, c = place_hold(team, 50), place_hold(team, 50), place_hold(other_team, 60)
    # when one batch brings steps of all three (at the holds' own prices)
    result = services.holds_capture_steps(
        captures=[part(a, [2, 1]), part(b, [1]), part(c, [1, 2, 3], price=6)]
    )
    # then each step is one capture under its own key, with its hold's total
    assert list(result) == [a.reference, b.reference, c.reference]
    assert {r: sorted(x.transfers) for r, x in result.items()} == {
        a.reference: [1, 2],
        b.reference: [1],
        c.reference: [1, 2, 3],
    }
    assert captured_steps(a) == [1, 2] and captured_steps(b) == [1]
    assert captured_steps(c) == [1, 2, 3]
    for hold, cents in ((a, 10), (b, 5), (c, 18)):
        hold.refresh_from_db()
        assert (hold.captured_cents, hold.captured_steps) == (
            cents,
            cents // (6 if hold == c else 5),
        )
        expected_total = cents if connection.vendor == "postgresql" else None
        assert result[hold.reference].captured_cents == expected_total
    assert balance(team, AccountKind.SPEND) == 15 and balance(other_team, AccountKind.SPEND) == 18
    # and the returned transfers are the stored ones
    stored = dict(
        Transfer.objects.filter(hold=c, kind=TransferKind.CAPTURE).values_list("step", "pk")
    )
    assert {s: t.pk for s, t in result[c.reference].transfers.items()} == stored
    assert result[c.reference].transfers[1].caused_by == c.reference


def test_repeating_a_batch_whole_or_in_part_charges_nothing_twice(team):
    # given a batch of two holds' steps, charged
    top_up(team, 1000)
    a, b = place_hold(team, 50), place_hold(team, 50)
    first = services.holds_capture_steps(captures=[part(a, [1, 2]), part(b, [1])])
    # when the same batch comes again, then one overlapping it (old and new steps, a new hold)
    again = services.holds_capture_steps(captures=[part(a, [1, 2]), part(b, [1])])
    c = place_hold(team, 50)
    overlap = services.holds_capture_steps(captures=[part(b, [1, 2]), part(a, [3]), part(c, [1])])
    # then the repeats return the first captures and only the new steps are charged
    for ref in (a.reference, b.reference):
        assert {s: t.pk for s, t in again[ref].transfers.items()} == {
            s: t.pk for s, t in first[ref].transfers.items()
        }
    assert overlap[b.reference].transfers[1].pk == first[b.reference].transfers[1].pk
    assert captured_steps(a) == [1, 2, 3] and captured_steps(b) == [1, 2]
    assert captured_steps(c) == [1]
    assert balance(team, AccountKind.SPEND) == 6 * 5
    for hold, cents in ((a, 15), (b, 10), (c, 5)):
        hold.refresh_from_db()
        assert hold.captured_cents == cents


def test_a_settled_short_or_unknown_hold_does_not_hold_back_the_others(team):
    # given an open hold, a settled one, one with room for one more step, and no hold at all
    top_up(team, 1000)
    open_, settled, short = place_hold(team, 50), place_hold(team, 50), place_hold(team, 10)
    services.hold_release(reference=settled.reference, caused_by="x")
    services.hold_capture(reference=short.reference, step=1, amount_cents=5, caused_by="x")
    unknown = Hold(reference=f"run:{uuid.uuid4()}")
    # when one batch brings steps of all four
    result = services.holds_capture_steps(
        captures=[part(settled, [1]), part(short, [2, 3]), part(unknown, [1]), part(open_, [1, 2])]
    )
    # then the open hold is charged in full, the short one as far as it goes, the others nothing
    assert sorted(result[open_.reference].transfers) == [1, 2]
    assert all(t is not None for t in result[open_.reference].transfers.values())
    assert result[settled.reference].transfers == {1: None}
    assert result[short.reference].transfers[2] is not None
    assert result[short.reference].transfers[3] is None
    assert result[short.reference].charged == {2: True, 3: False}
    assert result[open_.reference].charged == {1: True, 2: True}
    assert result[settled.reference].charged == {1: False}
    assert result[unknown.reference].charged == {1: False}
    assert result[unknown.reference].transfers == {1: None}
    assert not result[unknown.reference].hold_found and result[open_.reference].hold_found
    assert captured_steps(open_) == [1, 2] and captured_steps(settled) == []
    assert captured_steps(short) == [1, 2]
    # and no hold was overdrawn: the ledger checker (run after every test) agrees
    short.refresh_from_db()
    assert short.remaining_cents == 0
    assert balance(team, AccountKind.SPEND) == 20


def test_a_replayed_step_in_a_batch_does_not_cost_the_other_holds_their_steps(team):
    # given a hold whose step 1 was charged alone (the batch statement will meet its key)
    top_up(team, 1000)
    a, b = place_hold(team, 50), place_hold(team, 50)
    single = services.hold_capture(reference=a.reference, step=1, amount_cents=5, caused_by="x")
    # when a batch brings that step again, a new one of the same hold, and another hold's steps
    result = services.holds_capture_steps(captures=[part(a, [1, 2]), part(b, [1, 2, 3])])
    # then the replay returns the first capture and every new step is charged once
    assert result[a.reference].transfers[1].pk == single.pk
    assert captured_steps(a) == [1, 2] and captured_steps(b) == [1, 2, 3]
    assert balance(team, AccountKind.SPEND) == 25


def test_a_step_at_another_price_is_a_conflict_and_a_hold_twice_is_refused(team):
    top_up(team, 1000)
    a = place_hold(team, 50)
    services.holds_capture_steps(captures=[part(a, [1])])
    with pytest.raises(IdempotencyConflict):
        services.holds_capture_steps(captures=[part(a, [1], price=6)])
    with pytest.raises(InvalidAmount):
        services.holds_capture_steps(captures=[part(a, [2]), part(a, [3])])
    with pytest.raises(InvalidAmount):
        services.holds_capture_steps(captures=[part(a, [0])])
    with pytest.raises(InvalidAmount):
        services.holds_capture_steps(captures=[part(a, [2], price=0)])
    assert captured_steps(a) == [1]
    # an empty batch, or a hold without steps, does nothing
    assert services.holds_capture_steps(captures=[]) == {}
    assert services.holds_capture_steps(captures=[part(a, [])]) == {}


def test_a_batch_is_one_statement_on_postgresql(team, requires_postgres, django_assert_num_queries):
    # given five runs' holds on two of the team's account shards or more
    top_up(team, 1000)
    holds = [place_hold(team, 50) for _ in range(5)]
    # when one batch brings two steps of each: one statement (plus the test's savepoint pair)
    with django_assert_num_queries(3):
        result = services.holds_capture_steps(captures=[part(h, [1, 2]) for h in holds])
    # then every hold's total comes from the statement
    assert [r.captured_cents for r in result.values()] == [10] * 5
    assert balance(team, AccountKind.SPEND) == 50


def test_the_batch_statement_locks_holds_then_accounts_in_one_order(team, requires_postgres):
    # The statement's plan: holds are locked by a FOR UPDATE sorted by reference (the order of
    # the hold-by-hold fallback too) before any is updated, and accounts by another sorted by id,
    # so two batches over overlapping holds or wallets queue, never deadlock.
    from billing.locks import _capture_holds_sql

    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN " + _capture_holds_sql(),
            {
                "refs": ["x"],
                "totals": [5],
                "counts": [1],
                "step_refs": ["x"],
                "keys": ["capture:x:1"],
                "steps": [1],
                "amounts": [5],
                "user_ids": [None],
                "caused_bys": ["x"],
                "created_at": None,
            },
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert plan.count("LockRows") == 2, plan
    assert plan.count("Sort Key: ") >= 2, plan
    sorts = [line for line in plan.splitlines() if "Sort Key: " in line]
    assert any("billing_hold.reference" in line and 'COLLATE "C"' in line for line in sorts), plan


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_overlapping_batches_at_once_charge_each_step_once_and_never_deadlock(requires_postgres):
    from tests.billing.services.test_concurrency import at_once

    # given 12 holds on two wallets
    teams = [TeamFactory(), TeamFactory()]
    for t in teams:
        top_up(t, 12 * 50)
    holds = [place_hold(teams[i % 2], 50) for i in range(12)]

    # when 8 storing loops each charge steps 1..5 of an overlapping, differently ordered subset
    def loop(i):
        mine = holds[i % 4 :] if i % 2 else list(reversed(holds[: 12 - i % 4]))
        for step in range(1, 6):
            services.holds_capture_steps(captures=[part(h, [step]) for h in mine])

    _results, errors = at_once(8, loop)
    # then nothing failed, and each hold was charged its five steps once
    assert errors == {}
    for hold in holds:
        assert captured_steps(hold) == [1, 2, 3, 4, 5]
    assert sum(balance(t, AccountKind.SPEND) for t in teams) == 12 * 25
