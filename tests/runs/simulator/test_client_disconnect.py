"""A caller that goes away while the simulator reads its body (a worker killed mid-request, as
the chaos suite does) is a normal event for a server: nothing is created, and nothing is logged
as a simulator bug."""

from __future__ import annotations

import asyncio
import logging

from runs.simulator.app import create_app
from runs.simulator.config import SimConfig
from tests.sim_support import LIVE_KEY


def _post_cut_short(app, path: str) -> list[dict]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"x-api-key", LIVE_KEY.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"400"),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }
    messages = iter(
        [
            {"type": "http.request", "body": b'{"machine_id": "vm-', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[dict] = []

    async def receive() -> dict:
        return next(messages, {"type": "http.disconnect"})

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_a_body_cut_short_creates_nothing_and_is_no_simulator_bug(caplog):
    app = create_app(SimConfig(speed=50))
    with caplog.at_level(logging.INFO, logger="runs.simulator"):
        sent = _post_cut_short(app, "/v1/runs")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert [r.getMessage() for r in caplog.records if "went away" in r.getMessage()]
    assert sent and sent[0]["status"] == 499
    assert app.state.sim.runs == {}
