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
- Upstream data is untrusted: data is decoded by the one strict decoder
  (`runs.coasty.strict_json`: NaN and infinities refused, oversize integers clamped, each noted
  under `data["_portal"]["refused"]`); a data field that holds a whole event (`{seq, type,
  data}`) is unwrapped; a line or event over `StreamLimits` is read past without being
  buffered and yielded as an event whose data is only `{"_portal": {"oversize_bytes": n}}`,
  so the stream goes on and the event is recorded as oversize.

Cheap per stream: no thread, one connection, one small parser. One worker can follow hundreds
of runs with one `httpx.AsyncClient` from `CoastyClient.async_http()`.

`iter_events` wraps it for scripts and tests that are not async.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx

from . import strict_json
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
from .strict_json import INT_MAX, PORTAL_KEY

__all__ = [
    "STREAM_RETRY",
    "FollowStats",
    "SseEvent",
    "StreamLimits",
    "follow_events",
    "iter_events",
]

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
class StreamLimits:
    """Caps on what one stream may make the follower hold: a follower serves hundreds of
    streams, so one huge line or event must not be buffered whole."""

    max_line_bytes: int = 512 * 1024
    max_event_bytes: int = 256 * 1024


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One event of a run: `seq` (monotonic per run, from 1), `type`, and its JSON `data`.

    `data` was decoded strictly (`runs.coasty.strict_json`): refused numbers are null and
    noted under `data["_portal"]["refused"]`; an event over the size cap has only
    `data["_portal"]["oversize_bytes"]`. `size` is the event's data size in characters (bytes
    when oversize), for batching by size."""

    seq: int
    type: str
    data: dict[str, Any]
    size: int = 0


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


@dataclass(slots=True)
class _Frame:
    """One dispatched SSE frame (the fields of httpx_sse's ServerSentEvent), plus how many
    bytes of it were dropped for being over the line or event cap (0: none)."""

    event: str = ""
    data: str = ""
    id: str = ""
    retry: int | None = None
    oversize_bytes: int = 0


class _BoundedSseReader:
    """The SSE wire format (WHATWG "event stream interpretation", as httpx_sse reads it), with
    caps: a line longer than `max_line_bytes` is never buffered whole, and an event whose data
    grows past `max_event_bytes` stops growing. Either way the frame is still dispatched, with
    its data dropped and `oversize_bytes` saying how big it was, so the stream goes on and the
    follower can record the event as oversize."""

    def __init__(self, *, max_line_bytes: int, max_event_bytes: int) -> None:
        self.max_line = max_line_bytes
        self.max_event = max_event_bytes
        self._buffer = bytearray()
        self._discarding = False  # inside a line that went over the cap
        self._pending_cr = False  # the last chunk ended in CR: a LF first in the next is its pair
        self._event = ""
        self._data: list[str] = []
        self._data_bytes = 0
        self._oversize = 0
        self._last_id = ""
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[_Frame]:
        frames: list[_Frame] = []
        start = 0
        if self._pending_cr and chunk[:1] == b"\n":
            start = 1
        self._pending_cr = False
        end = len(chunk)
        while start < end:
            cut = _line_end(chunk, start)
            if cut < 0:
                self._append(chunk[start:])
                break
            self._append(chunk[start:cut])
            frame = self._line_done()
            if frame is not None:
                frames.append(frame)
            if chunk[cut : cut + 1] == b"\r":
                if cut + 1 < end:
                    start = cut + 2 if chunk[cut + 1 : cut + 2] == b"\n" else cut + 1
                else:
                    self._pending_cr = True
                    start = end
            else:
                start = cut + 1
        return frames

    def _append(self, piece: bytes) -> None:
        if self._discarding:
            self._oversize += len(piece)
            return
        if len(self._buffer) + len(piece) > self.max_line:
            self._oversize += self._data_bytes + len(self._buffer) + len(piece)
            self._data_bytes = 0
            self._data = []
            self._buffer.clear()
            self._discarding = True
            return
        self._buffer += piece

    def _line_done(self) -> _Frame | None:
        if self._discarding:
            self._discarding = False
            return None
        line = self._buffer.decode("utf-8", errors="replace")
        self._buffer.clear()
        return self._decode(line)

    def _decode(self, line: str) -> _Frame | None:
        if not line:
            if not (self._event or self._data or self._last_id or self._oversize) and (
                self._retry is None
            ):
                return None
            frame = _Frame(
                event=self._event,
                data="\n".join(self._data),
                id=self._last_id,
                retry=self._retry,
                oversize_bytes=self._oversize,
            )
            # As the spec says, the last event id is kept for the next events.
            self._event, self._data, self._data_bytes = "", [], 0
            self._retry, self._oversize = None, 0
            return frame
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            if self._oversize:
                self._oversize += len(value) + 1
                return None
            size = len(value.encode("utf-8")) + 1
            if self._data_bytes + size > self.max_event:
                self._oversize = self._data_bytes + size
                self._data, self._data_bytes = [], 0
                return None
            self._data.append(value)
            self._data_bytes += size
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry":
            with contextlib.suppress(ValueError):
                self._retry = int(value) if value.isascii() and value.isdigit() else None
        return None


def _line_end(chunk: bytes, start: int) -> int:
    """The index of the first CR or LF in `chunk` from `start`, or -1."""
    lf = chunk.find(b"\n", start)
    cr = chunk.find(b"\r", start, lf if lf >= 0 else len(chunk))
    return cr if cr >= 0 else lf


async def _frames(
    http: httpx.AsyncClient,
    path: str,
    last_seq: int,
    connection: _Connection,
    limits: StreamLimits,
) -> AsyncGenerator[_Frame, None]:
    """The raw frames of one connection; how it ended goes into `connection`."""
    headers: dict[str, str] = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
    params: dict[str, int] = {}
    if last_seq > 0:
        headers["Last-Event-ID"] = str(last_seq)
        params["after"] = last_seq
    try:
        async with http.stream("GET", path, headers=headers, params=params) as response:
            if response.status_code != 200:
                await _read_capped(response)
                if 200 <= response.status_code < 300:
                    connection.error = bad_response(response, "not an event stream")
                else:
                    connection.error = error_from_response(response)
                return
            media = response.headers.get("content-type", "").partition(";")[0].strip().lower()
            if media != "text/event-stream":
                await _read_capped(response)
                connection.error = bad_response(response, "not an event stream")
                return
            connection.opened_at = asyncio.get_running_loop().time()
            reader = _BoundedSseReader(
                max_line_bytes=limits.max_line_bytes, max_event_bytes=limits.max_event_bytes
            )
            async for chunk in response.aiter_bytes():
                for frame in reader.feed(chunk):
                    yield frame
    except httpx.TransportError as exc:
        connection.error = transport_error(exc, method="GET", path=path)
    except httpx.DecodingError as exc:
        connection.error = CoastyBadResponse(
            f"GET {path}: the event stream could not be decoded: {exc}", code="BAD_RESPONSE"
        )


# What an error answer may bring before it is cut (the snippet and Coasty's envelope fit well
# inside; a gateway's endless page does not).
_ERROR_BODY_MAX = 64 * 1024


async def _read_capped(response: httpx.Response) -> None:
    """Read at most `_ERROR_BODY_MAX` bytes of a body that is not a stream into
    `response._content`, so error helpers can look at it."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= _ERROR_BODY_MAX:
            break
    response._content = bytes(body[:_ERROR_BODY_MAX])


# The keys of an event object, as Coasty's stream would frame it: a data field made only of
# these, with an object under "data", is a whole event wrapped where its data should be.
_ENVELOPE_KEYS = frozenset({"seq", "id", "type", "event", "data", "run_id", "created_at", "at"})


def _unwrap_envelope(frame_type: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(type, data) with an envelope-shaped data field ({seq, type, data}) unwrapped."""
    inner = data.get("data")
    if (
        isinstance(inner, dict)
        and ("seq" in data or "id" in data)
        and ("type" in data or "event" in data)
        and data.keys() - {PORTAL_KEY} <= _ENVELOPE_KEYS
    ):
        inner_type = data.get("type", data.get("event"))
        if frame_type in ("", "message") and isinstance(inner_type, str) and inner_type:
            frame_type = inner_type
        note = data.get(PORTAL_KEY)
        return frame_type, ({**inner, PORTAL_KEY: note} if note is not None else inner)
    return frame_type, data


def _parse(frame: _Frame, run_id: str, limits: StreamLimits) -> tuple[int | None, SseEvent | None]:
    """(seq, event) for a frame; seq None when unusable, event None when malformed."""
    seq: int | None = int(frame.id) if frame.id.isdigit() and frame.id.isascii() else None
    if seq is not None and seq > INT_MAX:
        seq = None
    if seq is None or seq < 1:
        logger.warning(
            "coasty run %s: skipped a %r frame whose id %.40r is not a positive integer seq",
            run_id,
            frame.event[:64],
            frame.id,
        )
        return None, None
    event_type = frame.event[:64] or "message"
    if frame.oversize_bytes:
        logger.warning(
            "coasty run %s: %r event seq %d is %d bytes, over the %d-byte cap; recorded "
            "without its data",
            run_id,
            event_type,
            seq,
            frame.oversize_bytes,
            limits.max_event_bytes,
        )
        note = {"oversize_bytes": frame.oversize_bytes, "limit_bytes": limits.max_event_bytes}
        return seq, SseEvent(
            seq=seq, type=event_type, data={PORTAL_KEY: note}, size=frame.oversize_bytes
        )
    try:
        data = strict_json.loads_object(frame.data)
    except ValueError:
        data = None
    if data is None:
        logger.warning(
            "coasty run %s: skipped %r event seq %d whose data is not a JSON object: %.120r",
            run_id,
            event_type,
            seq,
            frame.data,
        )
        return seq, None
    if PORTAL_KEY in data:
        logger.warning("coasty run %s: event seq %d: %s", run_id, seq, data[PORTAL_KEY])
    event_type, data = _unwrap_envelope(event_type, data)
    return seq, SseEvent(seq=seq, type=event_type, data=data, size=len(frame.data))


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
    limits: StreamLimits = StreamLimits(),
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
        frames = _frames(client, path, last_seq, connection, limits)
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
                if frame.data == "" and not frame.oversize_bytes:
                    continue  # a lone retry:/id: frame is not an event
                seq, event = _parse(frame, run_id, limits)
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
