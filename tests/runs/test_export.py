"""The runs list as CSV: the list's filters, streamed, one team's runs only, and a task that
looks like a formula stays text."""

import csv
import io

import pytest
from django.urls import reverse

from runs import services
from runs.models import Run, RunStatus
from runs.services import LaunchRequest
from tests.factories import top_up

pytestmark = pytest.mark.django_db


def _launch(team, user, task, **fields):
    run, _ = services.run_launch(
        team=team,
        user=user,
        request=LaunchRequest(machine_id="vm-linux-1", task=task, max_steps=4),
    )
    if fields:
        Run.objects.filter(pk=run.pk).update(**fields)
    return run


@pytest.fixture
def runs(team, other_team, make_member):
    top_up(team, 5000)
    top_up(other_team, 5000)
    bob = make_member(team, "member", username="bob")
    carol = make_member(other_team, "member", username="carol")
    ok = _launch(team, bob, "Export the leads", status=RunStatus.SUCCEEDED, steps_completed=3)
    bad = _launch(team, bob, '=HYPERLINK("http://evil")', status=RunStatus.FAILED, error="boom")
    theirs = _launch(other_team, carol, "Their secret task")
    return {"bob": bob, "carol": carol, "ok": ok, "bad": bad, "theirs": theirs}


def _rows(response):
    assert response.status_code == 200
    assert response.streaming  # streamed, a row at a time
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_export_holds_the_teams_runs_only(runs, team, client_for):
    rows = _rows(client_for(runs["bob"]).get(reverse("run_export", args=[team.slug])))

    assert {row["id"] for row in rows} == {str(runs["ok"].pk), str(runs["bad"].pk)}
    assert "Their secret task" not in str(rows)
    assert set(rows[0]) >= {
        "task",
        "status",
        "launched_by",
        "created_at",
        "ended_at",
        "duration_seconds",
        "steps_completed",
        "charged_cents",
        "failure_reason",
    }


def test_export_applies_the_lists_filters(runs, team, client_for):
    url = reverse("run_export", args=[team.slug])

    failed = _rows(client_for(runs["bob"]).get(url, {"status": "failed"}))
    searched = _rows(client_for(runs["bob"]).get(url, {"q": "leads"}))

    assert [(r["id"], r["failure_reason"]) for r in failed] == [(str(runs["bad"].pk), "boom")]
    assert [r["id"] for r in searched] == [str(runs["ok"].pk)]


def test_a_task_that_looks_like_a_formula_stays_text(runs, team, client_for):
    rows = _rows(client_for(runs["bob"]).get(reverse("run_export", args=[team.slug])))

    tasks = {row["task"] for row in rows}
    assert '\'=HYPERLINK("http://evil")' in tasks


def test_bad_filters_are_refused_not_left_out(runs, team, client_for):
    response = client_for(runs["bob"]).get(
        reverse("run_export", args=[team.slug]), {"since": "2026-05-02", "until": "2026-05-01"}
    )

    assert response.status_code == 400
    assert "not exported" in response.content.decode()


def test_another_team_gets_404(runs, team, client_for):
    response = client_for(runs["carol"]).get(reverse("run_export", args=[team.slug]))

    assert response.status_code == 404


def test_billing_admin_may_export(runs, team, client_for, billing_admin):
    rows = _rows(client_for(billing_admin).get(reverse("run_export", args=[team.slug])))

    assert len(rows) == 2


def test_the_list_links_the_export_with_its_filters(runs, team, client_for):
    page = client_for(runs["bob"]).get(reverse("run_list", args=[team.slug]), {"status": "failed"})

    assert f"/teams/{team.slug}/runs/export.csv?status=failed" in page.content.decode()
