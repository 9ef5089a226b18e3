"""`make run` (bin/run) stops cleanly (issue 12, case 9): SIGTERM to its process group, twice
in quick succession, leaves no process of the simulator, web or worker behind."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes() -> dict[int, tuple[int, int, str]]:
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def descendant_groups(root: int) -> set[int]:
    table = processes()
    found, frontier = set(), [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _, _) in table.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                frontier.append(pid)
    return {table[pid][1] for pid in found if pid in table}


def live_members(groups: set[int]) -> list[int]:
    return [
        pid for pid, (_, group, state) in processes().items() if group in groups and state != "Z"
    ]


def test_sigterm_twice_to_make_run_leaves_no_process_behind(tmp_path):
    # given bin/run up, with its simulator, web server and worker, on a migrated database
    env = {
        **os.environ,
        "PORTAL_PYTHON": sys.executable,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}",
        "PORTAL_WEB_ADDR": f"127.0.0.1:{free_port()}",
        "COASTY_BASE_URL": f"http://127.0.0.1:{free_port()}",
        "DEBUG": "true",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO, env=env, check=True
    )
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        run = subprocess.Popen(
            [sys.executable, "bin/run"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    groups: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while b"is up at" not in log.read_bytes():
            assert run.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        time.sleep(1.0)  # the worker cluster spawns its processes
        groups = descendant_groups(run.pid)
        assert len(groups) >= 3, groups  # simulator, web, worker

        # when its process group gets SIGTERM, and another one a moment later
        os.killpg(run.pid, signal.SIGTERM)
        sent = time.monotonic()
        time.sleep(0.3)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGTERM)
        run.wait(timeout=30)
        print(f"bin/run and its processes gone {time.monotonic() - sent:.2f} s after SIGTERM")

        # then bin/run has exited and no process it started is left
        assert live_members(groups) == [], log.read_text()
    finally:
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
