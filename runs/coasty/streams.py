"""Following many runs' event streams in a process of their own, for a follower in another.

Parsing hundreds of SSE streams is Python work, and so is storing what they bring; in one
process the two take turns on one interpreter lock (the storing thread ran at about half of
what parsing alone reached, `make bench`, "ingest"). `StreamsProcess` forks a child that runs
the asyncio loop of SSE clients (`follow_events`) and hands the parent their events, in order,
through a socket; the parent only stores. Parsing and storing then run on two cores.

The parent asks (`follow`, `cancel`, `stop`); the child answers with chunks of items, each
`("event", handle, SseEvent)` or `("end", handle, error or None)`, a stream's end always after
its last event. A handle is the small number the parent gave the stream. An error crosses as
its class name and message (`StreamError`; `CoastyNotFound` and `CoastyAuthError` as
themselves), since not every exception survives pickling.

The child holds nothing that matters: what it parsed but the parent did not store is read again
by the next follow, from the last stored seq. It ignores SIGTERM and SIGINT (the parent, which
gets them too, stops it after storing what arrived) and exits when the parent asks, or when the
parent is gone (its end of the socket closes). Nothing of Django here: the child never touches
the parent's database connections, and leaves with `os._exit`, running no cleanup of the
parent's objects it inherited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import queue
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import httpx

from .errors import CoastyAuthError, CoastyNotFound
from .sse import SseEvent, StreamLimits, follow_events

logger = logging.getLogger(__name__)

# What the parent receives: ("event", handle, SseEvent) or ("end", handle, error or None).
Item = tuple[str, Any, Any]
Command = tuple[
    Any, ...
]  # ("follow", handle, upstream id, after, budget), ("cancel", handle), ("stop", timeout)

_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
# A chunk leaves the child when the loop has nothing else ready, or at this many items.
CHUNK_MAX = 500


class StreamError(Exception):
    """A stream that stopped on an error in the streams' process: that error's class name and
    message."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(name, message)  # both in args: it pickles
        self.name = name
        self.message = message

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


def error_name(error: BaseException) -> str:
    return error.name if isinstance(error, StreamError) else type(error).__name__


