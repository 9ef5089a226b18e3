"""How the browser tests get their Chromium: found, installed with apt-get, or a reason to skip.

These need no browser: the system around them is faked.
"""

import subprocess

import pytest

from tests.browser import chromium


@pytest.fixture
def system(monkeypatch):
    """A fake machine: which binaries exist, who we are, what apt-get does."""

    class System:
        binaries: dict[str, str] = {}
        uid = 0
        commands: list[list[str]] = []
        apt_installs: str | None = "/usr/bin/chromium"  # what `apt-get install` puts on PATH
        apt_fails = False

    def which(name):
        return System.binaries.get(name)

    def run(command, **kwargs):
        System.commands.append(command)
        if System.apt_fails:
            raise subprocess.CalledProcessError(100, command, stderr=b"E: Unable to locate package")
        if command[:2] == ["apt-get", "install"] and System.apt_installs:
            System.binaries["chromium"] = System.apt_installs
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.setattr(chromium.shutil, "which", which)
    monkeypatch.setattr(chromium.os, "geteuid", lambda: System.uid)
    monkeypatch.setattr(chromium.subprocess, "run", run)
    System.binaries = {"apt-get": "/usr/bin/apt-get"}
    System.commands = []
    return System


def test_a_chromium_on_the_path_is_used_as_it_is(system):
    system.binaries["chromium"] = "/usr/bin/chromium"
    assert chromium.find_or_install() == chromium.Found(
        "/usr/bin/chromium", "found /usr/bin/chromium"
    )
    assert system.commands == []


def test_root_with_apt_get_installs_debians_chromium(system):
    found = chromium.find_or_install()
    assert found.path == "/usr/bin/chromium" and "installed with apt-get" in found.reason
    assert [c[:2] for c in system.commands] == [["apt-get", "update"], ["apt-get", "install"]]
    assert system.commands[1][-1] == "chromium"


@pytest.mark.parametrize(
    ("uid", "apt", "why"),
    [(1000, True, "not root"), (0, False, "no apt-get")],
)
def test_without_root_or_apt_get_there_is_a_reason_and_no_attempt(system, uid, apt, why):
    system.uid = uid
    if not apt:
        del system.binaries["apt-get"]
    found = chromium.find_or_install()
    assert found.path is None and why in found.reason and "apt-get install chromium" in found.reason
    assert system.commands == []


def test_a_failed_install_says_what_apt_get_said(system):
    system.apt_fails = True
    found = chromium.find_or_install()
    assert found.path is None
    assert "failed" in found.reason and "Unable to locate package" in found.reason


def test_chromium_env_names_the_binary(system, monkeypatch, tmp_path):
    binary = tmp_path / "chrome"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("CHROMIUM", str(binary))
    assert chromium.find_or_install().path == str(binary)
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "missing"))
    found = chromium.find_or_install()
    assert found.path is None and "is not an executable file" in found.reason
    assert system.commands == []
