"""The outbox: each change worth telling is recorded once, with the change, or not at all."""

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction

from billing import services as billing
from billing.models import Hold
from portal.notifications.models import EventType, OutboxEvent
from portal.notifications.services import event_record
from tests.factories import place_hold, top_up

pytestmark = pytest.mark.django_db


def events(type=None):
    rows = OutboxEvent.objects.order_by("id")
    return list(rows.filter(type=type) if type else rows)


def test_a_key_is_recorded_once(team):
    for data in ({"n": 1}, {"n": 2}):
        event_record(
            EventType.WALLET_LOW_BALANCE, team_id=team.pk, subject="account:1", key="k1", data=data
        )
    [event] = events()
    assert event.data == {"n": 1}  # the first recording stands


def test_an_unknown_type_is_refused(team):
    with pytest.raises(ValueError):
        event_record("run.exploded", team_id=team.pk, subject="run:x", key="k")
    assert events() == []


def test_a_low_wallet_is_recorded_once_per_crossing(team):
    # given a wallet with the default alert level
    top_up(team, 1000)
    account_events = lambda: events(EventType.WALLET_LOW_BALANCE)  # noqa: E731
    # when it dips below, dips further, recovers and dips again
    place_hold(team, 600)
    place_hold(team, 100)
    assert len(account_events()) == 1
    top_up(team, 5000)
    place_hold(team, 5000)
    # then one event per crossing, with the figures of the moment
    first, second = account_events()
    assert first.public_data() == {
        "team": team.slug,
        "available_cents": 400,
        "threshold_cents": 500,
    }
    assert second.data["available_cents"] < second.data["threshold_cents"]


def test_a_discrepancy_is_recorded_when_it_opens_not_when_rechecked(team):
    # given a settled hold whose upstream charge disagrees with the ledger
    top_up(team, 5000)
    hold = place_hold(team, 100)
    billing.hold_capture(reference=hold.reference, step=1, amount_cents=5, caused_by="r")
    billing.hold_settle(
        reference=hold.reference,
        steps_completed=1,
        step_price_cents=5,
        upstream_credits_charged=15,
        upstream_test_mode=False,
        caused_by="r",
    )
    # when it is checked again with the same figures
    billing.reconcile_hold(hold=Hold.objects.get(pk=hold.pk), caused_by="job:reconcile_billing")
    # then one event, naming the discrepancy and where to resolve it
    [event] = events(EventType.BILLING_DISCREPANCY_OPENED)
    reconciliation = Hold.objects.get(pk=hold.pk).reconciliation
    assert event.data["reconciliation_id"] == reconciliation.pk
    assert event.data["difference_cents"] == reconciliation.difference_cents
    assert event.data["url"].endswith(f"/billing/discrepancies/{reconciliation.pk}/")


@pytest.mark.django_db(transaction=True)
def test_recording_an_event_locks_neither_its_team_nor_its_user(team, make_member):
    # Every webhook and batch of a team records events: were the event's references checked by
    # the database, each would share-lock the team's row and the launcher's, and a second
    # session could not lock them until it committed.
    if connection.vendor != "postgresql":
        pytest.skip("row locks: needs PostgreSQL, run with DATABASE_URL=postgres://…")
    user = make_member(team)
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with transaction.atomic():
            # Django's constraints are checked at commit (deferred), when the locks would be
            # taken; checked at once here, so that any lock is there to be seen.
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            event_record(
                EventType.RUN_SUCCEEDED,
                team_id=team.pk,
                subject="run:x",
                key="run.succeeded:x",
                user_id=user.pk,
            )
            with other.cursor() as cursor:  # NOWAIT: an error, not a wait, if either is locked
                cursor.execute(
                    "SELECT id FROM portal_team WHERE id = %s FOR UPDATE NOWAIT", [team.pk]
                )
                cursor.execute(
                    "SELECT id FROM auth_user WHERE id = %s FOR UPDATE NOWAIT", [user.pk]
                )
                assert cursor.fetchone() == (user.pk,)
    finally:
        other.close()
    assert [event.key for event in events()] == ["run.succeeded:x"]


def test_deleting_a_user_clears_them_from_their_events(team, make_member):
    # without a database constraint, Django's collector keeps the reference honest
    user = make_member(team)
    event_record(
        EventType.RUN_FAILED, team_id=team.pk, subject="run:y", key="run.failed:y", user_id=user.pk
    )
    user.delete()
    [event] = events()
    assert event.user_id is None
