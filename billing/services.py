"""Every write to the ledger.

Each service owns its transaction (`transaction.atomic`, a savepoint when the caller already has
one), is idempotent under its key, and either moves the money completely or not at all.

How a duplicate is recognised: every transfer has a unique idempotency key. A retried call inserts
the same key, the database refuses it (IntegrityError), the transaction rolls back, and the service
returns the transfer (or hold) that the first call wrote. When the first call is still in flight
on another connection, the duplicate waits on the unique index (or the hold row) until it commits.

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
import zlib
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Union
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from billing import reconciliation as rules
from billing.errors import (
    DiscrepancyNotOpen,
    HoldExceeded,
    HoldNotFound,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
)
from billing.locks import (
    capture_steps,
    change_balances,
    in_lock_order,
    lock_hold,
    take_from_hold,
)
from billing.models import (
    SHARDED_KINDS,
    Account,
    AccountKind,
    Hold,
    Reconciliation,
    Transfer,
    TransferKind,
)
from billing.reconciliation import UpstreamReport
from portal.core.money import format_cents as _fmt
from portal.teams.models import Team

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

# Who or what caused a movement: a person, or a label such as "run:<uuid>", "job:reconcile_billing".
CausedBy = Union["User", str]


# --- Top-ups and adjustments ----------------------------------------------------------------------


def wallet_top_up(
    *,
    team: Team,
    amount_cents: int,
    reference: str,
    actor: CausedBy,
    idempotency_key: str,
) -> Transfer:
    """Add prepaid money to a team's wallet (funding -> available).

    Only billing admins may do this: the page and the API check the permission; the service
    records who it was. `reference` (an invoice or purchase-order number, say) is required.
    The same idempotency key returns the first top-up; with different figures it is refused.
    """
    _check_cents(amount_cents, what="A top-up")
    ceiling = settings.BILLING_TOP_UP_MAX_CENTS
    if amount_cents > ceiling:
        raise InvalidAmount(
            f"A top-up can be at most {_fmt(ceiling)}; split larger amounts or ask to raise "
            "BILLING_TOP_UP_MAX_CENTS."
        )
    reference = _required_text(reference, what="a reference", max_length=255)
    key = f"topup:{_required_text(idempotency_key, what='an idempotency key', max_length=200)}"
    user, label = _cause(actor)
    try:
        with transaction.atomic():
            accounts = _team_accounts(team.pk)
            funding = _org_account(AccountKind.FUNDING)
            transfer = Transfer.objects.create(
                idempotency_key=key,
                kind=TransferKind.TOP_UP,
                debit_account_id=funding,
                credit_account_id=accounts[AccountKind.AVAILABLE],
                amount_cents=amount_cents,
                team_id=team.pk,
                reference=reference,
                caused_by_user=user,
                caused_by=label,
            )
            available = accounts[AccountKind.AVAILABLE]
            _post({funding: -amount_cents, available: amount_cents}, available=available)
    except IntegrityError:
        first = _first_transfer(key)
        if first is None:
            raise  # not a duplicate: a constraint said no
        _same_request(first, key, team_id=team.pk, amount_cents=amount_cents, reference=reference)
        return first
    return transfer


def wallet_adjust(
    *,
    team: Team,
    amount_cents: int,
    direction: str,
    reason: str,
    actor: CausedBy,
    idempotency_key: str,
    memo: str = "",
    hold: Hold | None = None,
) -> Transfer:
    """A billing admin's correction of a team's available balance, with a required reason.

    `direction` is "credit" (give the team money) or "debit" (take it back), always against the
    organisation's adjustments account. Nothing is ever edited or deleted: the correction is a
    new transfer. A debit cannot take the available balance below zero (InsufficientFunds).
    `hold`, for a correction of one run's charges (a discrepancy's), ties the transfer to that
    hold and run: reconciliation reads what was already adjusted for the run from them.
    """
    _check_cents(amount_cents, what="An adjustment")
    if direction not in ("credit", "debit"):
        raise InvalidAmount('An adjustment\'s direction is "credit" or "debit".')
    reason = _required_text(reason, what="a reason", max_length=255)
    key = f"adjust:{_required_text(idempotency_key, what='an idempotency key', max_length=200)}"
    user, label = _cause(actor)
    try:
        with transaction.atomic():
            available = _team_accounts(team.pk)[AccountKind.AVAILABLE]
            adjustments = _org_account(AccountKind.ADJUSTMENTS)
            debit, credit = (
                (adjustments, available) if direction == "credit" else (available, adjustments)
            )
            transfer = Transfer.objects.create(
                idempotency_key=key,
                kind=TransferKind.ADJUSTMENT,
                debit_account_id=debit,
                credit_account_id=credit,
                amount_cents=amount_cents,
                team_id=team.pk,
                hold=hold,
                run_id=hold.run_id if hold is not None else None,
                reference=reason,
                memo=memo,
                caused_by_user=user,
                caused_by=label,
            )
            _post({debit: -amount_cents, credit: amount_cents}, available=available)
    except IntegrityError:
        first = _first_transfer(key)
        if first is None:
            raise  # not a duplicate: a constraint said no
        _same_request(
            first,
            key,
            team_id=team.pk,
            amount_cents=amount_cents,
            reference=reason,
            hold_id=hold.pk if hold is not None else None,
        )
        adjustments = _org_account(AccountKind.ADJUSTMENTS)
        first_direction = "debit" if first.credit_account_id == adjustments else "credit"
        if first_direction != direction:
            raise IdempotencyConflict(
                key, f"it was a {first_direction}, not a {direction}."
            ) from None
        return first
    return transfer


def wallet_set_low_balance_threshold(
    *, team: Team, threshold_cents: int, actor: CausedBy
) -> Account:
    """Set the level below which the team sees a banner and its managers get one email.

    Changing the level sends no email by itself: the current dip, if the balance is already
    below the new level, counts as known, and the alert re-arms when the balance climbs back.
    """
    if isinstance(threshold_cents, bool) or not isinstance(threshold_cents, int):
        raise InvalidAmount("The alert level is a whole number of cents.")
    if threshold_cents < 0:
        raise InvalidAmount("The alert level cannot be negative.")
    _cause(actor)
    with transaction.atomic():
        available_id = _team_accounts(team.pk)[AccountKind.AVAILABLE]
        # Lock the available account: the alert flag must agree with the balance it describes.
        account = in_lock_order(Account.objects.filter(pk=available_id)).get()
        account.low_balance_threshold_cents = threshold_cents
        account.low_balance_alerted = account.balance_cents < threshold_cents
        account.save(update_fields=["low_balance_threshold_cents", "low_balance_alerted"])
    return account


# --- Holds ----------------------------------------------------------------------------------------


def hold_place(
    *,
    team: Team,
    amount_cents: int,
    reference: str,
    run_id: UUID | None = None,
    caused_by: CausedBy,
) -> Hold:
    """Reserve money for a run (available -> held), or refuse with InsufficientFunds.

    Idempotent per reference: placing the same hold again returns the first one. Nothing is
    written when the team cannot afford it.
    """
    _check_cents(amount_cents, what="A hold")
    reference = _required_text(reference, what="a reference", max_length=200)
    user, label = _cause(caused_by)
    try:
        with transaction.atomic():
            # The hold's money sits on one of the team's held/spend shards, the same one on
            # every retry of this placement (it follows from the reference).
            accounts = _team_accounts(team.pk, shard=account_shard(reference))
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
            )
            Transfer.objects.create(
                idempotency_key=f"hold:{reference}",
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
            _post({available: -amount_cents, held: amount_cents}, available=available)
    except IntegrityError:
        first = Hold.objects.filter(reference=reference).first()
        if first is None:
            raise
        if (first.team_id, first.amount_cents, first.run_id) != (team.pk, amount_cents, run_id):
            raise IdempotencyConflict(
                f"hold:{reference}",
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
    _check_cents(amount_cents, what="A capture")
    _check_step(step)
    user, label = _cause(caused_by)
    key = f"capture:{reference}:{step}"
    try:
        if connection.vendor == "postgresql":
            transfer = _capture_in_one_statement(reference, [step], amount_cents, user, label)[0]
        else:
            transfer = _capture_in_three_statements(reference, step, amount_cents, user, label)
    except (IntegrityError, _NoRoom) as exc:
        first = _first_transfer(key)
        if first is not None:
            _same_request(first, key, amount_cents=amount_cents)
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
    _check_cents(amount_cents, what="A capture")
    steps = sorted(set(steps))
    for step in steps:
        _check_step(step)
    user, label = _cause(caused_by)
    if len(steps) > 1 and connection.vendor == "postgresql":
        try:
            transfers = _capture_in_one_statement(reference, steps, amount_cents, user, label)
        except (IntegrityError, _NoRoom):
            pass  # nothing was written: decide step by step below
        else:
            return dict(zip(steps, transfers, strict=True))
    results: dict[int, Transfer | None] = {}
    for step in steps:
        try:
            results[step] = hold_capture(
                reference=reference, step=step, amount_cents=amount_cents, caused_by=caused_by
            )
        except HoldExceeded:
            results[step] = None
    return results


def _capture_in_one_statement(
    reference: str, steps: list[int], amount_cents: int, user, label: str
) -> list[Transfer]:
    """PostgreSQL: the capture as one statement (billing.locks.capture_steps). Outside a
    transaction it commits on its own, which keeps the hot accounts locked for the shortest
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
        raise _NoRoom
    transfers = []
    for step in steps:
        transfer = Transfer(
            id=captured.transfer_ids[step],
            idempotency_key=f"capture:{reference}:{step}",
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
    return transfers


def _capture_in_three_statements(
    reference: str, step: int, amount_cents: int, user, label: str
) -> Transfer:
    """SQLite (no data-modifying CTEs): the same capture as three statements in a transaction."""
    with transaction.atomic():
        # Lock 1 (the hold): counts the step as captured if it fits in what is left.
        target = take_from_hold(reference, amount_cents)
        if target is None:
            raise _NoRoom
        # Lock 2 (the key): a duplicate of this step fails here and rolls back the hold.
        transfer = Transfer.objects.create(
            idempotency_key=f"capture:{reference}:{step}",
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
        _post({target.held_account_id: -amount_cents, target.spend_account_id: amount_cents})
    return transfer


def _check_step(step: int) -> None:
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise InvalidAmount("A step number is a whole number from 1.")


def hold_release(*, reference: str, caused_by: CausedBy) -> Transfer | None:
    """Return what is left of a hold to the team (held -> available) and close it. Once.

    Returns the release transfer, or None when nothing was left to release. Releasing again
    returns the same answer without moving money.
    """
    user, label = _cause(caused_by)
    with transaction.atomic():
        hold = lock_hold(reference)  # Lock 1: serialises with this hold's captures and settle.
        if hold is None:
            raise HoldNotFound(reference)
        if not hold.is_open:
            return _first_transfer(f"release:{reference}")
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
    _check_cents(step_price_cents, what="A step price")
    user, label = _cause(caused_by)
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
            # The uncharged steps, lowest first, as many as the hold can still pay for (the
            # loop stops there, however many steps Coasty reports).
            affordable = hold.remaining_cents // step_price_cents
            missing: list[int] = []
            for n in range(1, steps_completed + 1):
                if len(missing) >= affordable:
                    break
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
        return _record_reconciliation(hold, report, source="settle", checked_by=label)


# --- Reconciliation -------------------------------------------------------------------------------


@dataclass
class ReconcileSummary:
    checked: int = 0
    matched: int = 0
    discrepancies: int = 0
    skipped: int = 0
    failed: int = 0


def reconcile_hold(
    *, hold: Hold, caused_by: CausedBy, report: UpstreamReport | None = None
) -> Reconciliation | None:
    """Re-check one finished hold and record the result.

    The figures come from `report` when given, else from the configured upstream reporter
    (BILLING_UPSTREAM_REPORTER), else from those recorded on the hold at settle time. Returns
    None for a hold that is still open or that has no figures to compare with (for example one
    released because the run never reached Coasty).
    """
    _user, label = _cause(caused_by)
    source = "report"
    if report is None:
        # Asked before the transaction: the reporter may call Coasty, and no lock should wait
        # on the network.
        reporter = rules.configured_reporter()
        report = reporter(hold) if reporter else None
        source = "upstream reporter" if report is not None else "recorded figures"
    with transaction.atomic():
        locked = lock_hold(hold.reference)  # Lock 1: serialises with settle and other checks.
        if locked is None or locked.is_open:
            return None
        if report is None:
            if locked.upstream_steps_completed is None:
                return None
            report = UpstreamReport(
                steps_completed=locked.upstream_steps_completed,
                credits_charged=locked.upstream_credits_charged or 0,
                test_mode=bool(locked.upstream_test_mode),
                step_price_cents=locked.step_price_cents,
            )
        if (report.step_price_cents or locked.step_price_cents) is None:
            return None
        return _record_reconciliation(locked, report, source=source, checked_by=label)


def reconcile_finished_holds(
    *, caused_by: CausedBy, window: timedelta | None = None
) -> ReconcileSummary:
    """Re-check the holds worth re-checking: those settled within `window` (default
    BILLING_RECONCILE_WINDOW_HOURS), and every one with an open discrepancy."""
    if window is None:
        window = timedelta(hours=settings.BILLING_RECONCILE_WINDOW_HOURS)
    since = timezone.now() - window
    candidates = (
        Hold.objects.filter(status=Hold.Status.SETTLED)
        .filter(
            Q(settled_at__gte=since)
            | Q(
                reconciliation__status=Reconciliation.Status.DISCREPANCY,
                reconciliation__resolution="",
            )
        )
        .order_by("pk")
    )
    summary = ReconcileSummary()
    for hold in candidates.iterator(chunk_size=500):
        try:
            result = reconcile_hold(hold=hold, caused_by=caused_by)
        except Exception:
            # One hold the reporter cannot answer for must not stop the others being checked.
            logger.exception("Could not reconcile hold %s", hold.reference)
            summary.failed += 1
            continue
        if result is None:
            summary.skipped += 1
            continue
        summary.checked += 1
        if result.status == Reconciliation.Status.MATCHED:
            summary.matched += 1
        else:
            summary.discrepancies += 1
    return summary


def reconciliation_resolve_with_adjustment(
    *,
    reconciliation: Reconciliation,
    amount_cents: int,
    direction: str,
    reason: str,
    actor: "User",
    idempotency_key: str,
) -> Reconciliation:
    """Resolve a discrepancy by crediting or debiting the team, recorded on the discrepancy.

    The same idempotency key again (a double submit) returns the reconciliation as it is, with
    no second adjustment; anything but an open discrepancy is refused (DiscrepancyNotOpen).
    """
    with transaction.atomic():
        # Lock 1 (the hold): the reconciliation row is only ever written under its hold's lock.
        lock_hold(reconciliation.hold.reference)
        current = Reconciliation.objects.get(pk=reconciliation.pk)
        if reconciliation_adjustment_made(reconciliation=current, idempotency_key=idempotency_key):
            # This very request was done already; checked first so that a late duplicate
            # never resolves the discrepancy a second time with the first adjustment.
            return current
        _check_open(current)
        adjustment = wallet_adjust(
            team=current.team,
            amount_cents=amount_cents,
            direction=direction,
            reason=reason,
            actor=actor,
            idempotency_key=_reconciliation_adjust_key(current.pk, idempotency_key),
            memo=f"Resolves the discrepancy on {current.hold.reference}.",
            hold=current.hold,
        )
        current.resolution = Reconciliation.Resolution.ADJUSTED
        current.resolution_note = reason
        current.adjustment = adjustment
        current.resolved_at = timezone.now()
        current.resolved_by = actor
        current.save(
            update_fields=[
                "resolution",
                "resolution_note",
                "adjustment",
                "resolved_at",
                "resolved_by",
            ]
        )
    return current


def reconciliation_mark_explained(
    *, reconciliation: Reconciliation, note: str, actor: "User"
) -> Reconciliation:
    """Resolve a discrepancy without moving money, with the explanation a person gave."""
    note = _required_text(note, what="an explanation", max_length=2000)
    with transaction.atomic():
        lock_hold(reconciliation.hold.reference)  # Lock 1, as above.
        current = Reconciliation.objects.get(pk=reconciliation.pk)
        _check_open(current)
        current.resolution = Reconciliation.Resolution.EXPLAINED
        current.resolution_note = note
        current.resolved_at = timezone.now()
        current.resolved_by = actor
        current.save(update_fields=["resolution", "resolution_note", "resolved_at", "resolved_by"])
    return current


def reconciliation_adjustment_made(*, reconciliation: Reconciliation, idempotency_key: str) -> bool:
    """Whether the adjustment under this key was already made (a double submit of the form)."""
    key = f"adjust:{_reconciliation_adjust_key(reconciliation.pk, idempotency_key)}"
    return Transfer.objects.filter(idempotency_key=key).exists()


def _reconciliation_adjust_key(reconciliation_pk: int, idempotency_key: str) -> str:
    """wallet_adjust's key for a discrepancy's adjustment: the form's key, scoped to it."""
    return f"reconciliation:{reconciliation_pk}:{idempotency_key}"


def _check_open(current: Reconciliation) -> None:
    """Refuse to resolve anything but an open discrepancy. The caller holds the hold's lock and
    read `current` under it: the caller's own copy (an open page) may be stale."""
    if current.resolution:
        # Another admin was first (or a double submit of the explanation).
        resolved_by = current.resolved_by.get_username() if current.resolved_by else ""
        raise DiscrepancyNotOpen(
            current.hold.reference,
            resolved_by=resolved_by,
            resolution=current.get_resolution_display().lower(),
        )
    if current.status != Reconciliation.Status.DISCREPANCY:
        raise DiscrepancyNotOpen(current.hold.reference)  # a later check matched it


# --- Internals ------------------------------------------------------------------------------------


class _NoRoom(Exception):
    """The hold's guarded UPDATE matched nothing: settled, or the step does not fit."""


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
    available = _team_accounts(hold.team_id)[AccountKind.AVAILABLE]
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
                idempotency_key=f"capture:{hold.reference}:{n}",
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
            idempotency_key=f"release:{hold.reference}",
            kind=TransferKind.RELEASE,
            debit_account_id=held,
            credit_account_id=available,
            amount_cents=rest,
            memo=f"The rest of the hold, returned. {why}".strip(),
            **common,
        )
    deltas = {held: -(captured_now + rest), spend: captured_now, available: rest}
    _post(
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


def _post(deltas: dict[int, int], *, available: int | None = None) -> None:
    """Apply balance changes to accounts in one statement that locks them first (pk order).

    `available`, when given, is the team's available account among `deltas`: a debit of it is
    guarded (never below zero, else InsufficientFunds), and its low-balance alert is updated.
    The CheckConstraint on Account is the backstop under all of this.
    """
    if not deltas:
        return  # e.g. closing a hold that was used up exactly: nothing moves
    guard = None
    if available is not None and deltas[available] < 0:
        guard = (available, -deltas[available])
    changed = change_balances(deltas, guard=guard)
    if changed != len(deltas):
        if guard is not None:
            balance = Account.objects.values_list("balance_cents", flat=True).get(pk=guard[0])
            raise InsufficientFunds(balance, guard[1])
        raise Account.DoesNotExist(f"Accounts {sorted(deltas)}: only {changed} found.")
    if available is not None:
        _low_balance_alert(available)


def _low_balance_alert(available: int) -> None:
    """Crossing below the team's level sends one email (after commit); climbing back to it
    re-arms the alert. The caller holds the account's lock, so the crossing is decided once."""
    account = Account.objects.only(
        "team_id", "balance_cents", "low_balance_threshold_cents", "low_balance_alerted"
    ).get(pk=available)
    below = account.balance_cents < account.low_balance_threshold_cents
    if below == account.low_balance_alerted:
        return
    Account.objects.filter(pk=available).update(low_balance_alerted=below)
    if below:
        transaction.on_commit(
            partial(
                _enqueue_low_balance_email,
                team_id=account.team_id,
                available_cents=account.balance_cents,
                threshold_cents=account.low_balance_threshold_cents,
            )
        )


def _enqueue_low_balance_email(**kwargs) -> None:
    from django_q.tasks import async_task

    async_task("billing.tasks.send_low_balance_email", **kwargs)


def account_shard(reference: str) -> int:
    """Which of the team's held/spend shards a hold with this reference uses (stable)."""
    return zlib.crc32(reference.encode()) % max(1, settings.BILLING_ACCOUNT_SHARDS)


def _team_accounts(team_id: int, shard: int | None = None) -> dict[str, int]:
    """The team's account ids by kind: the available account, and with a `shard` the held and
    spend accounts of that shard. Created on first use (idempotent under the unique constraint:
    a concurrent creator's rows win and ours are skipped)."""
    wanted = {(AccountKind.AVAILABLE.value, 0)}
    if shard is not None:
        wanted |= {(kind.value, shard) for kind in SHARDED_KINDS}

    def found() -> dict[tuple[str, int], int]:
        rows = Account.objects.filter(team_id=team_id, shard__in={0, shard or 0}).values_list(
            "kind", "shard", "pk"
        )
        return {(kind, n): pk for kind, n, pk in rows if (kind, n) in wanted}

    ids = found()
    if len(ids) < len(wanted):
        threshold = settings.BILLING_LOW_BALANCE_THRESHOLD_CENTS
        Account.objects.bulk_create(
            [
                Account(
                    team_id=team_id,
                    kind=kind,
                    shard=n,
                    low_balance_threshold_cents=threshold if kind == AccountKind.AVAILABLE else 0,
                    # An empty new wallet is already "below": its banner shows, but no email
                    # until it has been topped up and drops again.
                    low_balance_alerted=kind == AccountKind.AVAILABLE and threshold > 0,
                )
                for kind, n in sorted(wanted - set(ids))
            ],
            ignore_conflicts=True,
        )
        ids = found()
    return {kind: pk for (kind, _n), pk in ids.items()}


def _org_account(kind: str) -> int:
    pk = Account.objects.filter(team=None, kind=kind).values_list("pk", flat=True).first()
    if pk is None:
        Account.objects.bulk_create([Account(team=None, kind=kind)], ignore_conflicts=True)
        pk = Account.objects.filter(team=None, kind=kind).values_list("pk", flat=True).get()
    return pk


# The figures a reconciliation answers: while they stay the same, a resolution stands.
QUESTION_FIELDS = (
    "ledger_captured_cents",
    "ledger_step_count",
    "upstream_steps_completed",
    "step_price_cents",
    "upstream_credits_charged",
    "upstream_test_mode",
)


def _record_reconciliation(
    hold: Hold, report: UpstreamReport, *, source: str, checked_by: str
) -> Reconciliation:
    """Compare and store the verdict for a settled hold. The caller holds the hold's lock.

    Adjustments already made for the hold's run count as paid back (or taken), so the
    difference is what is still outstanding. A resolved discrepancy stays resolved while the
    figures in QUESTION_FIELDS stay the same; new figures are a new question: matched when the
    team's net charge now agrees, else re-opened for what is outstanding.
    """
    hold.refresh_from_db(fields=["captured_cents", "captured_steps", "step_price_cents"])
    existing = Reconciliation.objects.filter(hold=hold).first()
    price = report.step_price_cents or hold.step_price_cents or 0
    verdict = rules.compare(
        ledger_captured_cents=hold.captured_cents,
        ledger_step_count=hold.captured_steps,
        steps_completed=report.steps_completed,
        step_price_cents=price,
        credits_charged=report.credits_charged,
        test_mode=report.test_mode,
        adjusted_cents=_adjusted_for_hold(
            hold.pk, latest=existing.adjustment_id if existing is not None else None
        ),
    )
    figures = {
        "status": Reconciliation.Status.MATCHED
        if verdict.matched
        else Reconciliation.Status.DISCREPANCY,
        "ledger_captured_cents": hold.captured_cents,
        "ledger_step_count": hold.captured_steps,
        "upstream_steps_completed": report.steps_completed,
        "step_price_cents": price,
        "expected_cents": verdict.expected_cents,
        "upstream_credits_charged": report.credits_charged,
        "upstream_test_mode": report.test_mode,
        "difference_cents": verdict.difference_cents,
        "explanation": verdict.explanation,
    }
    now = timezone.now()
    if existing is None:
        return Reconciliation.objects.create(
            hold=hold,
            team_id=hold.team_id,
            run_id=hold.run_id,
            source=source,
            checked_by=checked_by,
            checked_at=now,
            **figures,
        )
    existing.checked_at = now
    existing.checked_by = checked_by
    existing.source = source
    new_question = any(getattr(existing, name) != figures[name] for name in QUESTION_FIELDS)
    if not existing.resolution or new_question:
        # (A resolution answered the figures it was made for: the same figures again leave it,
        # and its difference as it was then, alone.)
        for name, value in figures.items():
            setattr(existing, name, value)
        if existing.resolution and not verdict.matched:
            # New figures make a new question: the earlier resolution answered the old one.
            # Its adjustment stays on the ledger (and in `adjustment`), and is counted above.
            who = existing.resolved_by.get_username() if existing.resolved_by else "someone"
            existing.explanation = (
                f"Re-opened: the figures changed after it was "
                f"{existing.get_resolution_display().lower()} by {who} "
                f"({existing.resolution_note}). " + verdict.explanation
            )
            existing.resolution = Reconciliation.Resolution.NONE
            existing.resolution_note = ""
            existing.resolved_at = None
            existing.resolved_by = None
    existing.save()
    return existing


def _adjusted_for_hold(hold_id: int, *, latest: int | None) -> int:
    """What adjustments for this hold's run gave the team (credits) less what they took back
    (debits), read from the ledger: discrepancy adjustments carry their hold. `latest`, the
    reconciliation's recorded adjustment, counts too: those made before adjustments carried
    their hold are known only from it."""
    tied = Q(hold_id=hold_id) | Q(pk=latest) if latest is not None else Q(hold_id=hold_id)
    totals = Transfer.objects.filter(tied, kind=TransferKind.ADJUSTMENT).aggregate(
        credited=Sum("amount_cents", filter=Q(credit_account__kind=AccountKind.AVAILABLE)),
        debited=Sum("amount_cents", filter=Q(debit_account__kind=AccountKind.AVAILABLE)),
    )
    return (totals["credited"] or 0) - (totals["debited"] or 0)


def _cause(caused_by: CausedBy | None) -> tuple["User | None", str]:
    if isinstance(caused_by, str):
        label = caused_by.strip()
        if not label:
            raise InvalidAmount("Say who or what caused this (caused_by).")
        return None, label[:200]
    if caused_by is None or not getattr(caused_by, "is_authenticated", False):
        raise InvalidAmount("Say who or what caused this (caused_by).")
    return caused_by, f"user:{caused_by.get_username()}"


def _check_cents(value: int, *, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmount(f"{what} is a whole number of cents.")
    if value <= 0:
        raise InvalidAmount(f"{what} must be more than zero.")


def _required_text(value: str, *, what: str, max_length: int) -> str:
    text = (value or "").strip()
    if not text:
        raise InvalidAmount(f"Give {what}.")
    if len(text) > max_length:
        raise InvalidAmount(f"Keep {what} to {max_length} characters.")
    return text


def _first_transfer(key: str) -> Transfer | None:
    return Transfer.objects.filter(idempotency_key=key).first()


def _same_request(first, key: str, **expected) -> None:
    differences = [
        f"{name} was {getattr(first, name)!r}, not {value!r}"
        for name, value in expected.items()
        if getattr(first, name) != value
    ]
    if differences:
        raise IdempotencyConflict(key, "; ".join(differences) + ".")
