"""The simulator's convergence faults (issue 12): a run Coasty forgets after it ends, stray step
numbers, spent idempotency keys, and keys that expire early. One simulator (speed 50) serves
the module; each test starts from a reset."""

from __future__ import annotations

import time

import httpx
import pytest

from runs.simulator.testing import run_simulator
from tests.sim_support import LIVE_KEY, run_body

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


def create(api, body=None, *, key=None):
    headers = {"Idempotency-Key": key} if key else {}
    return api.post("/v1/runs", json=body if body is not None else run_body(), headers=headers)


def test_forget_run_answers_404_once_the_run_has_ended(sim, api):
    # given every run is forgotten as soon as it ends
    sim.set_faults(forget_run={"count": 1})
    run = create(api, run_body("[steps=2] forget me")).json()

    # when it ends
    ended = sim.wait_for_run(run["id"])

    # then the public API no longer knows it; the admin side still does
    assert api.get(f"/v1/runs/{run['id']}").status_code == 404
    assert api.post(f"/v1/runs/{run['id']}/cancel").status_code == 404
    assert ended["steps_completed"] == 2 and sim.run(run["id"])["status"] == "succeeded"


def test_stray_step_adds_a_step_event_with_a_number_coasty_does_not_count(sim, api):
    sim.set_faults(stray_step={"count": 1})
    run = create(api, run_body("[steps=3] stray")).json()
    ended = sim.wait_for_run(run["id"])

    steps = [e["data"]["step"] for e in sim.run(run["id"])["events"] if e["type"] == "step"]
    assert len(steps) == 4 and max(steps) > 10
    assert ended["steps_completed"] == 3 and ended["credits_charged"] == 15


def test_spent_key_is_a_stored_5xx_that_says_not_to_retry_with_the_same_key(sim, api):
    sim.set_faults(spent_key={"count": 1})

    first = create(api, key="spent-1")
    again = create(api, key="spent-1")
    lookup = api.get("/v1/idempotency/spent-1").json()

    error = first.json()["error"]
    assert first.status_code == 500 and error["retryable"] is True
    assert error["retry_with_same_idempotency_key"] is False
    assert again.status_code == 500 and lookup["original_status"] == 500
    assert sim.state()["runs_total"] == 0


def test_key_expiry_forgets_a_key_early_so_the_same_key_creates_a_second_run(sim, api):
    sim.set_faults(key_expiry={"count": 1, "after_seconds": 0.2})
    first = create(api, key="short-lived").json()
    time.sleep(0.3)

    assert api.get("/v1/idempotency/short-lived").status_code == 404
    second = create(api, key="short-lived").json()
    assert second["id"] != first["id"]
    assert sim.state()["runs_per_idempotency_key"] == {"short-lived": 2}
