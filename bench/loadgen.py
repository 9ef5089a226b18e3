"""A small closed-loop HTTP/1.1 load generator: N senders, each on one keep-alive connection.

Written on bare asyncio streams so that the client costs a few tens of microseconds per request:
on a two-core machine every cycle the client spends is taken from the server it measures, and
the same client drives both sides of each comparison.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    sent: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, one per request
    statuses: Counter = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def request_bytes(
    method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    parts = urlsplit(url)
    lines = [f"{method} {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1"]
    lines.append(f"Host: {parts.netloc}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@contextmanager
def _no_client_pauses() -> Iterator[None]:
    """No garbage collection in the client while a load is timed.

    The client runs in the bench's own process, which holds Django, the runs it made and every
    pre-signed request: a full collection there walks all of it (50-70 ms measured on a busy
    two-core machine), and every request in flight meanwhile is charged that pause as the
    server's latency. What exists before the window is frozen (never walked again) and
    automatic collection is off for the window's few seconds; it is restored after.
    """
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, _, rest = head.partition(b"\r\n")
    status = int(status_line.split()[1])
    length, chunked = None, False
    for line in rest.split(b"\r\n"):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return status, body
            body += chunk[:-2]
    return status, await reader.readexactly(length or 0)


async def _sender(
    host: str, port: int, requests: Iterator[bytes], stop_at: float, result: LoadResult
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    clock = time.perf_counter
    try:
        while clock() < stop_at:
            raw = next(requests, None)
            if raw is None:
                return
            started = clock()
            writer.write(raw)
            try:
                status, _ = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                # The server closed a kept-alive connection: open another and resend.
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(raw)
                started = clock()
                status, _ = await _read_response(reader)
            result.latencies.append(clock() - started)
            result.statuses[status] += 1
            result.sent += 1
    finally:
        writer.close()


def run_load(
    base_url: str, requests: Iterator[bytes], *, concurrency: int, seconds: float
) -> LoadResult:
    """Send `requests` (raw HTTP/1.1 bytes) from `concurrency` senders until they run out or
    `seconds` pass; every sender waits for its answer before sending the next (closed loop)."""
    parts = urlsplit(base_url)
    result = LoadResult()

    async def main() -> None:
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(
            *(
                _sender(parts.hostname or "127.0.0.1", parts.port or 80, requests, stop_at, result)
                for _ in range(concurrency)
            )
        )
        result.seconds = time.perf_counter() - started

    with _no_client_pauses():
        asyncio.run(main())
    return result


@dataclass
class OpenLoopResult(LoadResult):
    offered: float = 0.0  # the arrival rate asked for, requests/s
    connections: int = 0  # connections opened (one more whenever all were busy)
    behind_ms: float = 0.0  # how late the client itself started its latest request, at worst


def run_open_loop(
    base_url: str,
    requests: Iterator[bytes],
    *,
    rate: float,
    seconds: float,
    max_connections: int = 1024,
    seed: int = 17,
) -> OpenLoopResult:
    """Send `requests` as Poisson arrivals at `rate` per second for `seconds` (open loop): each
    arrival is sent at its scheduled time whether or not earlier ones were answered, on an idle
    keep-alive connection or a new one. A latency runs from the arrival's SCHEDULED time to its
    answer, so a server (or client) that falls behind is charged for the queue it builds
    (no coordinated omission)."""
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    result = OpenLoopResult(offered=rate)
    clock = time.perf_counter

    async def main() -> None:
        idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        slots = asyncio.Semaphore(max_connections)

        async def one(raw: bytes, scheduled: float) -> None:
            async with slots:
                if idle:
                    reader, writer = idle.pop()
                else:
                    reader, writer = await asyncio.open_connection(host, port)
                    result.connections += 1
                try:
                    writer.write(raw)
                    status, _ = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    result.connections += 1
                    writer.write(raw)
                    status, _ = await _read_response(reader)
                result.latencies.append(clock() - scheduled)
                result.statuses[status] += 1
                result.sent += 1
                idle.append((reader, writer))

        rng = random.Random(seed)
        started = clock()
        stop_at = started + seconds
        due = started
        tasks = []
        while True:
            due += rng.expovariate(rate)
            if due > stop_at:
                break
            wait = due - clock()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                result.behind_ms = max(result.behind_ms, -wait * 1000)
            raw = next(requests, None)
            if raw is None:
                break
            tasks.append(asyncio.create_task(one(raw, due)))
        await asyncio.gather(*tasks)
        result.seconds = clock() - started
        for _reader, writer in idle:
            writer.close()

    with _no_client_pauses():
        asyncio.run(main())
    return result
