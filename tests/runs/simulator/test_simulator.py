"""Behaviour of the Coasty simulator: auth and billing, validation, idempotency, run stories,
SSE resumption, webhooks and every fault. One simulator (speed 50) serves the module; each test
starts from a reset."""

from __future__ import annotations

import hashlib
import hmac
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
import pytest

from runs.simulator.testing import run_simulator
from tests.sim_support import LIVE_KEY, TEST_KEY, WebhookReceiver, follow, read_stream, run_body

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def sim():
    with run_simulator(speed=50) as simulator:
        yield simulator


@pytest.fixture
def api(sim):
    sim.reset()
    with httpx.Client(base_url=sim.base_url, headers={"X-API-Key": LIVE_KEY}, timeout=10) as client:
        yield client


def create(api, body=None, *, key=None, api_key=LIVE_KEY):
    headers = {"X-API-Key": api_key}
    if key:
        headers["Idempotency-Key"] = key
    return api.post("/v1/runs", json=body if body is not None else run_body(), headers=headers)


def events_of(sim, run_id):
    return [(e["seq"], e["type"], e["data"]) for e in sim.run(run_id)["events"]]


def types_of(sim, run_id):
    return [t for _, t, _ in events_of(sim, run_id)]


STEP = ["reasoning", "tool_call", "tool_result", "step", "billing"]


# --- auth and billing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "coasty-123"},
        {"X-API-Key": "sk-coasty-"},
        {"Authorization": "Bearer nope"},
        {"Authorization": "sk-coasty-live-1"},
    ],
)
def test_missing_or_invalid_key_is_401(api, headers):
    # when
    response = httpx.get(f"{api.base_url}/v1/runs", headers=headers)
    # then
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "INVALID_API_KEY"


def test_bearer_and_x_api_key_both_work(api):
    assert (
        httpx.get(
            f"{api.base_url}/v1/runs", headers={"Authorization": f"Bearer {LIVE_KEY}"}
        ).status_code
        == 200
    )
    assert httpx.get(f"{api.base_url}/v1/runs", headers={"X-API-Key": LIVE_KEY}).status_code == 200


@pytest.mark.parametrize(("version", "price"), [("v1", 8), ("v3", 5), ("v4", 5), ("v5", 5)])
def test_live_keys_bill_per_step_by_cua_version(sim, api, version, price):
    # given a live key
    run = create(api, run_body("[steps=3]", cua_version=version)).json()
    # when the run ends
    done = sim.wait_for_run(run["id"])
    # then it billed each step and the events say the same
    assert (done["steps_completed"], done["credits_charged"], done["cost_cents"]) == (
        3,
        3 * price,
        3 * price,
    )
    billing = [d for _, t, d in events_of(sim, run["id"]) if t == "billing"]
    assert [b["credits_charged"] for b in billing] == [price] * 3
    assert [b["total_credits_charged"] for b in billing] == [price, 2 * price, 3 * price]
    assert events_of(sim, run["id"])[-1][2]["credits_charged"] == 3 * price


def test_test_keys_bill_nothing_and_say_so(sim, api):
    # when a test key runs a v1 task
    response = create(api, run_body(cua_version="v1"), api_key=TEST_KEY)
    # then the headers say test mode and no run credits are charged
    assert response.headers["x-coasty-test-mode"] == "true"
    assert response.headers["x-coasty-key-kind"] == "test"
    assert response.headers["x-credits-charged"] == "0"
    done = sim.wait_for_run(response.json()["id"])
    assert done["steps_completed"] == 3 and done["credits_charged"] == 0 and done["cost_cents"] == 0
    assert all(
        d["credits_charged"] == 0 for _, t, d in events_of(sim, done["id"]) if t == "billing"
    )


def test_test_and_live_runs_are_isolated(sim, api):
    # given one run per key kind
    live = create(api).json()
    test = create(api, api_key=TEST_KEY).json()
    # then each kind sees only its own
    other = {"X-API-Key": TEST_KEY}
    for path in (f"/v1/runs/{live['id']}", f"/v1/runs/{live['id']}/events"):
        assert api.get(path, headers=other).status_code == 404
    assert api.post(f"/v1/runs/{live['id']}/cancel", headers=other).status_code == 404
    assert [r["id"] for r in api.get("/v1/runs").json()["data"]] == [live["id"]]
    assert [r["id"] for r in api.get("/v1/runs", headers=other).json()["data"]] == [test["id"]]
    assert api.get(f"/v1/runs/{test['id']}").status_code == 404


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"colour": "blue"}, "colour"),
        ({"machine_id": ""}, "machine_id"),
        ({"machine_id": "m" * 129}, "machine_id"),
        ({"machine_id": 7}, "machine_id"),
        ({"task": ""}, "task"),
        ({"task": "t" * 16001}, "task"),
        ({"cua_version": "v2"}, "cua_version"),
        ({"instructions": "i" * 16001}, "instructions"),
        ({"system_prompt": "s" * 32001}, "system_prompt"),
        ({"max_steps": 0}, "max_steps"),
        ({"max_steps": 1001}, "max_steps"),
        ({"max_steps": "5"}, "max_steps"),
        ({"max_steps": True}, "max_steps"),
        ({"max_steps": None}, "max_steps"),
        ({"deadline_seconds": 0}, "deadline_seconds"),
        ({"deadline_seconds": 86401}, "deadline_seconds"),
        ({"on_awaiting_human": "wait"}, "on_awaiting_human"),
        ({"awaiting_human_timeout_seconds": 0}, "awaiting_human_timeout_seconds"),
        ({"webhook_url": "http://example.com/hook"}, "webhook_url"),
        ({"webhook_url": "ftp://example.com/hook"}, "webhook_url"),
        ({"webhook_url": "https://example.com/" + "a" * 2030}, "webhook_url"),
        ({"webhook_url": "not a url"}, "webhook_url"),
        ({"metadata": {f"k{i}": i for i in range(51)}}, "metadata"),
        ({"metadata": ["a"]}, "metadata"),
        ({"llm": {"provider": "openai", "api_key": "sk-secret"}}, "llm.api_key"),
        ({"llm": {"model": ""}}, "llm.model"),
        ({"llm": "anthropic"}, "llm"),
    ],
)
def test_run_request_limits_are_enforced(sim, api, changes, field):
    # when
    response = create(api, {**run_body(), **changes})
    # then
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert field in [d["field"] for d in error["details"]]
    assert sim.state()["runs_total"] == 0


