"""Ingest: a run's stream events stored once per (run, seq) and applied once.

The follower (runs.follow) hands batches here; status moves, steps are charged, text and errors
land on the run, all under the run's row lock.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from billing import services as billing
from billing.errors import HoldNotFound
from billing.selectors import hold_captured_cents
from portal.core.queue import (
    enqueue_on_commit,
    tasks_collected,
    tasks_write,
)
from portal.notifications.services import events_collected, events_write
from runs import sql, tasks
from runs.coasty.strict_json import PORTAL_KEY
from runs.models import Run, RunEvent, RunStatus
from runs.services.status import apply_status, parse_at
from runs.services.upstream_data import as_dict, error_text, finite, without_nul

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IncomingEvent:
    """One stream event as the follower hands it over (mirrors runs.coasty.SseEvent)."""

    seq: int
    type: str
    data: dict[str, Any]
    size: int = 0  # the data's JSON size when known (the follower's events); 0: measure it


def events_ingest(*, run_id, events: Iterable[IncomingEvent]) -> Run:
    """Store a run's stream events and apply what they say; idempotent per (run, seq).

    Applying an event twice does nothing the second time: the event row is unique per seq,
    status only moves forward by seq, steps_completed only grows, and a step is captured under
    the billing key capture:<run>:<step>, at most once. So two workers, a replayed stream or a
    crash between store and apply cannot double anything.
    """
    events = _in_order(events)
    with transaction.atomic():
        # Lock the run: the webhook view and settle serialise with the stream on this row.
        run = Run.objects.select_for_update().get(pk=run_id)
        if not events:
            return run
        _events_store(run, events)
        chargeable = _events_apply(run, events)
        if chargeable:
            # The batch's steps in one capture (one statement on PostgreSQL); each step is
            # still charged at most once, under its own key, and one the hold cannot pay for
            # is refused alone (billing.services.hold_capture_steps).
            captured, captured_cents = billing.hold_capture_steps_totalled(
                reference=run.hold_reference,
                steps=chargeable,
                amount_cents=run.price_cents,
                caused_by=f"run:{run.pk}",
            )
            _charged(
                run,
                {step: transfer is not None for step, transfer in captured.items()},
                captured_cents,
            )
        _run_save(run, events)
    return run


def events_ingest_runs(*, batches: Mapping[Any, Iterable[IncomingEvent]]) -> dict[Any, Run]:
    """`events_ingest` for several runs at once, in ONE transaction: {run pk: the run}.

    Each run's events are stored and applied exactly as `events_ingest` would (same rules, same
    idempotency), but the batch pays once for what every run's transaction paid: one lock
    statement for all the runs, one INSERT of all their events and one UPDATE of all the runs
    (PostgreSQL), one capture of all their steps (`billing.services.holds_capture_steps`: the
    team's hot accounts locked once), one INSERT of their outbox events and one of their tasks,
    one commit. All or nothing: when any run's part fails (a run or hold that is gone, a row the
    database refuses), nothing of the batch is written and the exception is raised; the
    caller (the follower) then stores the batch run by run with `events_ingest`, so one run's
    failure costs the others nothing but time.
    """
    ordered = {pk: _in_order(events) for pk, events in batches.items()}
    with transaction.atomic():
        # The batch's outbox events (a pause, an end) and tasks (settle a run that ended, fan
        # a change out) are collected and written at the end, in its transaction: one INSERT
        # of events and, on the ORM broker, one of tasks, instead of one each per run.
        with events_collected() as events_out, tasks_collected() as queued:
            runs = _events_ingest_runs_locked(ordered)
        events_write(events_out)
        tasks_write(queued)
    return runs


def _events_ingest_runs_locked(ordered: dict[Any, list[IncomingEvent]]) -> dict[Any, Run]:
    """The body of `events_ingest_runs`, inside its transaction."""
    # Lock the runs in one order (primary key) in one statement, so two batches that share
    # runs queue instead of deadlocking; the webhook view and settle lock one run each.
    runs = {
        run.pk: run
        for run in Run.objects.filter(pk__in=list(ordered)).order_by("pk").select_for_update()
    }
    if len(runs) != len(ordered):
        missing = [pk for pk in ordered if pk not in runs]
        raise Run.DoesNotExist(f"runs {missing[:3]} do not exist")
    busy = [(runs[pk], events) for pk, events in ordered.items() if events]
    _events_store_runs(busy)
    chargeable = {run.pk: _events_apply(run, events) for run, events in busy}
    captures = [
        billing.StepsToCapture(
            run.hold_reference, chargeable[run.pk], run.price_cents, f"run:{run.pk}"
        )
        for run, _events in busy
        if chargeable[run.pk]
    ]
    captured = billing.holds_capture_steps(captures=captures) if captures else {}
    for run, events in busy:
        result = captured.get(run.hold_reference)
        if result is not None:
            if not result.hold_found:
                raise HoldNotFound(run.hold_reference)
            _charged(run, result.charged, result.captured_cents)
        _run_reached(run, events)
    if connection.vendor == "postgresql":
        sql.runs_save_fields([run for run, _events in busy], _INGEST_FIELDS)
    else:
        for run, _events in busy:
            run.save(update_fields=_INGEST_FIELDS)
    for run, _events in busy:
        _settle_when_ended(run)
    return runs


def _in_order(events: Iterable[IncomingEvent]) -> list[IncomingEvent]:
    return sorted((e for e in events if isinstance(e.seq, int) and e.seq > 0), key=lambda e: e.seq)


def _events_apply(run: Run, events: list[IncomingEvent]) -> list[int]:
    """Apply stored events to the run in memory (the caller holds its lock); the steps to
    charge."""
    _resumed_actor_attach(run, events)
    # Steps are charged in order, one per number: the next step is the one after the
    # last charged. A number beyond it (a stray step number, or a gap) is not charged
    # here; settle charges Coasty's final count of steps, so nothing is lost and a stray
    # number is never charged on top of that count.
    next_step = run.steps_completed + 1
    new_steps: list[int] = []
    for event in events:
        data = as_dict(event.data)
        if event.type in _TEXT_EVENTS:  # their words land in the run's own columns
            data = without_nul(data)
        at = parse_at(data.get("at"))
        if event.type == "status":
            apply_status(run, str(data.get("status", "")), seq=event.seq, at=at)
        elif event.type == "awaiting_human":
            apply_status(
                run,
                RunStatus.AWAITING_HUMAN,
                seq=event.seq,
                at=at,
                reason=str(data.get("reason") or ""),
            )
        elif event.type == "resumed":
            apply_status(run, RunStatus.RUNNING, seq=event.seq, at=at)
        elif event.type == "step":
            step = _step_number(data)
            if step == next_step:
                new_steps.append(step)
                next_step += 1
            elif step is not None and step > next_step:
                logger.warning(
                    "run %s: step %s arrived after step %s; left to settle's count",
                    run.pk,
                    step,
                    next_step - 1,
                )
        elif event.type == "text" and isinstance(data.get("text"), str):
            run.result = {**(run.result or {}), "text": data["text"]}
        elif event.type == "error":
            run.error = error_text(data)
        elif event.type == "done":
            apply_status(run, str(data.get("status", "")), seq=event.seq, at=at)
    for step in new_steps:
        if step > run.max_steps:
            logger.warning("run %s: step %s is beyond max_steps; not charged", run.pk, step)
    # A settled run's money is final (settle charged Coasty's own count): the steps of a
    # stream read late, such as a backfill, are stored but not charged again.
    if run.settled_at is not None:
        return []
    return [step for step in new_steps if step <= run.max_steps]


def _charged(run: Run, charged: dict[int, bool], captured_cents: int | None) -> None:
    """Mirror a capture on the run: the steps charged ({step: whether it has its capture}), and
    the hold's total."""
    for step, ok in sorted(charged.items()):
        if not ok:
            logger.error("run %s: capture of step %s would exceed the hold", run.pk, step)
            continue
        run.steps_completed = max(run.steps_completed, step)
    # The capture statement returns the hold's total; only the step-by-step path reads it.
    if captured_cents is None:
        captured_cents = hold_captured_cents(run.hold_reference)
    run.charged_cents = captured_cents


