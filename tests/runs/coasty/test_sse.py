"""The run event follower against real sockets (a scripted local server) and, for the
property tests that need thousands of connections, an in-memory transport."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import resource
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs.coasty import (
    CoastyAuthError,
    CoastyBadResponse,
    CoastyClient,
    CoastyNotFound,
    CoastyRateLimited,
    CoastyServerError,
    CoastyTransportError,
    CoastyValidationError,
    FollowStats,
    SseEvent,
    follow_events,
    iter_events,
)
from runs.coasty.sse import RECONNECT_DELAY
from tests.coasty_sse_server import (
    KEEPALIVE,
    Cut,
    Pause,
    Plan,
    RunningServer,
    cut_payload,
    done_frame,
    frame,
    serve_streams,
)

pytestmark = pytest.mark.timeout(60)

KEY = "sk-coasty-test-follower"
TYPES = ["status", "reasoning", "tool_call", "tool_result", "step", "billing", "text"]


@pytest.fixture(scope="module")
def server() -> Any:
    with serve_streams() as running:
        yield running


def event_data(seq: int) -> dict[str, Any]:
    return {"step": seq, "text": f"event {seq} · ünïcode", "nested": {"seq": seq}}


def run_frames(n: int) -> list[bytes]:
    """Frames 1..n of a run; the last is `done`; every third spreads data over lines."""
    frames = [
        frame(seq, TYPES[seq % len(TYPES)], event_data(seq), multiline=seq % 3 == 0)
        for seq in range(1, n)
    ]
    return [*frames, done_frame(n)]


class RecordingSleep:
    """Records the follower's waits; waits for real only if asked to."""

    def __init__(self, real: bool = False) -> None:
        self.delays: list[float] = []
        self.real = real

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(seconds if self.real else 0)


async def collect(http: httpx.AsyncClient, run_id: str, **options: Any) -> list[SseEvent]:
    options.setdefault("budget_seconds", 10.0)
    return [event async for event in follow_events(http, run_id, **options)]


def follow(
    server: RunningServer, run_id: str, *, read_timeout: float = 5.0, **options: Any
) -> list[SseEvent]:
    async def main() -> list[SseEvent]:
        with CoastyClient(server.base_url, KEY) as client:
            async with client.async_http(read_timeout=read_timeout) as http:
                return await collect(http, run_id, **options)

    return asyncio.run(main())


def seqs(events: list[SseEvent]) -> list[int]:
    return [event.seq for event in events]


def error_body(code: str, **extra: Any) -> bytes:
    envelope = {
        "code": code,
        "message": f"{code} happened",
        "type": "test_error",
        "request_id": f"req_{code.lower()}",
        "retryable": False,
        "retry_with_same_idempotency_key": False,
        **extra,
    }
    return json.dumps({"error": envelope}).encode()


# --- the stream's real life, over real sockets ------------------------------------------------


def test_drop_rotation_keepalives_multiline_and_retry_each_event_once(server):
    # given a stream that drops mid-frame, replays an event it already sent, rotates cleanly,
    # sends keep-alives, a multi-line data frame and a retry: hint
    f = run_frames(8)
    multiline = frame(6, "reasoning", {"step": 6, "text": "line one\nline two"}, multiline=True)
    server.streams.script(
        "run-life",
        Plan([f[0], f[1], f[2], f[3][:11]], drop=True),
        Plan([f[2], f[3], f[4]]),
        Plan([KEEPALIVE, multiline, KEEPALIVE, b"retry: 100\n\n", f[6]]),
        Plan([KEEPALIVE, f[7]]),
    )
    sleep = RecordingSleep()
    stats = FollowStats()

    # when
    events = follow(server, "run-life", sleep=sleep, stats=stats)

    # then every event arrives once, in order, and each reconnect resumed from the last seq
    assert seqs(events) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert events[5].data == {"step": 6, "text": "line one\nline two"}
    assert events[3].type == TYPES[4 % len(TYPES)] and events[3].data == event_data(4)
    assert events[-1].type == "done"
    seen = server.streams.requests_for("run-life")
    assert [s.last_event_id for s in seen] == [None, "3", "5", "7"]
    assert [s.after for s in seen] == [None, "3", "5", "7"]
    assert sleep.delays == [RECONNECT_DELAY, RECONNECT_DELAY, 0.1]
    assert stats.duplicates == 1
    assert (stats.done, stats.ended_by, stats.last_seq, stats.connections) == (True, "done", 8, 4)


