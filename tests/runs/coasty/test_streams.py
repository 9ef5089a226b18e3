"""Streams followed in a child process (runs.coasty.streams): the follower's parent gets every
event in order with each stream's end after its last event, errors by class, and a child that
never outlives its parent's end of the socket."""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from typing import Any

import pytest

from runs.coasty import CoastyClient, CoastyNotFound
from runs.coasty.sse import StreamLimits
from runs.coasty.streams import StreamError, StreamsProcess, error_name
from tests.coasty_sse_server import Plan, done_frame, frame, serve_streams

pytestmark = pytest.mark.timeout(60)

KEY = "sk-coasty-test-streams"


@pytest.fixture(scope="module")
def server() -> Any:
    with serve_streams() as running:
        yield running


def start(server) -> StreamsProcess:
    return StreamsProcess(
        lambda: CoastyClient(server.base_url, KEY).async_http(), limits=StreamLimits()
    )


def receive_until_ended(streams: StreamsProcess, handles: set, timeout: float = 20) -> list:
    got: deque = deque()
    give_up_at = time.monotonic() + timeout
    while {h for kind, h, _ in got if kind == "end"} != handles:
        assert time.monotonic() < give_up_at, list(got)
        streams.receive(into=got, wait=0.2, enough=1000)
    return list(got)


def exited(pid: int, timeout: float) -> bool:
    give_up_at = time.monotonic() + timeout
    while time.monotonic() < give_up_at:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return True
        time.sleep(0.05)
    return False


def test_each_stream_arrives_in_order_and_ends_after_its_last_event(server):
    # given two runs' streams of 5 and 3 events
    server.streams.script(
        "run-a", Plan([*(frame(s, "step", {"step": s}) for s in range(1, 5)), done_frame(5)])
    )
    server.streams.script(
        "run-b",
        Plan([frame(1, "text", {"text": "hi"}), frame(2, "step", {"step": 1}), done_frame(3)]),
    )
    streams = start(server)
    try:
        # when the child follows both, run-a from after seq 1
        streams.follow(7, "run-a", 1, 10.0)
        streams.follow(8, "run-b", 0, 10.0)
        got = receive_until_ended(streams, {7, 8})
    finally:
        streams.stop(1.0)
        streams.close(timeout=5)

    # then each handle's events came in order, then its end, with no error
    for handle, seqs in ((7, [2, 3, 4, 5]), (8, [1, 2, 3])):
        mine = [(kind, payload) for kind, h, payload in got if h == handle]
        assert [p.seq for kind, p in mine if kind == "event"] == seqs
        assert mine[-1] == ("end", None)
    assert [p.type for kind, h, p in got if h == 8 and kind == "event"] == ["text", "step", "done"]


def test_a_gone_stream_ends_with_its_error_by_class(server):
    # given a stream Coasty no longer has
    server.streams.script(
        "run-gone",
        Plan(
            status=404,
            body=b'{"error": {"code": "NOT_FOUND", "message": "gone"}}',
            content_type="application/json",
        ),
    )
    streams = start(server)
    try:
        streams.follow(1, "run-gone", 0, 10.0)
        [(kind, handle, error)] = receive_until_ended(streams, {1})
    finally:
        streams.stop(1.0)
        streams.close(timeout=5)
    assert (kind, handle) == ("end", 1)

    # then the parent can tell it apart, as the follower does
    assert isinstance(error, CoastyNotFound) and error.status == 404
    assert error_name(error) == "CoastyNotFound"
    assert error_name(StreamError("ReadTimeout", "timed out")) == "ReadTimeout"


def test_the_child_ignores_sigterm_and_exits_when_the_parent_end_closes(server):
    # given a child following nothing yet
    streams = start(server)

    # when it gets SIGTERM (as a worker's whole process group does), it stays for the parent
    os.kill(streams.pid, signal.SIGTERM)
    assert not exited(streams.pid, timeout=0.5)

    # and when the parent's end of the socket closes (the parent is gone), it exits by itself
    streams.conn.close()
    assert exited(streams.pid, timeout=5)
