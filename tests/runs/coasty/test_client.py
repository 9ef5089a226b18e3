"""The Coasty HTTP client: errors, odd responses, the retry rules, idempotent create and
recovery of a lost response. The network is an `httpx.MockTransport`; time is fake."""

from __future__ import annotations

import json
import logging
import pickle
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from runs.coasty import (
    CoastyAuthError,
    CoastyBadResponse,
    CoastyClient,
    CoastyError,
    CoastyIdempotencyInFlight,
    CoastyIdempotencyKeyReused,
    CoastyInsufficientCredits,
    CoastyInvalidState,
    CoastyNotFound,
    CoastyRateLimited,
    CoastyServerError,
    CoastyTransportError,
    CoastyValidationError,
    CreateRunResult,
    IdempotencyLookup,
    RetryPolicy,
    canonical_json,
)
from runs.coasty.errors import parse_retry_after

API_KEY = "sk-coasty-test-0123456789abcdef"
KEY = "run:7f9c2ba4-e88f-4c5b-9a4e-0d1e2f3a4b5c"
BODY = {"task": "Book a table for två", "machine_id": "m_1", "cua_version": "v5", "max_steps": 20}
RUN = {"id": "run_1", "object": "agent.run", "status": "queued", "webhook_secret": "whsec_abc"}
REFERENCE = Path(__file__).parents[2] / "reference" / "coasty"  # vendored copies of the upstream


# --- a fake network and fake time ---------------------------------------------------------------

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class Upstream:
    """Answers requests from a script (the last answer repeats) and records them."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        index = min(len(self.requests), len(self.answers)) - 1
        answer = self.answers[index]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)


class FakeTime:
    """A clock that only moves when the client sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_client(
    upstream: Callable[[httpx.Request], httpx.Response],
    time: FakeTime | None = None,
    **policy: Any,
) -> CoastyClient:
    time = time or FakeTime()
    return CoastyClient(
        "https://coasty.test/",
        API_KEY,
        retry=RetryPolicy(**policy),
        transport=httpx.MockTransport(upstream),
        sleep=time.sleep,
        clock=time.clock,
        rng=random.Random(7),
    )