def test_read_timeout_reconnects_from_last_seq(server):
    # given a stream that goes silent (no keep-alives) after one event, for a minute
    f = run_frames(3)
    server.streams.script("run-stall", Plan([f[0], Pause(60)]), Plan([f[1], f[2]]))
    stats = FollowStats()
    started = time.monotonic()

    # when the stream read timeout is shorter than the silence
    events = follow(server, "run-stall", read_timeout=0.3, stats=stats)

    # then the follower reconnected after the timeout, not after the silence
    assert seqs(events) == [1, 2, 3]
    assert [s.last_event_id for s in server.streams.requests_for("run-stall")] == [None, "1"]
    assert isinstance(stats.last_error, CoastyTransportError)
    assert stats.last_error.code == "TIMEOUT"
    assert time.monotonic() - started < 20  # the silence would have taken 60 s


def test_keepalives_keep_a_quiet_stream_open(server):
    # given keep-alive comments more often than the read timeout, for longer than it
    f = run_frames(2)
    server.streams.script("run-quiet", Plan([f[0], *[KEEPALIVE, Pause(0.1)] * 8, f[1]]))
    stats = FollowStats()

    # when
    events = follow(server, "run-quiet", read_timeout=0.4, stats=stats)

    # then one connection carried it all
    assert seqs(events) == [1, 2]
    assert stats.connections == 1


@pytest.mark.parametrize(
    ("status", "code", "error_class"),
    [
        (404, "NOT_FOUND", CoastyNotFound),
        (401, "INVALID_API_KEY", CoastyAuthError),
        (403, "INSUFFICIENT_SCOPE", CoastyAuthError),
    ],
)
def test_gone_or_forbidden_stream_stops_with_a_clear_error(server, status, code, error_class):
    # given a stream that has delivered one event, then answers 404/401/403
    run_id = f"run-{status}"
    f = run_frames(3)
    server.streams.script(
        run_id,
        Plan([f[0]]),
        Plan(status=status, body=error_body(code), content_type="application/json"),
    )
    got: list[SseEvent] = []

    async def main() -> None:
        with CoastyClient(server.base_url, KEY) as client:
            async with client.async_http() as http:
                async for event in follow_events(
                    http, run_id, budget_seconds=10, sleep=RecordingSleep()
                ):
                    got.append(event)

    # when / then
    with pytest.raises(error_class) as raised:
        asyncio.run(main())
    assert seqs(got) == [1]
    assert (raised.value.status, raised.value.code) == (status, code)
    assert raised.value.request_id == f"req_{code.lower()}"
    assert len(server.streams.requests_for(run_id)) == 2


def test_deterministic_client_error_is_raised_not_retried(server):
    # given
    server.streams.script(
        "run-422",
        Plan(status=422, body=error_body("VALIDATION_ERROR"), content_type="application/json"),
    )

    # when / then
    with pytest.raises(CoastyValidationError):
        follow(server, "run-422", sleep=RecordingSleep())
    assert len(server.streams.requests_for("run-422")) == 1


def test_server_errors_and_odd_answers_back_off_honouring_retry_after(server):
    # given a 503 with Retry-After, a proxy's HTML 502, a 429 with retry_after in the body,
    # a 200 that is not an event stream, and then the stream
    f = run_frames(2)
    server.streams.script(
        "run-flaky",
        Plan(
            status=503,
            body=error_body("SERVICE_UNAVAILABLE", retryable=True),
            headers={"Retry-After": "2"},
            content_type="application/json",
        ),
        Plan(status=502, body=b"<html><h1>502 Bad Gateway</h1></html>", content_type="text/html"),
        Plan(
            status=429,
            body=error_body("RATE_LIMIT_EXCEEDED", retryable=True, retry_after=1),
            content_type="application/json",
        ),
        Plan(status=200, body=b"<html>login</html>", content_type="text/html"),
        Plan([f[0], f[1]]),
    )
    sleep = RecordingSleep()
    stats = FollowStats()

    # when
    events = follow(server, "run-flaky", sleep=sleep, stats=stats)

    # then
    assert seqs(events) == [1, 2]
    assert len(sleep.delays) == 4
    assert sleep.delays[0] == 2.0  # Retry-After
    assert 0 <= sleep.delays[1] <= 1.0  # full jitter, second failure in a row
    # the envelope's retry_after is a floor under the third failure's jitter (up to 2 s)
    assert 1.0 <= sleep.delays[2] <= 2.0
    assert 0 <= sleep.delays[3] <= 4.0
    assert stats.connections == 5


