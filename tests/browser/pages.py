"""What a person does and reads on the portal's pages, in the words of the page.

Locators go by role, label and visible text wherever the page offers them, so a test breaks when
a person could no longer find the thing, not when markup moves around.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

DEMO_PASSWORD = "demo-pass-2026"
LIVE_TIMEOUT_MS = 45_000  # a run launched, followed, settled and polled into view


def money(cents: int) -> str:
    """As the portal writes money: 4985 -> "$49.85"."""
    sign = "−" if cents < 0 else ""
    dollars, rest = divmod(abs(cents), 100)
    return f"{sign}${dollars:,}.{rest:02d}"


def log_in(page: Page, username: str, password: str = DEMO_PASSWORD) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).not_to_have_url(re.compile(r"/accounts/login/"))


def stat(page: Page, label: str):
    """The value of a stat card ("Available", "Held", "Steps", "Cost", ...)."""
    card = page.locator(".stat").filter(
        has=page.locator(".label", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))
    )
    return card.locator(".value")


def status_badge(page: Page):
    return stat(page, "Status").locator(".badge")


def wait_for_steps(page: Page, at_least: int) -> int:
    """Wait until the run page shows at least this many completed steps; returns the number."""
    handle = page.wait_for_function(
        """(least) => {
             const bar = document.querySelector('[role=progressbar][aria-label="Steps completed"]');
             const now = bar ? parseInt(bar.getAttribute('aria-valuenow'), 10) : -1;
             return now >= least ? now : false;
           }""",
        arg=at_least,
        timeout=LIVE_TIMEOUT_MS,
    )
    return int(handle.json_value())


class SameDocument:
    """Proves a page never reloads: a marker on `window` that a navigation would wipe, and a
    count of the main frame's navigations. Also records the status badge after every live
    update (htmx fires `htmx:afterSwap` on the live region each time it swaps a fresh one in)."""

    def __init__(self, page: Page):
        self.page = page
        self.navigations: list[str] = []
        page.evaluate(
            """() => {
                 window.__sameDocument = 'still here';
                 window.__statuses = [];
                 document.addEventListener('htmx:afterSwap', (event) => {
                   if (event.target.id !== 'run-live') return;
                   const badge = document.querySelector('#run-live .badge');
                   window.__statuses.push(badge ? badge.textContent.trim() : '');
                 });
               }"""
        )
        page.on("framenavigated", self._navigated)

    def _navigated(self, frame) -> None:
        if frame == self.page.main_frame:
            self.navigations.append(frame.url)

    def statuses_seen(self) -> list[str]:
        """Asserts the page is still the same document; returns the statuses it showed."""
        assert self.page.evaluate("window.__sameDocument") == "still here", "the page reloaded"
        assert self.navigations == [], f"the page navigated: {self.navigations}"
        return self.page.evaluate("window.__statuses")


def launch_run(page: Page, *, task: str, max_steps: int, engine: str | None = None) -> None:
    """Fill the launch form (already open) and submit it."""
    page.get_by_label("Machine", exact=True).fill("vm-linux-1")
    page.get_by_label("Task", exact=True).fill(task)
    if engine:
        page.get_by_role("radio", name=re.compile(rf"^{engine} ")).check()
    page.get_by_label("Maximum steps").fill(str(max_steps))
    page.get_by_role("button", name="Launch run").click()


AUDIT_SCRIPT = Path(__file__).with_name("audit.js").read_text()


def accessibility_problems(page: Page) -> list[str]:
    """audit.js on the page as it is now: labels, names, landmarks, headings, ARIA, contrast."""
    return page.evaluate(AUDIT_SCRIPT)


def focus_stops(page: Page, limit: int = 80) -> list[dict]:
    """Tab through the page from the top; for each stop, what has focus and how it shows it."""
    page.evaluate(
        "() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }"
    )
    stops: list[dict] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        stop = page.evaluate(
            """() => {
                 const el = document.activeElement;
                 if (!el || el === document.body) return null;
                 const style = getComputedStyle(el);
                 const box = el.getBoundingClientRect();
                 // The ring's contrast with what is around the element (WCAG 1.4.11: 3:1).
                 const rgb = (v) => (v.match(/[0-9.]+/g) || []).map(Number);
                 const lum = (c) => c.slice(0, 3).map((v) => { v /= 255;
                   return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); })
                   .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
                 let around = [255, 255, 255];
                 for (let e = el.parentElement; e; e = e.parentElement) {
                   const bg = rgb(getComputedStyle(e).backgroundColor);
                   if (bg.length >= 3 && (bg.length === 3 || bg[3] > 0.5)) { around = bg; break; }
                 }
                 const [hi, lo] = [lum(rgb(style.outlineColor)), lum(around)].sort((a, b) => b - a);
                 return {
                   ringContrast: Math.round(((hi + 0.05) / (lo + 0.05)) * 100) / 100,
                   what: `<${el.tagName.toLowerCase()}> ${(el.getAttribute('aria-label') || el.textContent || el.name || el.id || '').trim().replace(/\\s+/g, ' ').slice(0, 40)}`,
                   outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2,
                   onScreen: box.width > 2 && box.height > 2 && box.right > 0 && box.bottom > 0
                     && box.left < innerWidth && box.top < innerHeight,
                   key: el.outerHTML.slice(0, 200),
                   // Chromium's date input also stops on its calendar button, inside the
                   // browser's own shadow tree, which draws its own ring: not ours to judge.
                   browserPart: !el.matches(':focus'),
                 };
               }"""
        )
        if stop is None or (stops and stop["key"] == stops[0]["key"]):
            break
        if not stop.pop("browserPart"):
            stops.append(stop)
    return stops
