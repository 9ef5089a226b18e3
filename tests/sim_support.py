"""Helpers for the simulator tests: a webhook receiver and a raw SSE reader."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from runs.simulator.testing import LIVE_KEY, TEST_KEY

__all__ = ["LIVE_KEY", "TEST_KEY", "Stream", "WebhookReceiver", "follow", "read_stream", "run_body"]


def run_body(task: str = "Open the dashboard", **extra: Any) -> dict[str, Any]:
    return {"machine_id": "vm-linux-1", "task": task, **extra}


@dataclass
class Received:
    body: bytes
    signature: str
    at: float  # wall clock (time.time()) when it arrived

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def t(self) -> int:
        return int(dict(p.split("=", 1) for p in self.signature.split(","))["t"])

    @property
    def v1(self) -> str:
        return dict(p.split("=", 1) for p in self.signature.split(","))["v1"]


class WebhookReceiver:
    """A local HTTP server that records deliveries; `statuses` are answered first, then 200."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.received.append(
                        Received(body, self.headers.get("Coasty-Signature", ""), time.time())
                    )
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/coasty/runs/x/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.received)} of {count} webhook deliveries arrived")
            time.sleep(0.01)
        return list(self.received)


@dataclass
class Stream:
    """What one SSE connection carried."""

    status: int
    headers: dict[str, str]
    retry: list[int] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    events: list[tuple[int, str, dict]] = field(default_factory=list)
    cut: bool = False  # ended by a transport error rather than a clean end of body
    error_body: dict | None = None


def read_stream(
    client: httpx.Client,
    run_id: str,
    *,
    after: int | None = None,
    last_event_id: int | None = None,
    key: str = LIVE_KEY,
) -> Stream:
    headers = {"X-API-Key": key}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    params = {"after": after} if after is not None else None
    with client.stream(
        "GET", f"/v1/runs/{run_id}/events", headers=headers, params=params
    ) as response:
        stream = Stream(response.status_code, dict(response.headers))
        if response.status_code != 200:
            response.read()
            stream.error_body = response.json()
            return stream
        fields: dict[str, str] = {}
        try:
            for line in response.iter_lines():
                if line == "":
                    if "data" in fields:
                        stream.events.append(
                            (int(fields["id"]), fields["event"], json.loads(fields["data"]))
                        )
                    fields = {}
                elif line.startswith(":"):
                    stream.comments.append(line[1:].strip())
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "retry":
                        stream.retry.append(int(value))
                    else:
                        fields[name] = value
        except (httpx.RemoteProtocolError, httpx.ReadError):
            stream.cut = True
    return stream


def follow(
    client: httpx.Client, run_id: str, *, key: str = LIVE_KEY, max_connections: int = 200
) -> list[Stream]:
    """Reconnect with Last-Event-ID until `done`, as a client should; all connections."""
    streams: list[Stream] = []
    last = 0
    for _ in range(max_connections):
        stream = read_stream(client, run_id, last_event_id=last, key=key)
        streams.append(stream)
        assert stream.status == 200, stream.error_body
        if stream.events:
            last = stream.events[-1][0]
            if stream.events[-1][1] == "done":
                return streams
    raise AssertionError(f"no done event after {max_connections} connections")
