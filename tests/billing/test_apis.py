"""The wallet, ledger and top-up endpoints: what each answers, its pages and its validation."""

import pytest

from billing.models import Transfer
from tests.api_world import error_of
from tests.factories import top_up as fund

pytestmark = pytest.mark.django_db


def test_wallet_and_ledger(world, bob):
    wallet = bob.get("/api/v1/teams/research/wallet/").json()
    ledger = bob.get("/api/v1/teams/research/ledger/").json()

    assert wallet == {
        "team": "research",
        "available_cents": 4950,
        "held_cents": 50,
        "spent_cents": 0,
    }
    assert [t["kind"] for t in ledger["results"]] == ["hold", "top_up"]
    hold = ledger["results"][0]
    assert hold["run"] == str(world.run.pk) and hold["amount_cents"] == 50
    assert ledger["results"][1]["run"] is None
    assert set(hold) == {"id", "kind", "amount_cents", "run", "reference", "created_at"}


def test_ledger_pages_by_cursor(world, bob):
    for n in range(5):
        fund(world.team, 100 + n)

    seen, url = [], "/api/v1/teams/research/ledger/?limit=3"
    while url:
        page = bob.get(url).json()
        seen += [t["id"] for t in page["results"]]
        url = page["next"]

    assert seen == list(
        Transfer.objects.filter(team=world.team).order_by("-id").values_list("id", flat=True)
    )
    for bad in (
        "cursor=abc",
        "cursor=0",
        "cursor=" + "9" * 30,
        "cursor=-5",
        "cursor=²",
        "cursor=٣",
    ):
        error = error_of(bob.get(f"/api/v1/teams/research/ledger/?{bad}"), 400)
        assert "cursor" in error["fields"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount_cents": 0, "reference": "INV"}, "amount_cents"),
        ({"amount_cents": 1_000_001, "reference": "INV"}, "amount_cents"),
        ({"amount_cents": "100", "reference": "INV"}, "amount_cents"),
        ({"amount_cents": 10**40, "reference": "INV"}, "amount_cents"),
        ({"amount_cents": 100}, "reference"),
        ({"amount_cents": 100, "reference": "  "}, "reference"),
        ({"amount_cents": 100, "reference": "r" * 256}, "reference"),
        ({"amount_cents": 100, "reference": "INV", "currency": "USD"}, "currency"),
    ],
)
def test_top_up_validation(body, field, world, api_client_for):
    response = api_client_for(world.billing_admin).post("/api/v1/teams/research/topups/", body)

    error = error_of(response, 400)
    assert field in error["fields"]
    assert Transfer.objects.filter(kind="top_up").count() == 2


def test_top_up_answers_the_transfer(world, api_client_for):
    client = api_client_for(world.billing_admin)

    response = client.post("/api/v1/teams/ops/topups/", {"amount_cents": 1234, "reference": "PO-7"})

    assert response.status_code == 201
    transfer = response.json()
    assert (transfer["kind"], transfer["amount_cents"], transfer["reference"]) == (
        "top_up",
        1234,
        "PO-7",
    )
    assert transfer["run"] is None
    assert client.get("/api/v1/teams/ops/wallet/").json()["available_cents"] == 2234
    assert Transfer.objects.get(pk=transfer["id"]).caused_by == "user:treasurer"
