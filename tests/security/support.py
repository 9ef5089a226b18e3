"""Shared set-up for the security suite."""

from portal.core.crypto import encrypt_secret
from runs import services
from runs.models import Run, RunStatus
from runs.services import LaunchRequest
from tests.factories import top_up


def accepted_run(team, user, *, secret: str) -> Run:
    """A run of `team` that Coasty accepted (upstream id, webhook secret stored) and is running."""
    top_up(team, 5000)
    run, _ = services.run_launch(
        team=team, user=user, request=LaunchRequest(machine_id="vm", task="t", max_steps=10)
    )
    Run.objects.filter(pk=run.pk).update(
        upstream_id=f"run_up_{run.pk.hex[:8]}",
        status=RunStatus.RUNNING,
        webhook_secret_encrypted=encrypt_secret(secret),
    )
    run.refresh_from_db()
    return run
