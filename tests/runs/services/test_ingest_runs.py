"""Ingesting the events of several runs in one transaction (runs.services.events_ingest_runs), as
the follower does for a batch that spans runs: each run ends exactly as `events_ingest` would
leave it, a repeat changes nothing, runs are locked in one order, and one run's failure loses
nothing of the others (the follower then stores them run by run)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_q.models import OrmQ

from billing.models import Transfer, TransferKind
from portal.notifications.models import OutboxEvent
from runs import follow, services
from runs.follow import Follower
from runs.models import Run, RunEvent
from runs.services import IncomingEvent
from runs.services import ingest as ingest_module
from tests.runs.support import (
    INGEST_BATCHES,
    _accepted_run,
    _step_events,
    _wallet,
    queued_tasks,
)

pytestmark = pytest.mark.django_db

COMPARED = (
    "status",
    "status_seq",
    "awaiting_human_reason",
    "pending_action",
    "result",
    "error",
    "steps_completed",
    "charged_cents",
    "events_complete",
    "last_seq",
)


def history(steps, *, done=False):
    """A run's stream: running, `steps` steps, a text, and (when done) the end."""
    events = [IncomingEvent(1, "status", {"status": "running"})]
    for step in range(1, steps + 1):
        events += _step_events(2 + 5 * (step - 1), step)
    seq = 2 + 5 * steps
    events.append(IncomingEvent(seq, "text", {"text": f"{steps} steps"}))
    if done:
        events.append(IncomingEvent(seq + 1, "status", {"status": "succeeded"}))
        events.append(IncomingEvent(seq + 2, "done", {"status": "succeeded"}))
    return events


def state(run):
    run.refresh_from_db()
    return tuple(getattr(run, name) for name in COMPARED)


def charges(run):
    return sorted(
        Transfer.objects.filter(run_id=run.pk, kind=TransferKind.CAPTURE).values_list(
            "step", flat=True
        )
    )


def test_several_runs_end_as_if_each_were_ingested_alone(funded_team, make_member, coasty):
    # given three runs fed in one batch, and three twins fed the same events run by run
    user = make_member(funded_team)
    batched = [_accepted_run(funded_team, user, coasty, max_steps=10) for _ in range(3)]
    alone = [_accepted_run(funded_team, user, coasty, max_steps=10) for _ in range(3)]
    streams = [history(2), history(4, done=True), history(12)]  # the last passes max_steps
    # when
    services.events_ingest_runs(
        batches={run.pk: events for run, events in zip(batched, streams, strict=True)}
    )
    for run, events in zip(alone, streams, strict=True):
        services.events_ingest(run_id=run.pk, events=events)
    # then each batched run matches its twin: status, steps, money, text, last seq
    for run, twin, events in zip(batched, alone, streams, strict=True):
        assert state(run) == state(twin)
        assert RunEvent.objects.filter(run=run).count() == len(events)
        assert charges(run) == charges(twin)
    assert [r.steps_completed for r in batched] == [2, 4, 10]
    assert [r.charged_cents for r in batched] == [10, 20, 50]
    assert batched[1].status == "succeeded" and batched[1].events_complete


def test_repeating_a_batch_whole_or_in_part_changes_nothing(funded_team, make_member, coasty):
    # given two runs whose batch was ingested
    user = make_member(funded_team)
    a, b = (_accepted_run(funded_team, user, coasty, max_steps=10) for _ in range(2))
    first = {a.pk: history(3), b.pk: history(2)}
    services.events_ingest_runs(batches=first)
    before = (state(a), state(b), _wallet(funded_team), RunEvent.objects.count())
    # when the same batch comes again, and then a later one that overlaps it
    services.events_ingest_runs(batches=first)
    assert (state(a), state(b), _wallet(funded_team), RunEvent.objects.count()) == before
    services.events_ingest_runs(batches={b.pk: history(3), a.pk: history(3)[5:]})
    # then only b's new step (and its events) were added, each step charged once
    assert charges(a) == [1, 2, 3] and charges(b) == [1, 2, 3]
    assert state(a) == before[0]
    assert state(b)[COMPARED.index("charged_cents")] == 15
    assert RunEvent.objects.filter(run=b).count() == len(history(3))


