"""The simulator as a process (python -m runs.simulator, manage.py coasty_sim), its command
line, and its capacity: 300 concurrent runs, each followed over its own SSE stream."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from runs.simulator.cli import add_arguments, config_from_options
from runs.simulator.testing import SimulatorProcess, run_simulator, split_options
from tests.sim_support import LIVE_KEY, run_body

REPO = Path(__file__).resolve().parents[3]


def test_subprocess_simulator_serves_and_exits_0_on_sigterm():
    with run_simulator(speed=50, process=True, lost_response={"count": 1, "mode": "502"}) as sim:
        assert isinstance(sim, SimulatorProcess)
        with httpx.Client(base_url=sim.base_url, headers={"X-API-Key": LIVE_KEY}) as api:
            assert api.get("/v1/health").json()["status"] == "ok"
            assert (
                api.post("/v1/runs", json=run_body(), headers={"Idempotency-Key": "p1"}).status_code
                == 502
            )
            run = api.post("/v1/runs", json=run_body(), headers={"Idempotency-Key": "p1"}).json()
            assert sim.wait_for_run(run["id"])["status"] == "succeeded"
            assert sim.state()["runs_per_idempotency_key"] == {"p1": 1}
            assert sim.state()["config"]["speed"] == 50
    assert sim.returncode == 0


@pytest.mark.timeout(150)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_manage_py_coasty_sim_starts_and_stops_cleanly_with_an_open_stream(sig):
    # given the management command on a free port, with a fault from the command line
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "coasty_sim",
            "--port",
            "0",
            "--speed",
            "50",
            "--lost-response",
            "0.5,mode:drop",
            "--seed",
            "3",
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line
        base_url = line.split("listening on ", 1)[1].split()[0]
        faults = httpx.get(f"{base_url}/_sim/faults").json()
        assert faults["seed"] == 3
        assert httpx.get(f"{base_url}/_sim/config").json()["speed"] == 50
        assert faults["faults"]["lost_response"]["probability"] == 0.5
        assert faults["faults"]["lost_response"]["mode"] == "drop"
        # and a client in the middle of a stream
        with httpx.Client(base_url=base_url, headers={"X-API-Key": LIVE_KEY}) as api:
            httpx.post(f"{base_url}/_sim/faults", json={})
            run = api.post("/v1/runs", json=run_body("[pause]")).json()
            with api.stream("GET", f"/v1/runs/{run['id']}/events") as stream:
                next(stream.iter_lines())
                # when the process is told to stop
                started = time.monotonic()
                process.send_signal(sig)
                # then it exits 0, open stream or not: within about a second (its graceful
                # shutdown timeout), where an open stream would otherwise hold it forever; the
                # bound leaves room for a busy machine
                assert process.wait(timeout=60) == 0
                assert time.monotonic() - started < 45
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()


def test_command_line_options_build_the_config():
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = vars(
        parser.parse_args(
            [
                "--speed", "20", "--seed", "9", "--sse-rotate-seconds", "30",
                "--rate-limit", "count:2,retry_after:1",
                "--server-error", "p:0.1,limit:5,only:get_run+list_runs",
                "--faults-json", json.dumps({"webhook_late": {"probability": 0.5, "delay_seconds": 3}}),
                "--config-json", json.dumps({"step_seconds": 2}),
            ]
        )
    )  # fmt: skip
    config = config_from_options(options)
    assert (config.speed, config.seed, config.sse_rotate_seconds, config.step_seconds) == (
        20,
        9,
        30,
        2,
    )
    faults = {name: spec.describe() for name, spec in config.faults.items()}
    assert faults["rate_limit"]["count"] == 2 and faults["rate_limit"]["retry_after"] == 1
    assert (
        faults["server_error"]["only"] == ["get_run", "list_runs"]
        and faults["server_error"]["limit"] == 5
    )
    assert faults["webhook_late"]["delay_seconds"] == 3.0
    from_json = config_from_options({**options, "speed": None, "config_json": '{"speed": 7}'})
    assert from_json.speed == 7  # --config-json counts when --speed is not given
    with pytest.raises(ValueError, match="unknown fault"):
        config_from_options({**options, "faults_json": '{"meteor": 1}'})


def test_run_simulator_splits_settings_and_faults():
    settings, faults = split_options({"sse_rotate_seconds": 1, "cut_stream": 0.5})
    assert settings == {"sse_rotate_seconds": 1} and faults == {"cut_stream": 0.5}
    with pytest.raises(TypeError):
        split_options({"warp_factor": 9})


async def _request(
    host: str, port: int, method: str, path: str, body: dict | None = None
) -> tuple[int, dict]:
    """One HTTP/1.1 request on its own connection (a bare client: httpx's pool, not the
    simulator, is the bottleneck at a few hundred parallel connections)."""
    reader, writer = await asyncio.open_connection(host, port)
    data = json.dumps(body).encode() if body is not None else b""
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {LIVE_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
        + data
    )
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


async def _follow(host: str, port: int, run_id: str) -> list[int]:
    """The seqs of one SSE stream, read until `done`."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET /v1/runs/{run_id}/events HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {LIVE_KEY}\r\n\r\n".encode()
    )
    await writer.drain()
    seqs = []
    while line := await reader.readline():
        if line.startswith(b"id: "):
            seqs.append(int(line[4:]))
        if line.startswith(b"event: done"):
            break
    writer.close()
    return seqs


@pytest.mark.timeout(240)
def test_300_concurrent_runs_each_with_an_open_stream():
    count = 300

    async def scenario(host: str, port: int) -> tuple[list[list[int]], dict[str, float]]:
        timings = {}
        started = time.monotonic()
        # given 300 runs that all pause for a human after their first step
        created = await asyncio.gather(
            *(
                _request(host, port, "POST", "/v1/runs", run_body("[pause][steps=3]"))
                for _ in range(count)
            )
        )
        assert {status for status, _ in created} == {200}
        run_ids = [body["id"] for _, body in created]
        timings["create"] = time.monotonic() - started
        # when each has an open stream at the same time
        followers = [asyncio.create_task(_follow(host, port, run_id)) for run_id in run_ids]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _, state = await _request(host, port, "GET", "/_sim/state")
            if (
                state["open_streams"] == count
                and state["runs_by_status"]["awaiting_human"] == count
            ):
                break
            await asyncio.sleep(0.02)
        assert state["open_streams"] == count, state["open_streams"]
        timings["streams open, all paused"] = time.monotonic() - started
        # and all are resumed
        resumed = await asyncio.gather(
            *(_request(host, port, "POST", f"/v1/runs/{i}/resume") for i in run_ids)
        )
        assert {status for status, _ in resumed} == {200}
        results = await asyncio.wait_for(asyncio.gather(*followers), timeout=90)
        timings["all done"] = time.monotonic() - started
        return results, timings

    with run_simulator(speed=20, sse_keepalive_seconds=5) as sim:
        url = httpx.URL(sim.base_url)
        results, timings = asyncio.run(scenario(url.host, url.port))
        state = sim.state()
    # then every stream saw every event of its run, in order, to the end
    assert all(seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 20 for seqs in results)
    assert state["runs_by_status"]["succeeded"] == count
    # (under a second here; the bound is for a machine that is busy with other things too)
    assert timings["all done"] < 120, timings
    print(
        f"{count} runs with open streams: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
    )


def test_the_simulator_package_needs_no_django():
    code = "import sys, runs.simulator, runs.simulator.testing, runs.simulator.cli; sys.exit('django' in sys.modules)"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env={"PATH": "/usr/bin:/bin"}
        ).returncode
        == 0
    )