def ok(body: Any = RUN, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def error(
    status: int,
    code: str,
    *,
    retryable: bool = False,
    same_key: bool = False,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> httpx.Response:
    envelope = {
        "code": code,
        "message": f"{code.replace('_', ' ').lower()}",
        "type": "test_error",
        "request_id": f"req_{status}",
        "retryable": retryable,
        "retry_with_same_idempotency_key": same_key,
        **extra,
    }
    return httpx.Response(status, json={"error": envelope}, headers=headers)


def html_502() -> httpx.Response:
    return httpx.Response(
        502,
        content=b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        headers={"content-type": "text/html"},
    )


# --- every documented error becomes the right exception ----------------------------------------

DOCUMENTED = [
    (400, "VALIDATION_ERROR", CoastyValidationError),
    (401, "INVALID_API_KEY", CoastyAuthError),
    (402, "INSUFFICIENT_CREDITS", CoastyInsufficientCredits),
    (403, "INSUFFICIENT_SCOPE", CoastyAuthError),
    (404, "NOT_FOUND", CoastyNotFound),
    (409, "INVALID_STATE", CoastyInvalidState),
    (409, "CONFLICT", CoastyInvalidState),
    (409, "IDEMPOTENCY_IN_FLIGHT", CoastyIdempotencyInFlight),
    (413, "PAYLOAD_TOO_LARGE", CoastyValidationError),
    (422, "VALIDATION_ERROR", CoastyValidationError),
    (422, "INVALID_SCREENSHOT", CoastyValidationError),
    (422, "IDEMPOTENCY_KEY_REUSED", CoastyIdempotencyKeyReused),
    (422, "LLM_PROVIDER_UNSUPPORTED", CoastyValidationError),
    (429, "RATE_LIMIT_EXCEEDED", CoastyRateLimited),
    (429, "LLM_PROVIDER_RATE_LIMITED", CoastyRateLimited),
    (500, "INTERNAL_ERROR", CoastyServerError),
    (502, "UPSTREAM_ERROR", CoastyServerError),
    (503, "SERVICE_UNAVAILABLE", CoastyServerError),
    (503, "BILLING_UNAVAILABLE", CoastyServerError),
    (504, "UPSTREAM_TIMEOUT", CoastyServerError),
]


@pytest.mark.parametrize(("status", "code", "error_class"), DOCUMENTED)
def test_each_documented_error_becomes_its_exception_with_the_envelope(status, code, error_class):
    # given Coasty answering with its envelope and a Retry-After header
    upstream = Upstream(
        error(
            status,
            code,
            retryable=True,
            same_key=True,
            headers={"Retry-After": "7"},
            suggestion="try again",
        )
    )
    client = make_client(upstream)

    # when (cancel is never retried, so exactly one answer is seen)
    with pytest.raises(error_class) as raised:
        client.cancel_run("run_1")

    # then every field of the envelope is on the exception
    err = raised.value
    assert isinstance(err, CoastyError)
    assert (err.status, err.code, err.type) == (status, code, "test_error")
    assert err.message == code.replace("_", " ").lower()
    assert err.request_id == f"req_{status}"
    assert err.retryable is True
    assert err.retry_with_same_idempotency_key is True
    assert err.retry_after == 7.0
    assert err.envelope is not None and err.envelope["suggestion"] == "try again"
    assert str(status) in str(err) and code in str(err) and f"req_{status}" in str(err)
    assert len(upstream.requests) == 1


def test_the_table_covers_every_problem_and_response_in_the_reference():
    import yaml

    # given every (status, code) the reference documents
    problems = yaml.safe_load((REFERENCE / "coasty-problem-types.yml").read_text())["problems"]
    documented = {(p["status"], p["code"]) for p in problems}
    spec = yaml.safe_load((REFERENCE / "coasty-runs-api-openapi.yml").read_text())
    for name, response in spec["components"]["responses"].items():
        example = response["content"]["application/json"]["example"]["error"]
        status = {
            "BadRequest": 400,
            "Unauthorized": 401,
            "PaymentRequired": 402,
            "Forbidden": 403,
            "NotFound": 404,
            "Conflict": 409,
            "PayloadTooLarge": 413,
            "UnprocessableEntity": 422,
            "RateLimited": 429,
            "ServerError": 500,
            "BadGateway": 502,
            "ServiceUnavailable": 503,
            "GatewayTimeout": 504,
        }[name]
        documented.add((status, example["code"]))

    # then each is in the table the test above runs through
    assert documented <= {(status, code) for status, code, _ in DOCUMENTED}


def test_missing_envelope_fields_default_by_status_and_retry_after_comes_from_the_body():
    # given an envelope with only code and message, and retry_after in the body
    upstream = Upstream(
        httpx.Response(
            503,
            json={"error": {"code": "SERVICE_UNAVAILABLE", "message": "busy", "retry_after": 4}},
            headers={"X-Coasty-Request-Id": "req_from_header"},
        )
    )

    # when
    with pytest.raises(CoastyServerError) as raised:
        make_client(upstream).cancel_run("run_1")

    # then
    err = raised.value
    assert err.retryable is True  # a 5xx is retryable unless Coasty says otherwise
    assert err.retry_with_same_idempotency_key is False
    assert err.retry_after == 4.0
    assert err.request_id == "req_from_header"


def test_retry_after_header_wins_and_may_be_an_http_date():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    upstream = Upstream(
        error(429, "RATE_LIMIT_EXCEEDED", headers={"Retry-After": "2"}, retry_after=9)
    )
    with pytest.raises(CoastyRateLimited) as raised:
        make_client(upstream).cancel_run("run_1")
    assert raised.value.retry_after == 2.0


# --- odd responses become CoastyBadResponse -------------------------------------------------------

ODD = {
    "proxy HTML 502": (html_502(), 502),
    "empty 200": (
        httpx.Response(200, content=b"", headers={"content-type": "application/json"}),
        200,
    ),
    "empty 500": (httpx.Response(500), 500),
    "JSON sent as text/plain": (
        httpx.Response(
            200, content=json.dumps(RUN).encode(), headers={"content-type": "text/plain"}
        ),
        200,
    ),
    "no content type": (httpx.Response(200, content=json.dumps(RUN).encode()), 200),
    "truncated JSON": (
        httpx.Response(
            200,
            content=b'{"id": "run_1", "status": "que',
            headers={"content-type": "application/json"},
        ),
        200,
    ),
    "not UTF-8": (
        httpx.Response(200, content=b"\xff\xfe{}", headers={"content-type": "application/json"}),
        200,
    ),
    "JSON array": (ok([RUN]), 200),
    "run without id": (ok({"status": "queued"}), 200),
    "404 from a framework": (httpx.Response(404, json={"detail": "Not Found"}), 404),
    "envelope without code": (httpx.Response(400, json={"error": {"message": "nope"}}), 400),
    "redirect to a login page": (httpx.Response(302, headers={"location": "/login"}), 302),
}


@pytest.mark.parametrize("name", list(ODD))
def test_odd_responses_become_a_retryable_bad_response(name):
    # given
    response, status = ODD[name]
    upstream = Upstream(response)

    # when
    with pytest.raises(CoastyBadResponse) as raised:
        make_client(upstream, max_attempts=1).get_run("run_1")

    # then
    err = raised.value
    assert err.status == status
    assert err.retryable is True
    assert err.code == "BAD_RESPONSE"
    assert "unexpected response from Coasty" in str(err)


@pytest.mark.parametrize(
    ("call", "body"),
    [
        (lambda c: c.list_runs(), {"object": "list", "data": "nope"}),
        (lambda c: c.list_runs(), {"object": "list", "data": [1, 2]}),
        (lambda c: c.list_machines(), {"machines": []}),
        (lambda c: c.health(), {"ok": True}),
        (lambda c: c.idempotency_lookup(KEY), {"status": "done"}),
        (lambda c: c.idempotency_lookup(KEY), {"status": "completed", "result": None}),
        (
            lambda c: c.idempotency_lookup(KEY),
            {"status": "completed", "result": RUN, "original_status": "200"},
        ),
        (lambda c: c.resume_run("run_1"), {"id": 5, "status": "running"}),
    ],
)
def test_a_200_without_the_expected_shape_is_a_bad_response(call, body):
    with pytest.raises(CoastyBadResponse):
        call(make_client(Upstream(ok(body)), max_attempts=1))


def test_bad_response_snippet_is_short_and_has_no_secrets():
    # given a create response cut off inside the webhook secret
    cut = b'{"id":"run_1","status":"queued","webhook_secret":"whsec_live_s3cr3t_value_that_is_lo'
    upstream = Upstream(
        httpx.Response(200, content=cut, headers={"content-type": "application/json"})
    )

    # when
    with pytest.raises(CoastyBadResponse) as raised:
        make_client(upstream).create_run(BODY, idempotency_key=KEY)

    # then
    assert "whsec_" not in str(raised.value)
    assert "s3cr3t" not in raised.value.snippet
    assert '"id":"run_1"' in raised.value.snippet
    long_page = Upstream(
        httpx.Response(502, content=b"x" * 10_000, headers={"content-type": "text/html"})
    )
    with pytest.raises(CoastyBadResponse) as raised:
        make_client(long_page, max_attempts=1).get_run("run_1")
    assert len(raised.value.snippet) <= 201


# --- the retry rules --------------------------------------------------------------------------


def test_get_retries_transport_errors_timeouts_5xx_429_and_odd_answers():
    # given
    time = FakeTime()
    upstream = Upstream(
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("read timed out"),
        error(500, "INTERNAL_ERROR"),
        error(429, "RATE_LIMIT_EXCEEDED", headers={"Retry-After": "2"}),
        html_502(),
        ok(),
    )

    # when
    run = make_client(upstream, time, max_attempts=6).get_run("run_1")

    # then
    assert run["id"] == "run_1"
    assert len(upstream.requests) == 6
    assert all(r.method == "GET" and r.url.path == "/v1/runs/run_1" for r in upstream.requests)
    assert len(time.sleeps) == 5
    # Retry-After honoured: a floor under the 4th failure's full jitter (up to 0.5 * 2**3 s)
    assert 2.0 <= time.sleeps[3] <= 4.0


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "VALIDATION_ERROR"),
        (401, "INVALID_API_KEY"),
        (402, "INSUFFICIENT_CREDITS"),
        (403, "INSUFFICIENT_SCOPE"),
        (404, "NOT_FOUND"),
        (409, "INVALID_STATE"),
        (413, "PAYLOAD_TOO_LARGE"),
        (422, "VALIDATION_ERROR"),
    ],
)
def test_deterministic_4xx_is_never_retried(status, code):
    # given
    for call in (lambda c: c.get_run("run_1"), lambda c: c.create_run(BODY, idempotency_key=KEY)):
        upstream = Upstream(error(status, code, retryable=False), ok())
        time = FakeTime()

        # when
        with pytest.raises(CoastyError):
            call(make_client(upstream, time))

        # then
        assert len(upstream.requests) == 1
        assert time.sleeps == []


