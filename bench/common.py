"""What the benchmarks share: databases, the processes they start, and how figures are kept.

Every benchmark script runs in its own process with the portal's settings taken from the
environment `django_env()` builds (PostgreSQL, production-like DEBUG=false), so a benchmark
that needs Redis, or another database, is just another environment.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
PG_SERVER = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
BENCH_DB = "portal_bench"  # made afresh by every `make bench`
PAGES_DB = "portal_bench_pages"  # the 100,000-run dataset, kept between runs (slow to make)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
VAR = REPO / "var" / "bench"
SECRET_KEY = "bench-only-secret-key-not-for-production-0123456789abcdef"  # noqa: S105


def database_url(name: str = BENCH_DB) -> str:
    return f"{PG_SERVER}/{name}"


def django_env(db: str = BENCH_DB, **extra: str) -> dict[str, str]:
    """The environment of a production-like portal process on the bench database."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": database_url(db),
        "SECRET_KEY": SECRET_KEY,
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PORTAL_VAR_DIR": str(VAR),
        "CONN_MAX_AGE": "600",
        "LOG_LEVEL": "ERROR",
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)
    env.update(extra)
    return env


def setup_django(db: str = BENCH_DB, **extra: str) -> None:
    """Configure this process as a portal process (call before importing models)."""
    for name, value in django_env(db, **extra).items():
        if name not in ("PYTHONPATH",):
            os.environ[name] = value
    if "REDIS_URL" not in extra:
        os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(REPO))
    import django

    django.setup()


def psql_admin(sql: str) -> None:
    """Run one statement on the server's maintenance database (CREATE/DROP DATABASE)."""
    import psycopg

    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        conn.execute(sql)


def database_exists(name: str) -> bool:
    import psycopg

    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()


def recreate_database(name: str) -> None:
    assert name.startswith("portal_bench"), name  # never anyone else's database
    psql_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql_admin(f'CREATE DATABASE "{name}"')
    migrate(name)


def migrate(name: str) -> None:
    manage("migrate", "--noinput", "-v0", db=name)


def manage(*args: str, db: str = BENCH_DB, **extra: str) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=REPO, env=django_env(db, **extra), check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer in {timeout} s: {exc}") from exc
            time.sleep(0.1)


class Process:
    """A child process in its own process group, stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str]) -> None:
        VAR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = VAR / f"{name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log.close()

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@contextmanager
def gunicorn(env: dict[str, str], *, workers: int = 3, threads: int = 8):
    """The portal under gunicorn, as in production (README: `gunicorn portal.wsgi`)."""
    port = free_port()
    command = [
        PY, "-m", "gunicorn", "portal.wsgi",
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--threads", str(threads), "--worker-class", "gthread",
        "--keep-alive", "30", "--backlog", "2048", "--log-level", "warning",
    ]  # fmt: skip
    server = Process("gunicorn", command, env)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.stop()


@contextmanager
def simulator(**settings):
    """The Coasty simulator in its own process (its CPU is not the portal's)."""
    sys.path.insert(0, str(REPO))
    from runs.simulator.testing import run_simulator

    with run_simulator(process=True, **settings) as sim:
        yield sim


def rss_mb(pid: int) -> float:
    """Resident memory of one process, in MB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


# --- Figures ---------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured figure beside its limit: the same-run baseline or the fixed threshold.

    goal is how value must compare with limit: ">=" (at least the limit), "<=" (at most), "=="
    (the same),
    ">=70%" (at least that share of the limit), "<=150%" (at most that multiple of it), or
    "info" (no goal: the row informs; limit may be None and met is None). ratio is value / limit.

    basis says how far the figure travels: "side by side" when limit is measured in the same run,
    alternating with value (a ratio to trust across machines), "absolute" when it is compared
    with a fixed number (this machine, this load only).
    """

    name: str
    value: float
    unit: str
    limit: float | None
    goal: str
    met: bool | None = None
    ratio: float | None = None
    note: str = ""
    basis: str = ""

    def __post_init__(self) -> None:
        if not self.basis:
            self.basis = "side by side" if self.goal.endswith("%") else "absolute"
        self.ratio = round(self.value / self.limit, 3) if self.limit else None
        if self.goal == "info":
            self.met = None
        elif self.limit is None:
            raise ValueError(f"{self.name}: a goal {self.goal!r} needs a limit")
        elif self.goal[:2] in (">=", "<=") and self.goal.endswith("%"):
            share = float(self.goal[2:-1]) / 100
            if self.goal.startswith(">="):
                self.met = self.value >= share * self.limit
            else:
                self.met = self.value <= share * self.limit
        elif self.goal == "==":
            self.met = self.value == self.limit
        elif self.goal == ">=":
            self.met = self.value >= self.limit
        elif self.goal == "<=":
            self.met = self.value <= self.limit
        else:
            raise ValueError(f"unknown goal {self.goal!r}")
        self.value = round(self.value, 2)
        self.limit = round(self.limit, 2) if self.limit is not None else None

    def as_dict(self) -> dict:
        return asdict(self)


def emit(figures: list[Figure]) -> None:
    """A benchmark script's output: its figures as one JSON line the runner collects."""
    print("BENCH-FIGURES " + json.dumps([f.as_dict() for f in figures]), flush=True)
