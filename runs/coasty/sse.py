"""Following a run's event stream (`GET /v1/runs/{id}/events`, Server-Sent Events).

`follow_events` is an async generator that turns the stream's real life (drops, read
timeouts, the edge closing connections every 300 s, keep-alive comments, `retry:` hints,
gateways answering in HTML) into one ordered sequence of `SseEvent`s:

- Exactly once, in order. Each connection after the first resumes with
  `Last-Event-ID: <last seq>` (and the same `?after=`). An event whose seq is not above the
  last one yielded is dropped, so a server that replays some of what it already sent cannot
  produce a duplicate. A jump in seq (a gap) is logged and counted in `FollowStats.gaps`;
  no event is invented for it.
- Ends normally after yielding `done`, or when `budget_seconds` are spent (even in the middle
  of a quiet stream), so a worker task can hand the run over. The caller knows where to resume
  from the last event it got (also in `FollowStats.last_seq`).
- A duplicate `done` (the caller resumed after a `done` it had already stored) also ends the
  follow, without yielding anything.
- 401/403 raise `CoastyAuthError` and 404 `CoastyNotFound`: no reconnect can fix those. Other
  deterministic 4xx are raised too. 5xx, 429, odd responses and transport failures are retried
  with `RetryPolicy` backoff (honouring `Retry-After`) until the budget ends; the last such
  failure is in `FollowStats.last_error`.
- Malformed frames (an id that is not a positive integer, data that is not a JSON object) are
  logged and skipped, and do not stop the follow: a poison frame would otherwise stop every
  future follower of that run at the same place. The run's outcome is settled from
  `GET /v1/runs/{id}` anyway. A skipped frame with a valid id still moves the resume cursor.
- Frames without data (a lone `retry:` or `id:`) are not events, as in the SSE spec.

Cheap per stream: no thread, one connection, one small parser. One worker can follow hundreds
of runs with one `httpx.AsyncClient` from `CoastyClient.async_http()`.

`iter_events` wraps it for scripts and tests that are not async.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse

from .errors import (
    CoastyAuthError,
    CoastyBadResponse,
    CoastyError,
    CoastyNotFound,
    bad_response,
    error_from_response,
    transport_error,
)
from .retry import RetryPolicy

__all__ = ["STREAM_RETRY", "FollowStats", "SseEvent", "follow_events", "iter_events"]

logger = logging.getLogger("runs.coasty")

# Backoff between failed connections. Attempts and elapsed time are bounded by the follow's
# budget instead of the policy's max_attempts/max_elapsed.
STREAM_RETRY = RetryPolicy(base_delay=0.5, max_delay=15.0, retry_after_cap=60.0)

# Wait before reconnecting after a healthy connection ended, unless the server set `retry:`.
RECONNECT_DELAY = 0.25
# A connection that opened and lasted this long is healthy even if it brought no event (an
# idle run between keep-alives, then the edge's rotation); one that did not is a failure and
# backs off, so a server that accepts and closes at once is not hammered.
HEALTHY_AFTER_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One event of a run: `seq` (monotonic per run, from 1), `type`, and its JSON `data`."""

    seq: int
    type: str
    data: dict[str, Any]


@dataclass(slots=True)
class FollowStats:
    """What happened during one `follow_events`; pass one in to read it afterwards."""

    last_seq: int = 0  # resume cursor: the last seq yielded (or skipped as malformed)
    done: bool = False
    ended_by: Literal["done", "budget"] | None = None
    connections: int = 0
    events: int = 0
    duplicates: int = 0
    malformed: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (first, last) missing seq
    last_error: CoastyError | None = None  # the last failure seen, even if recovered from


@dataclass(slots=True)
class _Connection:
    """How one connection went, filled in by `_frames`."""

    opened_at: float | None = None  # loop time of the 200 text/event-stream answer
    error: CoastyError | None = None


def _events_path(run_id: str) -> str:
    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
    return f"/v1/runs/{quote(run_id, safe='')}/events"


async def _frames(
    http: httpx.AsyncClient, path: str, last_seq: int, connection: _Connection
) -> AsyncGenerator[ServerSentEvent, None]:
    """The raw frames of one connection; how it ended goes into `connection`."""
    headers: dict[str, str] = {}
    params: dict[str, int] = {}
    if last_seq > 0:
        headers["Last-Event-ID"] = str(last_seq)
        params["after"] = last_seq
    try:
        async with aconnect_sse(http, "GET", path, headers=headers, params=params) as source:
            response = source.response
            if response.status_code != 200:
                await response.aread()
                if 200 <= response.status_code < 300:
                    connection.error = bad_response(response, "not an event stream")
                else:
                    connection.error = error_from_response(response)
                return
            media = response.headers.get("content-type", "").partition(";")[0].strip().lower()
            if media != "text/event-stream":
                await response.aread()
                connection.error = bad_response(response, "not an event stream")
                return
            connection.opened_at = asyncio.get_running_loop().time()
            async for frame in source.aiter_sse():
                yield frame
    except httpx.TransportError as exc:
        connection.error = transport_error(exc, method="GET", path=path)
    except httpx.DecodingError as exc:
        connection.error = CoastyBadResponse(
            f"GET {path}: the event stream could not be decoded: {exc}", code="BAD_RESPONSE"
        )


def _parse(frame: ServerSentEvent, run_id: str) -> tuple[int | None, SseEvent | None]:
    """(seq, event) for a frame; seq None when unusable, event None when malformed."""
    seq: int | None = int(frame.id) if frame.id.isdigit() and frame.id.isascii() else None
    if seq is None or seq < 1:
        logger.warning(
            "coasty run %s: skipped a %r frame whose id %r is not a positive integer seq",
            run_id,
            frame.event,
            frame.id,
        )
        return None, None
    try:
        data = json.loads(frame.data)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        logger.warning(
            "coasty run %s: skipped %r event seq %d whose data is not a JSON object: %.120r",
            run_id,
            frame.event,
            seq,
            frame.data,
        )
        return seq, None
    return seq, SseEvent(seq=seq, type=frame.event, data=data)