def test_create_run_retries_with_the_same_key_and_the_same_bytes():
    # given every failure a keyed POST may retry, then success (a replay)
    upstream = Upstream(
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("read timed out"),
        error(500, "INTERNAL_ERROR", retryable=True, same_key=True),
        html_502(),
        error(503, "SERVICE_UNAVAILABLE", retryable=True, same_key=True),
        error(429, "RATE_LIMIT_EXCEEDED", retryable=True, same_key=True),
        error(409, "IDEMPOTENCY_IN_FLIGHT", retryable=True, same_key=True),
        ok(RUN, **{"X-Coasty-Idempotent-Replay": "true", "X-Coasty-Test-Mode": "true"}),
    )
    time = FakeTime()

    # when
    result = make_client(upstream, time, max_attempts=8).create_run(BODY, idempotency_key=KEY)

    # then
    assert result == CreateRunResult(run=RUN, replayed=True, test_mode=True, request_id=None)
    assert len(upstream.requests) == 8
    expected = json.dumps(BODY, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    for request in upstream.requests:
        assert (request.method, request.url.path) == ("POST", "/v1/runs")
        assert request.content == expected
        assert request.headers["Idempotency-Key"] == KEY
        assert request.headers["Content-Type"] == "application/json"
    assert len(time.sleeps) == 7


@pytest.mark.parametrize(
    "failure",
    [
        error(422, "IDEMPOTENCY_KEY_REUSED"),
        error(409, "INVALID_STATE"),
        error(402, "INSUFFICIENT_CREDITS"),
        # an odd 2xx: the run exists; create_run_or_recover collects it through the lookup
        httpx.Response(200, content=b'{"id": "ru', headers={"content-type": "application/json"}),
        # Coasty says this key is spent (refunded): only a new key could succeed
        error(503, "BILLING_UNAVAILABLE", retryable=True, same_key=False),
    ],
)
def test_create_run_does_not_retry_what_a_retry_cannot_fix(failure):
    upstream = Upstream(failure, ok())
    with pytest.raises(CoastyError):
        make_client(upstream).create_run(BODY, idempotency_key=KEY)
    assert len(upstream.requests) == 1


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        error(503, "SERVICE_UNAVAILABLE"),
        error(429, "RATE_LIMIT_EXCEEDED"),
        html_502(),
    ],
)
@pytest.mark.parametrize("call", ["cancel", "resume"])
def test_cancel_and_resume_are_not_retried_by_the_client(failure, call):
    # given
    upstream = Upstream(failure, ok())
    client = make_client(upstream)

    # when / then: the caller decides what a failed cancel or resume means
    with pytest.raises(CoastyError):
        client.cancel_run("run_1") if call == "cancel" else client.resume_run("run_1", "done")
    assert len(upstream.requests) == 1