def _run_save(run: Run, events: list[IncomingEvent]) -> None:
    _run_reached(run, events)
    # Only the fields ingest sets: a smaller UPDATE to build, and no write-back of columns
    # others change without this lock (the follower's lease, renewed by a plain UPDATE).
    run.save(update_fields=_INGEST_FIELDS)
    _settle_when_ended(run)


def _run_reached(run: Run, events: list[IncomingEvent]) -> None:
    """Where the run's stream has got to, after a batch of its events."""
    if any(event.type == "done" for event in events):
        run.events_complete = True
    run.last_seq = max(run.last_seq, events[-1].seq)
    run.last_event_at = timezone.now()


def _settle_when_ended(run: Run) -> None:
    if run.is_terminal and run.settled_at is None:
        enqueue_on_commit(tasks.settle_run, str(run.pk))


def _resumed_actor_attach(run: Run, events: list[IncomingEvent]) -> None:
    """Name the person who asked for the resume on Coasty's `resumed` event, once.

    The run remembers who asked (run_request_resume); the first `resumed` stored after that
    carries them as its actor, and the run forgets them, so a later resume made elsewhere (on
    Coasty directly) is not pinned on them. A replayed batch finds the actor already set.
    """
    if run.resume_requested_by_id is None:
        return
    # Only events new to this run: a replayed `resumed` of an earlier pause is someone else's.
    resumed = [e.seq for e in events if e.type == "resumed" and e.seq > run.last_seq]
    if not resumed:
        return
    RunEvent.objects.filter(run=run, seq__in=resumed[:1], actor__isnull=True).update(
        actor_id=run.resume_requested_by_id
    )
    run.resume_requested_by = None


