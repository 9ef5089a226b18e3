"""What each endpoint answers, its filters and pages, its validation, and the error envelope
for everything that can go wrong (malformed JSON, wrong types, unknown fields and URLs, methods,
media types, throttling, crashes): never a 500 for bad input, never a traceback."""

import json
import logging

import pytest
from django.test import RequestFactory

from billing.models import Transfer
from portal.core.rest.errors import server_error
from runs.models import Run, RunEvent, RunStatus
from tests.api_world import LAUNCH_BODY, awaiting_human, launch, make_world
from tests.factories import top_up as fund

pytestmark = pytest.mark.django_db

RUNS_URL = "/api/v1/teams/research/runs/"


@pytest.fixture
def world():
    return make_world()


@pytest.fixture
def bob(world, api_client_for):
    """A client for the research team's member."""
    return api_client_for(world.member)


def error_of(response, status):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    return body["error"]


# --- Runs ---------------------------------------------------------------------------------------


def test_launch_answers_the_new_run(world, bob):
    response = bob.post(RUNS_URL, {**LAUNCH_BODY, "cua_version": "v1", "deadline_seconds": 600})

    assert response.status_code == 201
    run = response.json()
    assert run["status"] == "pending"
    assert run["team"] == "research"
    assert run["created_by"] == world.member.username
    assert (run["max_steps"], run["held_cents"], run["charged_cents"]) == (10, 80, 0)
    assert run["deadline_seconds"] == 600
    assert run["upstream_id"] is None and run["finished_at"] is None and run["error"] is None
    assert response["Location"] == f"/api/v1/runs/{run['id']}/"
    assert Run.objects.get(pk=run["id"]).created_by == world.member


def test_launch_applies_upstreams_defaults(bob):
    run = bob.post(RUNS_URL, {"machine_id": "vm-1", "task": "Do it"}).json()

    assert (run["cua_version"], run["max_steps"], run["on_awaiting_human"]) == ("v5", 50, "pause")
    assert run["deadline_seconds"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**LAUNCH_BODY, "webhook_url": "https://x"}, "webhook_url"),
        ({**LAUNCH_BODY, "max_steps": "10"}, "max_steps"),
        ({**LAUNCH_BODY, "max_steps": True}, "max_steps"),
        ({**LAUNCH_BODY, "max_steps": 10.5}, "max_steps"),
        ({**LAUNCH_BODY, "max_steps": 10**30}, "max_steps"),
        ({**LAUNCH_BODY, "max_steps": 0}, "max_steps"),
        ({**LAUNCH_BODY, "max_steps": 1001}, "max_steps"),
        ({**LAUNCH_BODY, "deadline_seconds": 86_401}, "deadline_seconds"),
        ({**LAUNCH_BODY, "cua_version": "v2"}, "cua_version"),
        ({**LAUNCH_BODY, "cua_version": 5}, "cua_version"),
        ({**LAUNCH_BODY, "on_awaiting_human": "ignore"}, "on_awaiting_human"),
        ({**LAUNCH_BODY, "task": "   "}, "task"),
        ({**LAUNCH_BODY, "task": "x" * 16_001}, "task"),
        ({**LAUNCH_BODY, "task": 42}, "task"),
        ({**LAUNCH_BODY, "task": "nul \x00 byte"}, "task"),
        ({**LAUNCH_BODY, "machine_id": "m" * 129}, "machine_id"),
        ({**LAUNCH_BODY, "system_prompt": "s" * 32_001}, "system_prompt"),
        ({"task": "no machine"}, "machine_id"),
        ([LAUNCH_BODY], "non_field_errors"),
        ("just a string", "non_field_errors"),
    ],
)
def test_launch_validation_is_400_with_fields(body, field, bob):
    response = bob.post(RUNS_URL, body)

    error = error_of(response, 400)
    assert error["code"] == "VALIDATION_ERROR"
    assert field in error["fields"]
    assert Run.objects.count() == 1  # the world's run only


