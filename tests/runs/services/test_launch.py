"""Launching a run against a fake Coasty: the run and its wallet hold, once per launch token,
and the submit queued after commit."""

import uuid

import pytest

from billing.errors import InsufficientFunds
from runs import services
from runs.models import Run, RunStatus
from runs.services import LaunchRequest
from tests.factories import top_up as fund_team
from tests.runs.support import _launch, _wallet

pytestmark = pytest.mark.django_db


def test_launch_holds_the_maximum_cost_and_submits_after_commit(
    funded_team, make_member, django_capture_on_commit_callbacks
):
    # given a member of a team with $50
    bob = make_member(funded_team, "member")

    # when bob launches a 10-step run on v5 (5¢ a step)
    with django_capture_on_commit_callbacks() as callbacks:
        run, created = _launch(funded_team, bob)

    # then 50¢ is held, the run waits for Coasty, and one submit task is queued after commit
    assert created and run.status == RunStatus.PENDING and run.held_cents == 50
    assert _wallet(funded_team) == (4950, 50, 0)
    assert len(callbacks) == 1
    assert run.idempotency_key == f"portal-run-{run.pk}"


def test_launch_the_wallet_cannot_cover_creates_nothing(team, make_member):
    fund_team(team, 40)
    bob = make_member(team, "member")

    with pytest.raises(InsufficientFunds) as refused:
        _launch(team, bob, max_steps=10)

    assert (refused.value.available_cents, refused.value.needed_cents) == (40, 50)
    assert Run.objects.count() == 0
    assert _wallet(team) == (40, 0, 0)


def test_the_same_launch_token_twice_makes_one_run(funded_team, make_member):
    bob = make_member(funded_team, "member")
    token = uuid.uuid4()
    request = LaunchRequest(machine_id="vm-linux-1", task="t", max_steps=10)

    first, created_first = services.run_launch(
        team=funded_team, user=bob, request=request, launch_token=token
    )
    second, created_second = services.run_launch(
        team=funded_team, user=bob, request=request, launch_token=token
    )

    assert (created_first, created_second) == (True, False)
    assert first.pk == second.pk and Run.objects.count() == 1
    assert _wallet(funded_team) == (4950, 50, 0)


def test_v1_runs_are_priced_at_8_cents_a_step(funded_team, make_member):
    run, _ = _launch(funded_team, make_member(funded_team), cua_version="v1", max_steps=10)
    assert (run.price_cents, run.held_cents) == (8, 80)