def test_missing_required_fields(api):
    response = create(api, {"task": "x"})
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["error"]["details"]] == ["machine_id"]


def test_values_at_the_limits_are_accepted(api):
    body = run_body(
        "t" * 16000,
        machine_id="vm-windows-1",
        instructions="i" * 16000,
        system_prompt="s" * 32000,
        max_steps=1000,
        deadline_seconds=86400,
        awaiting_human_timeout_seconds=86400,
        on_awaiting_human="cancel",
        cua_version="v1",
        webhook_url="https://hooks.example.com/" + "a" * 2000,
        metadata={f"k{i}": i for i in range(50)},
        llm={"provider": "openai", "model": "gpt-4o", "grounding_model": None},
        model=None,
    )
    assert create(api, body).status_code == 200
    for url in ("http://127.0.0.1:9/hook", "http://localhost/hook", "http://[::1]:8000/h"):
        assert create(api, run_body(webhook_url=url)).status_code == 200, url
    defaults = create(api, run_body()).json()
    assert (defaults["cua_version"], defaults["max_steps"], defaults["on_awaiting_human"]) == (
        "v5",
        50,
        "pause",
    )


def test_non_json_and_non_object_bodies(api):
    assert api.post("/v1/runs", content=b"task=x").json()["error"]["code"] == "INVALID_JSON"
    response = api.post("/v1/runs", json=[run_body()])
    assert response.status_code == 422


@pytest.mark.parametrize(
    "key", ["k" * 129, "with space", "naïve".encode(), "semi;colon", "a/b", ""]
)
def test_bad_idempotency_keys_are_400(api, key):
    response = api.post("/v1/runs", json=run_body(), headers={"Idempotency-Key": key})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_good_idempotency_key_charset(api):
    assert create(api, key="Aa0_-:" + "x" * 122).status_code == 200


def test_list_parameters(api):
    for _ in range(3):
        create(api)
    data = api.get("/v1/runs", params={"limit": 2}).json()
    assert len(data["data"]) == 2 and data["has_more"] is True
    assert api.get("/v1/runs", params={"limit": 200}).json()["has_more"] is False
    for params in ({"limit": 0}, {"limit": 201}, {"limit": "x"}, {"status": "finished"}):
        assert api.get("/v1/runs", params=params).status_code == 400, params


def test_resume_body_validation(sim, api):
    run = create(api, run_body("[pause]")).json()
    sim.wait_for_run(run["id"], "awaiting_human")
    url = f"/v1/runs/{run['id']}/resume"
    assert api.post(url, content=b"nope").status_code == 400
    assert api.post(url, json={"note": "x", "extra": 1}).status_code == 422
    assert api.post(url, json={"note": "x" * 2001}).status_code == 422
    assert api.post(url, json={"note": 5}).status_code == 422
    assert api.post(url, json={"note": "x" * 2000}).status_code == 200


def test_unknown_machine_is_404(api):
    response = create(api, run_body(machine_id="vm-mars-1"))
    assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"


def test_machines_list(api):
    data = api.get("/v1/machines").json()
    assert [m["id"] for m in data["data"]] == ["vm-linux-1", "vm-linux-2", "vm-windows-1"]
    assert api.get("/v1/machines", params={"limit": 1}).json()["has_more"] is True


# --- idempotency -------------------------------------------------------------------------------


def test_same_key_same_body_replays_the_original(sim, api):
    # given a created run
    first = create(api, run_body(max_steps=7), key="launch-1")
    # when the same body comes again, keys reordered and spaced differently
    raw = b'{ "max_steps": 7,  "task": "Open the dashboard", "machine_id": "vm-linux-1" }'
    again = api.post("/v1/runs", content=raw, headers={"Idempotency-Key": "launch-1"})
    # then the original answer is replayed, not a new run
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.json()["webhook_secret"] == first.json()["webhook_secret"]
    assert again.headers["x-coasty-idempotent-replay"] == "true"
    assert again.headers["x-credits-charged"] == "0"
    assert again.headers["x-coasty-request-id"] != first.headers["x-coasty-request-id"]
    assert sim.state()["runs_per_idempotency_key"] == {"launch-1": 1}


