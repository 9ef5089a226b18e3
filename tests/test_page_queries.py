"""The pages people use most cost a fixed number of queries, however many runs and ledger rows
a team has (at most 10, the wallet 13 for its ledger grouped per run; `make bench` measures them
on 100,000 runs and 1,000,000 transfers)."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import services as billing
from portal.teams.models import Role
from runs.models import Run, RunEvent, RunStatus
from tests.factories import place_hold, top_up

pytestmark = pytest.mark.django_db

BUDGET = 10
# The wallet's ledger grouped per run takes four: the page's groups, the runs' sums, the other
# entries, the runs' names (billing.ledger_groups).
BUDGETS = {"wallet page": 13}


def add_runs(team, user, count):
    """`count` finished runs, each with its hold, two charged steps, its release and events."""
    runs = []
    for n in range(count):
        run_id = uuid.uuid4()
        run = Run.objects.create(
            id=run_id,
            team=team,
            created_by=user,
            machine_id="vm-linux-1",
            task=f"Export report {n}",
            price_cents=5,
            held_cents=50,
            charged_cents=10,
            steps_completed=2,
            idempotency_key=f"portal-run-{run_id}",
            upstream_id=f"run_{run_id.hex[:12]}",
            status=RunStatus.SUCCEEDED,
        )
        hold = place_hold(team, 50, run_id=run_id)
        for step in (1, 2):
            billing.hold_capture(reference=hold.reference, step=step, amount_cents=5, caused_by="x")
        billing.hold_release(reference=hold.reference, caused_by="x")
        RunEvent.objects.bulk_create(
            [
                RunEvent(run=run, seq=s, type="step", data={"step": s, "steps_completed": s})
                for s in (1, 2)
            ]
        )
        runs.append(run)
    return runs


def queries_for(client, url):
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured.captured_queries)


@pytest.fixture
def member_client(team, make_member, client_for):
    top_up(team, 100_000)
    user = make_member(team, Role.MEMBER)
    return user, client_for(user)


@pytest.mark.parametrize(
    "page",
    ["runs list", "run page", "run page without billing rows", "wallet page", "a run's entries"],
)
def test_a_page_costs_the_same_few_queries_for_a_small_and_a_larger_team(team, member_client, page):
    user, client = member_client
    runs = add_runs(team, user, 3)
    url = {
        "runs list": f"/teams/{team.slug}/runs/",
        "run page": f"/runs/{runs[0].pk}/",
        "run page without billing rows": f"/runs/{runs[0].pk}/?billing=hide",
        "wallet page": f"/teams/{team.slug}/wallet/",
        "a run's entries": f"/teams/{team.slug}/wallet/runs/{runs[0].pk}/",
    }[page]
    client.get(url)  # the first request may fill caches
    small = queries_for(client, url)
    # when the team has ten times the runs and ledger rows
    add_runs(team, user, 30)
    large = queries_for(client, url)
    # then the page costs exactly as many queries, within the budget
    assert small == large
    assert large <= BUDGETS.get(page, BUDGET)
