"""Holds: money reserved for a run, captured step by step, released when the run ends.

Locks are taken in the global order described in `billing.locks`: hold row, then the transfer's
idempotency key, then accounts in primary-key order. Hot path: a step capture is a guarded
UPDATE ... RETURNING of the hold, the INSERT of the transfer, and one UPDATE of both balances that
locks them first. On PostgreSQL the three are ONE statement (`billing.locks.capture_steps`), so
outside a transaction the team's hot `held` row is locked only while the server runs it and
commits; on SQLite they are three statements in a transaction. Callers that capture inside their
own transaction should capture last: whatever they do after it extends the time the team's other
runs wait.
"""

import logging
from typing import TYPE_CHECKING
from uuid import UUID

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from billing import keys
from billing.errors import (
    HoldExceeded,
    HoldNotFound,
    IdempotencyConflict,
    InvalidAmount,
)
from billing.locks import (
    capture_steps,
    lock_hold,
    take_from_hold,
)
from billing.models import (
    AccountKind,
    Hold,
    Reconciliation,
    Transfer,
    TransferKind,
)
from billing.months import month_of
from billing.services.budgets import budget_count_hold, budget_give_back, month_usage_rows
from billing.services.posting import (
    CausedBy,
    NoRoom,
    account_shard,
    cause,
    check_cents,
    check_step,
    first_transfer,
    post_balances,
    required_text,
    same_request,
    team_accounts,
)
from billing.services.reconciliation import record_reconciliation, record_unverified
from billing.verdicts import UpstreamReport
from portal.core.money import format_cents as _fmt
from portal.teams.models import Team

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


def hold_place(
    *,
    team: Team,
    amount_cents: int,
    reference: str,
    run_id: UUID | None = None,
    caused_by: CausedBy,
) -> Hold:
    """Reserve money for a run (available -> held), or refuse with InsufficientFunds,
    BudgetExceeded (the team's month would go over its budget) or MemberLimitExceeded (the
    person's month would go over their limit in the team).

    Idempotent per reference: placing the same hold again returns the first one. Nothing is
    written when the team cannot afford it. The whole amount counts against the current month
    (billing.months) of the team and of the person who placed it, from now on.
    """
    check_cents(amount_cents, what="A hold")
    reference = required_text(reference, what="a reference", max_length=200)
    user, label = cause(caused_by)
    now = timezone.now()
    month = month_of(now)
    try:
        with transaction.atomic():
            # The hold's money sits on one of the team's held/spend shards, the same one on
            # every retry of this placement (it follows from the reference).
            accounts = team_accounts(team.pk, shard=account_shard(reference))
            # The month rows it counts against: the team's, and the member's who placed it.
            team_usage, member_usage = month_usage_rows(
                team.pk, user.pk if user is not None else None, month
            )
            # Lock 1 (the hold): the INSERT takes the reference's unique-index entry, so a second
            # placement of the same hold waits here for the first, then fails as a duplicate.
            available, held = accounts[AccountKind.AVAILABLE], accounts[AccountKind.HELD]
            hold = Hold.objects.create(
                team_id=team.pk,
                reference=reference,
                run_id=run_id,
                amount_cents=amount_cents,
                held_account_id=held,
                spend_account_id=accounts[AccountKind.SPEND],
                team_usage_id=team_usage,
                member_usage_id=member_usage,
                created_at=now,
            )
            Transfer.objects.create(
                idempotency_key=keys.hold_key(reference),
                kind=TransferKind.HOLD,
                debit_account_id=available,
                credit_account_id=held,
                amount_cents=amount_cents,
                team_id=team.pk,
                hold=hold,
                run_id=run_id,
                reference=reference,
                caused_by_user=user,
                caused_by=label,
            )
            # Lock 3 (the month rows, team's then member's): the budget and the member's limit,
            # each a guarded UPDATE, so concurrent launches cannot share the last cents.
            budget_count_hold(
                team_id=team.pk,
                user_id=user.pk if user is not None else None,
                amount_cents=amount_cents,
                month=month,
                team_usage_id=team_usage,
                member_usage_id=member_usage,
            )
            # Lock 4 (the accounts).
            post_balances({available: -amount_cents, held: amount_cents}, available=available)
    except IntegrityError:
        first = Hold.objects.filter(reference=reference).first()
        if first is None:
            raise
        if (first.team_id, first.amount_cents, first.run_id) != (team.pk, amount_cents, run_id):
            raise IdempotencyConflict(
                keys.hold_key(reference),
                f"it holds {_fmt(first.amount_cents)} for team #{first.team_id}"
                f"{f' and run {first.run_id}' if first.run_id else ''}.",
            ) from None
        return first
    return hold