def test_same_key_other_body_is_422(sim, api):
    create(api, key="launch-2")
    response = create(api, run_body("something else"), key="launch-2")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert sim.state()["runs_per_idempotency_key"] == {"launch-2": 1}


def test_keys_are_per_key_kind(sim, api):
    live = create(api, key="same").json()
    test = create(api, key="same", api_key=TEST_KEY).json()
    assert live["id"] != test["id"]
    assert (
        api.get("/v1/idempotency/same", headers={"X-API-Key": TEST_KEY}).json()["result"]["id"]
        == test["id"]
    )


def test_failed_validation_does_not_use_up_the_key(api):
    assert create(api, run_body(max_steps=0), key="fix-and-retry").status_code == 422
    assert create(api, run_body(), key="fix-and-retry").status_code == 200


def test_concurrent_duplicate_while_original_in_flight_is_409(sim, api):
    # given a create that takes a while (simulated 100 s = 2 s real)
    sim.configure(create_latency_seconds=100)
    with ThreadPoolExecutor(2) as pool:
        original = pool.submit(create, api, key="slow-key")
        # which the simulator has taken in (its key is reserved), however busy the machine
        wait_until_processing(api, "slow-key")
        # when the same request arrives meanwhile
        duplicate = create(api, key="slow-key")
        lookup = api.get("/v1/idempotency/slow-key").json()
        original = original.result()
    # then it is told to retry with the same key, and the lookup says processing
    assert duplicate.status_code == 409
    error = duplicate.json()["error"]
    assert (error["code"], error["retryable"], error["retry_with_same_idempotency_key"]) == (
        "IDEMPOTENCY_IN_FLIGHT",
        True,
        True,
    )
    assert lookup["status"] == "processing" and lookup["result"] is None
    assert original.status_code == 200
    assert create(api, key="slow-key").json() == original.json()
    assert sim.state()["runs_per_idempotency_key"] == {"slow-key": 1}


def wait_until_processing(api, key, timeout=10.0):
    deadline = time.monotonic() + timeout
    while (lookup := api.get(f"/v1/idempotency/{key}")).status_code == 404:
        assert time.monotonic() < deadline, f"the simulator never took in the create with {key}"
        time.sleep(0.01)
    assert lookup.json()["status"] == "processing", lookup.text


def test_lookup_completed_processing_unknown(sim, api):
    run = create(api, key="look-me-up").json()
    lookup = api.get("/v1/idempotency/look-me-up").json()
    assert lookup["status"] == "completed" and lookup["original_status"] == 200
    assert lookup["result"] == run  # the original body verbatim, webhook_secret included
    assert api.get("/v1/idempotency/unknown-key").status_code == 404
    assert api.get("/v1/idempotency/look-me-up", headers={"X-API-Key": TEST_KEY}).status_code == 404


def test_keys_expire_after_24_hours(sim, api):
    # given a key used now
    first = create(api, key="old-key").json()
    sim.advance_clock(86_399)
    assert api.get("/v1/idempotency/old-key").status_code == 200
    # when a day has passed
    sim.advance_clock(2)
    # then the key is forgotten: lookup 404, and reusing it starts a new run
    assert api.get("/v1/idempotency/old-key").status_code == 404
    second = create(api, key="old-key").json()
    assert second["id"] != first["id"]
    assert create(api, run_body("other body"), key="old-key").status_code == 422


def test_webhook_secret_only_in_create_and_replays(sim, api):
    run = create(api, key="secret-key").json()
    assert run["webhook_secret"].startswith("whsec_") and len(run["webhook_secret"]) > 20
    assert api.get(f"/v1/runs/{run['id']}").json()["webhook_secret"] is None
    assert api.get("/v1/runs").json()["data"][0]["webhook_secret"] is None
    assert api.post(f"/v1/runs/{run['id']}/cancel").json()["webhook_secret"] is None
    assert create(api, key="secret-key").json()["webhook_secret"] == run["webhook_secret"]


# --- run stories --------------------------------------------------------------------------------


def test_default_task_succeeds_after_three_steps_with_events_in_order(sim, api):
    run = create(api).json()
    assert run["status"] == "queued"
    done = sim.wait_for_run(run["id"])
    assert done["status"] == "succeeded" and done["steps_completed"] == 3
    assert done["result"]["text"] and done["error"] is None
    assert done["started_at"] and done["finished_at"]
    assert types_of(sim, run["id"]) == ["status", "status", *STEP * 3, "text", "status", "done"]
    statuses = [d["status"] for _, t, d in events_of(sim, run["id"]) if t == "status"]
    assert statuses == ["queued", "running", "succeeded"]


def test_steps_marker(sim, api):
    done = sim.wait_for_run(create(api, run_body("Fill the form [steps=5]")).json()["id"])
    assert (done["status"], done["steps_completed"]) == ("succeeded", 5)
    steps = [d for _, t, d in events_of(sim, done["id"]) if t == "step"]
    assert steps == [{"step": n, "steps_completed": n} for n in range(1, 6)]


