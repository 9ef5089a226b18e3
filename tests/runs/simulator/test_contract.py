"""Contract: every simulator answer, errors included, matches the reference OpenAPI schemas
(tests/reference/coasty/, copies of shared/reference/coasty/) and carries the documented
headers; every SSE event payload matches INTERFACES.md exactly."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from runs.simulator.testing import run_simulator
from tests.sim_support import LIVE_KEY, TEST_KEY, WebhookReceiver, follow, read_stream, run_body

pytestmark = pytest.mark.timeout(60)

REFERENCE = Path(__file__).parents[2] / "reference" / "coasty"
SPEC = json.loads((REFERENCE / "coasty-openapi-subset.json").read_text())
RUNS_SPEC = yaml.safe_load((REFERENCE / "coasty-runs-api-openapi.yml").read_text())
SPEC_URI = "urn:coasty:openapi-subset"
REGISTRY = Registry().with_resource(
    SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012)
)


def schema_validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": f"{SPEC_URI}#/components/schemas/{name}"}, registry=REGISTRY
    )


def header_validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(SPEC["components"]["headers"][name]["schema"])


# --- INTERFACES.md: SSE event payloads, exactly -----------------------------------------------

ISO = {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"}
INT = {"type": "integer", "minimum": 0}
STATUSES = ["queued", "running", "awaiting_human", "succeeded", "failed", "cancelled", "timed_out"]
TERMINAL = ["succeeded", "failed", "cancelled", "timed_out"]


def _obj(**props: dict) -> dict:
    return {
        "type": "object",
        "required": list(props),
        "properties": props,
        "additionalProperties": False,
    }


EVENT_SCHEMAS = {
    "status": _obj(status={"enum": STATUSES}, at=ISO),
    "reasoning": _obj(step=INT, text={"type": "string"}),
    "tool_call": _obj(step=INT, tool={"type": "string"}, input={"type": "object"}),
    "tool_result": _obj(
        step=INT, tool={"type": "string"}, ok={"type": "boolean"}, output={"type": "string"}
    ),
    "step": _obj(step=INT, steps_completed=INT),
    "billing": _obj(step=INT, credits_charged=INT, total_credits_charged=INT, cost_cents=INT),
    "awaiting_human": _obj(reason={"type": "string"}, step=INT, at=ISO),
    "resumed": _obj(note={"type": ["string", "null"]}, at=ISO),
    "text": _obj(text={"type": "string"}),
    "error": _obj(code={"type": "string"}, message={"type": "string"}),
    "done": _obj(status={"enum": TERMINAL}, steps_completed=INT, credits_charged=INT, at=ISO),
}

WEBHOOK_SCHEMA = _obj(
    event={"enum": [f"run.{s}" for s in ["awaiting_human", *TERMINAL]]},
    run_id={"type": "string"},
    status={"enum": ["awaiting_human", *TERMINAL]},
    result={"type": ["object", "null"]},
    error={"type": ["object", "null"]},
    awaiting_human_reason={"type": ["string", "null"]},
    created_at=ISO,
)


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim():
    with run_simulator(speed=50) as simulator:
        yield simulator


@pytest.fixture
def api(sim):
    sim.reset()
    with httpx.Client(base_url=sim.base_url, headers={"X-API-Key": LIVE_KEY}, timeout=10) as client:
        yield client


def check(
    response: httpx.Response, schema: str, path: str, method: str, *, authed: bool = True
) -> dict:
    """The response is documented for this operation, validates, and has the headers."""
    operation = SPEC["paths"][path][method]
    assert str(response.status_code) in operation["responses"], (
        f"{method.upper()} {path} does not document {response.status_code}"
    )
    request_id = response.headers.get("x-coasty-request-id")
    assert request_id, "every response has X-Coasty-Request-Id"
    header_validator("CoastyRequestId").validate(request_id)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    errors = sorted(schema_validator(schema).iter_errors(body), key=str)
    assert not errors, f"{schema}: {[e.message for e in errors]}\n{json.dumps(body)[:1000]}"
    if schema == "ApiError":
        assert body["error"]["request_id"] == request_id
        if body["error"].get("retry_after") is not None or response.status_code == 429:
            assert response.headers["retry-after"] == str(body["error"]["retry_after"])
            header_validator("RetryAfter").validate(int(response.headers["retry-after"]))
    elif "request_id" in body and body["request_id"] is not None and path != "/v1/runs":
        assert body["request_id"] == request_id
    # key-kind headers once the key is known: not on 401, nor on a 5xx raised before auth
    if authed and response.status_code not in (401, 500, 503) and path != "/v1/health":
        header_validator("KeyKind").validate(response.headers["x-coasty-key-kind"])
        assert response.headers["x-coasty-test-mode"] in ("true", "false")
        header_validator("CreditsCharged").validate(int(response.headers["x-credits-charged"]))
    return body


def wait_status(api: httpx.Client, run_id: str, *statuses: str, key: str = LIVE_KEY) -> dict:
    deadline = time.monotonic() + 10
    while True:
        run = api.get(f"/v1/runs/{run_id}", headers={"X-API-Key": key}).json()
        if run["status"] in statuses:
            return run
        assert time.monotonic() < deadline, f"run stuck in {run['status']}"
        time.sleep(0.01)


# --- the reference files --------------------------------------------------------------------


VENDORED = ("coasty-openapi-subset.json", "coasty-problem-types.yml", "coasty-runs-api-openapi.yml")


def test_vendored_reference_is_the_published_upstream_text():
    # given the checksums of the upstream files, recorded when they were vendored
    sums = {
        name: digest
        for digest, name in (
            line.split() for line in (REFERENCE / "SHA256SUMS").read_text().splitlines()
        )
    }
    assert sorted(sums) == sorted(VENDORED)
    # then no copy has been edited here (this runs on any clone, shared/ or not)
    for name in VENDORED:
        assert hashlib.sha256((REFERENCE / name).read_bytes()).hexdigest() == sums[name], name


def test_vendored_reference_matches_shared_copy():
    # given the shared reference, where this checkout has one beside it
    shared = next(
        (
            p / "shared/reference/coasty"
            for p in Path(__file__).resolve().parents
            if (p / "shared/reference/coasty").is_dir()
        ),
        None,
    )
    if shared is None:
        pytest.skip("no shared/reference/coasty beside this checkout")
    # then the vendored copies are identical
    for name in VENDORED:
        assert (REFERENCE / name).read_bytes() == (shared / name).read_bytes(), name


def test_runs_spec_and_subset_agree_on_what_we_validate():
    for name, schema in RUNS_SPEC["components"]["schemas"].items():
        assert SPEC["components"]["schemas"][name] == schema, name
    for path, item in RUNS_SPEC["paths"].items():
        assert SPEC["paths"][path] == item, path


# --- 2xx -----------------------------------------------------------------------------------------


def test_success_responses_match_schemas(api):
    # when every operation succeeds once
    body = run_body(
        "[pause] contract",
        metadata={"team": "research"},
        llm={"provider": "anthropic", "model": "claude-x"},
    )
    created = api.post("/v1/runs", json=body, headers={"Idempotency-Key": "contract-1"})
    run = check(created, "RunResponse", "/v1/runs", "post")
    assert created.headers["x-coasty-idempotent-replay"] == "false"
    assert created.headers["idempotency-status"] == "completed"
    assert run["webhook_secret"].startswith("whsec_")

    replay = api.post("/v1/runs", json=body, headers={"Idempotency-Key": "contract-1"})
    assert check(replay, "RunResponse", "/v1/runs", "post") == run
    assert replay.headers["x-coasty-idempotent-replay"] == "true"
    assert replay.headers["x-credits-charged"] == "0"

    got = check(api.get(f"/v1/runs/{run['id']}"), "RunResponse", "/v1/runs/{run_id}", "get")
    assert got["webhook_secret"] is None
    listed = check(api.get("/v1/runs", params={"limit": 5}), "ListRunsResponse", "/v1/runs", "get")
    assert listed["data"][0]["id"] == run["id"] and listed["data"][0]["webhook_secret"] is None

    wait_status(api, run["id"], "awaiting_human")
    resumed = api.post(f"/v1/runs/{run['id']}/resume", json={"note": "solved the captcha"})
    check(resumed, "RunResponse", "/v1/runs/{run_id}/resume", "post")

    other = check(
        api.post("/v1/runs", json=run_body("[forever]")), "RunResponse", "/v1/runs", "post"
    )
    cancelled = check(
        api.post(f"/v1/runs/{other['id']}/cancel"),
        "RunResponse",
        "/v1/runs/{run_id}/cancel",
        "post",
    )
    assert cancelled["status"] == "cancelled"

    lookup = check(
        api.get("/v1/idempotency/contract-1"),
        "IdempotencyLookupResponse",
        "/v1/idempotency/{key}",
        "get",
    )
    assert (
        lookup["status"] == "completed"
        and lookup["original_status"] == 200
        and lookup["result"] == run
    )

    machines = check(api.get("/v1/machines"), "ListMachinesResponse", "/v1/machines", "get")
    assert {m["id"] for m in machines["data"]} >= {"vm-linux-1", "vm-linux-2", "vm-windows-1"}

    health = api.get("/v1/health", headers={"X-API-Key": ""})
    assert check(health, "HealthResponse", "/v1/health", "get", authed=False)["status"] == "ok"


def test_test_key_headers(api):
    response = api.get("/v1/machines", headers={"X-API-Key": TEST_KEY})
    check(response, "ListMachinesResponse", "/v1/machines", "get")
    assert response.headers["x-coasty-test-mode"] == "true"
    assert response.headers["x-coasty-key-kind"] == "test"
    assert response.headers["x-credits-charged"] == "0"
    live = api.get("/v1/machines")
    assert (live.headers["x-coasty-test-mode"], live.headers["x-coasty-key-kind"]) == (
        "false",
        "live",
    )


def test_processing_lookup_matches_schema(sim, api):
    sim.set_faults(in_flight={"count": 1})
    api.post("/v1/runs", json=run_body(), headers={"Idempotency-Key": "held"})
    body = check(
        api.get("/v1/idempotency/held"), "IdempotencyLookupResponse", "/v1/idempotency/{key}", "get"
    )
    assert body == {
        "status": "processing",
        "request_id": body["request_id"],
        "result": None,
        "original_status": None,
    }


# --- errors --------------------------------------------------------------------------------------


def expect_error(response, status, code, path, method):
    assert response.status_code == status, response.text
    body = check(response, "ApiError", path, method)
    assert body["error"]["code"] == code
    return body["error"]


def test_400_errors(api):
    e = expect_error(
        api.post("/v1/runs", content=b"{not json", headers={"Content-Type": "application/json"}),
        400,
        "INVALID_JSON",
        "/v1/runs",
        "post",
    )
    assert e["type"] == "validation_error" and e["retryable"] is False
    expect_error(
        api.post("/v1/runs", json=run_body(), headers={"Idempotency-Key": "bad key!"}),
        400,
        "VALIDATION_ERROR",
        "/v1/runs",
        "post",
    )
    expect_error(
        api.get("/v1/runs", params={"limit": 0}), 400, "VALIDATION_ERROR", "/v1/runs", "get"
    )
    expect_error(
        api.get("/v1/runs", params={"status": "done"}), 400, "VALIDATION_ERROR", "/v1/runs", "get"
    )
    expect_error(
        api.get("/v1/idempotency/" + "k" * 129),
        400,
        "VALIDATION_ERROR",
        "/v1/idempotency/{key}",
        "get",
    )
    expect_error(
        api.get("/v1/machines", params={"limit": 201}),
        400,
        "VALIDATION_ERROR",
        "/v1/machines",
        "get",
    )
    run = api.post("/v1/runs", json=run_body()).json()
    expect_error(
        api.get(f"/v1/runs/{run['id']}/events", headers={"Last-Event-ID": "x"}),
        400,
        "VALIDATION_ERROR",
        "/v1/runs/{run_id}/events",
        "get",
    )


def test_401_errors(api):
    for headers in (
        {"X-API-Key": ""},
        {"X-API-Key": "sk-live-123"},
        {"X-API-Key": "sk-coasty-"},
        {"X-API-Key": "", "Authorization": "Basic sk-coasty-live-1"},
    ):
        for method, path, template in (
            ("post", "/v1/runs", "/v1/runs"),
            ("get", "/v1/runs", "/v1/runs"),
            ("get", "/v1/machines", "/v1/machines"),
            ("get", "/v1/idempotency/abc", "/v1/idempotency/{key}"),
            (
                "get",
                "/v1/runs/00000000-0000-0000-0000-000000000000/events",
                "/v1/runs/{run_id}/events",
            ),
        ):
            response = api.request(
                method.upper(), path, headers=headers, json=run_body() if method == "post" else None
            )
            e = expect_error(response, 401, "INVALID_API_KEY", template, method)
            assert e["type"] == "auth_error"


def test_404_errors(api):
    missing = "00000000-0000-0000-0000-000000000000"
    for method, path, template in (
        ("get", f"/v1/runs/{missing}", "/v1/runs/{run_id}"),
        ("post", f"/v1/runs/{missing}/cancel", "/v1/runs/{run_id}/cancel"),
        ("post", f"/v1/runs/{missing}/resume", "/v1/runs/{run_id}/resume"),
        ("get", f"/v1/runs/{missing}/events", "/v1/runs/{run_id}/events"),
        ("get", "/v1/runs/not-a-uuid", "/v1/runs/{run_id}"),
        ("get", "/v1/idempotency/never-used", "/v1/idempotency/{key}"),
    ):
        e = expect_error(api.request(method.upper(), path), 404, "NOT_FOUND", template, method)
        assert e["type"] == "not_found_error"
    expect_error(
        api.post("/v1/runs", json=run_body(machine_id="vm-nope")),
        404,
        "NOT_FOUND",
        "/v1/runs",
        "post",
    )
    # another key kind's run is 404 too
    test_run = api.post("/v1/runs", json=run_body(), headers={"X-API-Key": TEST_KEY}).json()
    expect_error(
        api.get(f"/v1/runs/{test_run['id']}"), 404, "NOT_FOUND", "/v1/runs/{run_id}", "get"
    )


def test_409_invalid_state_and_in_flight(sim, api):
    run = api.post("/v1/runs", json=run_body()).json()
    e = expect_error(
        api.post(f"/v1/runs/{run['id']}/resume"),
        409,
        "INVALID_STATE",
        "/v1/runs/{run_id}/resume",
        "post",
    )
    assert e["type"] == "state_error" and e["retryable"] is False
    wait_status(api, run["id"], "succeeded")
    expect_error(
        api.post(f"/v1/runs/{run['id']}/cancel"),
        409,
        "INVALID_STATE",
        "/v1/runs/{run_id}/cancel",
        "post",
    )

    sim.set_faults(in_flight={"count": 1})
    response = api.post("/v1/runs", json=run_body(), headers={"Idempotency-Key": "flying"})
    e = expect_error(response, 409, "IDEMPOTENCY_IN_FLIGHT", "/v1/runs", "post")
    assert e["retryable"] is True and e["retry_with_same_idempotency_key"] is True
    assert response.headers["idempotency-status"] == "processing"


def test_422_validation_and_key_reused(api):
    e = expect_error(
        api.post("/v1/runs", json=run_body(colour="blue")),
        422,
        "VALIDATION_ERROR",
        "/v1/runs",
        "post",
    )
    assert e["details"][0]["field"] == "colour"
    api.post("/v1/runs", json=run_body(), headers={"Idempotency-Key": "k-reused"})
    e = expect_error(
        api.post("/v1/runs", json=run_body("other"), headers={"Idempotency-Key": "k-reused"}),
        422,
        "IDEMPOTENCY_KEY_REUSED",
        "/v1/runs",
        "post",
    )
    assert e["retryable"] is False
    run = api.post("/v1/runs", json=run_body("[pause]")).json()
    expect_error(
        api.post(f"/v1/runs/{run['id']}/resume", json={"note": "n" * 2001}),
        422,
        "VALIDATION_ERROR",
        "/v1/runs/{run_id}/resume",
        "post",
    )
    expect_error(
        api.post("/v1/runs", json=run_body(llm={"provider": "mistral"})),
        422,
        "LLM_PROVIDER_UNSUPPORTED",
        "/v1/runs",
        "post",
    )


def test_413_payload_too_large(api):
    big = json.dumps(run_body("x" * 1_100_000)).encode()
    expect_error(
        api.post("/v1/runs", content=big, headers={"Content-Type": "application/json"}),
        413,
        "PAYLOAD_TOO_LARGE",
        "/v1/runs",
        "post",
    )


def test_429_and_5xx(sim, api):
    sim.set_faults(rate_limit={"count": 1})
    response = api.post("/v1/runs", json=run_body(), headers={"Idempotency-Key": "k429"})
    e = expect_error(response, 429, "RATE_LIMITED", "/v1/runs", "post")
    assert (
        e["type"] == "rate_limit_error" and e["retryable"] and e["retry_with_same_idempotency_key"]
    )
    assert "retry-after" in response.headers

    sim.set_faults(server_error={"count": 1})
    e = expect_error(api.get("/v1/runs"), 500, "INTERNAL_ERROR", "/v1/runs", "get")
    assert (
        e["type"] == "server_error" and e["retryable"] and not e["retry_with_same_idempotency_key"]
    )
    sim.set_faults(server_error={"count": 1, "status": 503})
    response = api.post("/v1/runs", json=run_body(), headers={"Idempotency-Key": "k503"})
    e = expect_error(response, 503, "SERVICE_UNAVAILABLE", "/v1/runs", "post")
    assert e["retry_with_same_idempotency_key"] is True and "retry-after" in response.headers

    for mode, status, code in (("502", 502, "UPSTREAM_ERROR"), ("504", 504, "UPSTREAM_TIMEOUT")):
        sim.set_faults(lost_response={"count": 1, "mode": mode})
        e = expect_error(
            api.post("/v1/runs", json=run_body(), headers={"Idempotency-Key": f"lost-{mode}"}),
            status,
            code,
            "/v1/runs",
            "post",
        )
        assert e["retryable"] and e["retry_with_same_idempotency_key"]


def test_unknown_path_and_method_use_the_envelope(api):
    for response, status in ((api.get("/v1/nothing"), 404), (api.delete("/v1/runs"), 405)):
        assert response.status_code == status
        body = response.json()
        assert not list(schema_validator("ApiError").iter_errors(body))
        assert body["error"]["request_id"] == response.headers["x-coasty-request-id"]


# --- SSE and webhook payloads -----------------------------------------------------------------


def test_every_event_payload_matches_interfaces(sim, api):
    # given runs that between them emit every event type
    tasks = {
        "plain": run_body("[steps=2]"),
        "paused": run_body("[pause]"),
        "failing": run_body("[fail]"),
        "timing out": run_body("[forever]", deadline_seconds=2),
        "cancelled": run_body("[forever]"),
    }
    ids = {name: api.post("/v1/runs", json=body).json()["id"] for name, body in tasks.items()}
    wait_status(api, ids["paused"], "awaiting_human")
    api.post(f"/v1/runs/{ids['paused']}/resume", json={"note": "done by hand"})
    api.post(f"/v1/runs/{ids['cancelled']}/cancel")
    seen = set()
    for name, run_id in ids.items():
        events = [e for s in follow(api, run_id) for e in s.events]
        # then each payload has exactly the documented fields
        for seq, type_, data in events:
            errors = [
                e.message for e in Draft202012Validator(EVENT_SCHEMAS[type_]).iter_errors(data)
            ]
            assert not errors, (name, seq, type_, data, errors)
            assert not list(
                schema_validator("RunEvent").iter_errors({"seq": seq, "type": type_, "data": data})
            )
            seen.add(type_)
        assert [e[0] for e in events] == list(range(1, len(events) + 1))
    assert seen == set(EVENT_SCHEMAS)


def test_sse_response_headers(api):
    run = api.post("/v1/runs", json=run_body("[steps=1]")).json()
    stream = read_stream(api, run["id"])
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["x-coasty-request-id"].startswith("req_")
    assert stream.headers["x-coasty-key-kind"] == "live"


def test_webhook_bodies_match_interfaces(api):
    with WebhookReceiver() as receiver:
        run = api.post("/v1/runs", json=run_body("[pause]", webhook_url=receiver.url)).json()
        wait_status(api, run["id"], "awaiting_human")
        api.post(f"/v1/runs/{run['id']}/resume")
        for delivery in receiver.wait_for(2):
            errors = [
                e.message for e in Draft202012Validator(WEBHOOK_SCHEMA).iter_errors(delivery.json)
            ]
            assert not errors, errors