def test_budget_ends_a_quiet_stream_and_the_next_follow_resumes(server):
    # given a run that sends three events and then only keep-alives for a long time
    f = run_frames(6)
    server.streams.script(
        "run-handover",
        Plan([f[0], f[1], f[2], *[KEEPALIVE, Pause(0.1)] * 600]),
        Plan([f[3], f[4], f[5]]),
    )
    stats = FollowStats()
    started = time.monotonic()

    # when one follow's budget runs out, and a second follow picks up from its last seq
    first = follow(server, "run-handover", budget_seconds=0.6, stats=stats)
    elapsed = time.monotonic() - started
    second = follow(server, "run-handover", after=stats.last_seq, budget_seconds=10)

    # then the first ended cleanly at its budget (not when the 60 s of keep-alives ran out),
    # and the two together saw every event once
    assert seqs(first) == [1, 2, 3]
    assert (stats.ended_by, stats.done, stats.last_seq) == ("budget", False, 3)
    assert 0.6 <= elapsed < 15
    assert seqs(second) == [4, 5, 6]
    assert server.streams.requests_for("run-handover")[-1].last_event_id == "3"


def test_budget_ends_while_upstream_is_down(server):
    # given a stream that keeps failing
    server.streams.script(
        "run-down",
        Plan(status=500, body=error_body("INTERNAL_ERROR"), content_type="application/json"),
    )
    stats = FollowStats()
    started = time.monotonic()

    # when
    events = follow(server, "run-down", budget_seconds=1.0, stats=stats, rng=random.Random(3))

    # then it stopped at the budget, backing off between attempts, and says why
    assert events == []
    assert stats.ended_by == "budget"
    assert time.monotonic() - started < 10  # not on and on: the module's timeout is 60 s
    assert isinstance(stats.last_error, CoastyServerError)
    assert 2 <= stats.connections <= 8


def test_malformed_frames_are_logged_and_skipped(server, caplog):
    # given frames with bad JSON, a non-numeric id, a non-object data, and a lone retry:
    f = run_frames(5)
    server.streams.script(
        "run-malformed",
        Plan(
            [
                f[0],
                b"id: 2\nevent: step\ndata: {not json\n\n",
                b"id: x\nevent: step\ndata: {}\n\n",
                b"id: 3\nevent: text\ndata: [1, 2]\n\n",
                b"retry: 50\n\n",
                f[3],
                f[4],
            ]
        ),
    )
    stats = FollowStats()

    # when
    with caplog.at_level(logging.WARNING, logger="runs.coasty"):
        events = follow(server, "run-malformed", stats=stats)

    # then the follower kept going, and said what it skipped
    assert seqs(events) == [1, 4, 5]
    assert stats.malformed == 3
    assert stats.gaps == []
    assert "seq 2" in caplog.text and "'x'" in caplog.text


def test_a_gap_is_logged_and_nothing_is_invented(server, caplog):
    # given a stream that skips seq 3 and 4
    f = run_frames(6)
    server.streams.script("run-gap", Plan([f[0], f[1], f[4], f[5]]))
    stats = FollowStats()

    # when
    with caplog.at_level(logging.WARNING, logger="runs.coasty"):
        events = follow(server, "run-gap", stats=stats)

    # then
    assert seqs(events) == [1, 2, 5, 6]
    assert stats.gaps == [(3, 4)]
    assert "3..4" in caplog.text


def test_resuming_after_done_ends_without_yielding(server):
    # given a follower that resumes after the run's `done` (seq 4), which the server replays
    f = run_frames(4)
    server.streams.script("run-finished", Plan([f[3]]))
    stats = FollowStats()

    # when
    events = follow(server, "run-finished", after=4, stats=stats)

    # then
    assert events == []
    assert (stats.done, stats.ended_by, stats.duplicates) == (True, "done", 1)
    assert server.streams.requests_for("run-finished")[0].last_event_id == "4"