def test_pause_then_resume_with_a_note(sim, api):
    # given a task that needs a human after step 1
    run = create(api, run_body("[pause] [steps=2]")).json()
    paused = sim.wait_for_run(run["id"], "awaiting_human")
    assert paused["steps_completed"] == 1 and paused["awaiting_human_reason"]
    assert paused["awaiting_human_since"]
    time.sleep(0.1)  # it waits for the human, however long
    assert sim.run(run["id"])["status"] == "awaiting_human"
    # when resumed
    resumed = api.post(f"/v1/runs/{run['id']}/resume", json={"note": "Solved the CAPTCHA"})
    # then it runs on and succeeds
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"
    assert resumed.json()["awaiting_human_reason"] is None
    done = sim.wait_for_run(run["id"])
    assert (done["status"], done["steps_completed"]) == ("succeeded", 2)
    types = types_of(sim, run["id"])
    assert types[:9] == ["status", "status", *STEP, "awaiting_human", "status"]
    resumed_event = next(d for _, t, d in events_of(sim, run["id"]) if t == "resumed")
    assert resumed_event["note"] == "Solved the CAPTCHA"
    assert api.post(f"/v1/runs/{run['id']}/resume").status_code == 409


def test_resume_without_a_body(sim, api):
    run = create(api, run_body("[pause=2]")).json()
    assert sim.wait_for_run(run["id"], "awaiting_human")["steps_completed"] == 2
    assert api.post(f"/v1/runs/{run['id']}/resume").status_code == 200
    assert sim.wait_for_run(run["id"])["status"] == "succeeded"
    assert next(d for _, t, d in events_of(sim, run["id"]) if t == "resumed")["note"] is None


@pytest.mark.parametrize(("mode", "status"), [("fail", "failed"), ("cancel", "cancelled")])
def test_on_awaiting_human_fail_or_cancel(sim, api, mode, status):
    done = sim.wait_for_run(create(api, run_body("[pause]", on_awaiting_human=mode)).json()["id"])
    assert done["status"] == status
    assert done["error"]["code"] == "AWAITING_HUMAN"
    assert "awaiting_human" not in types_of(sim, done["id"])


def test_fail_marker(sim, api):
    done = sim.wait_for_run(create(api, run_body("[fail]")).json()["id"])
    assert (done["status"], done["steps_completed"], done["error"]["code"]) == (
        "failed",
        1,
        "TASK_FAILED",
    )
    assert types_of(sim, done["id"])[-3:] == ["error", "status", "done"]


def test_max_steps_ends_a_forever_run_failed(sim, api):
    done = sim.wait_for_run(create(api, run_body("[forever]", max_steps=4)).json()["id"])
    assert (done["status"], done["steps_completed"], done["error"]["code"]) == (
        "failed",
        4,
        "MAX_STEPS_REACHED",
    )
    assert done["credits_charged"] == 20


def test_script_ending_exactly_at_max_steps_succeeds(sim, api):
    done = sim.wait_for_run(create(api, run_body("[steps=4]", max_steps=4)).json()["id"])
    assert (done["status"], done["steps_completed"]) == ("succeeded", 4)
    short = sim.wait_for_run(create(api, run_body("[steps=5]", max_steps=2)).json()["id"])
    assert (short["status"], short["steps_completed"]) == ("failed", 2)


def test_deadline_times_out_in_simulated_time(sim, api):
    # given a never-ending task with a 30 s (simulated) deadline: 0.6 s at 50x
    started = time.monotonic()
    run = create(api, run_body("[forever]", deadline_seconds=30)).json()
    done = sim.wait_for_run(run["id"], timeout=25)
    # then it times out after at most 29 steps (queue 0.5 s + 1 s per step; fewer on a busy
    # machine, where each step's sleep overshoots)
    assert done["status"] == "timed_out" and done["error"]["code"] == "DEADLINE_EXCEEDED"
    assert 1 <= done["steps_completed"] <= 30
    # long before 30 real seconds: the deadline is kept in simulated time (with room to spare
    # for a busy machine)
    assert time.monotonic() - started < 15
    assert types_of(sim, run["id"])[-3:] == ["error", "status", "done"]


def test_deadline_also_runs_while_awaiting_human(sim, api):
    done = sim.wait_for_run(create(api, run_body("[pause]", deadline_seconds=5)).json()["id"])
    assert (done["status"], done["error"]["code"]) == ("timed_out", "DEADLINE_EXCEEDED")


def test_awaiting_human_timeout(sim, api):
    done = sim.wait_for_run(
        create(api, run_body("[pause]", awaiting_human_timeout_seconds=2)).json()["id"]
    )
    assert (done["status"], done["error"]["code"]) == ("timed_out", "AWAITING_HUMAN_TIMEOUT")