def hold_capture(*, reference: str, step: int, amount_cents: int, caused_by: CausedBy) -> Transfer:
    """Charge one completed step from its hold (held -> spend), at most once per step number.

    Capturing the same step again returns the first capture. A capture that would take more
    than what is left of the hold is refused with HoldExceeded; so is any new capture once the
    hold is settled.
    """
    check_cents(amount_cents, what="A capture")
    check_step(step)
    user, label = cause(caused_by)
    key = keys.capture_key(reference, step)
    try:
        if connection.vendor == "postgresql":
            transfer = _capture_in_one_statement(reference, [step], amount_cents, user, label)[0][0]
        else:
            transfer = _capture_in_three_statements(reference, step, amount_cents, user, label)
    except (IntegrityError, NoRoom) as exc:
        first = first_transfer(key)
        if first is not None:
            same_request(first, key, amount_cents=amount_cents)
            return first
        if isinstance(exc, IntegrityError):
            raise
        current = Hold.objects.filter(reference=reference).first()
        if current is None:
            raise HoldNotFound(reference) from None
        raise HoldExceeded(
            reference, current.remaining_cents, amount_cents, settled=not current.is_open
        ) from None
    return transfer


def hold_capture_steps(
    *, reference: str, steps: list[int], amount_cents: int, caused_by: CausedBy
) -> dict[int, Transfer | None]:
    """Charge several completed steps of one hold at once: {step: its capture, or None when the
    hold could not pay for it}. Each step is charged at most once, exactly as `hold_capture`.

    The event follower brings a run's steps in batches; on PostgreSQL the whole batch is one
    statement when none of the steps was charged before and the hold has room for all of them
    (the usual case). Anything else (a replayed step, a hold running out) falls back to one
    `hold_capture` per step, lowest first, whose rules then decide step by step.
    """
    return hold_capture_steps_totalled(
        reference=reference, steps=steps, amount_cents=amount_cents, caused_by=caused_by
    )[0]


def hold_capture_steps_totalled(
    *, reference: str, steps: list[int], amount_cents: int, caused_by: CausedBy
) -> tuple[dict[int, Transfer | None], int | None]:
    """`hold_capture_steps`, and the hold's captured_cents after it when the capture statement
    returned it (the one-statement path); None when the caller must read it (`hold_captured_cents`).
    The ingest mirrors that total on the run without a query of its own."""
    check_cents(amount_cents, what="A capture")
    steps = sorted(set(steps))
    for step in steps:
        check_step(step)
    user, label = cause(caused_by)
    if len(steps) > 1 and connection.vendor == "postgresql":
        try:
            transfers, captured_cents = _capture_in_one_statement(
                reference, steps, amount_cents, user, label
            )
        except (IntegrityError, NoRoom):
            pass  # nothing was written: decide step by step below
        else:
            return dict(zip(steps, transfers, strict=True)), captured_cents
    results: dict[int, Transfer | None] = {}
    for step in steps:
        try:
            results[step] = hold_capture(
                reference=reference, step=step, amount_cents=amount_cents, caused_by=caused_by
            )
        except HoldExceeded:
            results[step] = None
    return results, None


def _capture_in_one_statement(
    reference: str, steps: list[int], amount_cents: int, user, label: str
) -> tuple[list[Transfer], int]:
    """PostgreSQL: the capture as one statement (billing.locks.capture_steps); its transfers and
    the hold's captured_cents after it. Outside a transaction it commits on its own, which keeps the hot accounts locked for the shortest
    time; inside the caller's transaction a savepoint undoes it alone when it is refused."""
    created_at = timezone.now()

    def capture():
        return capture_steps(
            reference,
            steps,
            amount_cents,
            caused_by_user_id=user.pk if user is not None else None,
            caused_by=label,
            created_at=created_at,
        )

    if connection.in_atomic_block:
        with transaction.atomic():
            captured = capture()
    else:
        captured = capture()
    if captured is None:
        raise NoRoom
    transfers = []
    for step in steps:
        transfer = Transfer(
            id=captured.transfer_ids[step],
            idempotency_key=keys.capture_key(reference, step),
            kind=TransferKind.CAPTURE,
            debit_account_id=captured.held_account_id,
            credit_account_id=captured.spend_account_id,
            amount_cents=amount_cents,
            team_id=captured.team_id,
            hold_id=captured.hold_id,
            run_id=captured.run_id,
            step=step,
            reference=reference,
            memo="",
            caused_by_user=user,
            caused_by=label,
            created_at=created_at,
        )
        transfer._state.adding = False  # it is in the database, as if loaded from it
        transfer._state.db = connection.alias
        transfers.append(transfer)
    return transfers, captured.captured_cents


