"""Find the Chromium the browser tests drive, installing Debian's when that is possible.

Playwright's own browser download is not used: it needs network access to a CDN that CI and the
development machines do not have. Debian's `chromium` package is what runs instead, found on
PATH (or at $CHROMIUM), installed with apt-get when the tests run as root and it is missing.
When neither works the tests are skipped with the reason spelled out, never passed silently;
REQUIRE_BROWSER=1 (set by .ci/run) turns that skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

# Headless, offline and quiet: no GPU, no background updates, no sync, no first-run UI.
LAUNCH_ARGS = [
    "--no-sandbox",  # root in a container has no user namespace for the sandbox
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
CANDIDATES = ("chromium", "chromium-browser", "/usr/bin/chromium")
APT_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class Found:
    path: str | None
    reason: str  # why there is none, or how it was found


def find() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def find_or_install() -> Found:
    path = find()
    if path:
        return Found(path, f"found {path}")
    if os.environ.get("CHROMIUM"):
        return Found(None, f"CHROMIUM={os.environ['CHROMIUM']} is not an executable file")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return Found(
            None,
            "Chromium is not installed and cannot be installed from here "
            f"({'not root' if os.geteuid() != 0 else 'no apt-get'}). "
            "Install it with `sudo apt-get install chromium`, or point CHROMIUM at a binary.",
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
        ):
            subprocess.run(
                command,
                env=env,
                check=True,
                capture_output=True,
                timeout=APT_TIMEOUT_SECONDS,
            )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        return Found(
            None,
            f"Chromium is not installed and `apt-get install chromium` failed: {exc}. "
            + detail.decode(errors="replace")[-400:],
        )
    path = find()
    if path is None:
        return Found(None, "apt-get installed chromium, yet no chromium binary is on PATH")
    return Found(path, f"installed with apt-get: {path}")
