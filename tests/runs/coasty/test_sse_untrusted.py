"""The event stream treats upstream data as untrusted: NaN refused and noted, an envelope-shaped
data field unwrapped, an oversize line or event recorded by its size without being buffered
whole, and the stream goes on after each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from runs.coasty import FollowStats, SseEvent, follow_events
from runs.coasty.sse import StreamLimits
from runs.coasty.strict_json import PORTAL_KEY


def follow_bytes(chunks: list[bytes], *, limits: StreamLimits | None = None) -> list[SseEvent]:
    limits = limits or StreamLimits()

    limits = limits or StreamLimits()

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    async def main() -> list[SseEvent]:
        transport = httpx.MockTransport(answer)
        async with httpx.AsyncClient(base_url="http://coasty.test", transport=transport) as http:
            stats = FollowStats()
            events = [
                e
                async for e in follow_events(
                    http, "run_1", budget_seconds=5, limits=limits, stats=stats
                )
            ]
            assert stats.done
            return events

    return asyncio.run(main())


def test_nan_in_event_data_is_refused_and_noted_and_the_stream_goes_on():
    events = follow_bytes(
        [
            b'id: 1\nevent: tool_result\ndata: {"ok": true, "score": NaN, "n": Infinity}\n\n',
            b'id: 2\nevent: done\ndata: {"status": "succeeded"}\n\n',
        ]
    )
    assert [e.seq for e in events] == [1, 2]
    assert events[0].data["score"] is None and events[0].data["n"] is None
    assert events[0].data[PORTAL_KEY]["refused"] == ["score: NaN refused", "n: Infinity refused"]


def test_an_envelope_shaped_data_field_is_unwrapped():
    envelope = b'{"seq": 1, "type": "step", "data": {"step": 1}, "created_at": "2026-01-01"}'
    events = follow_bytes(
        [
            b"id: 1\nevent: step\ndata: " + envelope + b"\n\n",
            b'id: 2\ndata: {"seq": 2, "type": "done", "data": {"status": "succeeded"}}\n\n',
        ]
    )
    assert [(e.seq, e.type, e.data) for e in events] == [
        (1, "step", {"step": 1}),
        (2, "done", {"status": "succeeded"}),
    ]


def test_data_that_merely_has_a_data_key_is_left_alone():
    events = follow_bytes(
        [
            b'id: 1\nevent: tool_call\ndata: {"name": "x", "type": "t", "data": {"a": 1}}\n\n',
            b'id: 2\nevent: done\ndata: {"status": "succeeded"}\n\n',
        ]
    )
    assert events[0].data == {"name": "x", "type": "t", "data": {"a": 1}}


def test_oversize_events_and_lines_are_recorded_by_size_and_the_stream_goes_on():
    limits = StreamLimits(max_line_bytes=4096, max_event_bytes=1024)
    big_event = b"".join(b"data: " + b"x" * 500 + b"\n" for _ in range(10))  # 5 kB, many lines
    huge_line = b"data: " + b"y" * 100_000  # one line, in small chunks, never buffered whole
    events = follow_bytes(
        [
            b"id: 1\nevent: text\n" + big_event + b"\n",
            b"id: 2\nevent: reasoning\n",
            *[huge_line[i : i + 1000] for i in range(0, len(huge_line), 1000)],
            b"\n\n",
            b'id: 3\nevent: text\ndata: {"text": "fine"}\n\n',
            b'id: 4\nevent: done\ndata: {"status": "succeeded"}\n\n',
        ],
        limits=limits,
    )
    assert [(e.seq, e.type) for e in events] == [
        (1, "text"),
        (2, "reasoning"),
        (3, "text"),
        (4, "done"),
    ]
    assert events[0].data[PORTAL_KEY]["oversize_bytes"] >= 5000
    assert events[1].data[PORTAL_KEY]["oversize_bytes"] >= 100_000
    assert events[2].data == {"text": "fine"}


def test_line_endings_split_across_chunks_are_read_once():
    events = follow_bytes(
        [
            b'id: 1\r\nevent: text\r\ndata: {"text": "a"}\r',
            b'\n\r\nid: 2\revent: done\rdata: {"status": "succeeded"}\r\r',
        ]
    )
    assert [(e.seq, e.type, e.data) for e in events] == [
        (1, "text", {"text": "a"}),
        (2, "done", {"status": "succeeded"}),
    ]