def _capture_in_three_statements(
    reference: str, step: int, amount_cents: int, user, label: str
) -> Transfer:
    """SQLite (no data-modifying CTEs): the same capture as three statements in a transaction."""
    with transaction.atomic():
        # Lock 1 (the hold): counts the step as captured if it fits in what is left.
        target = take_from_hold(reference, amount_cents)
        if target is None:
            raise NoRoom
        # Lock 2 (the key): a duplicate of this step fails here and rolls back the hold.
        transfer = Transfer.objects.create(
            idempotency_key=keys.capture_key(reference, step),
            kind=TransferKind.CAPTURE,
            debit_account_id=target.held_account_id,
            credit_account_id=target.spend_account_id,
            amount_cents=amount_cents,
            team_id=target.team_id,
            hold_id=target.hold_id,
            run_id=target.run_id,
            step=step,
            reference=reference,
            caused_by_user=user,
            caused_by=label,
        )
        # Lock 3 (the team's held and spend accounts): one statement, then commit.
        post_balances(
            {target.held_account_id: -amount_cents, target.spend_account_id: amount_cents}
        )
    return transfer


def hold_release(*, reference: str, caused_by: CausedBy) -> Transfer | None:
    """Return what is left of a hold to the team (held -> available) and close it. Once.

    Returns the release transfer, or None when nothing was left to release. Releasing again
    returns the same answer without moving money.
    """
    user, label = cause(caused_by)
    with transaction.atomic():
        hold = lock_hold(reference)  # Lock 1: serialises with this hold's captures and settle.
        if hold is None:
            raise HoldNotFound(reference)
        if not hold.is_open:
            return first_transfer(keys.release_key(reference))
        return _close(hold, captures=[], user=user, label=label)