def test_attempts_are_bounded():
    # given
    upstream = Upstream(error(503, "SERVICE_UNAVAILABLE", retryable=True))
    time = FakeTime()

    # when
    with pytest.raises(CoastyServerError) as raised:
        make_client(upstream, time, max_attempts=4).get_run("run_1")

    # then
    assert len(upstream.requests) == 4
    assert raised.value.attempts == 4
    assert len(time.sleeps) == 3


def test_total_time_is_bounded_by_sleeps():
    # given Retry-After 4 each time and 10 s in all
    upstream = Upstream(error(503, "SERVICE_UNAVAILABLE", headers={"Retry-After": "4"}))
    time = FakeTime()

    # when
    with pytest.raises(CoastyServerError):
        make_client(upstream, time, max_attempts=100, max_elapsed=10).create_run(
            BODY, idempotency_key=KEY
        )

    # then attempts at t=0, 4, 8; a fourth would start at 12
    assert len(upstream.requests) == 3
    assert time.sleeps == [4.0, 4.0]


def test_total_time_counts_slow_attempts_too():
    # given attempts that each take 6 s of the 10 s allowed
    time = FakeTime()

    def slow(request: httpx.Request) -> httpx.Response:
        time.now += 6
        return error(503, "SERVICE_UNAVAILABLE", headers={"Retry-After": "0"})

    upstream = Upstream(slow)

    # when
    with pytest.raises(CoastyServerError):
        make_client(upstream, time, max_attempts=100, max_elapsed=10).get_run("run_1")

    # then
    assert len(upstream.requests) == 2


