"""The dashboard and the runs list stay current while they are open: htmx fetches a fragment
of each every few seconds; the tab title counts the runs that wait for you."""

import re

import pytest
from django.urls import reverse

from runs import services
from runs.models import Run, RunStatus
from runs.services import LaunchRequest
from tests.factories import top_up

pytestmark = pytest.mark.django_db


def _launch(team, user, task):
    run, _ = services.run_launch(
        team=team,
        user=user,
        request=LaunchRequest(machine_id="vm-linux-1", task=task, max_steps=4),
    )
    return run


@pytest.fixture
def people(team, other_team, make_member):
    top_up(team, 5000)
    return {
        "bob": make_member(team, "member", username="bob"),
        "victor": make_member(team, "viewer", username="victor"),
        "carol": make_member(other_team, "manager", username="carol"),
    }


LISTS = [
    ("team_dashboard", "team_dashboard_live", "dashboard-live"),
    ("run_list", "run_list_live", "runs-live"),
]


@pytest.mark.parametrize(("page", "fragment", "region"), LISTS)
def test_the_page_polls_a_fragment_that_shows_what_changed(
    people, team, client_for, page, fragment, region
):
    client = client_for(people["bob"])
    # given the page is open
    html = client.get(reverse(page, args=[team.slug])).content.decode()
    tag = re.search(rf'<(section|div) id="{region}"[^>]*>', html)[0]
    assert f'hx-get="{reverse(fragment, args=[team.slug])}' in tag
    assert 'hx-trigger="every 5s"' in tag
    assert "<script>" not in html  # no inline code: a Content-Security-Policy is coming
    assert 'id="live-announcer"' in html

    # when a run is launched and pauses for a human meanwhile
    run = _launch(team, people["bob"], "Reconcile the March invoices")
    Run.objects.filter(pk=run.pk).update(status=RunStatus.AWAITING_HUMAN)

    # then the next fetch of the fragment has it, standing out, and retitles the tab
    fresh = client.get(reverse(fragment, args=[team.slug])).content.decode()
    assert re.search(rf'<(section|div) id="{region}"', fresh)
    assert "Reconcile the March invoices" in fresh
    assert 'class="attention"' in fresh
    assert "1 run waits for a human." in fresh
    assert re.search(r"<title>\(1\) [^<]*Research[^<]*</title>", fresh)


def test_the_tab_title_counts_only_runs_you_can_resume(people, team, client_for):
    run = _launch(team, people["bob"], "Pause me")
    Run.objects.filter(pk=run.pk).update(status=RunStatus.AWAITING_HUMAN)

    as_member = client_for(people["bob"]).get(reverse("run_list", args=[team.slug]))
    as_viewer = client_for(people["victor"]).get(reverse("run_list", args=[team.slug]))

    assert "<title>(1) Runs · Research" in as_member.content.decode()
    assert "<title>Runs · Research" in as_viewer.content.decode()


@pytest.mark.parametrize("fragment", ["team_dashboard_live", "run_list_live"])
def test_the_fragments_are_the_teams_own(people, team, client_for, billing_admin, fragment):
    url = reverse(fragment, args=[team.slug])

    assert client_for(people["carol"]).get(url).status_code == 404
    assert client_for(billing_admin).get(url).status_code == 200


def test_the_runs_fragment_keeps_the_lists_filters(people, team, client_for):
    _launch(team, people["bob"], "Alpha task")
    _launch(team, people["bob"], "Beta task")
    client = client_for(people["bob"])

    page = client.get(reverse("run_list", args=[team.slug]), {"q": "Beta"}).content.decode()
    fresh = client.get(reverse("run_list_live", args=[team.slug]), {"q": "Beta"}).content.decode()

    assert f'hx-get="{reverse("run_list_live", args=[team.slug])}?q=Beta"' in page
    assert "Beta task" in fresh and "Alpha task" not in fresh


def test_a_list_with_bad_filters_does_not_poll(people, team, client_for):
    html = client_for(people["bob"]).get(
        reverse("run_list", args=[team.slug]), {"since": "2026-05-02", "until": "2026-05-01"}
    )

    assert html.status_code == 400
    tag = re.search(r'<section id="runs-live"[^>]*>', html.content.decode())[0]
    assert "hx-trigger" not in tag


def test_the_dashboards_figures_say_their_window_and_count_every_status(people, team, client_for):
    # given runs that ended every way, cancelled among them
    statuses = [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.CANCELLED]
    for n, status in enumerate(statuses):
        run = _launch(team, people["bob"], f"run {n}")
        Run.objects.filter(pk=run.pk).update(status=status)

    page = client_for(people["bob"]).get(reverse("team_dashboard", args=[team.slug]))

    html = page.content.decode()
    assert "1 succeeded · 1 failed · 2 cancelled · 0 live" in html
    # "Spent this month" is captioned with the month, not with a 30-day figure
    spent = re.search(r"Spent this month</span>.*?<span class=\"hint\">([^<]*)<", html, re.S)[1]
    assert spent.startswith("since 1 ")
    assert "30 days" not in spent