def test_after_drops_events_the_caller_already_has(server):
    # given a server that ignores the cursor and sends everything
    f = run_frames(6)
    server.streams.script("run-after", Plan(f))

    # when
    events = follow(server, "run-after", after=4)

    # then
    assert seqs(events) == [5, 6]
    seen = server.streams.requests_for("run-after")[0]
    assert (seen.last_event_id, seen.after) == ("4", "4")


def test_sync_wrapper_follows_through_drops(server):
    # given
    server.streams.resumable(
        "run-sync", run_frames(10), [Cut(at=150), Cut(at=10, drop=False), Cut(at=400)]
    )
    stats = FollowStats()

    # when
    with CoastyClient(server.base_url, KEY) as client:
        events = list(
            iter_events(client, "run-sync", budget_seconds=10, stats=stats, sleep=RecordingSleep())
        )

    # then
    assert seqs(events) == list(range(1, 11))
    assert stats.connections == 4


def test_after_must_be_a_non_negative_seq():
    async def main() -> None:
        async with httpx.AsyncClient(base_url="http://127.0.0.1:9") as http:
            await collect(http, "run", after=-1)

    with pytest.raises(ValueError):
        asyncio.run(main())


def test_a_spent_budget_makes_no_request():
    calls: list[httpx.Request] = []
    stats = FollowStats()

    async def main() -> list[SseEvent]:
        transport = httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(500))
        async with httpx.AsyncClient(base_url="http://coasty.test", transport=transport) as http:
            return await collect(http, "run", budget_seconds=0, stats=stats)

    assert asyncio.run(main()) == []
    assert (calls, stats.connections, stats.ended_by) == ([], 0, "budget")


@pytest.mark.timeout(240)
def test_hundreds_of_concurrent_streams_on_one_client(server):
    # given 500 runs whose streams each drop once mid-way (client and server sockets share
    # this process, so it needs more than the common default of 1024 open files)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    streams = 500 if wanted >= 1500 else 200
    runs = [f"run-many-{i}" for i in range(streams)]
    frames = run_frames(6)
    for run_id in runs:
        server.streams.resumable(run_id, frames, [Cut(at=len(b"".join(frames[:3])) + 7)])

    async def main() -> list[list[SseEvent]]:
        with CoastyClient(server.base_url, KEY) as client:
            async with client.async_http() as http:
                return await asyncio.gather(
                    *(collect(http, run_id, sleep=RecordingSleep()) for run_id in runs)
                )

    # when
    started = time.monotonic()
    results = asyncio.run(main())
    elapsed = time.monotonic() - started

    # then every stream delivered every event exactly once, in one loop, in reasonable time
    # (about 6 s here; the bound is for a machine that is busy with other things too)
    assert all(seqs(events) == [1, 2, 3, 4, 5, 6] for events in results)
    assert elapsed < 150, f"{streams} streams took {elapsed:.1f}s"


# --- properties: random cut points never lose or duplicate an event -----------------------------


connection_cuts = st.lists(
    st.builds(
        Cut,
        at=st.integers(min_value=0, max_value=2000),
        overlap=st.integers(min_value=0, max_value=3),
        drop=st.booleans(),
    ),
    max_size=6,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(n=st.integers(min_value=1, max_value=25), cuts=connection_cuts, run=st.uuids())
def test_random_cuts_over_real_sockets_lose_and_duplicate_nothing(server, n, cuts, run):
    # given a resumable stream that is cut at random byte offsets, replaying a few events
    run_id = f"run-prop-{run}"
    server.streams.resumable(run_id, run_frames(n), cuts)

    # when (the sleeps are not real, so a long budget costs no time; it only keeps a long
    # run of failed connections from ending the follow early by backing off past the budget)
    events = follow(
        server, run_id, sleep=RecordingSleep(), rng=random.Random(0), budget_seconds=1000
    )

    # then
    assert seqs(events) == list(range(1, n + 1))
    assert all(event.data == event_data(event.seq) for event in events[:-1])


class CuttingStream(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes], ending: str) -> None:
        self.chunks = chunks
        self.ending = ending

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.ending == "drop":
            raise httpx.RemoteProtocolError("peer closed connection mid-body")
        if self.ending == "timeout":
            raise httpx.ReadTimeout("silence")