def test_long_retry_after_is_capped():
    upstream = Upstream(error(429, "RATE_LIMIT_EXCEEDED", headers={"Retry-After": "600"}), ok())
    time = FakeTime()
    make_client(upstream, time, retry_after_cap=30, max_elapsed=100).get_run("run_1")
    assert time.sleeps == [30.0]


def test_backoff_is_exponential_with_full_jitter():
    # given
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    rng = random.Random(1)

    # when
    samples = {
        n: [policy.backoff(n, retry_after=None, rng=rng) for _ in range(2000)]
        for n in (1, 2, 3, 6, 9)
    }

    # then each delay is uniform in [0, min(8, 0.5 * 2**(n-1))]
    for n, delays in samples.items():
        ceiling = min(8.0, 0.5 * 2 ** (n - 1))
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.9 * ceiling
        assert 0.4 * ceiling < sum(delays) / len(delays) < 0.6 * ceiling
    assert policy.backoff(3, retry_after=2.5, rng=rng) == 2.5
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_retries_are_logged_without_secrets(caplog):
    # given
    upstream = Upstream(html_502(), ok())

    # when
    with caplog.at_level(logging.WARNING, logger="runs.coasty"):
        make_client(upstream).create_run(BODY, idempotency_key=KEY)

    # then
    assert "attempt 1/5" in caplog.text and KEY in caplog.text and "POST /v1/runs" in caplog.text
    assert API_KEY not in caplog.text
    assert "whsec_" not in caplog.text
    assert BODY["task"] not in caplog.text


# --- create_run and the idempotency key -----------------------------------------------------------


def test_create_run_sends_canonical_json_with_key_auth_and_user_agent():
    # given
    upstream = Upstream(ok(RUN, **{"X-Coasty-Request-Id": "req_1"}))

    # when
    result = make_client(upstream).create_run(
        {"z": 1, "a": {"y": [1, "é"], "b": None}}, idempotency_key=KEY
    )

    # then
    request = upstream.requests[0]
    assert request.content == '{"a":{"b":null,"y":[1,"é"]},"z":1}'.encode()
    assert request.headers["X-API-Key"] == API_KEY
    assert request.headers["User-Agent"].startswith("coasty-portal/")
    assert request.headers["Accept"] == "application/json"
    assert str(request.url) == "https://coasty.test/v1/runs"
    assert result == CreateRunResult(run=RUN, replayed=False, test_mode=False, request_id="req_1")


def test_canonical_json_does_not_depend_on_key_order():
    assert canonical_json({"b": 1, "a": 2}) == canonical_json({"a": 2, "b": 1}) == b'{"a":2,"b":1}'


@pytest.mark.parametrize(
    "key", ["", "k" * 129, "has space", "slash/key", "ünïcode", "semi;colon", "new\nline", None, 42]
)
def test_invalid_idempotency_keys_are_refused_before_sending(key):
    upstream = Upstream(ok())
    with pytest.raises(ValueError):
        make_client(upstream).create_run(BODY, idempotency_key=key)
    with pytest.raises(ValueError):
        make_client(upstream).idempotency_lookup(key)
    assert upstream.requests == []


