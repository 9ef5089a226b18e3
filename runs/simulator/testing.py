"""Start a simulator for a test, an end-to-end test or a chaos run.

In a background thread of this process (fast, the default)::

    from runs.simulator.testing import run_simulator, TEST_KEY, LIVE_KEY

    with run_simulator(speed=50, seed=7, lost_response=0.3) as sim:
        sim.base_url                      # "http://127.0.0.1:<free port>"
        sim.set_faults(rate_limit={"count": 2}, seed=7)  # replaces all faults
        sim.state()                       # GET /_sim/state as a dict
        sim.reset()                       # runs, keys, deliveries, faults, clock: all cleared

Or as a separate process (``python -m runs.simulator --port 0``), stopped with SIGTERM::

    with run_simulator(speed=50, process=True) as sim: ...

Keyword arguments are SimConfig settings (speed, sse_rotate_seconds, ...) or fault names
(lost_response=0.3, cut_stream={"count": 1}, ...). The handle talks to the simulator over HTTP
only, so it works the same for both ways of running it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from .cli import bind, build_server
from .config import SimConfig
from .faults import FAULT_NAMES

TEST_KEY = "sk-coasty-test-simulator"
LIVE_KEY = "sk-coasty-live-simulator"
REPO_ROOT = Path(__file__).resolve().parents[2]
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(SimConfig)}


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(SimConfig settings, faults) from one set of keyword arguments."""
    settings, faults = {}, dict(options.pop("faults", None) or {})
    for name, value in options.items():
        if name in FAULT_NAMES:
            faults[name] = value
        elif name in _CONFIG_FIELDS:
            settings[name] = value
        else:
            raise TypeError(
                f"unknown simulator option {name!r}: not a SimConfig setting nor a fault"
            )
    return settings, faults


class SimulatorHandle:
    """Admin access to a running simulator (see /_sim/* in README.md)."""

    base_url: str

    def _admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=10)

    def _get(self, path: str) -> Any:
        with self._admin() as client:
            response = client.get(path)
            response.raise_for_status()
            return response.json()

    def _post(self, path: str, body: Any = None) -> Any:
        with self._admin() as client:
            response = client.post(path, json=body if body is not None else {})
            if response.status_code >= 400:
                raise ValueError(f"{path}: {response.status_code} {response.text}")
            return response.json()

    def set_faults(
        self, faults: dict[str, Any] | None = None, *, seed: int | None = None, **named: Any
    ) -> dict:
        """Replace all faults: set_faults(lost_response=0.3, rate_limit={"count": 2}, seed=1)."""
        body: dict[str, Any] = {"faults": {**(faults or {}), **named}}
        if seed is not None:
            body["seed"] = seed
        return self._post("/_sim/faults", body)

    def clear_faults(self) -> dict:
        return self.set_faults({})

    def faults(self) -> dict:
        return self._get("/_sim/faults")

    def state(self) -> dict:
        return self._get("/_sim/state")

    def reset(self) -> None:
        self._post("/_sim/reset")

    def configure(self, **settings: Any) -> dict:
        """Change settings at run time (speed, sse_rotate_seconds, ...); reset() restores them."""
        return self._post("/_sim/config", settings)

    def advance_clock(self, seconds: float) -> dict:
        """Move the idempotency-retention clock forward (e.g. 86_401 to expire every key)."""
        return self._post("/_sim/clock", {"advance_seconds": seconds})

    def run(self, run_id: str) -> dict:
        """A run seen from the admin side (any key kind), with all its events."""
        return self._get(f"/_sim/runs/{run_id}")

    def wait_for(
        self, predicate: Callable[[dict], bool], *, timeout: float = 10.0, what: str = "condition"
    ) -> dict:
        """Poll /_sim/state until predicate(state) holds; returns that state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"simulator: {what} not reached in {timeout} s; state: {json.dumps(state)[:2000]}"
                )
            time.sleep(0.02)

    def wait_for_run(self, run_id: str, *statuses: str, timeout: float = 10.0) -> dict:
        """Poll a run until its status is one of `statuses` (default: any terminal one)."""
        wanted = statuses or ("succeeded", "failed", "cancelled", "timed_out")
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in wanted:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"run {run_id} is {run['status']}, not {wanted}, after {timeout} s"
                )
            time.sleep(0.01)


class SimulatorThread(SimulatorHandle):
    """The simulator on a free port, served by uvicorn in a daemon thread of this process."""

    def __init__(self, config: SimConfig, host: str = "127.0.0.1") -> None:
        self.config = config
        self.host = host
        self._thread: threading.Thread | None = None
        self._server: Any = None

    def start(self) -> SimulatorThread:
        sock = bind(self.host, 0)
        self.base_url = f"http://{self.host}:{sock.getsockname()[1]}"
        self._server = build_server(self.config, log_level="warning")
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="coasty-simulator",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the simulator did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=15)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout=5)

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SimulatorProcess(SimulatorHandle):
    """The simulator as its own process (python -m runs.simulator), stopped with SIGTERM."""

    def __init__(self, config: SimConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None

    def start(self) -> SimulatorProcess:
        settings = dataclasses.asdict(self.config)
        settings["faults"] = {
            name: (spec.describe() if hasattr(spec, "describe") else spec)
            for name, spec in (self.config.faults or {}).items()
        }
        for spec in settings["faults"].values():
            if isinstance(spec, dict):
                spec.pop("fired", None)
        command = [
            sys.executable, "-m", "runs.simulator",
            "--host", self.host, "--port", str(self.port),
            "--config-json", json.dumps(settings), "--log-level", "warning",
        ]  # fmt: skip
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
            ),
        }
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        line = _read_line(self.process, timeout=20)
        if "http://" not in line:
            self.stop()
            raise RuntimeError(f"the simulator process did not start: {line!r}")
        self.base_url = line.split("listening on ", 1)[1].split()[0]
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.returncode = self.process.returncode if self.process else None
            return
        self.process.terminate()
        try:
            self.returncode = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.returncode = self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_line(process: subprocess.Popen, timeout: float) -> str:
    result: list[str] = []
    stdout = process.stdout
    assert stdout is not None, "started with stdout=PIPE"
    reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else ""


@contextlib.contextmanager
def run_simulator(
    speed: float = 50.0, *, process: bool = False, host: str = "127.0.0.1", **options: Any
) -> Iterator[SimulatorHandle]:
    """A running simulator for the duration of the block; see the module docstring."""
    settings, faults = split_options(options)
    config = SimConfig(speed=speed).replace(**settings)
    config.faults = faults
    simulator: SimulatorThread | SimulatorProcess = (
        SimulatorProcess(config, host) if process else SimulatorThread(config, host)
    )
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()