@pytest.mark.parametrize(
    "raw",
    [
        b'{"machine_id": "vm-1", "task": ',
        b"\xff\xfe not utf-8",
        b'{"machine_id": "vm-1", "task": "t", "max_steps": 1e400}',
        b'{"machine_id": "vm-1", "task": "t", "max_steps": ' + b"9" * 5000 + b"}",
        b'{"machine_id": "vm-1", "task": "t", "max_steps": NaN}',
        b'{"machine_id": "vm-1", "task": "\\ud800"}',
        b"null",
        b"[" * 50_000 + b"]" * 50_000,
        b'{"task": ' * 50_000 + b"1" + b"}" * 50_000,
    ],
)
def test_malformed_bodies_are_400_never_500(raw, bob):
    response = bob.generic("POST", RUNS_URL, raw, content_type="application/json")

    assert error_of(response, 400)["code"] == "VALIDATION_ERROR"


def test_json_nested_too_deep_to_parse_is_400_and_reserves_no_key(bob):
    from portal.core.models import IdempotentRequest

    # given a body nested deeper than the JSON parser can follow
    raw = b"[" * 50_000 + b"]" * 50_000

    # when it is posted with an Idempotency-Key
    response = bob.generic(
        "POST", RUNS_URL, raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="deep"
    )

    # then it is refused as malformed JSON, and the key is not taken
    error = error_of(response, 400)
    assert error["code"] == "VALIDATION_ERROR"
    assert "JSON" in error["message"]
    assert not IdempotentRequest.objects.exists()


def test_wrong_media_type_is_415(bob):
    response = bob.post(RUNS_URL, LAUNCH_BODY, format="multipart")

    assert error_of(response, 415)["code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_insufficient_funds_is_402_with_the_figures(world, api_client_for):
    # given the research wallet with less than a 1000-step run needs (5000 cents)
    client = api_client_for(world.member)
    available = client.get("/api/v1/teams/research/wallet/").json()["available_cents"]

    response = client.post(RUNS_URL, {**LAUNCH_BODY, "max_steps": 1000})

    error = error_of(response, 402)
    assert error["code"] == "INSUFFICIENT_FUNDS"
    assert "5000 cents" in error["message"] and f"{available} cents" in error["message"]
    assert Run.objects.count() == 1


def test_list_filters_by_status_and_pages_by_cursor(world, bob):
    # given six more runs, two of them finished (and one of another team's, never listed)
    runs = [launch(world.team, world.member, task=f"task {n}") for n in range(6)]
    launch(world.other_team, world.outsider, task="an ops run")
    Run.objects.filter(pk__in=[runs[0].pk, runs[1].pk]).update(status=RunStatus.SUCCEEDED)

    # when the whole list is read two at a time
    seen, url = [], RUNS_URL + "?limit=2"
    while url:
        page = bob.get(url).json()
        assert len(page["results"]) <= 2
        seen += [r["id"] for r in page["results"]]
        url = page["next"]
        assert url is None or url.startswith("http://testserver/api/v1/teams/research/runs/?")

    # then every run came once, newest first
    expected = list(
        Run.objects.filter(team=world.team)
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)
    )
    assert len(expected) == 7
    assert seen == [str(pk) for pk in expected]
    succeeded = bob.get(RUNS_URL + "?status=succeeded").json()["results"]
    assert {r["id"] for r in succeeded} == {str(runs[0].pk), str(runs[1].pk)}
    live = bob.get(RUNS_URL + "?status=live").json()["results"]
    assert len(live) == 5
    # filters survive in `next`
    page = bob.get(RUNS_URL + "?status=pending&limit=1").json()
    assert "status=pending" in page["next"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=done", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=MjAyNi0xMS0yOFQxODo1MTowMHxub3QtYS11dWlk", "cursor"),
        (
            "cursor=MDAwMS0wMS0wMVQwMDowMDowMCswNTowMHwwYjVmMGM1ZS0zYzFhLTRmNGUtOWE1MS0yZjZhM2IxYzlkN2U=",
            "cursor",
        ),  # year 1, east of UTC
        (
            "cursor=MjAyNi0xMS0yOFQxMDowMDowMHwwYjVmMGM1ZS0zYzFhLTRmNGUtOWE1MS0yZjZhM2IxYzlkN2U=",
            "cursor",
        ),  # no zone
    ],
)
def test_list_query_errors_are_400(query, field, bob):
    error = error_of(bob.get(f"{RUNS_URL}?{query}"), 400)

    assert error["code"] == "VALIDATION_ERROR"
    assert field in error["fields"]


