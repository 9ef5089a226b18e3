"""Raw ASGI responses the simulator needs beyond JSON: the SSE stream and the lost response.

Both may end a response on purpose without finishing it (a cut stream, a dropped connection).
uvicorn then closes the connection, which is what the client should see, and logs
"ASGI callable returned without completing response." -- ``quiet_intentional_cuts`` hides that
one line, since here it is the point and not a bug.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from .engine import TERMINAL, Event, Run

if TYPE_CHECKING:
    from .engine import Simulator

Send = Any
Receive = Any

_CUT_MESSAGE = "ASGI callable returned without completing response."


class _HideIntentionalCuts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _CUT_MESSAGE


def quiet_intentional_cuts() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideIntentionalCuts) for f in logger.filters):
        logger.addFilter(_HideIntentionalCuts())


def _headers(pairs: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in pairs.items()]


def frame(event: Event) -> bytes:
    data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n".encode()


class EventStream:
    """GET /v1/runs/{id}/events once auth and lookup passed.

    Sends ``retry:`` once, replays the stored events with seq > ``after``, then streams new
    ones as they happen, with ``: keep-alive`` comments when idle. Ends after ``done``, at
    rotation time (sse_rotate_seconds), or when the run is gone (reset). With ``cut_after``
    set (the cut_stream fault) it drops the connection abruptly before the (n+1)-th event.
    One coroutine per stream: no thread, and waits are on the run's wake-up Event.
    """

    def __init__(
        self,
        sim: Simulator,
        run: Run,
        *,
        after: int,
        cut_after: int | None,
        headers: dict[str, str],
    ) -> None:
        self.sim = sim
        self.run = run
        self.after = after
        self.cut_after = cut_after
        self.headers = headers

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        self.sim.open_streams += 1
        disconnected = asyncio.Event()

        async def watch_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    return

        loop = asyncio.get_running_loop()
        watcher = loop.create_task(watch_disconnect())
        disconnect_wait = loop.create_task(disconnected.wait())
        try:
            await self._stream(send, disconnected, disconnect_wait)
        finally:
            self.sim.open_streams -= 1
            watcher.cancel()
            disconnect_wait.cancel()

    async def _stream(
        self, send: Send, disconnected: asyncio.Event, disconnect_wait: asyncio.Task
    ) -> None:
        config = self.sim.config
        loop = asyncio.get_running_loop()
        headers = {
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **self.headers,
        }
        await send({"type": "http.response.start", "status": 200, "headers": _headers(headers)})
        retry_ms = max(1, round(config.sse_retry_ms / config.speed))
        await self._write(send, f"retry: {retry_ms}\n\n".encode())
        run = self.run
        cursor = self.after
        sent = 0
        rotate_at = loop.time() + config.real(config.sse_rotate_seconds)
        last_write = loop.time()
        while not disconnected.is_set():
            while cursor < len(run.events):
                event = run.events[cursor]
                if self.cut_after is not None and sent >= self.cut_after:
                    return  # the cut_stream fault: no end of body, the connection just drops
                await self._write(send, frame(event))
                cursor, sent, last_write = event.seq, sent + 1, loop.time()
                if event.type == "done":
                    return await self._end(send)
            if (
                run.gone
                or loop.time() >= rotate_at
                or (run.status in TERMINAL and cursor >= len(run.events))
            ):
                return await self._end(send)
            keepalive_at = last_write + config.real(config.sse_keepalive_seconds)
            timeout = max(0.0, min(keepalive_at, rotate_at) - loop.time())
            changed = loop.create_task(run.changed.wait())
            try:
                await asyncio.wait(
                    {changed, disconnect_wait}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                changed.cancel()
            if (
                not disconnected.is_set()
                and cursor >= len(run.events)
                and loop.time() >= keepalive_at
                and loop.time() < rotate_at
            ):
                await self._write(send, b": keep-alive\n\n")
                last_write = loop.time()

    @staticmethod
    async def _write(send: Send, chunk: bytes) -> None:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})

    @staticmethod
    async def _end(send: Send) -> None:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class LostResponse:
    """The lost_response fault: the work is done, the answer never arrives intact."""

    def __init__(
        self, mode: str, status: int, body: bytes, headers: dict[str, str], error_body: bytes
    ) -> None:
        self.mode = mode
        self.status = status
        self.body = body
        self.headers = headers
        self.error_body = error_body

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if self.mode == "drop":
            headers = {
                "Content-Type": "application/json",
                "Content-Length": str(len(self.body)),
                **self.headers,
            }
            await send(
                {"type": "http.response.start", "status": self.status, "headers": _headers(headers)}
            )
            half = self.body[: len(self.body) // 2]
            await send({"type": "http.response.body", "body": half, "more_body": True})
            return  # uvicorn closes the connection: the client gets a truncated body
        if self.mode == "html":
            status, content_type = 502, "text/html; charset=utf-8"
            body = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
        elif self.mode == "empty":
            status, content_type, body = self.status, "application/json", b""
        elif self.mode == "truncated":
            status, content_type, body = (
                self.status,
                "application/json",
                self.body[: len(self.body) // 2],
            )
        elif self.mode == "text":
            status, content_type, body = self.status, "text/plain; charset=utf-8", b"OK"
        else:
            status, content_type = int(self.mode), "application/json"
            body = self.error_body
        headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **self.headers}
        await send({"type": "http.response.start", "status": status, "headers": _headers(headers)})
        await send({"type": "http.response.body", "body": body, "more_body": False})