def test_cancel_from_queued_running_and_awaiting_human(sim, api):
    sim.configure(queue_seconds=1000)
    queued = create(api).json()
    cancelled = api.post(f"/v1/runs/{queued['id']}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["steps_completed"] == 0
    sim.configure(queue_seconds=0.5)

    running = create(api, run_body("[forever]")).json()
    sim.wait_for_run(running["id"], "running")
    assert api.post(f"/v1/runs/{running['id']}/cancel").json()["status"] == "cancelled"

    paused = create(api, run_body("[pause]")).json()
    sim.wait_for_run(paused["id"], "awaiting_human")
    assert api.post(f"/v1/runs/{paused['id']}/cancel").json()["status"] == "cancelled"

    time.sleep(0.1)  # nothing moves after a cancel
    for run in (queued, running, paused):
        after = sim.run(run["id"])
        assert after["status"] == "cancelled"
        assert after["events"][-1]["type"] == "done"
        assert after["events"][-1]["data"]["steps_completed"] == after["steps_completed"]
        again = api.post(f"/v1/runs/{run['id']}/cancel")
        assert (again.status_code, again.json()["error"]["code"]) == (409, "INVALID_STATE")
        assert api.post(f"/v1/runs/{run['id']}/resume").status_code == 409


def test_resume_only_from_awaiting_human(sim, api):
    run = create(api, run_body("[forever]")).json()
    sim.wait_for_run(run["id"], "running")
    response = api.post(f"/v1/runs/{run['id']}/resume", json={"note": "x"})
    assert (response.status_code, response.json()["error"]["code"]) == (409, "INVALID_STATE")


def test_slow_marker_makes_steps_slower(sim, api):
    sim.configure(speed=20)
    fast = create(api, run_body("[steps=2]")).json()
    slow = create(api, run_body("[steps=2] [slow]")).json()
    times = {}
    for run in (fast, slow):
        done = sim.wait_for_run(run["id"], timeout=10)
        started, finished = (datetime.fromisoformat(done[k]) for k in ("started_at", "finished_at"))
        times[run["id"]] = (finished - started).total_seconds()
    # a sleep only ever overshoots, so the lower bound holds however busy the machine; the fast
    # run's two 1 s steps (0.1 s) would have to lag by 0.3 s to overtake it
    assert times[slow["id"]] >= 2 * 4 / 20 * 0.9  # two 4 s steps at 20x
    assert times[slow["id"]] > times[fast["id"]]


def test_markers_combine(sim, api):
    run = create(api, run_body("[STEPS=3][pause=2][slow]")).json()
    assert sim.wait_for_run(run["id"], "awaiting_human")["steps_completed"] == 2
    api.post(f"/v1/runs/{run['id']}/resume")
    assert sim.wait_for_run(run["id"])["steps_completed"] == 3
    fail_first = sim.wait_for_run(create(api, run_body("[pause=2][fail=2]")).json()["id"])
    assert fail_first["status"] == "failed" and fail_first["error"]["code"] == "TASK_FAILED"


def test_counters_always_agree_with_events(sim, api):
    run = create(api, run_body("[forever]", max_steps=30)).json()
    for _ in range(40):
        snapshot = sim.run(run["id"])  # run fields and events from one moment
        events = snapshot["events"]
        assert snapshot["steps_completed"] == sum(1 for e in events if e["type"] == "step")
        assert snapshot["credits_charged"] == sum(
            e["data"]["credits_charged"] for e in events if e["type"] == "billing"
        )
        assert snapshot["cost_cents"] == snapshot["credits_charged"]
        got = api.get(f"/v1/runs/{run['id']}").json()
        assert got["credits_charged"] == got["steps_completed"] * 5
        time.sleep(0.005)


def test_list_runs_filter_and_order(sim, api):
    first = create(api).json()
    second = create(api, run_body("[forever]")).json()
    sim.wait_for_run(first["id"])
    assert [r["id"] for r in api.get("/v1/runs").json()["data"]] == [second["id"], first["id"]]
    assert [
        r["id"] for r in api.get("/v1/runs", params={"status": "succeeded"}).json()["data"]
    ] == [first["id"]]
    assert [r["id"] for r in api.get("/v1/runs", params={"status": "running"}).json()["data"]] == [
        second["id"]
    ]


# --- SSE ---------------------------------------------------------------------------------------


def test_stream_replays_then_follows_live_and_closes_after_done(sim, api):
    run = create(api, run_body("[steps=4]")).json()
    stream = read_stream(api, run["id"])
    assert stream.status == 200 and not stream.cut
    assert stream.retry == [20]  # 1000 ms / 50, sent once
    seqs = [seq for seq, _, _ in stream.events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert stream.events[-1][1] == "done"
    assert [(s, t, d) for s, t, d in stream.events] == events_of(sim, run["id"])
    # a reconnect after done gets nothing more and ends at once
    again = read_stream(api, run["id"], last_event_id=seqs[-1])
    assert again.events == [] and not again.cut


def test_resume_with_last_event_id_or_after(sim, api):
    run = create(api, run_body("[steps=2]")).json()
    sim.wait_for_run(run["id"])
    total = len(sim.run(run["id"])["events"])
    assert [s for s, _, _ in read_stream(api, run["id"], after=5).events] == list(
        range(6, total + 1)
    )
    assert [s for s, _, _ in read_stream(api, run["id"], last_event_id=7).events] == list(
        range(8, total + 1)
    )
    # both given: the later position wins, so nothing is delivered twice
    assert read_stream(api, run["id"], after=3, last_event_id=9).events[0][0] == 10


def test_rotation_every_event_exactly_once(sim, api):
    # given connections rotated every 1.5 simulated seconds (30 ms)
    sim.configure(sse_rotate_seconds=1.5)
    run = create(api, run_body("[steps=12]")).json()
    # when a client follows with Last-Event-ID until done
    streams = follow(api, run["id"])
    # then it needed several connections and saw each event exactly once
    assert len(streams) >= 3
    assert all(not s.cut for s in streams)
    seqs = [seq for s in streams for seq, _, _ in s.events]
    assert seqs == list(range(1, len(events_of(sim, run["id"])) + 1))


def test_cut_streams_every_event_exactly_once(sim, api):
    # given every stream connection dropped after 2 events
    sim.set_faults(cut_stream={"probability": 1, "after_events": 2})
    run = create(api, run_body("[steps=3]")).json()
    streams = follow(api, run["id"])
    assert sum(s.cut for s in streams) >= 5
    assert all(len(s.events) <= 2 for s in streams)
    seqs = [seq for s in streams for seq, _, _ in s.events]
    assert seqs == list(range(1, len(events_of(sim, run["id"])) + 1))
    assert sim.state()["faults"]["faults"]["cut_stream"]["fired"] == len(streams)


def test_keep_alive_while_idle(sim, api):
    sim.configure(sse_keepalive_seconds=1, sse_rotate_seconds=10)  # 20 ms and 200 ms real
    run = create(api, run_body("[pause]")).json()
    sim.wait_for_run(run["id"], "awaiting_human")
    stream = read_stream(api, run["id"])
    assert not stream.cut and stream.events[-1][1] == "status"  # rotated, not done
    assert stream.comments.count("keep-alive") >= 3


def test_stream_errors_before_the_stream(api):
    missing = api.get("/v1/runs/00000000-0000-0000-0000-000000000000/events")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/json"
    unauth = httpx.get(f"{api.base_url}/v1/runs/x/events")
    assert unauth.status_code == 401 and unauth.json()["error"]["code"] == "INVALID_API_KEY"
    run = create(api).json()
    bad = api.get(f"/v1/runs/{run['id']}/events", params={"after": -1})
    assert bad.status_code == 400


# --- webhooks ------------------------------------------------------------------------------------


def verify(secret: str, delivery) -> bool:
    expected = hmac.new(
        secret.encode(), f"{delivery.t}.".encode() + delivery.body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, delivery.v1)


def test_webhooks_are_signed_and_sent_on_pause_and_end(sim, api):
    with WebhookReceiver() as receiver:
        run = create(api, run_body("[pause]", webhook_url=receiver.url)).json()
        sim.wait_for_run(run["id"], "awaiting_human")
        first = receiver.wait_for(1)[0]
        api.post(f"/v1/runs/{run['id']}/resume")
        deliveries = receiver.wait_for(2)
    assert [d.json["event"] for d in deliveries] == ["run.awaiting_human", "run.succeeded"]
    for delivery in deliveries:
        assert verify(run["webhook_secret"], delivery)
        assert abs(delivery.t - time.time()) < 60
        assert delivery.json["run_id"] == run["id"]
    assert first.json["awaiting_human_reason"] and first.json["status"] == "awaiting_human"
    final = deliveries[1].json
    assert final["status"] == "succeeded" and final["result"]["text"] and final["error"] is None
    assert set(final) == {
        "event",
        "run_id",
        "status",
        "result",
        "error",
        "awaiting_human_reason",
        "created_at",
    }


@pytest.mark.parametrize(
    ("task", "changes", "event"),
    [
        ("[fail]", {}, "run.failed"),
        ("[forever]", {"deadline_seconds": 2}, "run.timed_out"),
        ("[pause]", {"on_awaiting_human": "cancel"}, "run.cancelled"),
    ],
)
def test_webhook_on_each_terminal_state(sim, api, task, changes, event):
    with WebhookReceiver() as receiver:
        run = create(api, run_body(task, webhook_url=receiver.url, **changes)).json()
        delivery = receiver.wait_for(1)[0]
    assert delivery.json["event"] == event and delivery.json["error"]["code"]
    assert verify(run["webhook_secret"], delivery)


def test_webhook_retried_after_receiver_errors(sim, api):
    with WebhookReceiver() as receiver:
        receiver.statuses = [500, 503]
        run = create(api, run_body("[steps=1]", webhook_url=receiver.url)).json()
        deliveries = receiver.wait_for(3)
        # the receiver has answered; the simulator records that answer a moment later
        state = sim.wait_for(
            lambda s: s["webhook_deliveries"][0]["status"] != "pending", what="the 3rd answer"
        )
    assert len(deliveries) == 3 and all(d.body == deliveries[0].body for d in deliveries)
    assert all(verify(run["webhook_secret"], d) for d in deliveries)
    record = state["webhook_deliveries"][0]
    assert (record["status"], record["attempts"], record["responses"]) == (
        "delivered",
        3,
        [500, 503, 200],
    )


def test_webhook_gives_up_after_max_attempts(sim, api):
    sim.configure(webhook_max_attempts=3)
    with WebhookReceiver() as receiver:
        receiver.statuses = [500] * 10
        create(api, run_body("[steps=1]", webhook_url=receiver.url))
        sim.wait_for(
            lambda s: s["webhook_deliveries"] and s["webhook_deliveries"][0]["status"] == "failed"
        )
    assert len(receiver.received) == 3


def test_webhook_connection_errors_are_retried_and_never_block_the_run(sim, api):
    # given a receiver that is not there (a closed port)
    dead = "http://127.0.0.1:9/hook"
    sim.configure(webhook_max_attempts=2)
    run = create(api, run_body("[pause]", webhook_url=dead)).json()
    # then the run goes on regardless
    sim.wait_for_run(run["id"], "awaiting_human")
    api.post(f"/v1/runs/{run['id']}/resume")
    assert sim.wait_for_run(run["id"])["status"] == "succeeded"
    state = sim.wait_for(
        lambda s: (
            all(d["status"] == "failed" for d in s["webhook_deliveries"])
            and len(s["webhook_deliveries"]) == 2
        )
    )
    assert all(
        d["responses"][0].startswith("error") and d["attempts"] == 2
        for d in state["webhook_deliveries"]
    )


def test_no_webhook_url_no_deliveries(sim, api):
    sim.wait_for_run(create(api).json()["id"])
    assert sim.state()["webhook_deliveries"] == []


def test_webhook_duplicate(sim, api):
    sim.set_faults(webhook_duplicate={"count": 1})
    with WebhookReceiver() as receiver:
        run = create(api, run_body("[steps=1]", webhook_url=receiver.url)).json()
        deliveries = receiver.wait_for(2)
    assert deliveries[0].body == deliveries[1].body
    assert all(verify(run["webhook_secret"], d) for d in deliveries)
    assert [d["fault"] for d in sim.state()["webhook_deliveries"]] == [None, "duplicate"]


def test_webhook_forged(sim, api):
    sim.set_faults(webhook_forged={"count": 1})
    with WebhookReceiver() as receiver:
        receiver.statuses = [200, 400]  # a good receiver refuses the forgery
        run = create(api, run_body("[steps=1]", webhook_url=receiver.url)).json()
        deliveries = receiver.wait_for(2)
        # the receiver has answered; the simulator records those answers a moment later
        records = sim.wait_for(
            lambda s: (
                len(s["webhook_deliveries"]) == 2
                and all(d["status"] != "pending" for d in s["webhook_deliveries"])
            ),
            what="both answers recorded",
        )["webhook_deliveries"]
    assert [verify(run["webhook_secret"], d) for d in deliveries] == [True, False]
    assert [(d["fault"], d["status"], d["attempts"]) for d in records] == [
        (None, "delivered", 1),
        ("forged", "refused", 1),
    ]


def test_webhook_stale(sim, api):
    sim.set_faults(webhook_stale={"count": 1})
    with WebhookReceiver() as receiver:
        run = create(api, run_body("[steps=1]", webhook_url=receiver.url)).json()
        fresh, stale = receiver.wait_for(2)
    assert verify(run["webhook_secret"], fresh) and verify(
        run["webhook_secret"], stale
    )  # HMAC right...
    assert time.time() - stale.t > 300  # ...but the timestamp too old
    assert abs(time.time() - fresh.t) < 60
    assert [d["fault"] for d in sim.state()["webhook_deliveries"]] == [None, "stale"]


def test_webhook_late(sim, api):
    sim.set_faults(webhook_late={"count": 1, "delay_seconds": 10})  # 200 ms real
    with WebhookReceiver() as receiver:
        run = create(api, run_body("[steps=1]", webhook_url=receiver.url)).json()
        delivery = receiver.wait_for(1)[0]
    finished = datetime.fromisoformat(sim.run(run["id"])["finished_at"]).timestamp()
    assert delivery.at - finished >= 0.18
    assert sim.state()["webhook_deliveries"][0]["fault"] == "late"


def test_webhook_reorder(sim, api):
    # given the awaiting_human delivery is held back
    sim.set_faults(webhook_reorder={"count": 1})
    with WebhookReceiver() as receiver:
        run = create(api, run_body("[pause]", webhook_url=receiver.url)).json()
        sim.wait_for_run(run["id"], "awaiting_human")
        time.sleep(0.1)
        assert receiver.received == []
        api.post(f"/v1/runs/{run['id']}/resume")
        deliveries = receiver.wait_for(2)
    # then the newer delivery arrives first
    assert [d.json["event"] for d in deliveries] == ["run.succeeded", "run.awaiting_human"]
    assert [d["fault"] for d in sim.state()["webhook_deliveries"]] == ["reorder", None]


def test_webhook_reorder_releases_a_lone_delivery_eventually(sim, api):
    sim.set_faults(webhook_reorder={"count": 1})
    sim.configure(webhook_reorder_hold_seconds=5)
    with WebhookReceiver() as receiver:
        create(api, run_body("[steps=1]", webhook_url=receiver.url))
        assert receiver.wait_for(1)[0].json["event"] == "run.succeeded"


# --- request faults -------------------------------------------------------------------------------


def test_server_error_fires_then_recovers(sim, api):
    sim.set_faults(server_error={"count": 2})
    assert [api.get("/v1/runs").status_code for _ in range(3)] == [500, 500, 200]
    assert api.get("/v1/health").status_code == 200  # health is never faulted
    sim.set_faults(server_error={"count": 1, "status": 503})
    response = api.post("/v1/runs", json=run_body())
    assert response.status_code == 503 and "retry-after" in response.headers
    assert sim.state()["runs_total"] == 0  # before doing anything


def test_rate_limit_has_retry_after(sim, api):
    sim.set_faults(rate_limit={"count": 1, "retry_after": 3})
    response = api.get("/v1/machines")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3" and response.json()["error"]["retry_after"] == 3
    sim.set_faults(rate_limit={"count": 1})
    response = api.get("/v1/machines")
    assert response.headers["retry-after"] == "0"  # 2 simulated seconds at 50x: small
    assert api.get("/v1/machines").status_code == 200


@pytest.mark.parametrize(
    "mode", ["drop", "502", "504", "html", "empty", "truncated", "text", "random"]
)
def test_lost_response_creates_the_run_once(sim, api, mode):
    # given the next create loses its answer
    sim.set_faults(lost_response={"count": 1, "mode": mode})
    # when the client sends it, cannot read an answer, and retries with the same key
    try:
        first = create(api, key=f"lost-{mode}")
        if mode in ("502", "504", "html"):
            assert first.status_code == int(mode if mode != "html" else 502)
            assert first.headers["content-type"].startswith(
                "text/html" if mode == "html" else "application/json"
            )
        elif mode != "random":
            assert first.status_code == 200
            with pytest.raises(ValueError):
                first.json()
    except httpx.HTTPError:
        assert mode in ("drop", "random")
    lookup = api.get(f"/v1/idempotency/lost-{mode}").json()
    retry = create(api, key=f"lost-{mode}")
    # then the run exists once, the lookup and the retry both give its answer
    assert retry.status_code == 200 and retry.headers["x-coasty-idempotent-replay"] == "true"
    assert lookup["result"] == retry.json()
    assert sim.state()["runs_per_idempotency_key"] == {f"lost-{mode}": 1}
    assert sim.state()["runs_total"] == 1


def test_lost_response_on_cancel_when_asked(sim, api):
    run = create(api, run_body("[forever]")).json()
    sim.set_faults(lost_response={"count": 1, "mode": "504", "only": ["cancel_run"]})
    assert api.post(f"/v1/runs/{run['id']}/cancel").status_code == 504
    assert sim.run(run["id"])["status"] == "cancelled"


def test_in_flight_fault_on_a_finished_key(sim, api):
    original = create(api, key="done-key").json()
    sim.set_faults(in_flight={"count": 1})
    busy = create(api, key="done-key")
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "IDEMPOTENCY_IN_FLIGHT"
    assert create(api, key="done-key").json() == original
    assert sim.state()["runs_per_idempotency_key"] == {"done-key": 1}


def test_in_flight_fault_on_a_new_key_holds_it_processing(sim, api):
    sim.set_faults(in_flight={"count": 1, "hold_seconds": 10})  # 200 ms real
    busy = create(api, key="new-key")
    assert busy.status_code == 409
    assert api.get("/v1/idempotency/new-key").json()["status"] == "processing"
    assert create(api, key="new-key").status_code == 409  # still busy
    assert sim.state()["runs_total"] == 1  # but the run exists and runs
    state = sim.wait_for(lambda s: s["runs_by_status"]["succeeded"] == 1)
    time.sleep(0.2)
    replay = create(api, key="new-key")
    assert replay.status_code == 200 and replay.headers["x-coasty-idempotent-replay"] == "true"
    assert api.get("/v1/idempotency/new-key").json()["status"] == "completed"
    assert state["runs_per_idempotency_key"] == {"new-key": 1}


def test_fault_probability_is_seeded_and_repeatable(sim, api):
    def pattern():
        return [api.get("/v1/runs").status_code for _ in range(30)]

    sim.set_faults(server_error=0.5, seed=42)
    first = pattern()
    sim.set_faults(server_error=0.5, seed=42)
    assert pattern() == first
    assert 5 < first.count(500) < 25


def test_fault_limit_and_only(sim, api):
    sim.set_faults(server_error={"probability": 1, "limit": 2, "only": ["list_machines"]})
    assert api.get("/v1/runs").status_code == 200
    assert [api.get("/v1/machines").status_code for _ in range(4)] == [500, 500, 200, 200]
    assert sim.faults()["faults"]["server_error"]["fired"] == 2


def test_fault_admin_validation(sim):
    with httpx.Client(base_url=sim.base_url) as admin:
        for body in (
            {"nonsense": 1},
            {"lost_response": 2},
            {"lost_response": {"mode": "explode"}},
            {"rate_limit": {"count": -1}},
            {"server_error": {"only": ["fly"]}},
        ):
            response = admin.post("/_sim/faults", json=body)
            assert response.status_code == 400, body
        ok = admin.post("/_sim/faults", json={"lost_response": 0.25, "seed": 3}).json()
        assert ok["seed"] == 3 and ok["faults"]["lost_response"]["probability"] == 0.25
        assert admin.post("/_sim/config", json={"nope": 1}).status_code == 400
        assert admin.post("/_sim/config", json={"speed": 0}).status_code == 400


def test_state_counts_runs_per_key_and_status_and_reset_clears(sim, api):
    for key in ("a", "b", "c"):
        create(api, key=key)
        create(api, key=key)
    create(api, run_body("[forever]"))
    state = sim.state()
    assert state["runs_per_idempotency_key"] == {"a": 1, "b": 1, "c": 1}
    assert state["idempotency_keys_with_more_than_one_run"] == []
    assert state["runs_total"] == 4
    assert sum(state["runs_by_status"].values()) == 4
    sim.set_faults(rate_limit=1)
    sim.configure(step_seconds=3)
    sim.reset()
    state = sim.state()
    assert state["runs_total"] == 0 and state["runs_per_idempotency_key"] == {}
    assert state["faults"]["faults"] == {} and state["config"]["step_seconds"] == 1.0
    assert api.get("/v1/runs").json()["data"] == []


def test_reset_closes_open_streams(sim, api):
    run = create(api, run_body("[pause]")).json()
    sim.wait_for_run(run["id"], "awaiting_human")
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(read_stream, api, run["id"])
        sim.wait_for(lambda s: s["open_streams"] == 1)
        sim.reset()
        stream = future.result(timeout=5)
    assert not stream.cut and stream.events
