"""schemathesis against /api/schema/: every operation, fuzzed through the WSGI app with a real
token and seeded data, must never answer 5xx and must answer only what the schema describes
(status codes, content types, headers and bodies).

Bounded to stay fast in `make test`: a fixed number of examples per operation, derandomised so
CI sees the same cases every run.

At the end, what the description itself says: the bearer scheme, idempotency and the error
envelope, every path, and the docs page served without a CDN.
"""

import json
import zlib

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from portal.core.services import api_token_create
from portal.teams.models import Membership, Role
from portal.wsgi import application
from runs.models import Run, RunEvent, RunStatus
from tests.api_world import awaiting_human, launch, make_world

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION = 100

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# Loaded from the app itself, as a client would: the schema view needs no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture
def seeded(db, settings):
    """A seeded organisation; returns the token to call with and real ids to aim at."""
    # Requests go through the bare WSGI app, which would close the test's database connection
    # at the end of each request (Django's test client avoids that in the same way).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    # Fuzzing sends hundreds of requests a minute; throttling is tested elsewhere.
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_read": "100000/min", "api_write": "100000/min"},
    }
    world = make_world()
    # The caller manages research and is a billing admin, so every operation can succeed.
    Membership.objects.create(team=world.team, user=world.billing_admin, role=Role.MANAGER)
    for n in range(3):
        done = launch(world.team, world.member, task=f"finished {n}")
        Run.objects.filter(pk=done.pk).update(status=RunStatus.SUCCEEDED)
    waiting = awaiting_human(launch(world.team, world.member, task="needs a human"))
    RunEvent.objects.create(run=waiting, seq=1, type="status", data={"status": "running"})
    _, token = api_token_create(user=world.billing_admin, name="schemathesis")
    yield {
        "token": token,
        "slug": ["research", "ops"],
        "run_id": [str(world.run.pk), str(waiting.pk)],
    }
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _aim(value, choices):
    """Most generated path values are swapped for real ones, so cases reach real data; the
    swap is a function of the generated value, so a case always gets the same one."""
    digest = zlib.crc32(str(value).encode())
    return value if digest % 5 == 0 else choices[digest % len(choices)]


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_what_its_schema_says(case, seeded):
    for name in ("slug", "run_id"):
        if name in (case.path_parameters or {}):
            case.path_parameters[name] = _aim(case.path_parameters[name], seeded[name])
    case.call_and_validate(headers={"Authorization": f"Bearer {seeded['token']}"}, checks=CHECKS)


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
        "/api/v1/teams/{slug}/budget/",
        "/api/v1/teams/{slug}/members/{username}/limit/",
        "/api/v1/runs/{run_id}/approve/",
        "/api/v1/runs/{run_id}/reject/",
        "/api/v1/teams/{slug}/schedules/",
        "/api/v1/schedules/{schedule_id}/",
        "/api/v1/schedules/{schedule_id}/launches/",
        "/api/v1/teams/{slug}/webhook-endpoints/",
        "/api/v1/webhook-endpoints/{endpoint_id}/",
        "/api/v1/webhook-endpoints/{endpoint_id}/test/",
        "/api/v1/webhook-endpoints/{endpoint_id}/deliveries/",
        "/api/v1/notifications/",
    }


def test_docs_page_is_served_locally(client):
    page = client.get("/api/docs/").content.decode()

    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "cdn." not in page and "jsdelivr" not in page
    # Swagger UI's set-up script is a URL of its own (no inline script under the CSP); it
    # points Swagger UI at the schema
    assert '<script src="/api/docs/?script=">' in page
    assert "/api/schema/" in client.get("/api/docs/?script=").content.decode()
