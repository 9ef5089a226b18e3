"""Reconciliation: does what the ledger charged agree with what Coasty reported, and the
billing admins' answers to the discrepancies it finds. The rules themselves, with no database,
are in `billing.verdicts`."""

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.urls import reverse
from django.utils import timezone

from billing import keys
from billing import verdicts as rules
from billing.errors import (
    DiscrepancyNotOpen,
)
from billing.locks import (
    lock_hold,
)
from billing.models import (
    AccountKind,
    Hold,
    ReconcileCursor,
    Reconciliation,
    Transfer,
    TransferKind,
)
from billing.services.posting import (
    CausedBy,
    cause,
    required_text,
)
from billing.services.wallets import wallet_adjust
from billing.verdicts import UpstreamReport
from portal.notifications.models import EventType
from portal.notifications.services import event_record

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


@dataclass
class ReconcileSummary:
    checked: int = 0
    matched: int = 0
    discrepancies: int = 0
    skipped: int = 0
    failed: int = 0
    # Where this job started and whether it reached the end of the list (else the next job
    # resumes after the cursor it stored).
    resumed_after: int = 0
    complete: bool = True


def reconcile_hold(
    *,
    hold: Hold,
    caused_by: CausedBy,
    report: UpstreamReport | None = None,
    ask_upstream: bool = True,
    source: str = "report",
) -> Reconciliation | None:
    """Re-check one finished hold and record the result.

    The figures come from `report` when given, else (when `ask_upstream`) from the configured
    upstream reporter (BILLING_UPSTREAM_REPORTER), else from those recorded on the hold at settle
    time. Returns None for a hold that is still open or that has no figures to compare with (for
    example one released because the run never reached Coasty).
    """
    _user, label = cause(caused_by)
    if report is None:
        # Asked before the transaction: the reporter may call Coasty, and no lock should wait
        # on the network.
        reporter = rules.configured_reporter() if ask_upstream else None
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
        return record_reconciliation(locked, report, source=source, checked_by=label)


CURSOR_NAME = "finished_holds"


def reconcile_finished_holds(
    *,
    caused_by: CausedBy,
    window: timedelta | None = None,
    budget_seconds: float | None = None,
    batch_size: int | None = None,
    clock=time.monotonic,
) -> ReconcileSummary:
    """Re-check the holds worth re-checking: those settled within `window` (default
    BILLING_RECONCILE_WINDOW_HOURS), and every one with an open discrepancy.

    In batches of BILLING_RECONCILE_BATCH holds, in the order of their ids, resumed after the
    cursor the last job stored: Coasty's figures for a batch are asked at once through the
    reporter's batch form (`reporter.many`, which bounds the calls in flight). When
    BILLING_RECONCILE_BUDGET_SECONDS has passed the job stores its place and stops, well inside
    the task timeout; at the end of the list the cursor goes back to the start.
    """
    if window is None:
        window = timedelta(hours=settings.BILLING_RECONCILE_WINDOW_HOURS)
    budget = settings.BILLING_RECONCILE_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    size = batch_size or settings.BILLING_RECONCILE_BATCH
    since = timezone.now() - window
    candidates = Hold.objects.filter(status=Hold.Status.SETTLED).filter(
        Q(settled_at__gte=since)
        | Q(
            reconciliation__status=Reconciliation.Status.DISCREPANCY,
            reconciliation__resolution="",
        )
    )
    batch_reporter = rules.configured_batch_reporter()
    cursor, _created = ReconcileCursor.objects.get_or_create(name=CURSOR_NAME)
    summary = ReconcileSummary(resumed_after=cursor.last_hold_id, complete=False)
    started = clock()
    last = cursor.last_hold_id
    while True:
        holds = list(candidates.filter(pk__gt=last).order_by("pk")[:size])
        if not holds:
            summary.complete = True
            last = 0
            break
        reports: dict[int, object] = {}
        if batch_reporter is not None:
            try:
                reports = batch_reporter(holds)
            except Exception:
                logger.exception("The batch reporter failed; checking holds one by one")
        for hold in holds:
            _reconcile_one(hold, reports, batch_reporter is not None, caused_by, summary)
        last = holds[-1].pk
        if clock() - started >= budget:
            break
    ReconcileCursor.objects.filter(pk=cursor.pk).update(
        last_hold_id=last, updated_at=timezone.now()
    )
    return summary


def _reconcile_one(hold: Hold, reports, batched: bool, caused_by, summary) -> None:
    found = reports.get(hold.pk) if batched else None
    try:
        if isinstance(found, Exception):
            raise found
        if batched and hold.pk in reports:
            result = reconcile_hold(
                hold=hold,
                caused_by=caused_by,
                report=found,  # type: ignore[arg-type]
                ask_upstream=False,
                source="upstream reporter",
            )
        else:
            result = reconcile_hold(hold=hold, caused_by=caused_by)
    except Exception:
        # One hold the reporter cannot answer for must not stop the others being checked.
        logger.exception("Could not reconcile hold %s", hold.reference)
        summary.failed += 1
        return
    if result is None:
        summary.skipped += 1
        return
    summary.checked += 1
    if result.status == Reconciliation.Status.MATCHED:
        summary.matched += 1
    else:
        summary.discrepancies += 1


