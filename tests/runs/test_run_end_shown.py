"""Duration and failure reason in the lists and on the run page, and a run that ends while its
page is open shows its final state (money, times, messages) without a reload."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.services import hold_release
from portal.core.templatetags.portal_tags import duration
from runs import services
from runs.models import Run, RunStatus
from runs.services import LaunchRequest
from tests.factories import top_up

pytestmark = pytest.mark.django_db


@pytest.fixture
def ended(team, make_member):
    top_up(team, 5000)
    bob = make_member(team, "member", username="bob")
    run, _ = services.run_launch(
        team=team,
        user=bob,
        request=LaunchRequest(machine_id="vm-linux-1", task="Export leads", max_steps=10),
    )
    now = timezone.now()
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.TIMED_OUT,
        created_at=now - dt.timedelta(seconds=245),
        finished_at=now - dt.timedelta(minutes=2),
        settled_at=now - dt.timedelta(minutes=2),
    )
    # A settled run's hold is closed (check_ledger holds runs to it).
    hold_release(reference=run.hold_reference, caused_by="test")
    run.refresh_from_db()
    return run, bob


def test_lists_show_duration_and_why_it_ended(ended, client_for):
    run, bob = ended
    client = client_for(bob)

    runs_list = client.get(reverse("run_list", args=[run.team.slug])).content.decode()
    dashboard = client.get(reverse("team_dashboard", args=[run.team.slug])).content.decode()

    for page in (runs_list, dashboard):
        assert "2 min 5 s" in page  # launch to end
        assert "It ran past its deadline." in page


def test_the_live_fragment_of_an_ended_run_completes_the_page(ended, client_for):
    run, bob = ended

    fragment = client_for(bob).get(reverse("run_live", args=[run.pk])).content.decode()

    # final: no more polling; the money is settled
    assert "hx-trigger" not in fragment
    assert "Settled: $0.50 returned to the wallet." in fragment
    # the details' times and the "Run launched" message, outside the region, are replaced
    assert 'id="run-times" hx-swap-oob="true"' in fragment
    assert "<dt>Ended</dt>" in fragment
    assert 'id="messages" hx-swap-oob="delete"' in fragment
    assert "Why it timed out:" in fragment


def test_a_live_runs_fragment_keeps_the_messages(team, make_member, client_for):
    top_up(team, 5000)
    bob = make_member(team, "member", username="bob")
    run, _ = services.run_launch(
        team=team,
        user=bob,
        request=LaunchRequest(machine_id="vm-linux-1", task="Export leads", max_steps=10),
    )

    fragment = client_for(bob).get(reverse("run_live", args=[run.pk])).content.decode()

    assert "hx-trigger" in fragment
    assert 'hx-swap-oob="delete"' not in fragment
    assert "so far" in fragment


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (0, "0 s"),
        (59, "59 s"),
        (60, "1 min"),
        (125, "2 min 5 s"),
        (7260, "2 h 1 min"),
        (3 * 86400 + 3600, "3 d 1 h"),
    ],
)
def test_durations_read_for_people(seconds, text):
    assert duration(seconds) == text
