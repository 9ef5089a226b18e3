"""Real-browser tests: Playwright driving Debian's Chromium against the live stack.

One Chromium for the whole browser package (started on first use), a fresh browser context
(cookies, storage, time zone) for every page a test opens, the demo organisation seeded into the
test database for every test. Chromium is found or installed by tests/browser/chromium.py; when
there is none the tests are skipped with the reason, and REQUIRE_BROWSER=1 makes that a failure.

A failing test leaves a full-page screenshot of each of its pages in test-artifacts/browser/.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.browser import chromium
from tests.browser.pages import log_in

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
HERE = Path(__file__).resolve().parent

_not_run: list[str] = []  # why browser tests were skipped, for the summary at the end


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.browser_call_failed = report.failed
    return report


def pytest_terminal_summary(terminalreporter):
    if _not_run:
        terminalreporter.write_sep("!", "BROWSER TESTS DID NOT RUN", red=True, bold=True)
        terminalreporter.write_line(_not_run[0], red=True)


def _cannot_run(reason: str):
    message = f"BROWSER TESTS NOT RUN: {reason}"
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(message + " (REQUIRE_BROWSER=1)", pytrace=False)
    if not _not_run:
        _not_run.append(message)
    pytest.skip(message)


@pytest.fixture(scope="package")
def browser():
    """One headless Chromium for all the browser tests."""
    found = chromium.find_or_install()
    if found.path is None:
        _cannot_run(found.reason)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _cannot_run(f"the playwright package is missing ({exc}); run `make install`")

    # Playwright's sync API keeps an asyncio loop running in this thread for as long as it is
    # started, and Django refuses ORM calls from a thread with a running loop. Here that is
    # safe: the loop only drives the browser and every ORM call is ordinary synchronous code.
    # The flag is set only while the browser package runs (this fixture is package-scoped).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        try:
            instance = playwright.chromium.launch(
                executable_path=found.path, headless=True, args=chromium.LAUNCH_ARGS
            )
        except Exception as exc:
            _cannot_run(f"Chromium at {found.path} did not start: {exc}")
        yield instance
        instance.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class OpenedPage:
    page: object
    script_errors: list[str]


@pytest.fixture
def open_page(browser, live_server, request):
    """open_page(username=None, **context options) -> a Page in a fresh context, logged in.

    Defaults: a 1280×860 window, British English, London time. Uncaught script errors, and
    anything the Content-Security-Policy blocks, on any page fail the test.
    """
    opened: list[OpenedPage] = []

    def open_(username: str | None = None, **options):
        context = browser.new_context(
            **{
                "base_url": live_server.url,
                "viewport": {"width": 1280, "height": 860},
                "locale": "en-GB",
                "timezone_id": "Europe/London",
                **options,
            }
        )
        context.set_default_timeout(15_000)
        page = context.new_page()
        entry = OpenedPage(page=page, script_errors=[])
        page.on("pageerror", lambda exc: entry.script_errors.append(str(exc)))
        # Anything the Content-Security-Policy blocked (an inline script, a javascript: URL)
        # fails the test too: the page would be missing that behaviour.
        page.on(
            "console",
            lambda msg: (
                entry.script_errors.append(msg.text)
                if msg.type == "error" and "Content Security Policy" in msg.text
                else None
            ),
        )
        opened.append(entry)
        if username:
            log_in(page, username)
        return page

    yield open_

    failed = getattr(request.node, "browser_call_failed", False)
    errors = []
    for number, entry in enumerate(opened):
        if failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            try:
                entry.page.screenshot(
                    path=str(ARTIFACTS / f"{request.node.name}-{number}.png"), full_page=True
                )
            except Exception as exc:  # a crashed page must not hide the test's own failure
                print(f"no failure screenshot of page {number}: {exc}")
        errors += entry.script_errors
        entry.page.context.close()
    assert not errors, f"uncaught script errors in the browser: {errors}"


@dataclass
class Demo:
    """The demo organisation of `manage.py seed_demo`, as the README describes it."""

    def user(self, username: str):
        from django.contrib.auth import get_user_model

        return get_user_model().objects.get(username=username)

    def team(self, slug: str):
        from portal.teams.models import Team

        return Team.objects.get(slug=slug)


@pytest.fixture
def demo(transactional_db):
    call_command("seed_demo", stdout=io.StringIO())
    return Demo()


@pytest.fixture
def stack(live_stack):
    """The live stack (tests/conftest.py), its worker killed at the end instead of stopped:
    a graceful qcluster stop waits seconds for a follower to hand over, and every task is
    idempotent, so a kill loses nothing a test needs."""
    yield live_stack
    live_stack.worker.kill()