class StreamsProcess:
    """The parent's handle on the child that follows streams (see the module docstring)."""

    def __init__(
        self,
        open_http: Callable[[], httpx.AsyncClient],
        *,
        limits: StreamLimits,
        stream_log: Callable[[str, str], None] | None = None,
    ) -> None:
        parent_end, child_end = socket.socketpair()
        # No SIGTERM or SIGINT may reach the child before it ignores them: held back until then.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        self.pid = os.fork()
        if self.pid == 0:  # the child
            code = 1
            try:
                for signum in _STOP_SIGNALS:
                    signal.signal(signum, signal.SIG_IGN)
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                parent_end.close()
                _child_main(Connection(child_end.detach()), open_http, limits)
                code = 0
            except BaseException:  # the child must never return into the parent's code
                logger.exception("the streams process failed")
            finally:
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        child_end.close()
        self.conn = Connection(parent_end.detach())
        self.closed = False  # the child's end is closed: everything it sent was received

    def follow(self, handle: int, upstream_id: str, after: int, budget: float) -> None:
        self._send(("follow", handle, upstream_id, after, budget))

    def cancel(self, handle: int) -> None:
        self._send(("cancel", handle))

    def stop(self, timeout: float) -> None:
        """Ask the child to cancel every stream and to send what it holds, then to exit."""
        self._send(("stop", timeout))

    def _send(self, message: Command) -> None:
        with contextlib.suppress(OSError):  # a child that is gone has ended its streams
            self.conn.send(message)

    def receive(self, *, into: deque[Item], wait: float, enough: int) -> None:
        """Move what the child sent into `into`: wait up to `wait` seconds for something when
        nothing is held, then take what is there until `enough` items are held."""
        if self.closed:
            return
        try:
            if not into and not self.conn.poll(wait):
                return
            while len(into) < enough and self.conn.poll(0):
                chunk = pickle.loads(self.conn.recv_bytes())  # noqa: S301 - from our own child
                into.extend(
                    ("event", handle, SseEvent(*event))
                    if kind == "event"
                    else (kind, handle, event)
                    for kind, handle, event in chunk
                )
        except (EOFError, OSError):
            self.closed = True

    def close(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the child to exit, then kill it."""
        self.conn.close()
        give_up_at = time.monotonic() + timeout
        while time.monotonic() < give_up_at:
            pid, _status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


# --- In the child ---------------------------------------------------------------------------


def _child_main(
    conn: Connection, open_http: Callable[[], httpx.AsyncClient], limits: StreamLimits
) -> None:
    sys.setprofile(None)  # a profiler of the parent's (BENCH_PROFILE) measures the parent only
    outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    # Sending may block while the parent stores: a thread of its own sends, so the loop goes on
    # reading the streams meanwhile.
    loop = asyncio.new_event_loop()
    streams = _Streams(conn, outbox, open_http, limits)
    sender = threading.Thread(
        target=_send_chunks, args=(conn, outbox, loop, streams.done), daemon=True
    )
    sender.start()
    try:
        loop.run_until_complete(streams.run())
    finally:
        outbox.put(None)
        sender.join()
        conn.close()
        loop.close()


def _send_chunks(
    conn: Connection,
    outbox: queue.SimpleQueue[bytes | None],
    loop: asyncio.AbstractEventLoop,
    done: asyncio.Event,
) -> None:
    try:
        while (chunk := outbox.get()) is not None:
            conn.send_bytes(chunk)
    except OSError:  # the parent is gone: stop following
        with contextlib.suppress(RuntimeError):  # the loop has ended already
            loop.call_soon_threadsafe(done.set)
        while outbox.get() is not None:
            pass  # drop the rest until the loop is done


class _Streams:
    def __init__(
        self,
        conn: Connection,
        outbox: queue.SimpleQueue[bytes | None],
        open_http: Callable[[], httpx.AsyncClient],
        limits: StreamLimits,
    ) -> None:
        self.conn = conn
        self.outbox = outbox
        self.open_http = open_http
        self.limits = limits
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.pending: list[Item] = []
        self.done = asyncio.Event()
        self.stop_timeout = 3.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.http = self.open_http()
        loop.add_reader(self.conn.fileno(), self._on_command)
        try:
            await self.done.wait()
        finally:
            loop.remove_reader(self.conn.fileno())
            streams = list(self.tasks.values())
            for task in streams:
                task.cancel()
            if streams:
                await asyncio.wait(streams, timeout=self.stop_timeout)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.http.aclose(), timeout=1.0)
            self._flush()

    def _on_command(self) -> None:
        try:
            while self.conn.poll(0):
                self._command(self.conn.recv())
        except (EOFError, OSError):
            self.done.set()  # the parent is gone: stop

    def _command(self, message: Command) -> None:
        kind = message[0]
        if kind == "follow":
            _kind, handle, upstream_id, after, budget = message
            self.tasks[handle] = asyncio.ensure_future(
                self._follow_one(handle, upstream_id, after, budget)
            )
        elif kind == "cancel":
            task = self.tasks.get(message[1])
            if task is not None:
                task.cancel()
        elif kind == "stop":
            self.stop_timeout = message[1]
            self.done.set()

    def _put(self, item: Item) -> None:
        self.pending.append(item)
        if len(self.pending) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        elif len(self.pending) >= CHUNK_MAX:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.outbox.put(pickle.dumps(self.pending, protocol=pickle.HIGHEST_PROTOCOL))
            self.pending = []

    async def _follow_one(self, handle: int, upstream_id: str, after: int, budget: float) -> None:
        error = None
        try:
            async with contextlib.aclosing(
                follow_events(
                    self.http, upstream_id, after=after, budget_seconds=budget, limits=self.limits
                )
            ) as events:
                async for event in events:
                    self._put(("event", handle, (event.seq, event.type, event.data, event.size)))
        except asyncio.CancelledError:
            error = None
            raise
        except Exception as exc:
            logger.warning("stream of %s stopped: %s", upstream_id, exc)
            error = _portable(exc)
        finally:
            self.tasks.pop(handle, None)
            self._put(("end", handle, error))


def _portable(exc: Exception) -> Exception:
    """An error the parent can unpickle, of the class the follower tells apart."""
    if isinstance(exc, CoastyNotFound | CoastyAuthError):
        return type(exc)(str(exc), status=exc.status, code=exc.code)
    return StreamError(type(exc).__name__, str(exc))


__all__ = ["SseEvent", "StreamError", "StreamsProcess", "error_name"]