def test_one_run_with_steps_charges_and_hold(world, bob):
    Run.objects.filter(pk=world.run.pk).update(steps_completed=2, error="")

    run = bob.get(f"/api/v1/runs/{world.run.pk}/").json()

    assert run["id"] == str(world.run.pk)
    assert run["status"] == "awaiting_human"
    assert run["steps_completed"] == 2
    assert run["held_cents"] == 50
    assert run["upstream_id"] == world.run.upstream_id


def test_cancel_is_accepted_once_and_refused_after_the_end(world, bob):
    url = f"/api/v1/runs/{world.run.pk}/cancel/"

    first, second = bob.post(url), bob.post(url)

    assert (first.status_code, second.status_code) == (202, 202)
    assert Run.objects.get(pk=world.run.pk).pending_action == "cancel"
    Run.objects.filter(pk=world.run.pk).update(status=RunStatus.CANCELLED)
    error = error_of(bob.post(url), 409)
    assert error["code"] == "INVALID_STATE"
    assert "ended" in error["message"]


def test_resume_records_the_note_and_refuses_a_run_not_waiting(world, bob):
    url = f"/api/v1/runs/{world.run.pk}/resume/"

    assert error_of(bob.post(url, {"note": "n" * 2001}), 400)["fields"] == {
        "note": ["Ensure this field has no more than 2000 characters."]
    }
    assert "extra" in error_of(bob.post(url, {"note": "x", "extra": 1}), 400)["fields"]
    response = bob.post(url, {"note": "Solved the captcha"})

    assert response.status_code == 202
    run = Run.objects.get(pk=world.run.pk)
    assert (run.pending_action, run.resume_note) == ("resume", "Solved the captcha")
    other = launch(world.team, world.member)
    assert error_of(bob.post(f"/api/v1/runs/{other.pk}/resume/"), 409)["code"] == "INVALID_STATE"


def test_resume_without_a_body_or_with_a_null_note(world, bob):
    assert bob.post(f"/api/v1/runs/{world.run.pk}/resume/").status_code == 202
    second = awaiting_human(launch(world.team, world.member))
    assert bob.post(f"/api/v1/runs/{second.pk}/resume/", {"note": None}).status_code == 202


def test_events_after_a_seq_and_paged(world, bob):
    for seq in range(4, 8):
        RunEvent.objects.create(run=world.run, seq=seq, type="text", data={"n": seq})
    url = f"/api/v1/runs/{world.run.pk}/events/"

    after = bob.get(url + "?after=5").json()
    first_page = bob.get(url + "?limit=3").json()
    second_page = bob.get(first_page["next"]).json()

    assert [e["seq"] for e in after["results"]] == [6, 7]
    assert after["next"] is None
    assert [e["seq"] for e in first_page["results"]] == [1, 2, 3]
    assert [e["seq"] for e in second_page["results"]] == [4, 5, 6]
    assert set(after["results"][0]) == {"seq", "type", "data", "created_at"}
    assert after["results"][0]["data"] == {"n": 6}
    for bad in ("after=-1", "after=x", "limit=501"):
        assert error_of(bob.get(f"{url}?{bad}"), 400)["code"] == "VALIDATION_ERROR"


# --- Wallets ------------------------------------------------------------------------------------


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


# --- The envelope everywhere ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nothing/",
        "/api/v2/teams/",
        "/api/v1/teams",
        "/api/v1/runs/not-a-uuid/",
        "/api/v1/runs/12345678-1234-1234-1234-1234567890ab/nope/",
        "/api/v1/teams/has%20space/runs/",
        "/api/",
    ],
)
def test_unknown_api_urls_are_404_envelopes(path, bob, api_client_for):
    for client in (bob, api_client_for(None)):
        error = error_of(client.get(path), 404)
        assert error["code"] == "NOT_FOUND"
    assert error_of(bob.post(path, {}), 404)["code"] == "NOT_FOUND"


