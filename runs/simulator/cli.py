"""Command-line front of the simulator, shared by ``manage.py coasty_sim`` and
``python -m runs.simulator`` (the latter needs no Django settings).

Faults on the command line: one option per fault taking a spec, e.g.
``--lost-response 0.3``, ``--rate-limit count:2``, ``--lost-response 0.2,mode:drop``,
``--server-error p:0.1,limit:5,only:get_run+list_runs``; or all at once with
``--faults-json '{"cut_stream": {"probability": 0.5}}'``. ``--seed`` makes them repeat.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import sys
import threading
from collections.abc import Callable, Generator
from typing import Any

import uvicorn

from .app import create_app
from .config import SimConfig
from .faults import FAULT_NAMES, parse_fault, parse_spec_string

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="interface to bind (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port (default 8765; 0 picks a free one and prints it)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=None,
        help="time factor (default 1): 50 makes a 1 s step take 20 ms",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the fault RNG (repeatable chaos)"
    )
    parser.add_argument(
        "--sse-rotate-seconds",
        type=float,
        default=None,
        help="close SSE streams after this long (simulated s; default 300)",
    )
    parser.add_argument(
        "--sse-keepalive-seconds",
        type=float,
        default=None,
        help="keep-alive comment interval (simulated s; default 15)",
    )
    parser.add_argument(
        "--config-json", default=None, help="any SimConfig settings as a JSON object"
    )
    parser.add_argument(
        "--faults-json", default=None, help='faults as JSON, e.g. {"lost_response": 0.3}'
    )
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    for name in FAULT_NAMES:
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest="fault_" + name,
            metavar="SPEC",
            default=None,
            help=f"fault {name}: probability and/or count:N, limit:N, only:op+op, options",
        )


def config_from_options(options: dict[str, Any]) -> SimConfig:
    settings: dict[str, Any] = (
        json.loads(options["config_json"]) if options.get("config_json") else {}
    )
    # Explicit options win over --config-json.
    for name in ("speed", "seed", "sse_rotate_seconds", "sse_keepalive_seconds"):
        if options.get(name) is not None:
            settings[name] = options[name]
    faults: dict[str, Any] = dict(settings.pop("faults", {}) or {})
    if options.get("faults_json"):
        faults.update(json.loads(options["faults_json"]))
    specs = {name: parse_fault(name, value) for name, value in faults.items()}
    for name in FAULT_NAMES:
        text = options.get("fault_" + name)
        if text:
            specs[name] = parse_spec_string(name, text)
    config = SimConfig().replace(**settings)
    config.faults = specs
    return config


class SimulatorServer(uvicorn.Server):
    """uvicorn's server, announcing its address once it listens and exiting 0 on SIGTERM/SIGINT."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.on_ready is not None:
            self.on_ready()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn re-raises the signal after shutting down, which ends the process with it;
        # a simulator stopped on purpose should just exit 0.
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(sig: int, frame: Any) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.set_inheritable(True)
    return sock


def build_server(
    config: SimConfig, *, log_level: str = "info", on_ready: Callable[[], None] | None = None
) -> SimulatorServer:
    uv_config = uvicorn.Config(
        create_app(config),
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=1,  # open SSE streams would otherwise hold shutdown forever
        timeout_keep_alive=30,
        backlog=4096,
        access_log=log_level == "debug",
    )
    return SimulatorServer(uv_config, on_ready=on_ready)


def serve(
    config: SimConfig, host: str, port: int, *, log_level: str = "info", out: Any = None
) -> None:
    """Serve until SIGTERM/SIGINT. Prints one line with the URL once it accepts connections."""
    out = out or sys.stdout
    sock = bind(host, port)
    actual_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host

    def ready() -> None:
        print(
            f"Coasty simulator listening on http://{shown_host}:{actual_port} (speed {config.speed:g}x)",
            file=out,
            flush=True,
        )

    server = build_server(config, log_level=log_level, on_ready=ready)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runs.simulator", description="Coasty API simulator"
    )
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        config = config_from_options(options)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    serve(config, options["host"], options["port"], log_level=options["log_level"])
    return 0
