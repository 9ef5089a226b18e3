"""A scripted event-stream server for testing the SSE follower over real sockets.

A Starlette app on uvicorn, in a background thread, on a free port. Each run id has a list of
connection plans; the n-th request for a run follows the n-th plan (the last plan repeats).
A plan is a status (with a body) or a 200 event stream made of steps: bytes to send, pauses,
and an ending: a clean close (what the edge's rotation looks like) or a drop (the connection
dies without finishing the chunked body, as when a proxy or the network fails).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


def frame(seq: int, type_: str, data: Any, *, multiline: bool = False) -> bytes:
    """One SSE frame. `multiline` spreads the JSON over several `data:` lines."""
    text = json.dumps(
        data, indent=2 if multiline else None, separators=None if multiline else (",", ":")
    )
    lines = [f"id: {seq}", f"event: {type_}"] + [f"data: {line}" for line in text.split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


def done_frame(seq: int) -> bytes:
    return frame(
        seq, "done", {"status": "succeeded", "steps_completed": 1, "credits_charged": 5, "at": "t"}
    )


KEEPALIVE = b": keep-alive\n\n"


class Drop(Exception):
    """Raised inside the response body: uvicorn aborts the connection mid-body."""


@dataclass
class Pause:
    seconds: float


@dataclass
class Plan:
    steps: list[bytes | Pause] = field(default_factory=list)
    drop: bool = False  # end by dropping the connection instead of closing it cleanly
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/event-stream"


@dataclass(frozen=True)
class Cut:
    """One connection of a cursor-aware stream: replay `overlap` events before the cursor,
    send `at` bytes of the rest, then drop (or close cleanly)."""

    at: int
    overlap: int = 0
    drop: bool = True


def cut_payload(frames: list[bytes], last_seq: int, cut: Cut | None) -> bytes:
    """What a cursor-aware server sends to a client resuming after `last_seq`.

    `frames[i]` is the frame of seq i + 1. Without a cut, everything after the cursor.
    """
    start = max(0, min(last_seq, len(frames)) - (cut.overlap if cut else 0))
    payload = b"".join(frames[start:])
    return payload if cut is None else payload[: cut.at]


@dataclass
class Seen:
    run_id: str
    last_event_id: str | None
    after: str | None
    at: float


class ScriptedStreams:
    def __init__(self) -> None:
        self.plans: dict[str, list[Plan]] = {}
        self.dynamic: dict[str, tuple[list[bytes], list[Cut]]] = {}
        self.counts: dict[str, int] = {}
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    def resumable(self, run_id: str, frames: list[bytes], cuts: list[Cut]) -> None:
        """A stream that honours Last-Event-ID: the n-th connection follows `cuts[n]`, and
        once they are used up the rest of the stream is sent and the connection closed."""
        with self.lock:
            self.dynamic[run_id] = (frames, list(cuts))
            self.counts[run_id] = 0

    def script(self, run_id: str, *plans: Plan) -> None:
        with self.lock:
            self.plans[run_id] = list(plans)
            self.counts[run_id] = 0

    def requests_for(self, run_id: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.run_id == run_id]

    def _next(self, request: Request, run_id: str) -> Plan | None:
        with self.lock:
            self.seen.append(
                Seen(
                    run_id,
                    request.headers.get("last-event-id"),
                    request.query_params.get("after"),
                    time.monotonic(),
                )
            )
            if run_id in self.dynamic:
                frames, cuts = self.dynamic[run_id]
                n = self.counts[run_id]
                self.counts[run_id] = n + 1
                cut = cuts[n] if n < len(cuts) else None
                cursor = request.headers.get("last-event-id") or "0"
                return Plan([cut_payload(frames, int(cursor), cut)], drop=bool(cut and cut.drop))
            plans = self.plans.get(run_id)
            if not plans:
                return None
            n = self.counts[run_id]
            self.counts[run_id] = n + 1
            return plans[min(n, len(plans) - 1)]

    async def events(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        plan = self._next(request, run_id)
        if plan is None:
            body = {
                "error": {
                    "code": "NOT_FOUND",
                    "message": "no such run",
                    "type": "not_found_error",
                    "request_id": "req_test",
                    "retryable": False,
                    "retry_with_same_idempotency_key": False,
                }
            }
            return Response(json.dumps(body), status_code=404, media_type="application/json")
        if plan.status != 200 or plan.content_type != "text/event-stream":
            return Response(
                plan.body,
                status_code=plan.status,
                headers=plan.headers,
                media_type=plan.content_type,
            )

        async def body() -> Any:
            for step in plan.steps:
                if isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                else:
                    yield step
            if plan.drop:
                raise Drop

        return StreamingResponse(body(), media_type="text/event-stream", headers=plan.headers)


@dataclass
class RunningServer:
    base_url: str
    streams: ScriptedStreams


@contextmanager
def serve_streams() -> Iterator[RunningServer]:
    """Start the scripted server on 127.0.0.1 and a free port; stop it afterwards."""
    streams = ScriptedStreams()
    app = Starlette(routes=[Route("/v1/runs/{run_id}/events", streams.events)])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="critical",
        lifespan="off",
        timeout_graceful_shutdown=1,
        backlog=2048,
        limit_concurrency=None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the scripted SSE server did not start")
        time.sleep(0.01)
    try:
        yield RunningServer(f"http://127.0.0.1:{port}", streams)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
