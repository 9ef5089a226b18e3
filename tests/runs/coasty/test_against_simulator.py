"""The portal's Coasty client against the running simulator, under every fault.

No call creates two runs, no stream event is lost or repeated, and every documented error
becomes the right exception.
"""

import asyncio

import pytest

from runs.coasty import (
    CoastyAuthError,
    CoastyClient,
    CoastyIdempotencyKeyReused,
    CoastyInvalidState,
    CoastyNotFound,
    CoastyValidationError,
    RetryPolicy,
    follow_events,
)
from runs.simulator.testing import LIVE_KEY, run_simulator

# Enough attempts that a fault firing at 40 % cannot exhaust them by chance (0.4**24 is about
# 3e-10 per call), whatever the machine's load does to the timing of the in-flight holds.
FAST_RETRY = RetryPolicy(
    max_attempts=25, max_elapsed=30, base_delay=0.01, max_delay=0.1, retry_after_cap=1
)
BODY = {"machine_id": "vm-linux-1", "task": "[steps=3] export", "max_steps": 5}


@pytest.fixture(scope="module")
def sim():
    with run_simulator(speed=50) as sim:
        yield sim


@pytest.fixture
def client(sim):
    sim.reset()
    with CoastyClient(sim.base_url, LIVE_KEY, retry=FAST_RETRY) as client:
        yield client


SUBMIT_FAULTS = {
    "lost_response": {"probability": 0.5},
    "server_error": {"probability": 0.4},
    "rate_limit": {"probability": 0.4, "retry_after": 1},
    "in_flight": {"probability": 0.4},
}


@pytest.mark.parametrize("fault", SUBMIT_FAULTS)
def test_no_call_creates_two_runs(sim, client, fault):
    # given the simulator failing often in one way
    sim.set_faults({fault: SUBMIT_FAULTS[fault]}, seed=3)

    # when twelve runs are created, each asked for twice under its own key
    created = {}
    for n in range(12):
        key = f"contract-{fault}-{n}"
        first = client.create_run_or_recover(BODY, idempotency_key=key)
        again = client.create_run_or_recover(BODY, idempotency_key=key)
        assert first.run["id"] == again.run["id"]
        created[key] = first.run["id"]

    # then Coasty holds exactly one run per key, and the fault really fired
    state = sim.state()
    assert {key: state["runs_per_idempotency_key"][key] for key in created} == dict.fromkeys(
        created, 1
    )
    assert state["faults"]["faults"][fault]["fired"] > 0


def test_no_stream_event_is_lost_or_repeated_when_streams_are_cut(sim, client):
    # every stream is cut after two events, six times over, then they run to the end
    sim.set_faults({"cut_stream": {"probability": 1.0, "after_events": 2, "limit": 6}}, seed=5)
    runs = [
        client.create_run({**BODY, "task": "[steps=6] go"}, idempotency_key=f"cut-{n}").run
        for n in range(5)
    ]

    async def follow_all():
        async with client.async_http() as http:

            async def one(run_id):
                return [e async for e in follow_events(http, run_id, budget_seconds=30)]

            return await asyncio.gather(*(one(run["id"]) for run in runs))

    streams = asyncio.run(follow_all())

    for run, events in zip(runs, streams, strict=True):
        upstream = sim.run(run["id"])
        assert [e.seq for e in events] == [e["seq"] for e in upstream["events"]]
        assert events[-1].type == "done"
    assert sim.state()["faults"]["faults"]["cut_stream"]["fired"] == 6


def test_every_documented_error_becomes_its_exception(sim, client):
    run = client.create_run(BODY, idempotency_key="errors-1").run

    with pytest.raises(CoastyIdempotencyKeyReused):
        client.create_run({**BODY, "task": "another"}, idempotency_key="errors-1")
    with pytest.raises(CoastyValidationError) as unknown_field:
        client.create_run({**BODY, "colour": "blue"}, idempotency_key="errors-2")
    assert unknown_field.value.status == 422 and unknown_field.value.request_id
    with pytest.raises(CoastyValidationError):
        client.create_run({**BODY, "max_steps": 1001}, idempotency_key="errors-3")
    with pytest.raises(CoastyNotFound):
        client.get_run("00000000-0000-0000-0000-000000000000")
    with pytest.raises(CoastyNotFound):
        client.create_run({**BODY, "machine_id": "vm-nobody"}, idempotency_key="errors-4")
    with pytest.raises(CoastyInvalidState):
        client.resume_run(run["id"], note="not paused")
    with (
        CoastyClient(sim.base_url, "not-a-coasty-key", retry=FAST_RETRY) as stranger,
        pytest.raises(CoastyAuthError),
    ):
        stranger.list_runs()
    with (
        CoastyClient(sim.base_url, "sk-coasty-test-other", retry=FAST_RETRY) as test_mode,
        pytest.raises(CoastyNotFound),
    ):
        test_mode.get_run(run["id"])  # live and test runs are isolated


def test_lookup_collects_a_result_whose_response_was_lost(sim, client):
    sim.set_faults({"lost_response": {"count": 1, "mode": "drop"}})
    with CoastyClient(sim.base_url, LIVE_KEY, retry=RetryPolicy(max_attempts=1)) as once:
        result = once.create_run_or_recover(BODY, idempotency_key="lost-1")
    assert result.replayed and result.run["webhook_secret"]
    assert sim.state()["runs_per_idempotency_key"]["lost-1"] == 1
