"""Every endpoint, called by every kind of caller: the status and envelope code each gets, and
that a refused call changes nothing."""

import pytest

from billing.models import Hold, Transfer
from portal.core.models import IdempotentRequest
from portal.core.services import api_token_create, api_token_revoke
from runs.models import Run
from tests.api_world import LAUNCH_BODY, make_world

pytestmark = pytest.mark.django_db

TOP_UP_BODY = {"amount_cents": 2500, "reference": "INV-2026-001"}

# name: (method, path, body, who may: "anyone", "reader", "member" or "billing")
ENDPOINTS = {
    "teams": ("get", "/api/v1/teams/", None, "anyone"),
    "runs_list": ("get", "/api/v1/teams/{team}/runs/", None, "reader"),
    "runs_launch": ("post", "/api/v1/teams/{team}/runs/", LAUNCH_BODY, "member"),
    "run": ("get", "/api/v1/runs/{run}/", None, "reader"),
    "run_cancel": ("post", "/api/v1/runs/{run}/cancel/", None, "member"),
    "run_resume": ("post", "/api/v1/runs/{run}/resume/", {"note": "Solved it"}, "member"),
    "run_events": ("get", "/api/v1/runs/{run}/events/", None, "reader"),
    "wallet": ("get", "/api/v1/teams/{team}/wallet/", None, "wallet"),
    "ledger": ("get", "/api/v1/teams/{team}/ledger/", None, "wallet"),
    "topups": ("post", "/api/v1/teams/{team}/topups/", TOP_UP_BODY, "billing"),
}

SUCCESS = {"get": 200, "runs_launch": 201, "run_cancel": 202, "run_resume": 202, "topups": 201}

RUN_FIELDS = {
    "id",
    "team",
    "status",
    "machine_id",
    "task",
    "cua_version",
    "max_steps",
    "deadline_seconds",
    "on_awaiting_human",
    "steps_completed",
    "held_cents",
    "charged_cents",
    "upstream_id",
    "created_by",
    "created_at",
    "finished_at",
    "error",
    "schedule",
    "decided_by",
    "decided_at",
    "decision_reason",
    # Contract, second part: when the money is final, and what the hold still reserves.
    "settled_at",
    "hold_remaining_cents",
    # Issue 12: a run settled without Coasty's figures says so.
    "lost_upstream_at",
}
PAGE = {"results", "next"}
SHAPES = {
    "teams": PAGE,
    "runs_list": PAGE,
    "runs_launch": RUN_FIELDS,
    "run": RUN_FIELDS,
    "run_cancel": RUN_FIELDS,
    "run_resume": RUN_FIELDS,
    "run_events": PAGE,
    "wallet": {"team", "available_cents", "held_cents", "spent_cents"},
    "ledger": PAGE,
    "topups": {"id", "kind", "amount_cents", "run", "reference", "created_at"},
}

CALLERS = ["member", "manager", "viewer", "outsider", "billing_admin", "anonymous", "revoked"]


def expected(caller: str, name: str) -> tuple[int, str | None]:
    who = ENDPOINTS[name][3]
    ok = (SUCCESS.get(name) or SUCCESS["get"], None)
    if caller in ("anonymous", "revoked"):
        return 401, "UNAUTHENTICATED"
    if who == "anyone":
        return ok
    in_team = caller in ("member", "manager", "viewer")
    if who == "reader":
        return ok if in_team else (404, "NOT_FOUND")
    if who == "member":
        if caller == "viewer":
            return 403, "PERMISSION_DENIED"
        return ok if in_team else (404, "NOT_FOUND")
    if who == "wallet":
        return ok if in_team or caller == "billing_admin" else (404, "NOT_FOUND")
    # billing: billing admins only; a member of the team is told why, anyone else sees no team
    if caller == "billing_admin":
        return ok
    return (403, "PERMISSION_DENIED") if in_team else (404, "NOT_FOUND")


def snapshot():
    return (
        list(Run.objects.order_by("pk").values_list("pk", "status", "pending_action")),
        Transfer.objects.count(),
        Hold.objects.count(),
        IdempotentRequest.objects.count(),
    )


@pytest.mark.parametrize("name", list(ENDPOINTS))
@pytest.mark.parametrize("caller", CALLERS)
def test_every_endpoint_for_every_caller(caller, name, api_client_for):
    # given the organisation and a client for the caller
    world = make_world()
    if caller == "anonymous":
        client = api_client_for(None)
    elif caller == "revoked":
        row, token = api_token_create(user=world.member, name="old laptop")
        api_token_revoke(token=row)
        client = api_client_for(token=token)
    else:
        client = api_client_for(getattr(world, caller))
    method, path, body, _ = ENDPOINTS[name]
    url = path.format(team=world.team.slug, run=world.run.pk)
    before = snapshot()

    # when they call the endpoint (with an Idempotency-Key where the endpoint takes one)
    headers = (
        {"HTTP_IDEMPOTENCY_KEY": f"matrix-{caller}"} if name in ("runs_launch", "topups") else {}
    )
    response = (
        getattr(client, method)(url, body, **headers)
        if body
        else getattr(client, method)(url, **headers)
    )

    # then the answer is the one the contract gives this caller
    status, code = expected(caller, name)
    assert response.status_code == status, response.content
    if code is None:
        assert set(response.json()) == SHAPES[name]
    else:
        assert response.json()["error"]["code"] == code
        assert set(response.json()["error"]) <= {"code", "message", "fields"}
        assert response.json()["error"]["message"]
        assert snapshot() == before, "a refused call changed something"
    if status == 401:
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_outsider_sees_only_their_own_teams(api_client_for):
    world = make_world()

    body = api_client_for(world.outsider).get("/api/v1/teams/").json()

    assert [t["slug"] for t in body["results"]] == ["ops"]
    assert body["results"][0] == {
        "slug": "ops",
        "name": "Ops",
        "role": "manager",
        "available_cents": 1000,
        "held_cents": 0,
        "spent_cents": 0,
    }
    assert body["next"] is None


def test_billing_admin_without_a_team_lists_none_but_reads_any_wallet(api_client_for):
    world = make_world()
    client = api_client_for(world.billing_admin)

    assert client.get("/api/v1/teams/").json() == {"results": [], "next": None}
    wallet = client.get("/api/v1/teams/ops/wallet/").json()

    assert wallet == {"team": "ops", "available_cents": 1000, "held_cents": 0, "spent_cents": 0}


def test_unknown_team_and_run_are_404_for_everyone(api_client_for):
    world = make_world()
    client = api_client_for(world.billing_admin)

    for url in (
        "/api/v1/teams/nope/wallet/",
        "/api/v1/teams/nope/ledger/",
        "/api/v1/teams/nope/runs/",
        "/api/v1/runs/00000000-0000-0000-0000-000000000000/",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.json()["error"]["code"] == "NOT_FOUND"
    response = client.post("/api/v1/teams/nope/topups/", TOP_UP_BODY)
    assert response.status_code == 404