@pytest.mark.parametrize(
    "key", ["k" * 128, "a", "run:123_abc-DEF", "550e8400-e29b-41d4-a716-446655440000"]
)
def test_valid_idempotency_keys_are_sent(key):
    upstream = Upstream(ok())
    make_client(upstream).create_run(BODY, idempotency_key=key)
    assert upstream.requests[0].headers["Idempotency-Key"] == key


@pytest.mark.parametrize("body", [{"x": float("nan")}, {"x": {1, 2}}, ["not", "an", "object"]])
def test_bodies_json_cannot_hold_are_refused_before_sending(body):
    upstream = Upstream(ok())
    with pytest.raises((TypeError, ValueError)):
        make_client(upstream).create_run(body, idempotency_key=KEY)
    assert upstream.requests == []


# --- collecting a lost response ----------------------------------------------------------------


class IdempotentCoasty:
    """A fake Coasty that keeps runs per Idempotency-Key, like the real one, and can lose
    the responses to POSTs (the request arrives and is processed; the answer never does)."""

    def __init__(self, *, lose_posts: int, lookup: httpx.Response | None = None) -> None:
        self.lose_posts = lose_posts
        self.lookup = lookup
        self.runs: dict[str, tuple[bytes, dict[str, Any]]] = {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "GET" and request.url.path.startswith("/v1/idempotency/"):
            if self.lookup is not None:
                return self.lookup
            key = request.url.path.rsplit("/", 1)[1]
            if key not in self.runs:
                return error(404, "NOT_FOUND")
            return ok(
                {
                    "status": "completed",
                    "result": self.runs[key][1],
                    "original_status": 200,
                    "request_id": "req_lookup",
                }
            )
        key = request.headers["Idempotency-Key"]
        replay = key in self.runs
        if replay and self.runs[key][0] != request.content:
            return error(422, "IDEMPOTENCY_KEY_REUSED")
        if not replay:
            self.runs[key] = (request.content, {**RUN, "id": f"run_{len(self.runs) + 1}"})
        if self.lose_posts > 0:
            self.lose_posts -= 1
            raise httpx.ReadTimeout("the response was lost")
        headers = {"X-Coasty-Idempotent-Replay": "true"} if replay else {}
        return ok(self.runs[key][1], **headers)


def test_a_retry_after_a_lost_response_is_a_replay_not_a_second_run():
    # given the first answer is lost after Coasty created the run
    coasty = IdempotentCoasty(lose_posts=1)

    # when
    result = make_client(coasty).create_run(BODY, idempotency_key=KEY)

    # then
    assert result.replayed is True
    assert result.run["id"] == "run_1"
    assert len(coasty.runs) == 1
    assert len(coasty.requests) == 2


def test_create_run_or_recover_collects_the_run_through_the_idempotency_lookup():
    # given every answer to the POST is lost
    coasty = IdempotentCoasty(lose_posts=100)

    # when
    result = make_client(coasty, max_attempts=3).create_run_or_recover(BODY, idempotency_key=KEY)

    # then
    assert result == CreateRunResult(
        run=coasty.runs[KEY][1], replayed=True, test_mode=False, request_id="req_lookup"
    )
    assert [r.method for r in coasty.requests] == ["POST", "POST", "POST", "GET"]
    assert coasty.requests[-1].url.path == f"/v1/idempotency/{KEY}"
    assert len(coasty.runs) == 1


def test_create_run_or_recover_after_an_odd_200():
    # given Coasty created the run but the answer arrived truncated
    def truncated(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=b'{"id": "run_1", "sta', headers={"content-type": "application/json"}
        )

    upstream = Upstream(
        truncated, ok({"status": "completed", "result": RUN, "original_status": 200})
    )

    # when
    result = make_client(upstream).create_run_or_recover(BODY, idempotency_key=KEY)

    # then
    assert result.run == RUN and result.replayed is True
    assert [r.method for r in upstream.requests] == ["POST", "GET"]


def test_create_run_or_recover_while_the_original_is_still_processing():
    coasty = IdempotentCoasty(
        lose_posts=100, lookup=ok({"status": "processing", "request_id": "req_p"})
    )
    with pytest.raises(CoastyIdempotencyInFlight) as raised:
        make_client(coasty, max_attempts=2).create_run_or_recover(BODY, idempotency_key=KEY)
    assert raised.value.retry_with_same_idempotency_key is True
    assert raised.value.request_id == "req_p"


def test_create_run_or_recover_reraises_when_coasty_never_saw_the_key():
    # given the POST never reached Coasty
    refused = httpx.ConnectError("connection refused")
    upstream = Upstream(refused, refused, error(404, "NOT_FOUND"))

    # when
    with pytest.raises(CoastyTransportError) as raised:
        make_client(upstream, max_attempts=2).create_run_or_recover(BODY, idempotency_key=KEY)

    # then
    assert raised.value.attempts == 2
    assert raised.value.retry_with_same_idempotency_key is True
    assert any("no run was created" in note for note in raised.value.__notes__)
    assert isinstance(raised.value.__cause__, httpx.ConnectError)


def test_create_run_or_recover_reraises_the_original_when_the_lookup_fails_too():
    upstream = Upstream(error(503, "SERVICE_UNAVAILABLE"))
    with pytest.raises(CoastyServerError) as raised:
        make_client(upstream, max_attempts=2).create_run_or_recover(BODY, idempotency_key=KEY)
    assert any("lookup failed too" in note for note in raised.value.__notes__)
    assert [r.method for r in upstream.requests] == ["POST", "POST", "GET", "GET"]


def test_create_run_or_recover_raises_a_stored_error_answer():
    # given the original request was answered 402, and that answer was lost
    stored = {
        "error": {
            "code": "INSUFFICIENT_CREDITS",
            "message": "Need 5, have 2.",
            "type": "billing_error",
            "request_id": "req_orig",
            "retryable": False,
            "retry_with_same_idempotency_key": False,
        }
    }
    upstream = Upstream(
        httpx.ReadTimeout("lost"),
        ok({"status": "completed", "result": stored, "original_status": 402}),
    )

    # when / then
    with pytest.raises(CoastyInsufficientCredits) as raised:
        make_client(upstream, max_attempts=1).create_run_or_recover(BODY, idempotency_key=KEY)
    assert raised.value.request_id == "req_orig"


def test_create_run_or_recover_does_not_look_up_deterministic_errors():
    upstream = Upstream(error(422, "VALIDATION_ERROR"))
    with pytest.raises(CoastyValidationError):
        make_client(upstream).create_run_or_recover(BODY, idempotency_key=KEY)
    assert len(upstream.requests) == 1


def test_idempotency_lookup_answers():
    completed = Upstream(
        ok(
            {"status": "completed", "result": RUN, "original_status": 200, "request_id": "req_l"},
            **{"X-Coasty-Test-Mode": "true"},
        )
    )
    assert make_client(completed).idempotency_lookup(KEY) == IdempotencyLookup(
        status="completed", result=RUN, original_status=200, test_mode=True, request_id="req_l"
    )
    assert completed.requests[0].url.path == f"/v1/idempotency/{KEY}"
    processing = Upstream(ok({"status": "processing", "request_id": "req_p"}))
    lookup = make_client(processing).idempotency_lookup(KEY)
    assert (lookup.status, lookup.result, lookup.original_status) == ("processing", None, None)
    with pytest.raises(CoastyNotFound):
        make_client(Upstream(error(404, "NOT_FOUND"))).idempotency_lookup(KEY)


# --- the other calls ----------------------------------------------------------------------------


def test_reads_and_writes_go_where_the_api_says():
    # given
    runs = {"object": "list", "data": [RUN], "has_more": False}
    machines = {
        "data": [{"id": "m_1", "display_name": "Linux", "status": "running"}],
        "request_id": "r",
    }

    def route(request: httpx.Request) -> httpx.Response:
        return {
            ("GET", "/v1/runs"): ok(runs),
            ("GET", "/v1/runs/run%2F1"): ok(RUN),
            ("POST", "/v1/runs/run_1/cancel"): ok({**RUN, "status": "cancelled"}),
            ("POST", "/v1/runs/run_1/resume"): ok({**RUN, "status": "running"}),
            ("GET", "/v1/machines"): ok(machines),
            ("GET", "/v1/health"): ok({"status": "ok"}),
        }[(request.method, request.url.raw_path.split(b"?")[0].decode())]

    upstream = Upstream(route)
    client = make_client(upstream)

    # when / then
    assert client.list_runs(status="running", limit=5) == runs
    assert dict(upstream.requests[-1].url.params) == {"status": "running", "limit": "5"}
    assert client.list_runs() == runs
    assert dict(upstream.requests[-1].url.params) == {"limit": "20"}
    assert client.get_run("run/1") == RUN
    assert client.cancel_run("run_1")["status"] == "cancelled"
    assert upstream.requests[-1].content == b""
    assert client.resume_run("run_1", note="solved the captcha")["status"] == "running"
    assert json.loads(upstream.requests[-1].content) == {"note": "solved the captcha"}
    client.resume_run("run_1")
    assert upstream.requests[-1].content == b"{}"
    assert client.list_machines(limit=10) == machines["data"]
    assert dict(upstream.requests[-1].url.params) == {"limit": "10"}
    assert client.health() == {"status": "ok"}
    with pytest.raises(ValueError):
        client.get_run("")


def test_the_portal_configures_its_client_from_the_django_settings(settings):
    from runs.upstream import client_from_settings

    # given
    settings.COASTY_BASE_URL = "https://coasty.example"
    settings.COASTY_API_KEY = "sk-coasty-test-from-settings"
    settings.COASTY_CONNECT_TIMEOUT = 2.5
    settings.COASTY_READ_TIMEOUT = 12.0
    upstream = Upstream(ok({"status": "ok"}))

    # when
    client = client_from_settings(transport=httpx.MockTransport(upstream))
    client.health()

    # then
    assert (client.base_url, client.connect_timeout, client.read_timeout) == (
        "https://coasty.example",
        2.5,
        12.0,
    )
    assert upstream.requests[0].headers["X-API-Key"] == "sk-coasty-test-from-settings"
    assert "sk-coasty" not in repr(client)


def test_async_http_is_configured_for_streaming():
    client = CoastyClient("https://coasty.test", API_KEY, connect_timeout=3)
    http = client.async_http()
    try:
        assert str(http.base_url) == "https://coasty.test"
        assert http.headers["X-API-Key"] == API_KEY
        assert http.timeout.connect == 3
        assert http.timeout.read is not None and http.timeout.read > 30  # > keep-alive interval
    finally:
        import asyncio

        asyncio.run(http.aclose())
        client.close()


def test_the_package_imports_without_django_settings():
    # given a fresh interpreter with no Django settings module
    code = (
        "import sys, runs.coasty as c; "
        "assert c.CoastyClient and c.follow_events and c.verify; "
        "print(any(m == 'django' or m.startswith('django.') for m in sys.modules))"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[3])}

    # when
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )

    # then
    assert out.stdout.strip() == "False"


def test_errors_survive_pickling():
    err = CoastyRateLimited(
        "slow down",
        status=429,
        code="RATE_LIMIT_EXCEEDED",
        retry_after=3.0,
        retryable=True,
        request_id="req_x",
    )
    copy = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
    assert type(copy) is CoastyRateLimited
    assert (copy.status, copy.code, copy.retry_after, copy.request_id) == (
        429,
        "RATE_LIMIT_EXCEEDED",
        3.0,
        "req_x",
    )
    assert str(copy) == str(err)
    odd = CoastyBadResponse("odd", status=502, snippet="<html>")
    bad = pickle.loads(pickle.dumps(odd))  # noqa: S301 - our own bytes
    assert bad.snippet == "<html>" and bad.retryable is True


def test_retry_after_zero_still_backs_off():
    import random

    from runs.coasty.retry import RetryPolicy

    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    rng = random.Random(1)
    waits = [policy.backoff(n, retry_after=0, rng=rng) for n in range(1, 6)]
    assert sum(waits) > 0.5, waits  # "0" must not mean five immediate retries
    assert policy.backoff(1, retry_after=20, rng=rng) == 20  # a longer hint is honoured
