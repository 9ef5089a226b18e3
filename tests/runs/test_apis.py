"""The runs endpoints: what each answers, its filters and pages, its validation, and never a 500
for bad input (malformed or too deep JSON, wrong types, unknown fields, another media type)."""

import pytest

from runs.models import Run, RunEvent, RunStatus
from tests.api_world import LAUNCH_BODY, RUNS_URL, awaiting_human, error_of, launch

pytestmark = pytest.mark.django_db


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
    assert set(after["results"][0]) == {"seq", "type", "data", "created_at", "actor"}
    assert after["results"][0]["data"] == {"n": 6}
    for bad in ("after=-1", "after=x", "limit=501"):
        assert error_of(bob.get(f"{url}?{bad}"), 400)["code"] == "VALIDATION_ERROR"


def test_a_run_says_when_its_money_is_final_and_what_its_hold_still_holds(world, bob):
    # given a run just launched: its whole hold is reserved, its money not final
    run = bob.post(RUNS_URL, LAUNCH_BODY).json()
    assert (run["settled_at"], run["hold_remaining_cents"]) == (None, run["held_cents"])

    # when Coasty refuses it and the hold comes back
    from runs.coasty import CoastyValidationError
    from runs.services import run_mark_submit_failed

    run_mark_submit_failed(
        run_id=run["id"], error=CoastyValidationError("bad machine", status=422, code="X")
    )

    # then the API says the money is final and nothing is held; held_cents stays as launched
    again = bob.get(f"/api/v1/runs/{run['id']}/").json()
    assert again["settled_at"] is not None and again["hold_remaining_cents"] == 0
    assert again["held_cents"] == run["held_cents"]
    assert again["lost_upstream_at"] is None  # Coasty's refusal is its own account


def test_a_run_settled_without_coastys_figures_says_so(world, bob):
    # given a run Coasty accepted and then forgot, settled on what the portal captured
    from runs.services import run_settle_lost

    run = bob.post(RUNS_URL, LAUNCH_BODY).json()
    run_settle_lost(run_id=run["id"], why="Coasty no longer knows it")

    # then the API says when, beside the money being final
    again = bob.get(f"/api/v1/runs/{run['id']}/").json()
    assert again["lost_upstream_at"] is not None and again["settled_at"] is not None
    assert again["hold_remaining_cents"] == 0