def _events_store(run: Run, events: list[IncomingEvent]) -> None:
    """Store the events a batch brings, skipping any (run, seq) already stored."""
    _events_store_runs([(run, events)])


def _events_store_runs(batches: list[tuple[Run, list[IncomingEvent]]]) -> None:
    """Store the events of one or more runs, skipping any (run, seq) already stored.

    Each event's data is stored capped (`stored_data`). On PostgreSQL all of them are one JSON
    document that the database unpacks: one string parameter instead of a model instance and
    five bound values per event, which made the ORM's bulk_create most of the follower's time
    (`make bench`, "ingest").
    """
    cap = settings.RUNS_EVENT_DATA_MAX_BYTES
    if connection.vendor != "postgresql":
        RunEvent.objects.bulk_create(
            [
                RunEvent(
                    run=run, seq=e.seq, type=e.type[:32], data=without_nul(stored_data(e, cap))
                )
                for run, events in batches
                for e in events
            ],
            ignore_conflicts=True,
        )
        return

    named = [(str(run.pk), events) for run, events in batches]  # each run's id written once

    def rows(clean) -> str:
        return json.dumps(
            [
                {
                    "run": run_id,
                    "seq": e.seq,
                    "type": e.type[:32],
                    "data": clean(stored_data(e, cap)),
                }
                for run_id, events in named
                for e in events
            ],
            separators=(",", ":"),
            default=str,
            allow_nan=False,
        )

    document = rows(lambda data: data)
    if "\\u0000" in document:  # rare: only then walk the data (see _without_nul)
        document = rows(without_nul)
    sql.events_insert_runs(timezone.now(), document)


def stored_data(event: IncomingEvent, cap: int) -> dict[str, Any]:
    """What is stored of an event's data: itself when it is at most `cap` bytes of JSON that a
    database takes; otherwise a placeholder that records the event as oversize, with its size.

    The follower's events were decoded strictly and measured on the way in; anything else (a
    test, a backfill through another path) is measured here, and a NaN or infinity in it is
    stored as null rather than failing the batch for ever."""
    data = as_dict(event.data)
    size = getattr(event, "size", 0) or 0
    if not size:
        try:
            size = len(json.dumps(data, separators=(",", ":"), default=str, allow_nan=False))
        except ValueError:
            data = finite(data)
            size = len(json.dumps(data, separators=(",", ":"), default=str))
    if size <= cap:
        return data
    logger.warning("event of %s bytes stored as oversize (cap %s)", size, cap)
    earlier = data.get(PORTAL_KEY)
    note: dict[str, Any] = earlier if isinstance(earlier, dict) else {}
    return {PORTAL_KEY: {**note, "oversize_bytes": size, "limit_bytes": cap}}


# Every Run field events_ingest (and apply_status / _resumed_actor_attach) may set.
_INGEST_FIELDS = (
    "status",
    "status_seq",
    "status_at",
    "awaiting_human_reason",
    "pending_action",
    "finished_at",
    "result",
    "error",
    "steps_completed",
    "charged_cents",
    "events_complete",
    "last_seq",
    "last_event_at",
    "resume_requested_by",
)

_TEXT_EVENTS = frozenset({"awaiting_human", "text", "error"})


def _step_number(data: dict[str, Any]) -> int | None:
    for key in ("step", "steps_completed"):
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None
