"""The ledger's invariants that need runs: billing's check_ledger runs them through
LEDGER_EXTRA_CHECKS, as billing cannot import runs."""

from django.db.models import F, OuterRef, Q, Subquery

from billing.models import Hold
from runs.models import Run

LIMIT = 20


def run_money_problems() -> list[str]:
    """A settled run's hold is closed, and the run's charged_cents is what its hold captured."""
    runs = (
        Run.objects.filter(settled_at__isnull=False)
        .annotate(
            hold_status=Subquery(Hold.objects.filter(run_id=OuterRef("pk")).values("status")[:1]),
            hold_captured=Subquery(
                Hold.objects.filter(run_id=OuterRef("pk")).values("captured_cents")[:1]
            ),
        )
        .filter(hold_status__isnull=False)
        .filter(Q(hold_status=Hold.Status.OPEN) | ~Q(charged_cents=F("hold_captured")))
        .order_by("pk")
    )
    problems = []
    for run in runs[:LIMIT]:
        if run.hold_status == Hold.Status.OPEN:
            problems.append(f"Run {run.pk} is settled but its hold is still open.")
        if run.charged_cents != run.hold_captured:
            problems.append(
                f"Run {run.pk} says it was charged {run.charged_cents} cents but its hold "
                f"captured {run.hold_captured}."
            )
    return problems