def hold_settle(
    *,
    reference: str,
    steps_completed: int,
    step_price_cents: int,
    upstream_credits_charged: int,
    upstream_test_mode: bool,
    caused_by: CausedBy,
) -> Reconciliation:
    """Settle a finished run's hold from what Coasty reported, and reconcile it.

    Captures every step up to `steps_completed` that has not been charged yet (never beyond
    the hold), releases the rest, records Coasty's figures on the hold and the reconciliation
    result. Idempotent: settling again with the same figures changes nothing; with other
    figures (a later, better report) it only re-reconciles, as the money has already moved.
    """
    for name, value in (
        ("steps_completed", steps_completed),
        ("upstream_credits_charged", upstream_credits_charged),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidAmount(f"{name} is a whole number from 0.")
    check_cents(step_price_cents, what="A step price")
    user, label = cause(caused_by)
    report = UpstreamReport(
        steps_completed=steps_completed,
        credits_charged=upstream_credits_charged,
        test_mode=bool(upstream_test_mode),
        step_price_cents=step_price_cents,
    )
    with transaction.atomic():
        hold = lock_hold(reference)  # Lock 1: no capture of this hold can interleave with ours.
        if hold is None:
            raise HoldNotFound(reference)
        figures = (steps_completed, step_price_cents, upstream_credits_charged, report.test_mode)
        recorded = (
            hold.upstream_steps_completed,
            hold.step_price_cents,
            hold.upstream_credits_charged,
            hold.upstream_test_mode,
        )
        if not hold.is_open and recorded == figures:
            existing = Reconciliation.objects.filter(hold=hold).first()
            if existing is not None:
                return existing  # the same settle again: nothing to do
        if hold.is_open:
            already = set(
                Transfer.objects.filter(hold=hold, kind=TransferKind.CAPTURE).values_list(
                    "step", flat=True
                )
            )
            # Steps are counted, not numbered: the run is charged Coasty's count of steps in
            # all, so the captures still missing are that count less those already made (a
            # stray high step number charged by the stream is one of them, never one on top),
            # as many as the hold can still pay for. They take the lowest free numbers.
            affordable = hold.remaining_cents // step_price_cents
            wanted = min(max(0, steps_completed - len(already)), affordable)
            missing: list[int] = []
            n = 0
            while len(missing) < wanted:
                n += 1
                if n not in already:
                    missing.append(n)
            _close(
                hold,
                captures=missing,
                step_price_cents=step_price_cents,
                user=user,
                label=label,
                why=f"Coasty reported {steps_completed} completed step(s).",
            )
            hold.refresh_from_db()
        Hold.objects.filter(pk=hold.pk).update(
            upstream_steps_completed=steps_completed,
            step_price_cents=step_price_cents,
            upstream_credits_charged=upstream_credits_charged,
            upstream_test_mode=report.test_mode,
        )
        return record_reconciliation(hold, report, source="settle", checked_by=label)


def hold_settle_unverified(
    *, reference: str, why: str, step_price_cents: int, test_mode: bool, caused_by: CausedBy
) -> Reconciliation:
    """Settle a hold on what was captured so far, when Coasty's own figures cannot be had (it
    no longer knows the run, or the run never ended there): release the rest and open a
    discrepancy saying `why`, for a billing admin. Never guesses a figure. Idempotent."""
    _user, label = cause(caused_by)
    with transaction.atomic():
        hold = lock_hold(reference)  # Lock 1: no capture of this hold can interleave with ours.
        if hold is None:
            raise HoldNotFound(reference)
        if hold.is_open:
            _close(hold, captures=[], user=_user, label=label, why=why)
            hold.refresh_from_db()
        return record_unverified(
            hold, why=why, step_price_cents=step_price_cents, test_mode=test_mode, checked_by=label
        )


def hold_discrepancy_open(
    *, reference: str, why: str, step_price_cents: int, test_mode: bool, caused_by: CausedBy
) -> Reconciliation:
    """Open a discrepancy on a hold for something the ledger cannot show (an upstream run
    Coasty accepted after the run was closed here). Money does not move; an open hold is left
    to its settle."""
    _user, label = cause(caused_by)
    with transaction.atomic():
        hold = lock_hold(reference)  # Lock 1: the reconciliation is written under it.
        if hold is None:
            raise HoldNotFound(reference)
        return record_unverified(
            hold, why=why, step_price_cents=step_price_cents, test_mode=test_mode, checked_by=label
        )


def _close(
    hold: Hold,
    *,
    captures: list[int],
    user,
    label: str,
    step_price_cents: int = 0,
    why: str = "",
) -> Transfer | None:
    """Capture `captures` (step numbers) at `step_price_cents`, release the rest, settle.

    The caller holds the hold's lock. Returns the release transfer (None when nothing was left).
    """
    # The rest goes back from the hold's own shard, where its money sits.
    held, spend = hold.held_account_id, hold.spend_account_id
    available = team_accounts(hold.team_id)[AccountKind.AVAILABLE]
    captured_now = step_price_cents * len(captures)
    rest = hold.remaining_cents - captured_now
    common = {
        "team_id": hold.team_id,
        "hold": hold,
        "run_id": hold.run_id,
        "reference": hold.reference,
        "caused_by_user": user,
        "caused_by": label,
    }
    # Lock 2 (the keys): a capture of one of these steps can only be waiting behind our hold
    # lock, so these inserts never wait on it.
    Transfer.objects.bulk_create(
        [
            Transfer(
                idempotency_key=keys.capture_key(hold.reference, n),
                kind=TransferKind.CAPTURE,
                debit_account_id=held,
                credit_account_id=spend,
                amount_cents=step_price_cents,
                step=n,
                memo=f"Charged when the hold was settled: {why}",
                **common,
            )
            for n in captures
        ]
    )
    release = None
    if rest > 0:
        release = Transfer.objects.create(
            idempotency_key=keys.release_key(hold.reference),
            kind=TransferKind.RELEASE,
            debit_account_id=held,
            credit_account_id=available,
            amount_cents=rest,
            memo=f"The rest of the hold, returned. {why}".strip(),
            **common,
        )
    # Lock 3 (the month rows): the released cents come back to the month it was placed in.
    budget_give_back(hold, rest)
    deltas = {held: -(captured_now + rest), spend: captured_now, available: rest}
    post_balances(
        {account: delta for account, delta in deltas.items() if delta},
        available=available if rest else None,
    )
    Hold.objects.filter(pk=hold.pk).update(
        captured_cents=F("captured_cents") + captured_now,
        captured_steps=F("captured_steps") + len(captures),
        released_cents=F("released_cents") + rest,
        status=Hold.Status.SETTLED,
        settled_at=timezone.now(),
    )
    return release