class CuttingTransport(httpx.AsyncBaseTransport):
    """In memory: the n-th connection is cut per `plans[n]` and arrives in `chunk`-byte
    pieces with a keep-alive comment between some frames; later connections get the rest."""

    def __init__(self, frames: list[bytes], plans: list[tuple[Cut, str, int, bool]]) -> None:
        self.frames = frames
        self.plans = plans
        self.cursors: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        cursor = int(request.headers.get("last-event-id", "0"))
        self.cursors.append(cursor)
        n = len(self.cursors) - 1
        if n < len(self.plans):
            cut, ending, chunk, keepalives = self.plans[n]
        else:
            cut, ending, chunk, keepalives = Cut(at=10**9, overlap=0), "close", 7, False
        start = max(0, min(cursor, len(self.frames)) - cut.overlap)
        parts = [KEEPALIVE + f if keepalives else f for f in self.frames[start:]]
        payload = b"".join(parts)[: cut.at]
        chunks = [payload[i : i + chunk] for i in range(0, len(payload), chunk)]
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream; charset=utf-8"},
            stream=CuttingStream(chunks, ending),
        )


transport_plans = st.lists(
    st.tuples(
        st.builds(Cut, at=st.integers(min_value=0, max_value=3000), overlap=st.integers(0, 4)),
        st.sampled_from(["drop", "close", "timeout"]),
        st.integers(min_value=1, max_value=64),
        st.booleans(),
    ),
    max_size=10,
)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(min_value=1, max_value=40), plans=transport_plans)
def test_random_cuts_chunking_and_endings_lose_and_duplicate_nothing(n, plans):
    # given
    frames = run_frames(n)
    transport = CuttingTransport(frames, plans)
    stats = FollowStats()

    async def main() -> list[SseEvent]:
        async with httpx.AsyncClient(base_url="http://coasty.test", transport=transport) as http:
            return await collect(
                http,
                "run-mem",
                sleep=RecordingSleep(),
                stats=stats,
                rng=random.Random(0),
                budget_seconds=1000,  # sleeps are not real; see the test above
            )

    # when
    events = asyncio.run(main())

    # then
    assert seqs(events) == list(range(1, n + 1))
    assert all(event.data == event_data(event.seq) for event in events[:-1])
    assert stats.gaps == [] and stats.malformed == 0
    # each reconnect resumed exactly after the last event yielded before it
    assert transport.cursors == sorted(transport.cursors)


def test_cut_payload_helper_replays_overlap():
    frames = run_frames(4)
    assert cut_payload(frames, 2, Cut(at=10**6, overlap=1)) == b"".join(frames[1:])
    assert cut_payload(frames, 0, None) == b"".join(frames)


def test_odd_200_is_retried_as_bad_response():
    # given a gateway that first answers 200 with JSON instead of a stream
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(200, json={"status": "ok"})
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=b"".join(run_frames(2))
        )

    stats = FollowStats()

    async def main() -> list[SseEvent]:
        async with httpx.AsyncClient(
            base_url="http://coasty.test", transport=httpx.MockTransport(handler)
        ) as http:
            return await collect(http, "run-odd", sleep=RecordingSleep(), stats=stats)

    # when
    events = asyncio.run(main())

    # then
    assert seqs(events) == [1, 2]
    assert isinstance(stats.last_error, CoastyBadResponse)
    assert len(calls) == 2


def test_rate_limited_stream_waits_for_retry_after():
    # given a stream that is first refused with 429 and Retry-After
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(
                429,
                headers={"Retry-After": "3", "content-type": "application/json"},
                content=error_body("RATE_LIMIT_EXCEEDED", retryable=True),
            )
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=b"".join(run_frames(1))
        )

    sleep = RecordingSleep()
    stats = FollowStats()

    async def main() -> list[SseEvent]:
        async with httpx.AsyncClient(
            base_url="http://coasty.test", transport=httpx.MockTransport(handler)
        ) as http:
            return await collect(http, "run-429", sleep=sleep, stats=stats)

    # when
    events = asyncio.run(main())

    # then
    assert seqs(events) == [1]
    assert sleep.delays == [3.0]
    assert isinstance(stats.last_error, CoastyRateLimited)