def test_the_runs_are_locked_in_one_order_in_one_statement(funded_team, make_member, coasty):
    # given runs handed over in some order
    user = make_member(funded_team)
    runs = [_accepted_run(funded_team, user, coasty) for _ in range(4)]
    batches = {run.pk: history(1) for run in reversed(runs)}
    # when their batch is ingested
    with CaptureQueriesContext(connection) as queries:
        services.events_ingest_runs(batches=batches)
    # then one statement locked them all, in primary-key order
    table = Run._meta.db_table
    locks = [
        q["sql"] for q in queries if q["sql"].startswith("SELECT") and f'FROM "{table}"' in q["sql"]
    ]
    assert len(locks) == 1
    assert f'ORDER BY "{table}"."id" ASC' in locks[0]
    if connection.vendor == "postgresql":
        assert locks[0].endswith("FOR UPDATE")


def test_a_batch_writes_its_outbox_events_and_its_tasks_in_one_insert_each(
    funded_team, make_member, coasty
):
    # given three runs that each pause, then end, in one batch
    user = make_member(funded_team)
    runs = [_accepted_run(funded_team, user, coasty, max_steps=10) for _ in range(3)]
    pause = IncomingEvent(2, "awaiting_human", {"reason": "captcha"})
    batches = {
        run.pk: [history(1, done=True)[0], pause, *history(1, done=True)[1:]] for run in runs
    }
    # when it is ingested
    with CaptureQueriesContext(connection) as queries:
        services.events_ingest_runs(batches=batches)
    # then one INSERT recorded all six events (a pause and an end per run) and one queued all
    # the tasks (each event's fan-out and each run's settle)
    inserts = [q["sql"] for q in queries if q["sql"].startswith("INSERT")]
    outbox = [q for q in inserts if OutboxEvent._meta.db_table in q]
    tasks = [q for q in inserts if OrmQ._meta.db_table in q]
    assert len(outbox) == 1 and len(tasks) == 1
    for run in runs:
        assert set(
            OutboxEvent.objects.filter(subject=f"run:{run.pk}").values_list("type", flat=True)
        ) == {"run.awaiting_human", "run.succeeded"}
    queued = [t[0] for t in queued_tasks()]
    assert queued.count("runs.tasks.settle_run") == 3
    assert queued.count("portal.notifications.tasks.event_fan_out") == 6
    # and a repeat records nothing new and fans nothing out again (a run that has ended and is
    # not settled yet is asked to settle again: settling is idempotent)
    services.events_ingest_runs(batches=batches)
    assert OutboxEvent.objects.count() == 6
    fan_outs = [t for t in queued_tasks() if t[0] == "portal.notifications.tasks.event_fan_out"]
    assert len(fan_outs) == 6


def test_one_runs_failure_writes_nothing_of_the_batch(
    funded_team, make_member, coasty, monkeypatch
):
    # given a batch in which one run's events cannot be applied
    user = make_member(funded_team)
    good, bad = (_accepted_run(funded_team, user, coasty) for _ in range(2))
    failing_apply(monkeypatch, bad.pk)
    wallet = _wallet(funded_team)
    # when the batch is ingested, it fails as a whole
    with pytest.raises(RuntimeError):
        services.events_ingest_runs(batches={good.pk: history(2), bad.pk: history(2)})
    # then nothing of it was written: the caller may store it run by run
    assert RunEvent.objects.count() == 0 and _wallet(funded_team) == wallet
    assert state(good)[COMPARED.index("last_seq")] == 0