def reconciliation_resolve_with_adjustment(
    *,
    reconciliation: Reconciliation,
    amount_cents: int,
    direction: str,
    reason: str,
    actor: "User",
    idempotency_key: str,
) -> tuple[Reconciliation, bool]:
    """Resolve a discrepancy by crediting or debiting the team, recorded on the discrepancy.

    Returns (the reconciliation, whether this call made the adjustment). The same idempotency
    key again (a double submit) returns the reconciliation as it is, with no second
    adjustment; anything but an open discrepancy is refused (DiscrepancyNotOpen).
    """
    key = keys.reconciliation_adjust_key(reconciliation.pk, idempotency_key)
    with transaction.atomic():
        # Lock 1 (the hold): the reconciliation row is only ever written under its hold's lock.
        lock_hold(reconciliation.hold.reference)
        current = Reconciliation.objects.get(pk=reconciliation.pk)
        if Transfer.objects.filter(idempotency_key=keys.adjust_key(key)).exists():
            # This very request was done already; checked first so that a late duplicate
            # never resolves the discrepancy a second time with the first adjustment.
            return current, False
        _check_open(current)
        adjustment, _created = wallet_adjust(
            team=current.team,
            amount_cents=amount_cents,
            direction=direction,
            reason=reason,
            actor=actor,
            idempotency_key=key,
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
    return current, True


def reconciliation_mark_explained(
    *, reconciliation: Reconciliation, note: str, actor: "User"
) -> Reconciliation:
    """Resolve a discrepancy without moving money, with the explanation a person gave."""
    note = required_text(note, what="an explanation", max_length=2000)
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


QUESTION_FIELDS = (
    "ledger_captured_cents",
    "ledger_step_count",
    "upstream_steps_completed",
    "step_price_cents",
    "upstream_credits_charged",
    "upstream_test_mode",
)


def record_reconciliation(
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
        created = Reconciliation.objects.create(
            hold=hold,
            team_id=hold.team_id,
            run_id=hold.run_id,
            source=source,
            checked_by=checked_by,
            checked_at=now,
            **figures,
        )
        _discrepancy_opened_notify(created, was_open=False)
        return created
    was_open = existing.is_open_discrepancy
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
    _discrepancy_opened_notify(existing, was_open=was_open)
    return existing


def _discrepancy_opened_notify(reconciliation: Reconciliation, *, was_open: bool) -> None:
    """A discrepancy that is open now and was not before (new, or re-opened) is news for the
    billing admins, once: the caller holds the hold's lock, and the key names this opening."""
    if was_open or not reconciliation.is_open_discrepancy:
        return
    event_record(
        EventType.BILLING_DISCREPANCY_OPENED,
        team_id=reconciliation.team_id,
        subject=f"reconciliation:{reconciliation.pk}",
        key=(
            f"{EventType.BILLING_DISCREPANCY_OPENED}:{reconciliation.pk}:"
            f"{reconciliation.checked_at.isoformat()}"
        ),
        data={
            "reconciliation_id": reconciliation.pk,
            "run_id": str(reconciliation.run_id) if reconciliation.run_id else None,
            "difference_cents": reconciliation.difference_cents,
            "explanation": reconciliation.explanation,
            "url": settings.PORTAL_PUBLIC_URL.rstrip("/")
            + reverse("billing_discrepancy", args=[reconciliation.pk]),
        },
    )


def record_unverified(
    hold: Hold, *, why: str, step_price_cents: int, test_mode: bool, checked_by: str
) -> Reconciliation:
    """Open a discrepancy on `hold` whose upstream figures are unknown. The caller holds the
    hold's lock. Coasty's side is recorded as the ledger's own figures (no guess), the words
    say why; an earlier verdict is kept and re-opened with `why` in front."""
    hold.refresh_from_db(fields=["captured_cents", "captured_steps"])
    existing = Reconciliation.objects.filter(hold=hold).first()
    now = timezone.now()
    if existing is not None:
        if why in existing.explanation:
            return existing  # recorded already: a repeat changes nothing
        was_open = existing.is_open_discrepancy
        existing.status = Reconciliation.Status.DISCREPANCY
        existing.explanation = f"{why} {existing.explanation}"
        existing.resolution = Reconciliation.Resolution.NONE
        existing.resolution_note = ""
        existing.resolved_at = None
        existing.resolved_by = None
        existing.checked_at = now
        existing.checked_by = checked_by
        existing.save()
        _discrepancy_opened_notify(existing, was_open=was_open)
        logger.warning("discrepancy re-opened on %s: %s", hold.reference, why)
        return existing
    logger.warning("discrepancy opened on %s: %s", hold.reference, why)
    created = Reconciliation.objects.create(
        hold=hold,
        team_id=hold.team_id,
        run_id=hold.run_id,
        status=Reconciliation.Status.DISCREPANCY,
        ledger_captured_cents=hold.captured_cents,
        ledger_step_count=hold.captured_steps,
        upstream_steps_completed=hold.captured_steps,
        step_price_cents=step_price_cents,
        expected_cents=hold.captured_cents,
        upstream_credits_charged=hold.captured_cents,
        upstream_test_mode=test_mode,
        difference_cents=0,
        explanation=why,
        source="unverified",
        checked_by=checked_by,
        checked_at=now,
    )
    _discrepancy_opened_notify(created, was_open=False)
    return created


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
