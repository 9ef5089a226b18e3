"""Upstream data is untrusted data (issue 12, cases 4 and 5): NaN and infinities never reach a
JSON column, Coasty's numbers fit 64-bit columns, an event's data is stored capped, and
`error.details` (which field Coasty refused) reach the run page and the API."""

import json
import math

import httpx
import pytest
from django.test import override_settings
from django.urls import reverse

from runs import services, upstream
from runs.coasty import CoastyClient, CoastyValidationError, RetryPolicy
from runs.coasty.strict_json import PORTAL_KEY
from runs.models import RunEvent, RunStatus
from runs.services import IncomingEvent
from tests.runs.support import _accepted_run, _launch, _wallet, _webhook

pytestmark = pytest.mark.django_db


def test_nan_and_infinity_in_events_are_stored_as_null_and_the_stream_moves_on(
    funded_team, make_member, coasty
):
    # given events that carry numbers no JSON column takes (from a path other than the strict
    # stream reader, which already refuses them)
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    events = [
        IncomingEvent(1, "tool_result", {"ok": True, "score": math.nan, "n": [math.inf]}),
        IncomingEvent(2, "step", {"step": 1}),
    ]

    # when they are ingested (on PostgreSQL as on SQLite)
    services.events_ingest(run_id=run.pk, events=events)

    # then they are stored, the non-finite numbers as null, and the step is charged
    stored = {e.seq: e.data for e in RunEvent.objects.filter(run=run)}
    assert stored[1] == {"ok": True, "score": None, "n": [None]}
    run.refresh_from_db()
    assert (run.last_seq, run.steps_completed, run.charged_cents) == (2, 1, 5)


@override_settings(RUNS_EVENT_DATA_MAX_BYTES=2000)
def test_event_data_is_stored_capped_with_its_size_recorded(funded_team, make_member, coasty):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(1, "text", {"text": "x" * 5000}),
            IncomingEvent(2, "step", {"step": 1}),
        ],
    )
    stored = {e.seq: e.data for e in RunEvent.objects.filter(run=run)}
    assert stored[1] == {PORTAL_KEY: {"oversize_bytes": 5011, "limit_bytes": 2000}}
    assert stored[2] == {"step": 1}


def _client_answering(record: bytes) -> CoastyClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=record, headers={"content-type": "application/json"})

    return CoastyClient(
        "http://coasty.test",
        "sk-coasty-test-k",
        transport=httpx.MockTransport(answer),
        retry=RetryPolicy(max_attempts=1),
    )


def test_a_run_record_with_nan_and_a_huge_step_count_settles(
    funded_team, make_member, coasty, monkeypatch
):
    # given a run that ended, whose Coasty record has NaN in its result and a step count
    # beyond 32 bits
    run = _accepted_run(funded_team, make_member(funded_team), coasty, max_steps=10)
    record = (
        b'{"id": "%s", "status": "succeeded", "steps_completed": 4294967296000,'
        b' "credits_charged": 50, "result": {"text": "done", "score": NaN, "big": 1e999}}'
        % run.upstream_id.encode()
    )
    services.events_ingest(
        run_id=run.pk, events=[IncomingEvent(1, "done", {"status": "succeeded"})]
    )
    monkeypatch.setattr(upstream, "coasty", lambda: _client_answering(record))

    # when it is settled, twice
    services.run_settle(run_id=run.pk)
    services.run_settle(run_id=run.pk)

    # then its money is final: charged up to its hold, the rest released
    run.refresh_from_db()
    assert run.settled_at is not None
    assert run.charged_cents == 50
    assert run.upstream_steps_completed == 4294967296000
    assert run.result["text"] == "done" and run.result["score"] is None
    assert _wallet(funded_team) == (4950, 0, 50)


ERROR_DETAILS = [{"field": "max_steps", "message": "must be at most 1000"}]


def test_error_details_of_a_refused_run_reach_the_page_and_the_api(
    funded_team, make_member, coasty, client_for, api_client_for
):
    bob = make_member(funded_team)
    run, _ = _launch(funded_team, bob)
    coasty.fail_create_with = CoastyValidationError(
        "Request validation failed; see details.",
        status=422,
        code="VALIDATION_ERROR",
        envelope={
            "code": "VALIDATION_ERROR",
            "message": "Request validation failed; see details.",
            "details": ERROR_DETAILS,
        },
    )

    services.run_submit(run_id=run.pk)

    run.refresh_from_db()
    assert run.status == RunStatus.SUBMIT_FAILED
    assert "max_steps: must be at most 1000" in run.error
    page = client_for(bob).get(reverse("run_detail", args=[run.pk]))
    assert "max_steps: must be at most 1000" in page.content.decode()
    api = api_client_for(bob).get(f"/api/v1/runs/{run.pk}/")
    assert "max_steps: must be at most 1000" in api.json()["error"]


def test_error_details_from_the_stream_and_webhooks_are_kept(funded_team, make_member, coasty):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    services.events_ingest(
        run_id=run.pk,
        events=[
            IncomingEvent(
                1,
                "error",
                {"code": "TOOL_FAILED", "message": "Tool refused", "details": {"url": "blocked"}},
            )
        ],
    )
    run.refresh_from_db()
    assert run.error == "Tool refused (url: blocked)"

    answer = _webhook(
        run,
        {
            "event": "run.failed",
            "run_id": run.upstream_id,
            "status": "failed",
            "error": {"code": "VALIDATION_ERROR", "message": "Bad", "details": ERROR_DETAILS},
            "created_at": "2026-11-28T10:00:00Z",
        },
    )
    assert answer.status == 200
    run.refresh_from_db()
    assert run.error == "Bad (max_steps: must be at most 1000)"


def test_a_webhook_with_nan_is_applied_with_the_value_refused(funded_team, make_member, coasty):
    run = _accepted_run(funded_team, make_member(funded_team), coasty)
    payload = {
        "event": "run.failed",
        "run_id": run.upstream_id,
        "status": "failed",
        "error": {"message": "m", "score": math.nan},
        "result": {"x": math.inf},
    }
    assert "NaN" in json.dumps(payload)
    answer = _webhook(run, payload)
    assert answer.status == 200
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error == "m"