def test_the_follower_keeps_the_other_runs_events_when_one_run_fails(
    funded_team, make_member, coasty, monkeypatch
):
    # given a follower whose drained batch holds three runs' events, one of which cannot store
    user = make_member(funded_team)
    a, bad, c = (_accepted_run(funded_team, user, coasty, max_steps=10) for _ in range(3))
    failing_apply(monkeypatch, bad.pk)
    monkeypatch.setattr(follow, "close_old_connections", lambda: None)  # the test's transaction
    follower = Follower(client=object())  # type: ignore[arg-type]  # no stream is opened
    for run, steps in ((a, 2), (bad, 3), (c, 4)):
        for event in history(steps):
            follower.inbox.append(("event", run.pk, event))
    # when it drains them
    follower._drain(wait=0)
    # then the other runs' events are stored and charged, run by run
    assert charges(a) == [1, 2] and charges(c) == [1, 2, 3, 4]
    assert RunEvent.objects.filter(run=a).count() == len(history(2))
    assert RunEvent.objects.filter(run=c).count() == len(history(4))
    # and the failing run alone is given up, with nothing stored past its gap
    assert RunEvent.objects.filter(run=bad).count() == 0
    assert follower.failed == {bad.pk} and follower.report.errors == {"ingest": 1}
    assert follower.report.events == len(history(2)) + len(history(4))


def test_the_follower_stores_a_batch_of_runs_in_one_transaction(
    funded_team, make_member, coasty, monkeypatch
):
    # given a drained batch of two runs' events
    user = make_member(funded_team)
    a, b = (_accepted_run(funded_team, user, coasty) for _ in range(2))
    calls = []
    real = follow.events_ingest_runs
    monkeypatch.setattr(
        follow,
        "events_ingest_runs",
        lambda *, batches: calls.append(sorted(map(str, batches))) or real(batches=batches),
    )
    monkeypatch.setattr(follow, "close_old_connections", lambda: None)
    follower = Follower(client=object())  # type: ignore[arg-type]
    for run in (a, b):
        for event in history(1):
            follower.inbox.append(("event", run.pk, event))
    # when it drains them: one call for both runs
    follower._drain(wait=0)
    assert calls == [sorted([str(a.pk), str(b.pk)])]
    assert charges(a) == [1] and charges(b) == [1]
    assert follower.report.events == 2 * len(history(1)) and not follower.failed


@pytest.mark.parametrize("batch", INGEST_BATCHES.values(), ids=INGEST_BATCHES.keys())
def test_what_a_batch_sets_on_its_runs_is_what_is_stored(funded_team, make_member, coasty, batch):
    # The batch writes its runs' fields in one statement of its own (PostgreSQL): every field
    # the ingest, apply_status or the notifier sets in memory must reach the database as is.
    user = make_member(funded_team)
    runs = [_accepted_run(funded_team, user, coasty) for _ in range(2)]

    returned = services.events_ingest_runs(batches={run.pk: batch for run in runs})

    for run in runs:
        stored = Run.objects.get(pk=run.pk)
        for field in Run._meta.concrete_fields:
            assert getattr(stored, field.attname) == getattr(returned[run.pk], field.attname), (
                field.name
            )


def failing_apply(monkeypatch, pk):
    real = ingest_module._events_apply

    def apply(run, events):
        if run.pk == pk:
            raise RuntimeError("this run's events cannot be applied")
        return real(run, events)

    monkeypatch.setattr(ingest_module, "_events_apply", apply)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_overlapping_batches_at_once_never_deadlock_and_charge_once(
    requires_postgres, funded_team, make_member, coasty
):
    from tests.billing.services.test_concurrency import at_once

    # given six runs on one wallet
    user = make_member(funded_team)
    runs = [_accepted_run(funded_team, user, coasty, max_steps=10) for _ in range(6)]

    # when four storing loops bring growing histories of overlapping runs, in opposite orders
    def loop(i):
        mine = runs[i % 2 :] if i % 2 else list(reversed(runs[: 6 - i % 3]))
        for steps in range(1, 6):
            services.events_ingest_runs(batches={run.pk: history(steps) for run in mine})

    _results, errors = at_once(4, loop)
    # then nothing failed and every run was charged its five steps once
    assert errors == {}
    for run in runs:
        assert charges(run) == [1, 2, 3, 4, 5]
        assert state(run)[COMPARED.index("charged_cents")] == 25
