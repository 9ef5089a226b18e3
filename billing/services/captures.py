"""Batch captures: the steps of several holds charged in one commit.

The event follower stores what many runs' streams brought in one go; charging each run's steps
in a transaction of its own would lock the team's hot `held` account once per run. Here the
whole batch is ONE statement on PostgreSQL (`billing.locks.capture_steps_of_holds`): every hold
locked in reference order, every key inserted, then every account moved once, in id order.

Semantics, hold by hold exactly as `hold_capture_steps` for that hold alone:

- each (hold, step) is charged at most once, under `capture:<reference>:<step>` (billing.keys),
  so repeating a batch, whole or in part, charges nothing twice and returns the first captures;
- a hold that is settled, short of room or unknown does not hold the others back: its steps are
  decided on their own (a step the hold cannot pay for is None, an unknown hold says so), and
  the other holds of the batch are charged as if it were not there;
- the one statement is all or nothing per hold; when it cannot be used for a hold (a replayed
  step anywhere in the batch, or that hold running out), that hold falls back to
  `hold_capture_steps_totalled`, lowest step first.
"""

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing import keys
from billing.errors import HoldNotFound, InvalidAmount
from billing.locks import Captured, HoldSteps, capture_steps_of_holds
from billing.models import Transfer, TransferKind
from billing.services.holds import hold_capture_steps_totalled
from billing.services.posting import CausedBy, cause, check_cents, check_step


@dataclass(frozen=True)
class StepsToCapture:
    """One hold's part of a batch: its completed steps, each charged `amount_cents`."""

    reference: str
    steps: Sequence[int]
    amount_cents: int
    caused_by: CausedBy


@dataclass(frozen=True)
class StepsCaptured:
    """What a batch did for one hold: `charged`, {step: True when it has its capture (made now
    or before), False when the hold could not pay for it}; the hold's captured_cents after it
    when the statement returned it (None: read it with `billing.selectors.hold_captured_cents`);
    hold_found is False for an unknown reference (then no step is charged). `transfers` gives
    the captures themselves, {step: Transfer or None}, built only when asked for: the follower
    needs only `charged`."""

    charged: dict[int, bool]
    captured_cents: int | None = None
    hold_found: bool = True
    build_transfers: Callable[[], dict[int, Transfer | None]] = field(
        default=dict, repr=False, compare=False
    )

    @cached_property
    def transfers(self) -> dict[int, Transfer | None]:
        return self.build_transfers()


def holds_capture_steps(*, captures: Sequence[StepsToCapture]) -> dict[str, StepsCaptured]:
    """Charge the completed steps of several holds (the same wallet or others) at once; what
    happened to each, by reference. See the module docstring for the rules.

    Outside a transaction the usual batch is one statement that commits on its own; inside the
    caller's, it is a savepoint of it. A reference may appear once per batch (InvalidAmount
    otherwise). IdempotencyConflict (a step captured before at another price) is raised as by
    `hold_capture`.
    """
    parts = _checked(captures)
    if not parts:
        return {}
    results: dict[str, StepsCaptured] = {}
    left = list(parts)
    if connection.vendor == "postgresql":
        created_at = timezone.now()
        try:
            captured = _in_one_statement(list(parts.values()), created_at)
        except IntegrityError:
            captured = {}  # a replayed step somewhere: nothing was written; hold by hold below
        for part, batch_part in parts.items():
            if part.reference in captured:
                results[part.reference] = _as_result(
                    batch_part, captured[part.reference], created_at
                )
        left = [part for part in parts if part.reference not in results]
    # SQLite (no data-modifying CTEs), and what the statement left out: hold by hold, each as
    # `hold_capture_steps_totalled` would charge it alone, in the statement's lock order (by
    # reference, code point by code point: the bytes of UTF-8 sort alike); on SQLite in one
    # transaction.
    with transaction.atomic() if connection.vendor != "postgresql" else nullcontext():
        for part in sorted(left, key=lambda p: p.reference):
            results[part.reference] = _one_hold(part)
    return {part.reference: results[part.reference] for part in parts}


def _checked(captures: Sequence[StepsToCapture]) -> dict[StepsToCapture, HoldSteps]:
    """Each part checked as `hold_capture_steps` checks its arguments, steps sorted and
    distinct, parts without steps dropped; with what the statement needs of each."""
    parts: dict[StepsToCapture, HoldSteps] = {}
    seen: set[str] = set()
    for part in captures:
        check_cents(part.amount_cents, what="A capture")
        steps = tuple(sorted(set(part.steps)))
        for step in steps:
            check_step(step)
        user, label = cause(part.caused_by)
        if part.reference in seen:
            raise InvalidAmount(f"The hold {part.reference} appears twice in one batch.")
        seen.add(part.reference)
        if steps:
            normalised = StepsToCapture(part.reference, steps, part.amount_cents, part.caused_by)
            parts[normalised] = HoldSteps(
                reference=part.reference,
                steps=steps,
                amount_cents=part.amount_cents,
                caused_by_user_id=user.pk if user is not None else None,
                caused_by=label,
            )
    return parts


def _in_one_statement(batch: list[HoldSteps], created_at) -> dict[str, Captured]:
    if connection.in_atomic_block:
        with transaction.atomic():  # a savepoint: a refused statement undoes only itself
            return capture_steps_of_holds(batch, created_at=created_at)
    return capture_steps_of_holds(batch, created_at=created_at)


def _as_result(part: HoldSteps, captured: Captured, created_at) -> StepsCaptured:
    alias = connection.alias

    def transfers() -> dict[int, Transfer | None]:
        built: dict[int, Transfer | None] = {}
        for step in part.steps:
            transfer = Transfer(
                id=captured.transfer_ids[step],
                idempotency_key=keys.capture_key(part.reference, step),
                kind=TransferKind.CAPTURE,
                debit_account_id=captured.held_account_id,
                credit_account_id=captured.spend_account_id,
                amount_cents=part.amount_cents,
                team_id=captured.team_id,
                hold_id=captured.hold_id,
                run_id=captured.run_id,
                step=step,
                reference=part.reference,
                memo="",
                caused_by_user_id=part.caused_by_user_id,
                caused_by=part.caused_by,
                created_at=created_at,
            )
            transfer._state.adding = False  # it is in the database, as if loaded from it
            transfer._state.db = alias
            built[step] = transfer
        return built

    return StepsCaptured(
        charged=dict.fromkeys(part.steps, True),
        captured_cents=captured.captured_cents,
        build_transfers=transfers,
    )


def _one_hold(part: StepsToCapture) -> StepsCaptured:
    try:
        transfers, captured_cents = hold_capture_steps_totalled(
            reference=part.reference,
            steps=list(part.steps),
            amount_cents=part.amount_cents,
            caused_by=part.caused_by,
        )
    except HoldNotFound:
        return StepsCaptured(
            charged=dict.fromkeys(part.steps, False),
            hold_found=False,
            build_transfers=lambda: dict.fromkeys(part.steps),
        )
    return StepsCaptured(
        charged={step: transfer is not None for step, transfer in transfers.items()},
        captured_cents=captured_cents,
        build_transfers=lambda: transfers,
    )