def test_wrong_method_is_405(bob):
    response = bob.delete("/api/v1/teams/")

    assert error_of(response, 405)["code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in response["Allow"]
    assert error_of(bob.put(RUNS_URL, {}), 405)["code"] == "METHOD_NOT_ALLOWED"


def test_json_whatever_the_accept_header(bob):
    response = bob.get("/api/v1/teams/", HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


def test_a_crash_is_500_with_a_request_id_and_no_traceback(bob, monkeypatch, caplog):
    import portal.site.apis

    def boom(*args, **kwargs):
        raise RuntimeError("secret detail from deep inside")

    monkeypatch.setattr(portal.site.apis, "memberships_for_user", boom)

    with caplog.at_level(logging.ERROR, logger="portal.api"):
        response = bob.get("/api/v1/teams/")

    error = error_of(response, 500)
    assert error["code"] == "INTERNAL_ERROR"
    assert error["request_id"].startswith("req_")
    assert error["request_id"] in error["message"]
    assert "secret detail" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    assert error["request_id"] in caplog.text and "secret detail" in caplog.text


def test_handler500_answers_json_under_api_and_html_elsewhere(db):
    api = server_error(RequestFactory().get("/api/v1/teams/"))
    page = server_error(RequestFactory().get("/teams/"))

    assert api.status_code == page.status_code == 500
    assert json.loads(api.content)["error"]["code"] == "INTERNAL_ERROR"
    assert page["Content-Type"].startswith("text/html")


def test_throttled_per_token_with_retry_after(world, api_client_for, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_read": "3/min", "api_write": "1/min"},
    }
    client, other = api_client_for(world.member), api_client_for(world.member)

    reads = [client.get("/api/v1/teams/").status_code for _ in range(4)]
    write = client.post(f"/api/v1/runs/{world.run.pk}/cancel/")
    second_write = client.post(f"/api/v1/runs/{world.run.pk}/cancel/")

    assert reads == [200, 200, 200, 429]
    assert write.status_code == 202  # writes have a budget of their own
    error = error_of(second_write, 429)
    assert error["code"] == "THROTTLED"
    assert 1 <= int(second_write["Retry-After"]) <= 60
    assert other.get("/api/v1/teams/").status_code == 200  # another token, another budget


def test_viewer_refusal_says_which_role_is_needed(world, api_client_for):
    response = api_client_for(world.viewer).post(RUNS_URL, LAUNCH_BODY)

    error = error_of(response, 403)
    assert error["code"] == "PERMISSION_DENIED"
    assert "member role" in error["message"]


def test_a_member_of_the_team_may_not_top_up(world, api_client_for):
    manager = api_client_for(world.manager)

    error = error_of(manager.post("/api/v1/teams/research/topups/", {"amount_cents": 1}), 403)

    assert "billing admins" in error["message"]


# --- The description ----------------------------------------------------------------------------


def test_schema_documents_auth_idempotency_and_errors(client):
    response = client.get("/api/schema/?format=json")

    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "cpt_…",
        "description": schema["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    launch_op = schema["paths"]["/api/v1/teams/{slug}/runs/"]["post"]
    assert "Idempotency-Key" in {p["name"] for p in launch_op["parameters"]}
    assert "Idempotent-Replayed" in launch_op["responses"]["201"]["headers"]
    assert {"400", "401", "402", "403", "404", "409", "415", "422", "429"} <= set(
        launch_op["responses"]
    )
    envelope = schema["components"]["schemas"]["ErrorEnvelope"]
    assert envelope["required"] == ["error"]
    assert set(schema["paths"]) == {
        "/api/v1/teams/",
        "/api/v1/teams/{slug}/runs/",
        "/api/v1/teams/{slug}/wallet/",
        "/api/v1/teams/{slug}/ledger/",
        "/api/v1/teams/{slug}/topups/",
        "/api/v1/runs/{run_id}/",
        "/api/v1/runs/{run_id}/cancel/",
        "/api/v1/runs/{run_id}/resume/",
        "/api/v1/runs/{run_id}/events/",
    }


def test_docs_page_is_served_locally(client):
    page = client.get("/api/docs/").content.decode()

    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "cdn." not in page and "jsdelivr" not in page
    assert "/api/schema/" in page