async def follow_events(
    client: httpx.AsyncClient,
    /,
    run_id: str,
    *,
    after: int = 0,
    budget_seconds: float,
    retry: RetryPolicy = STREAM_RETRY,
    reconnect_delay: float = RECONNECT_DELAY,
    stats: FollowStats | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> AsyncGenerator[SseEvent, None]:
    """Yield run `run_id`'s events after seq `after`, each once, in order, until `done` or
    until `budget_seconds` have passed. See the module docstring for the rules.

    `client` is an `httpx.AsyncClient` with Coasty's base URL and key, normally from
    `CoastyClient.async_http()`; one client serves any number of concurrent follows.

    Close it when stopping early (`async with contextlib.aclosing(follow_events(...))`), so
    the connection is released at once rather than when the generator is collected.
    """
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise ValueError(f"after must be a non-negative integer seq, got {after!r}")
    path = _events_path(run_id)
    stats = stats if stats is not None else FollowStats()
    stats.last_seq = last_seq = after
    rng = rng if rng is not None else random.Random()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_seconds
    failures = 0  # consecutive connections that were not healthy
    server_retry: float | None = None  # the stream's `retry:` in seconds, once sent

    while True:
        if loop.time() >= deadline:
            stats.ended_by = "budget"
            return
        connection = _Connection()
        stats.connections += 1
        progressed = False
        frames = _frames(client, path, last_seq, connection)
        try:
            while True:
                # The budget bounds waiting for the next frame, never the caller's handling
                # of an event: no timeout is active across the `yield`.
                remaining = deadline - loop.time()
                if remaining <= 0:
                    stats.ended_by = "budget"
                    return
                budget = asyncio.timeout(remaining)
                try:
                    async with budget:
                        frame = await anext(frames)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    if not budget.expired():
                        raise
                    stats.ended_by = "budget"
                    return
                if frame.retry is not None:
                    server_retry = min(frame.retry / 1000, retry.retry_after_cap)
                if frame.data == "":
                    continue  # a lone retry:/id: frame is not an event
                seq, event = _parse(frame, run_id)
                if seq is None:
                    stats.malformed += 1
                    continue
                if seq <= last_seq:
                    stats.duplicates += 1
                    if frame.event == "done":
                        # The caller resumed after the end; there is nothing more to follow.
                        stats.done = True
                        stats.ended_by = "done"
                        return
                    continue
                if seq > last_seq + 1:
                    stats.gaps.append((last_seq + 1, seq - 1))
                    logger.warning(
                        "coasty run %s: events %d..%d never arrived (next is %d)",
                        run_id,
                        last_seq + 1,
                        seq - 1,
                        seq,
                    )
                stats.last_seq = last_seq = seq
                progressed = True
                if event is None:
                    stats.malformed += 1
                    if frame.event == "done":
                        # Unreadable, but the run is over and the stream ends here.
                        stats.done = True
                        stats.ended_by = "done"
                        return
                    continue
                stats.events += 1
                if event.type == "done":
                    stats.done = True
                    stats.ended_by = "done"
                    yield event
                    return
                yield event
        finally:
            await frames.aclose()

        # The connection ended without `done`: decide whether and when to reconnect.
        error = connection.error
        if error is not None:
            stats.last_error = error
            if isinstance(error, CoastyAuthError | CoastyNotFound):
                raise error
            if not progressed and not retry.should_retry(error, method="GET", keyed=False):
                raise error
        opened_at = connection.opened_at
        healthy = opened_at is not None and (
            progressed or loop.time() - opened_at >= HEALTHY_AFTER_SECONDS
        )
        if healthy:
            failures = 0
            delay = server_retry if server_retry is not None else reconnect_delay
            # A clean close is the edge's routine rotation; a drop is worth a line in the log.
            logger.log(
                logging.INFO if error else logging.DEBUG,
                "coasty run %s: stream %s after seq %d, reconnecting in %.2fs",
                run_id,
                f"dropped ({error})" if error else "closed",
                last_seq,
                delay,
            )
        else:
            failures += 1
            delay = retry.backoff(
                failures, retry_after=error.retry_after if error else None, rng=rng
            )
            if server_retry is not None:
                delay = max(delay, server_retry)
            logger.info(
                "coasty run %s: stream failed %d time(s) in a row (%s), retrying in %.2fs",
                run_id,
                failures,
                error or "closed without events",
                delay,
            )
        if loop.time() + delay >= deadline:
            stats.ended_by = "budget"
            return
        await sleep(delay)


class AsyncHttpSource(Protocol):
    """Anything that builds a configured `httpx.AsyncClient`, such as `CoastyClient`."""

    def async_http(self) -> httpx.AsyncClient: ...


def iter_events(
    client: AsyncHttpSource,
    run_id: str,
    *,
    after: int = 0,
    budget_seconds: float,
    stats: FollowStats | None = None,
    **options: Any,
) -> Iterator[SseEvent]:
    """`follow_events` for synchronous code (scripts, tests): runs its own event loop in the
    calling thread, so it cannot be used where an event loop is already running."""
    loop = asyncio.new_event_loop()
    try:
        http = client.async_http()
        events = follow_events(
            http, run_id=run_id, after=after, budget_seconds=budget_seconds, stats=stats, **options
        )
        try:
            while True:
                try:
                    event = loop.run_until_complete(anext(events))
                except StopAsyncIteration:
                    return
                yield event
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(events.aclose())
            loop.run_until_complete(http.aclose())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
