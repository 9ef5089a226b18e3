"""When the run page stops polling: not before both the money and the timeline are final."""

import datetime as dt
import json
import re
from html import unescape

import pytest
from django.templatetags.static import static
from django.utils import timezone

from billing.services import hold_release
from runs import services
from runs.models import Run, RunEvent, RunStatus
from runs.services import LaunchRequest
from tests.factories import top_up

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob_and_run(team, make_member):
    top_up(team, 5000)
    bob = make_member(team, "member", username="bob")
    request = LaunchRequest(machine_id="vm-linux-1", task="Export the leads", max_steps=10)
    run, _ = services.run_launch(team=team, user=bob, request=request)
    return bob, run


def live_region(client_for, user, run) -> tuple[str, str]:
    """The live region's opening tag, which must be there for a missing trigger to mean a thing."""
    response = client_for(user).get(f"/runs/{run.pk}/live/")
    assert response.status_code == 200
    html = response.content.decode()
    tag = re.search(r'<section id="run-live" aria-label="Live progress"[^>]*>', html)
    assert tag, html[:500]
    return html, tag[0]


def polls(tag, run) -> bool:
    """htmx fetches the region again on a timer and swaps it whole; without hx-get and
    hx-trigger nothing asks again."""
    if "hx-get" not in tag and "hx-trigger" not in tag:
        return False
    assert f'hx-get="/runs/{run.pk}/live/" hx-trigger="every 1.5s" hx-swap="outerHTML"' in tag, tag
    return True


def ended(run, *, settled_ago: dt.timedelta, events=()):
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.SUCCEEDED,
        settled_at=timezone.now() - settled_ago,
        finished_at=timezone.now() - settled_ago,
    )
    # A settled run's hold is closed (check_ledger holds runs to it).
    hold_release(reference=run.hold_reference, caused_by="test")
    for seq, kind in enumerate(events, start=1):
        RunEvent.objects.create(run=run, seq=seq, type=kind, data={"status": "succeeded"})


def test_a_live_run_keeps_polling(bob_and_run, client_for):
    bob, run = bob_and_run
    html, tag = live_region(client_for, bob, run)
    assert polls(tag, run)
    assert "Waiting for Coasty to accept it" in html


def test_a_settled_run_whose_stream_has_not_finished_keeps_polling(bob_and_run, client_for):
    # given a run settled from Coasty's figures while its last events are still on the way
    bob, run = bob_and_run
    ended(run, settled_ago=dt.timedelta(seconds=2), events=["status", "status"])

    # then the page asks again, so those events still appear on it
    html, tag = live_region(client_for, bob, run)
    assert polls(tag, run)
    assert "Settled:" in html and "2 events" in html


def test_a_settled_run_with_its_stream_done_stops_polling(bob_and_run, client_for):
    bob, run = bob_and_run
    ended(run, settled_ago=dt.timedelta(seconds=2), events=["status", "done"])
    html, tag = live_region(client_for, bob, run)
    assert not polls(tag, run) and "hx-get" not in html and "hx-trigger" not in html


def test_a_settled_run_whose_stream_never_finished_stops_after_a_minute(bob_and_run, client_for):
    bob, run = bob_and_run
    ended(run, settled_ago=dt.timedelta(seconds=61), events=["status"])
    html, tag = live_region(client_for, bob, run)
    assert not polls(tag, run) and "hx-get" not in html and "hx-trigger" not in html


def test_the_run_page_gets_htmx_from_our_static_files_with_no_inline_code(bob_and_run, client_for):
    # A Content-Security-Policy without 'unsafe-inline' scripts or 'unsafe-eval' is to come.
    bob, run = bob_and_run
    html = client_for(bob).get(f"/runs/{run.pk}/").content.decode()

    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.DOTALL)
    assert scripts == [
        (f' src="{static("django_htmx/htmx-2.min.js")}" defer', ""),
        (f' src="{static("portal/app.js")}" defer', ""),
    ]
    config = re.search(r"<meta name=\"htmx-config\" content='([^']*)'>", html)
    assert config, "htmx is not configured"
    htmx = json.loads(unescape(config[1]))
    assert htmx["includeIndicatorStyles"] is False  # it would add a <style> of its own
    assert htmx["allowEval"] is False and htmx["allowScriptTags"] is False
    assert not re.search(r"\s(data-)?hx-(on|vars)|js:", html)
    tag = re.search(r'<section id="run-live"[^>]*>', html)[0]
    assert polls(tag, run)


def test_the_run_page_says_what_is_still_held_and_when_the_money_became_final(
    bob_and_run, client_for
):
    bob, run = bob_and_run
    html, _ = live_region(client_for, bob, run)
    assert 'id="hold-remaining">$0.50<' in html and "settled-at" not in html

    ended(run, settled_ago=dt.timedelta(seconds=61), events=["status", "done"])
    html, _ = live_region(client_for, bob, run)
    assert 'id="settled-at"' in html and "Money final" in html


def test_a_run_settled_lost_upstream_says_so_on_its_page(bob_and_run, client_for):
    bob, run = bob_and_run
    ended(run, settled_ago=dt.timedelta(seconds=61), events=["done"])
    Run.objects.filter(pk=run.pk).update(lost_upstream_at=timezone.now())
    html, _ = live_region(client_for, bob, run)
    assert "Lost upstream" in html
