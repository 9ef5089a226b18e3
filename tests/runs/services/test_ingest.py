"""Ingesting a run's stream events: each stored and applied once, each step charged once,
however often, in whatever order and in however large a batch they come."""

import pytest

from runs import services
from runs.models import RunEvent
from runs.services import IncomingEvent
from tests.runs.support import INGEST_BATCHES, _accepted_run, _step_events, _wallet, _webhook

pytestmark = pytest.mark.django_db


def test_ingest_charges_each_step_once_however_often_events_repeat(
    funded_team, make_member, coasty
):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    events = [
        IncomingEvent(1, "status", {"status": "running"}),
        *_step_events(2, 1),
        *_step_events(7, 2),
    ]

    # when the same events arrive three times, in pieces and out of order
    services.events_ingest(run_id=run.pk, events=events)
    services.events_ingest(run_id=run.pk, events=list(reversed(events)))
    services.events_ingest(run_id=run.pk, events=events[5:])

    run.refresh_from_db()
    assert RunEvent.objects.filter(run=run).count() == len(events)
    assert (run.status, run.steps_completed, run.charged_cents, run.last_seq) == (
        "running",
        2,
        10,
        11,
    )
    assert _wallet(funded_team) == (4950, 40, 10)


# --- Batches: the follower hands over many events of a run at once --------------------------


def test_one_batch_of_many_steps_charges_each_step_once(funded_team, make_member, coasty):
    run = _accepted_run(funded_team, make_member(funded_team), coasty, max_steps=10)
    events = [IncomingEvent(1, "status", {"status": "running"})]
    for step in range(1, 6):
        events += _step_events(2 + 5 * (step - 1), step)
    # when the whole batch arrives, then half of it again, then all of it again
    services.events_ingest(run_id=run.pk, events=events)
    services.events_ingest(run_id=run.pk, events=events[10:])
    services.events_ingest(run_id=run.pk, events=events)
    run.refresh_from_db()
    assert (run.steps_completed, run.charged_cents, run.last_seq) == (5, 25, 26)
    assert RunEvent.objects.filter(run=run).count() == len(events)
    assert _wallet(funded_team) == (5000 - 50, 25, 25)


def test_steps_beyond_max_steps_in_a_batch_are_not_charged(funded_team, make_member, coasty):
    run = _accepted_run(funded_team, make_member(funded_team), coasty, max_steps=2)
    events = [*_step_events(1, 1), *_step_events(6, 2), *_step_events(11, 3)]
    services.events_ingest(run_id=run.pk, events=events)
    run.refresh_from_db()
    assert (run.steps_completed, run.charged_cents) == (2, 10)
    assert _wallet(funded_team) == (5000 - 10, 0, 10)


def test_a_batch_costs_the_same_statements_whatever_its_size(
    funded_team, make_member, coasty, requires_postgres, django_assert_max_num_queries
):
    run = _accepted_run(funded_team, make_member(funded_team), coasty, max_steps=50)
    events = []
    for step in range(1, 31):
        events += _step_events(1 + 5 * (step - 1), step)
    # lock the run, store 150 events, charge 30 steps (in a savepoint), save the run: the
    # capture's own result gives the hold's total, which is not read back
    with django_assert_max_num_queries(8):
        services.events_ingest(run_id=run.pk, events=events)
    run.refresh_from_db()
    assert (run.steps_completed, run.charged_cents) == (30, 150)


def test_an_event_with_a_nul_character_is_stored_and_the_stream_goes_on(
    funded_team, make_member, coasty
):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)

    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(1, "text", {"text": "bad\x00byte", "nested": ["\x00"]}),
            IncomingEvent(2, "status", {"status": "running"}),
        ],
    )

    run.refresh_from_db()
    assert run.last_seq == 2 and run.status == "running"
    stored = RunEvent.objects.get(run=run, seq=1).data
    assert stored == {"text": "bad\ufffdbyte", "nested": ["\ufffd"]}


def test_an_impossible_timestamp_is_ignored_not_a_failed_batch(funded_team, make_member, coasty):
    # given a run whose stream and webhook stamp a date that does not exist
    run = _accepted_run(funded_team, make_member(funded_team), coasty)

    # when the stream brings a pause stamped 30 February, then a webhook says the same
    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(1, "status", {"status": "running"}),
            IncomingEvent(2, "awaiting_human", {"reason": "captcha", "at": "2026-02-30T00:00:00Z"}),
        ],
    )
    answer = _webhook(
        run,
        {
            "event": "run.succeeded",
            "run_id": run.upstream_id,
            "status": "succeeded",
            "created_at": "2026-13-45T00:00:00Z",
        },
    )

    # then both are applied, with our own clock standing in for the impossible one
    run.refresh_from_db()
    assert answer.status == 200
    assert (run.status, run.last_seq) == ("succeeded", 2)
    assert run.finished_at is not None


@pytest.mark.parametrize("batch", INGEST_BATCHES.values(), ids=INGEST_BATCHES.keys())
def test_what_ingest_sets_on_the_run_is_what_is_stored(funded_team, make_member, coasty, batch):
    # The ingest saves only the fields it names (runs.services.ingest._INGEST_FIELDS): any field
    # it, apply_status or the notifier sets in memory and that list misses would be lost here.
    user = make_member(funded_team)
    run = _accepted_run(funded_team, user, coasty)

    returned = services.events_ingest(run_id=run.pk, events=batch)

    stored = type(returned).objects.get(pk=run.pk)
    for field in type(returned)._meta.concrete_fields:
        assert getattr(stored, field.attname) == getattr(returned, field.attname), field.name
