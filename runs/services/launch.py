"""Launching a run: the run row and its wallet hold in one transaction, submitted on commit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from django.db import IntegrityError, transaction

from billing import services as billing
from billing.prices import step_price_cents
from billing.selectors import approval_threshold_cents
from portal.core.queue import enqueue_on_commit
from portal.teams.models import Team
from runs import tasks
from runs.models import Run, RunStatus
from runs.services.approval import run_awaiting_approval_notify
from runs.upstream import upstream_is_test_mode, webhook_url_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaunchRequest:
    """What a person asks for when they launch a run: the run's launch fields, validated."""

    machine_id: str
    task: str
    cua_version: str = "v5"
    max_steps: int = 50
    deadline_seconds: int | None = None
    on_awaiting_human: str = "pause"
    system_prompt: str = ""
    instructions: str = ""

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> LaunchRequest:
        """From validated input (a form's cleaned_data, a serializer's validated_data): the
        launch fields it has, the defaults for the rest; an empty optional text is ""."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for name in ("system_prompt", "instructions"):
            if values.get(name) is None:
                values.pop(name, None)
        return cls(**values)

    @classmethod
    def from_run(cls, run: Run) -> LaunchRequest:
        """The launch fields of an earlier run ("Run again")."""
        return cls(**{f.name: getattr(run, f.name) for f in fields(cls)})


def run_launch(
    *, team: Team, user, request: LaunchRequest, launch_token: uuid.UUID | None = None
) -> tuple[Run, bool]:
    """Create a run and hold its maximum cost, in one transaction; submit after commit.

    Returns (run, created). A launch token already used by this person returns their earlier
    run instead (a double click, a resent form). Raises billing.errors.InsufficientFunds,
    BudgetExceeded or MemberLimitExceeded, and then nothing is created. A run whose maximum
    cost is above the team's approval threshold is created `awaiting_approval`: it holds its
    money and is not submitted until a manager approves it (runs.services.approval).
    """
    if launch_token is not None:
        existing = Run.objects.filter(created_by=user, launch_token=launch_token).first()
        if existing is not None:
            return existing, False
    price = step_price_cents(request.cua_version)
    run_id = uuid.uuid4()
    held_cents = request.max_steps * price
    threshold = approval_threshold_cents(team)
    needs_approval = threshold is not None and held_cents > threshold
    try:
        with transaction.atomic():
            run = Run(
                id=run_id,
                team=team,
                created_by=user,
                launch_token=launch_token,
                machine_id=request.machine_id,
                task=request.task,
                cua_version=request.cua_version,
                max_steps=request.max_steps,
                deadline_seconds=request.deadline_seconds,
                on_awaiting_human=request.on_awaiting_human,
                system_prompt=request.system_prompt,
                instructions=request.instructions,
                webhook_url=webhook_url_for(run_id),
                price_cents=price,
                held_cents=held_cents,
                status=RunStatus.AWAITING_APPROVAL if needs_approval else RunStatus.PENDING,
                # The key is stored with the run and never changes: every submit attempt, by
                # any worker, after any crash, sends this key with the same body.
                idempotency_key=f"portal-run-{run_id}",
                test_mode=upstream_is_test_mode(),
            )
            # Frozen now, from the launch fields: a renamed team or a changed setting never
            # changes what a retry sends under this key.
            run.submit_body = _body_from_fields(run)
            run.save(force_insert=True)
            billing.hold_place(
                team=team,
                amount_cents=run.held_cents,
                reference=run.hold_reference,
                run_id=run.id,
                caused_by=user,
            )
            if needs_approval:
                # Holds its money (the budget stays honest) but waits for a manager.
                run_awaiting_approval_notify(run)
            else:
                enqueue_on_commit(tasks.submit_run, str(run.id))
    except IntegrityError:
        # Two submits of one form raced; the other one created the run.
        existing = Run.objects.filter(created_by=user, launch_token=launch_token).first()
        if launch_token is None or existing is None:
            raise
        return existing, False
    logger.info("run %s launched by %s in %s", run.id, user, team.slug)
    return run, True


def upstream_request_body(run: Run) -> dict[str, Any]:
    """The body of POST /v1/runs: the one frozen at launch, the same on every retry."""
    if run.submit_body is not None:
        return dict(run.submit_body)
    return _body_from_fields(run)  # a run launched before bodies were frozen


def _body_from_fields(run: Run) -> dict[str, Any]:
    body: dict[str, Any] = {
        "machine_id": run.machine_id,
        "task": run.task,
        "cua_version": run.cua_version,
        "max_steps": run.max_steps,
        "on_awaiting_human": run.on_awaiting_human,
        "metadata": {"portal_run_id": str(run.id), "portal_team": run.team.slug},
    }
    if run.deadline_seconds:
        body["deadline_seconds"] = run.deadline_seconds
    if run.system_prompt:
        body["system_prompt"] = run.system_prompt
    if run.instructions:
        body["instructions"] = run.instructions
    if run.webhook_url:
        body["webhook_url"] = run.webhook_url
    return body
