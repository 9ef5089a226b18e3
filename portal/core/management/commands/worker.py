"""`manage.py worker`: django-q2's `qcluster`, with a stop that always ends.

django-q2's cluster handles SIGTERM in its main process by setting a multiprocessing Event its
sentinel process waits on. But a SIGTERM sent to the process group (what `make run` stopping, a
closed terminal, `timeout` or a deploy sends) also reaches the sentinel, which keeps the default
action and dies, possibly while it holds that Event's lock: the main process then blocks for
ever in `Event.set()` with the signal caught and never finished, and workers whose sentinel died
are left without a parent (issue 12, case 9).

Its main process also keeps a minute clock: at `WORKER_MINUTE_SECOND` seconds into each minute
it queues the tasks named in `WORKER_MINUTE_TASKS` (the schedules tick). django-q2's scheduler
looks for due jobs only every 30 s, from whatever second the cluster started, so a one-minute
job runs up to 30 s after it is due; the clock brings a 09:00 occurrence's launch to about
09:00:01. The django-q2 periodic job stays as the fallback for a plain `qcluster`; the tasks
are idempotent, so every cluster queuing them (and the periodic job) changes nothing but cost.

This command runs the same cluster but stops it itself: on SIGTERM, SIGINT or SIGHUP it ignores
any further signal (a second one cannot cut the clean-up short), sends SIGTERM to every process
of the cluster, gives them `STOP_GRACE_SECONDS` to finish (a stream follower hands its leases
back and exits; see `runs.follow`), kills what is left, and exits. So the whole cluster is gone
within 10 s of the signal, whatever its tasks were doing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

STOP_GRACE_SECONDS = 8.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, state) of every process, from /proc (Linux)."""
    table: dict[int, tuple[int, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def cluster_processes(me: int) -> set[int]:
    """The live processes of this cluster other than this one: its descendants and, when this
    process leads its process group (as `bin/run` and the tests start it), every member of the
    group, including workers whose sentinel already died."""
    table = _processes()
    leader = os.getpgrp() == me
    found = {pid for pid, (_, group, _) in table.items() if leader and group == me}
    frontier = [me]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _, _) in table.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                frontier.append(pid)
    found.discard(me)
    return {pid for pid in found if pid in table and table[pid][2] != "Z"}


def _signal_all(pids: set[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


class MinuteClock:
    """Queues `tasks` (dotted paths) once per minute, `second` seconds into it."""

    def __init__(self, tasks: list[str], second: float, now: float | None = None) -> None:
        self.tasks = list(tasks)
        self.second = second
        self.due = self._next(time.time() if now is None else now)

    def _next(self, after: float) -> float:
        minute = after - after % 60
        due = minute + self.second
        return due if due > after else due + 60

    def tick(self, now: float | None = None) -> list[str]:
        """The tasks to queue now (none until the next due second), and the clock moves on.
        A clock that stepped or a main loop that stalled queues once, not once per minute."""
        now = time.time() if now is None else now
        if now < self.due - 60:  # the system clock stepped back: keep to the new time's grid
            self.due = self._next(now)
        if now < self.due:
            return []
        self.due = self._next(now)
        return self.tasks


def _queue(paths: list[str], log) -> None:
    from django.db import close_old_connections
    from django_q.tasks import async_task

    for path in paths:
        try:
            async_task(path)
        except Exception as exc:  # the broker is down: the periodic job is the fallback
            log(f"could not queue {path}: {exc}")
    close_old_connections()


def _reap() -> None:
    """Collect exited children, so they do not linger as zombies."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Command(BaseCommand):
    help = "Start a django-q2 cluster (as qcluster) that always stops within 10 s of SIGTERM."

    def handle(self, *args, **options) -> None:
        from django_q.cluster import Cluster

        stop = threading.Event()
        cluster = Cluster()  # installs django-q2's own handlers; replaced next

        def request_stop(signum, frame) -> None:
            stop.set()

        for signum in STOP_SIGNALS:
            signal.signal(signum, request_stop)
        try:
            cluster.start()
        except RuntimeError as exc:  # the sentinel died while starting (a signal, or a fault)
            self.stderr.write(str(exc))
            stop.set()
        clock = MinuteClock(settings.WORKER_MINUTE_TASKS, settings.WORKER_MINUTE_SECOND)
        while not stop.wait(0.25):
            if not cluster.sentinel.is_alive():
                self.stderr.write("the cluster's sentinel died; stopping")
                break
            if due := clock.tick():
                _queue(due, self.stderr.write)
        self.stop_cluster()
        os._exit(0)  # not sys.exit: multiprocessing's exit hooks would join the dead sentinel

    def stop_cluster(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        me = os.getpid()
        _signal_all(cluster_processes(me), signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline:
            _reap()
            if not cluster_processes(me):
                break
            time.sleep(0.1)
        left = cluster_processes(me)
        if left:
            self.stderr.write(f"killing {len(left)} cluster processes that did not stop in time")
            _signal_all(left, signal.SIGKILL)
        _reap()
