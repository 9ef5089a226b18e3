"""Cross-team isolation of what lists contain: each team's runs, events and money show on its own
pages, API answers and CSV, and never on another team's. (Who may open which page is the role
matrices' business; this is about the rows inside a page every member may open.)"""

import csv
import io
from dataclasses import dataclass

import pytest
from django.utils import timezone

from billing import services as billing
from billing.models import Transfer
from portal.teams.models import Role
from runs import services
from runs.models import Run, RunEvent, RunStatus
from runs.services import IncomingEvent, LaunchRequest
from tests.factories import MembershipFactory, TeamFactory, UserFactory, top_up

pytestmark = pytest.mark.django_db


@dataclass
class History:
    """A team with a top-up, a run waiting for a human and a finished run that was charged."""

    slug: str
    steps: int
    member: object
    top_up_reference: str
    runs: list[Run]
    transfer_ids: set[int]

    @property
    def tasks(self) -> list[str]:
        return [run.task for run in self.runs]


def team_with_history(slug: str, steps: int) -> History:
    team = TeamFactory(slug=slug, name=slug.title())
    member = UserFactory(username=f"{slug}-member")
    MembershipFactory(team=team, user=member, role=Role.MEMBER)
    reference = f"PO-{slug.upper()}-7"
    top_up(team, 5000, reference=reference)

    def launch(task: str) -> Run:
        request = LaunchRequest(machine_id="vm-linux-1", task=task, max_steps=10)
        run, _ = services.run_launch(team=team, user=member, request=request)
        Run.objects.filter(pk=run.pk).update(
            upstream_id=f"up-{run.pk.hex[:12]}", status=RunStatus.RUNNING
        )
        return run

    # a run that waits for a human, with events
    waiting = launch(f"{slug} waits for a human")
    services.events_ingest(
        run_id=waiting.pk,
        events=[
            IncomingEvent(1, "status", {"status": "running"}),
            IncomingEvent(2, "reasoning", {"text": f"{slug} thinks"}),
            IncomingEvent(3, "awaiting_human", {"reason": f"{slug} captcha"}),
        ],
    )
    # a run that ended: its steps captured from the stream, then settled
    finished = launch(f"{slug} finished its work")
    services.events_ingest(
        run_id=finished.pk,
        events=[
            IncomingEvent(1, "status", {"status": "running"}),
            *(IncomingEvent(1 + n, "step", {"step": n}) for n in range(1, steps + 1)),
            IncomingEvent(steps + 2, "done", {"status": "succeeded"}),
        ],
    )
    finished.refresh_from_db()
    billing.hold_settle(
        reference=finished.hold_reference,
        steps_completed=steps,
        step_price_cents=finished.price_cents,
        upstream_credits_charged=steps * finished.price_cents,
        upstream_test_mode=False,
        caused_by=f"run:{finished.pk}",
    )
    Run.objects.filter(pk=finished.pk).update(
        settled_at=timezone.now(), charged_cents=steps * finished.price_cents
    )
    runs = [Run.objects.get(pk=waiting.pk), Run.objects.get(pk=finished.pk)]
    assert [run.status for run in runs] == [RunStatus.AWAITING_HUMAN, RunStatus.SUCCEEDED]
    transfers = set(Transfer.objects.filter(team=team).values_list("pk", flat=True))
    return History(slug, steps, member, reference, runs, transfers)


@pytest.fixture
def histories():
    research = team_with_history("research", steps=2)
    ops = team_with_history("ops", steps=3)
    # every kind of row exists for both teams: events, top-ups, holds, captures, releases
    for history in (research, ops):
        # 3 while waiting; status, a step each, done for the finished one
        events = RunEvent.objects.filter(run__in=history.runs).count()
        assert events == 3 + 1 + history.steps + 1
        kinds = set(Transfer.objects.filter(pk__in=history.transfer_ids).values_list("kind"))
        assert {kind for (kind,) in kinds} >= {"top_up", "hold", "capture", "release"}
    return {"research": research, "ops": ops}


PAIRS = [("research", "ops"), ("ops", "research")]


def _page(client, url) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def _assert_shows_only(page: str, own: History, other: History, *, with_money: bool = False):
    for run in own.runs:
        assert f"/runs/{run.pk}/" in page
    for run in other.runs:
        assert f"/runs/{run.pk}/" not in page
        assert run.task not in page
    if with_money:
        assert own.top_up_reference in page
        assert other.top_up_reference not in page


@pytest.mark.parametrize(("own", "other"), PAIRS)
def test_the_api_runs_list_holds_the_teams_runs_only(histories, api_client_for, own, other):
    own, other = histories[own], histories[other]
    client = api_client_for(own.member)

    answer = client.get(f"/api/v1/teams/{own.slug}/runs/?limit=100").json()

    assert answer["next"] is None
    assert {run["id"] for run in answer["results"]} == {str(run.pk) for run in own.runs}
    assert {run["team"] for run in answer["results"]} == {own.slug}


@pytest.mark.parametrize(("own", "other"), PAIRS)
def test_the_api_ledger_holds_the_teams_transfers_only(histories, api_client_for, own, other):
    own, other = histories[own], histories[other]
    client = api_client_for(own.member)

    answer = client.get(f"/api/v1/teams/{own.slug}/ledger/?limit=100").json()

    assert answer["next"] is None
    assert {t["id"] for t in answer["results"]} == own.transfer_ids
    assert {t["run"] for t in answer["results"]} - {None} == {str(run.pk) for run in own.runs}
    assert other.top_up_reference not in {t["reference"] for t in answer["results"]}


@pytest.mark.parametrize(("own", "other"), PAIRS)
def test_the_runs_page_lists_the_teams_runs_only(histories, client_for, own, other):
    own, other = histories[own], histories[other]

    page = _page(client_for(own.member), f"/teams/{own.slug}/runs/")

    _assert_shows_only(page, own, other)
    assert all(task in page for task in own.tasks)


@pytest.mark.parametrize(("own", "other"), PAIRS)
def test_the_dashboard_shows_the_teams_runs_and_spend_only(histories, client_for, own, other):
    own, other = histories[own], histories[other]

    response = client_for(own.member).get(f"/teams/{own.slug}/")

    assert response.status_code == 200
    page = response.content.decode()
    _assert_shows_only(page, own, other)
    assert [run.pk for run in response.context["live_runs"]] == [own.runs[0].pk]
    assert [run.pk for run in response.context["recent_runs"]] == [own.runs[1].pk]
    assert response.context["chart"].total_cents == own.runs[1].charged_cents > 0


@pytest.mark.parametrize(("own", "other"), PAIRS)
def test_the_wallet_ledger_table_shows_the_teams_transfers_only(histories, client_for, own, other):
    own, other = histories[own], histories[other]

    page = _page(client_for(own.member), f"/teams/{own.slug}/wallet/")

    _assert_shows_only(page, own, other, with_money=True)


@pytest.mark.parametrize(("own", "other"), PAIRS)
def test_the_ledger_csv_holds_the_teams_transfers_only(histories, client_for, own, other):
    own, other = histories[own], histories[other]

    response = client_for(own.member).get(f"/teams/{own.slug}/wallet/ledger.csv")

    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert {int(row["id"]) for row in rows} == own.transfer_ids
    assert {row["run_id"] for row in rows} - {""} == {str(run.pk) for run in own.runs}
    assert own.top_up_reference in {row["reference"] for row in rows}
    assert other.top_up_reference not in {row["reference"] for row in rows}
