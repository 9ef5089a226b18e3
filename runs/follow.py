"""Following run event streams at scale: one task, many runs, one asyncio loop.

A follower task claims live runs under a lease, opens each run's SSE stream (resuming after the
last stored seq) in an asyncio loop in a child process of its own (`runs.coasty.streams`: the
parsing does not take turns with the storing on one interpreter lock), which hands the events,
in order, to the task's process, which stores them in batches: the events of all the runs a
batch holds in one transaction (`events_ingest_runs`), or run by run (`events_ingest`) when that
fails. It follows for a bounded time and hands over: its leases are released and, if runs are
still live, a fresh follower is enqueued. A follower that dies leaves leases that expire, and
the next one picks the runs up; its streams' child exits with it (its end of the socket
closes), and what the child had parsed but not handed over is read again from the last stored
seq.

Two followers can never double-apply an event, because the ingest is idempotent per (run, seq);
the leases only keep them from doing the same work twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Q
from django.utils import timezone

from portal.core.queue import enqueue_on_commit
from runs import tasks
from runs.coasty import CoastyAuthError, CoastyClient, CoastyNotFound
from runs.coasty.sse import StreamLimits
from runs.coasty.streams import Item, StreamsProcess, error_name
from runs.models import TERMINAL_STATUSES, FollowerSlot, Run, runs_to_follow
from runs.services import events_ingest, events_ingest_runs
from runs.upstream import client_from_settings

logger = logging.getLogger(__name__)

LEASE = dt.timedelta(seconds=30)
RENEW_EVERY = 10.0  # seconds; well inside LEASE so a slow batch never loses a lease
CLAIM_EVERY = 1.0  # new runs are picked up within about a second
IDLE_EXIT = 5.0  # a follower with nothing to follow for this long stops early
# A run whose stream is gone (404) or refused (401) is not claimed again for this long: it is
# settled from Coasty's record instead, and a bad API key is not hammered once a second.
GONE_SNOOZE = dt.timedelta(minutes=5)
BATCH_MAX = 1000
# How long a stopping follower waits for its streams to close: SIGTERM to exit stays under 10 s.
SHUTDOWN_STREAMS_SECONDS = 3.0


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# --- Slots ----------------------------------------------------------------------------------


def follower_slot_acquire(owner: str) -> int | None:
    slots = settings.RUNS_FOLLOWER_SLOTS
    for number in range(slots):
        FollowerSlot.objects.get_or_create(number=number)
    now = timezone.now()
    for number in range(slots):
        # A conditional UPDATE is the lock: of two followers racing for a slot, one matches.
        taken = (
            FollowerSlot.objects.filter(number=number)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .update(owner=owner, lease_until=now + LEASE)
        )
        if taken:
            return number
    return None


def follower_slot_renew(owner: str) -> None:
    FollowerSlot.objects.filter(owner=owner).update(lease_until=timezone.now() + LEASE)


def follower_slot_release(owner: str) -> None:
    FollowerSlot.objects.filter(owner=owner).update(owner="", lease_until=None)


# --- Leases on runs -------------------------------------------------------------------------


def runs_claim(owner: str, *, limit: int, exclude: set) -> list[tuple]:
    """Lease up to `limit` live, unfollowed runs; returns (pk, upstream_id, last_seq) of each."""
    if limit <= 0:
        return []
    now = timezone.now()
    claimable = (
        runs_to_follow()
        .filter(Q(follow_lease_until__isnull=True) | Q(follow_lease_until__lt=now))
        .exclude(pk__in=exclude)
    )
    candidates = list(claimable.order_by("created_at").values_list("pk", flat=True)[:limit])
    if not candidates:
        return []
    # The lease condition is checked again inside the UPDATE, row by row, so a run another
    # follower leased since the SELECT is not taken from it.
    claimable.filter(pk__in=candidates).update(follow_owner=owner, follow_lease_until=now + LEASE)
    return list(
        Run.objects.filter(pk__in=candidates, follow_owner=owner).values_list(
            "pk", "upstream_id", "last_seq"
        )
    )


def runs_renew(owner: str, run_ids) -> None:
    Run.objects.filter(pk__in=list(run_ids), follow_owner=owner).update(
        follow_lease_until=timezone.now() + LEASE
    )


def runs_release(owner: str, run_ids) -> None:
    Run.objects.filter(pk__in=list(run_ids), follow_owner=owner).update(
        follow_owner="", follow_lease_until=None
    )


def runs_snooze(owner: str, run_ids, *, until: dt.datetime) -> None:
    """Keep the lease on `run_ids` until `until` without following them: nobody claims them
    before then."""
    Run.objects.filter(pk__in=list(run_ids), follow_owner=owner).update(follow_lease_until=until)


# --- The follower ---------------------------------------------------------------------------


@dataclass
class FollowReport:
    runs_followed: int = 0
    events: int = 0
    max_concurrent: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def runs_needing_follower() -> bool:
    """Is any run to follow (live, or ended without its whole log) followed by nobody (never
    leased, or its lease expired)?"""
    return (
        runs_to_follow()
        .filter(Q(follow_lease_until__isnull=True) | Q(follow_lease_until__lt=timezone.now()))
        .exists()
    )


class Follower:
    def __init__(
        self,
        *,
        owner: str | None = None,
        budget_seconds: float = 50.0,
        capacity: int = 500,
        client: CoastyClient | None = None,
    ) -> None:
        self.owner = owner or new_owner()
        self.budget = budget_seconds
        self.capacity = capacity
        self.client = client or client_from_settings()
        # What the streams sent, not yet stored: ("event", pk, SseEvent) or ("end", pk, error).
        self.inbox: deque[Item] = deque()
        self.active: dict = {}  # run pk -> the handle of its stream in the streams' process
        self.runs_by_handle: dict[int, Any] = {}
        self.streams: StreamsProcess | None = None  # started by run()
        # Runs whose batch failed to store: their stream is cancelled and whatever it still
        # sends is dropped, so no later batch can move last_seq past the events not stored.
        self.failed: set = set()
        self.report = FollowReport()
        self.stop_requested = threading.Event()  # set by SIGTERM (see _stop_on_sigterm)
        self.stop_signal_previous: object = None
        self.limits = StreamLimits(
            max_line_bytes=settings.RUNS_STREAM_MAX_LINE_BYTES,
            max_event_bytes=settings.RUNS_STREAM_MAX_EVENT_BYTES,
        )

    def run(self, *, on_tick=None) -> FollowReport:
        with self._stop_on_sigterm():
            return self._run(on_tick=on_tick)

    @contextlib.contextmanager
    def _stop_on_sigterm(self):
        """While following, SIGTERM (a deploy, `make run` stopping, a closed terminal) ends the
        follow at once instead of killing the process mid-batch: the loop sees the flag within
        a fraction of a second, the streams are cancelled, what arrived is stored and the
        leases are handed back, so another worker resumes every stream without waiting for a
        lease to run out. The caller then re-delivers the signal (`exit_if_stopped`)."""
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread may set signal handlers; tests run followers in threads
            return
        previous = signal.getsignal(signal.SIGTERM)

        def stop(signum, frame) -> None:
            self.stop_requested.set()
            self.stop_signal_previous = previous

        signal.signal(signal.SIGTERM, stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def exit_if_stopped(self) -> None:
        """After a SIGTERM ended the follow and everything was handed back: do what the signal
        would have done (by default, end the process)."""
        if not self.stop_requested.is_set():
            return
        previous = self.stop_signal_previous
        logger.info("follower %s: stopped by SIGTERM; leases handed back", self.owner)
        if callable(previous):
            previous(signal.SIGTERM, None)
        elif previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    def _run(self, *, on_tick=None) -> FollowReport:
        client, connections = self.client, self.capacity + 10
        self.streams = StreamsProcess(
            lambda: client.async_http(max_connections=connections), limits=self.limits
        )
        started = time.monotonic()
        stop_at = started + self.budget
        next_claim = next_renew = started
        idle_since = started
        try:
            while time.monotonic() < stop_at and not self.stop_requested.is_set():
                now = time.monotonic()
                if now >= next_claim:
                    self._claim(stop_at)
                    next_claim = now + CLAIM_EVERY
                if now >= next_renew:
                    runs_renew(self.owner, self.active.keys())
                    if on_tick:
                        on_tick()
                    next_renew = now + RENEW_EVERY
                self._drain(wait=0.2)
                if self.streams.closed:
                    # The streams' process is gone (killed, out of memory): nothing more will
                    # arrive, so hand the runs over now rather than at the end of the budget.
                    logger.warning("follower %s: its streams' process is gone", self.owner)
                    self._count_error("StreamsProcessGone")
                    break
                if self.active:
                    idle_since = time.monotonic()
                elif not self.report.runs_followed or time.monotonic() - idle_since > IDLE_EXIT:
                    # Nothing to follow: give the worker process back. New runs enqueue a
                    # follower of their own, and housekeeping starts one for any left behind.
                    break
        finally:
            self._shutdown()
        return self.report

    # -- inside the task's thread --

    def _claim(self, stop_at: float) -> None:
        claimed = runs_claim(
            self.owner,
            limit=self.capacity - len(self.active),
            exclude=set(self.active) | self.failed,
        )
        assert self.streams is not None, "started in run() before any run is claimed"
        for pk, upstream_id, last_seq in claimed:
            remaining = max(1.0, stop_at - time.monotonic())
            handle = self.report.runs_followed
            self.active[pk], self.runs_by_handle[handle] = handle, pk
            self.streams.follow(handle, upstream_id, last_seq, remaining)
            self.report.runs_followed += 1
        self.report.max_concurrent = max(self.report.max_concurrent, len(self.active))

    def _drain(self, *, wait: float) -> None:
        if self.streams is not None:
            self.streams.receive(into=self.inbox, wait=wait, enough=BATCH_MAX)
        elif not self.inbox:
            return
        items: list[Item] = []
        # A batch ends at BATCH_MAX events or at the byte cap, whichever comes first, so a
        # burst of big events is stored in several transactions rather than one huge one.
        batch_bytes, max_bytes = 0, settings.RUNS_FOLLOW_BATCH_MAX_BYTES
        inbox = self.inbox
        while inbox and len(items) < BATCH_MAX and batch_bytes < max_bytes:
            items.append(inbox.popleft())
            batch_bytes += _item_size(items[-1])
        if not items:
            return
        by_run = defaultdict(list)
        ended: list[tuple[Any, Any]] = []
        for kind, handle, payload in items:
            pk = self.runs_by_handle.get(handle, handle)
            if kind == "event":
                if pk not in self.failed:
                    by_run[pk].append(payload)
            else:
                ended.append((pk, payload))
        close_old_connections()
        self._store(by_run)
        released = []  # handed back in one UPDATE: a batch often ends many streams at once
        for pk, error in ended:
            if pk in self.failed:
                # Its lease is left to run out: the run is picked up again, from the last
                # stored seq, when it does (a batch that keeps failing is retried that often).
                self.failed.discard(pk)
                continue
            self.active.pop(pk, None)
            if isinstance(error, CoastyNotFound | CoastyAuthError):
                self._count_error(error_name(error))
                if isinstance(error, CoastyNotFound):
                    # An ended run whose stream Coasty no longer has: there is nothing to
                    # backfill, so it is not followed again.
                    Run.objects.filter(pk=pk, status__in=TERMINAL_STATUSES).update(
                        events_complete=True
                    )
                runs_snooze(self.owner, [pk], until=timezone.now() + GONE_SNOOZE)
                # The stream is gone for good: ask Coasty for the run's final record instead.
                enqueue_on_commit(tasks.settle_run, str(pk))
            else:
                released.append(pk)
                if error is not None:
                    self._count_error(error_name(error))
        if released:
            runs_release(self.owner, released)

    def _store(self, by_run: dict) -> None:
        """Store a drained batch: all its runs in one transaction (`events_ingest_runs`), and
        when that fails, run by run (`events_ingest`), so a run whose events cannot be stored
        is given up alone and the others' events are kept."""
        if len(by_run) > 1:
            try:
                events_ingest_runs(batches=by_run)
            except Exception:
                logger.warning(
                    "a batch of %s runs failed to store together; storing run by run",
                    len(by_run),
                    exc_info=True,
                )
            else:
                self.report.events += sum(len(events) for events in by_run.values())
                return
        for pk, events in by_run.items():
            try:
                events_ingest(run_id=pk, events=events)
                self.report.events += len(events)
            except Exception:
                logger.exception("run %s: ingest of %s events failed", pk, len(events))
                self._count_error("ingest")
                self._give_up(pk)

    def _give_up(self, pk) -> None:
        """Stop following `pk` after a batch of its events failed to store. Those events stay
        upstream; what the stream still sends is dropped, so the stored last_seq stays below
        the gap and the next follow resumes from it."""
        self.failed.add(pk)
        handle = self.active.pop(pk, None)
        if handle is not None and self.streams is not None:
            self.streams.cancel(handle)

    def _count_error(self, name: str) -> None:
        self.report.errors[name] = self.report.errors.get(name, 0) + 1

    def _shutdown(self) -> None:
        streams = self.streams
        if streams is not None:
            # Bounded, so a stop always ends within seconds whatever the streams are doing: the
            # child cancels them, sends what it holds and exits; what reaches us before then is
            # stored before the leases go (anything later is read again from the last stored seq).
            streams.stop(SHUTDOWN_STREAMS_SECONDS)
            give_up_at = time.monotonic() + SHUTDOWN_STREAMS_SECONDS + 2
            while not streams.closed and time.monotonic() < give_up_at:
                self._drain(wait=0.1)
            streams.close(timeout=SHUTDOWN_STREAMS_SECONDS)
        while self.inbox:
            self._drain(wait=0)
        runs_release(self.owner, list(self.active))
        self.active.clear()


def _item_size(item) -> int:
    kind, _pk, payload = item
    return getattr(payload, "size", 0) if kind == "event" else 0


def follow_runs_once(
    *, budget_seconds: float | None = None, capacity: int | None = None
) -> FollowReport | None:
    """The follower task's body: take a slot, follow, hand over. None when no slot was free."""
    budget_seconds = budget_seconds or settings.RUNS_FOLLOW_BUDGET_SECONDS
    capacity = capacity or settings.RUNS_FOLLOW_CAPACITY
    owner = new_owner()
    if follower_slot_acquire(owner) is None:
        return None
    follower = None
    try:
        follower = Follower(owner=owner, budget_seconds=budget_seconds, capacity=capacity)
        report = follower.run(on_tick=lambda: follower_slot_renew(owner))
    finally:
        follower_slot_release(owner)
        if follower is not None:
            follower.exit_if_stopped()
    logger.info(
        "follower %s: %s runs, %s events, %s at once, errors %s",
        owner,
        report.runs_followed,
        report.events,
        report.max_concurrent,
        report.errors,
    )
    return report
