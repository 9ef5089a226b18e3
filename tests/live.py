"""Live processes for end-to-end tests: a real django-q2 worker beside the live server.

The worker is `manage.py worker` (qcluster, with a stop that always ends) in its own process
group, pointed at the test database (a file for SQLite, so that separate processes share it)
and at the simulator.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.db import connection

REPO = Path(__file__).resolve().parents[1]


def database_url() -> str:
    """A DATABASE_URL for the database this test process is using right now."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        name = str(db["NAME"])
        assert name not in ("", ":memory:") and "mode=memory" not in name, (
            "end-to-end tests need a file-backed SQLite test database (see conftest.py)"
        )
        return f"sqlite:///{name}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class Worker:
    """`manage.py worker` (qcluster) against the test database; start(), stop(), kill()."""

    def __init__(self, *, coasty_base_url: str, public_url: str, workers: int = 2, extra_env=None):
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "COASTY_BASE_URL": coasty_base_url,
            "PORTAL_PUBLIC_URL": public_url,
            "Q_WORKERS": str(workers),
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": os.environ.get("WORKER_LOG_LEVEL", "WARNING"),
            **(extra_env or {}),
        }
        self.env.pop("REDIS_URL", None) if "REDIS_URL" not in (extra_env or {}) else None
        self.process: subprocess.Popen | None = None
        self.log_path = REPO / "var" / f"worker-{os.getpid()}-{time.monotonic_ns()}.log"

    def start(self) -> Worker:
        self.log = open(self.log_path, "wb")  # noqa: SIM115 — closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "worker"],  # qcluster that always stops
            cwd=REPO,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL the whole cluster, as a crash would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                # Every task is idempotent, so a worker that will not stop quickly is killed.
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "log", None):
            self.log.close()

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""


def wait_until(
    predicate: Callable[[], object],
    *,
    timeout: float = 30.0,
    what: str = "condition",
    interval=0.05,
):
    """Poll until predicate() is truthy; returns its value or fails with `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
