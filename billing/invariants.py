"""The ledger's invariants, checked against the transfers themselves.

`ledger_problems()` returns one sentence per broken invariant (empty when all hold). It backs
`manage.py check_ledger` and runs after every test that moves money. Each check is one grouped
query, so it stays usable on a large ledger.
"""

from django.conf import settings
from django.db.models import Count, F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils.module_loading import import_string

from billing.models import (
    NON_NEGATIVE_KINDS,
    Account,
    AccountKind,
    Hold,
    MonthUsage,
    Transfer,
    TransferKind,
)
from billing.months import month_of

LIMIT = 20  # name at most this many offenders per invariant

# Which accounts each kind of transfer may move money between: (debit kind, credit kind).
TRANSFER_SHAPES = {
    TransferKind.TOP_UP: [(AccountKind.FUNDING, AccountKind.AVAILABLE)],
    TransferKind.HOLD: [(AccountKind.AVAILABLE, AccountKind.HELD)],
    TransferKind.CAPTURE: [(AccountKind.HELD, AccountKind.SPEND)],
    TransferKind.RELEASE: [(AccountKind.HELD, AccountKind.AVAILABLE)],
    TransferKind.ADJUSTMENT: [
        (AccountKind.ADJUSTMENTS, AccountKind.AVAILABLE),
        (AccountKind.AVAILABLE, AccountKind.ADJUSTMENTS),
    ],
}


def ledger_problems() -> list[str]:
    problems: list[str] = []
    problems += _account_balances()
    problems += _transfer_shapes()
    problems += _holds()
    problems += _held_matches_open_holds()
    problems += _month_usage_matches_holds()
    problems += _hold_transfers_use_the_holds_accounts()
    for check in _extra_checks():
        problems += check()
    return problems


def _extra_checks():
    """Invariants that need an app above billing (a settled run has no open hold, ...), named
    in LEDGER_EXTRA_CHECKS as dotted paths of functions returning sentences: billing cannot
    import those apps."""
    return [import_string(path) for path in getattr(settings, "LEDGER_EXTRA_CHECKS", ())]


def ledger_summary() -> dict[str, int]:
    totals = Account.objects.aggregate(
        accounts=Count("pk"), total=Coalesce(Sum("balance_cents"), 0)
    )
    return {
        "accounts": totals["accounts"],
        "sum_of_balances": totals["total"],
        "transfers": Transfer.objects.count(),
        "holds": Hold.objects.count(),
        "open_holds": Hold.objects.filter(status=Hold.Status.OPEN).count(),
    }


def _account_balances() -> list[str]:
    credits = dict(
        Transfer.objects.values_list("credit_account").annotate(s=Sum("amount_cents")).order_by()
    )
    debits = dict(
        Transfer.objects.values_list("debit_account").annotate(s=Sum("amount_cents")).order_by()
    )
    problems = []
    total = 0
    for pk, kind, slug, balance in Account.objects.values_list(
        "pk", "kind", "team__slug", "balance_cents"
    ).order_by("pk"):
        name = f"{slug or 'organisation'} {kind} (account #{pk})"
        total += balance
        expected = credits.get(pk, 0) - debits.get(pk, 0)
        if balance != expected:
            problems.append(
                f"{name} stores a balance of {balance} cents but its transfers sum to {expected}."
            )
        if kind in NON_NEGATIVE_KINDS and balance < 0:
            problems.append(f"{name} is below zero: {balance} cents.")
    known = set(Account.objects.values_list("pk", flat=True))
    for pk in (set(credits) | set(debits)) - known:
        problems.append(f"Transfers reference account #{pk}, which does not exist.")
    if total != 0:
        problems.append(f"All accounts should sum to zero but sum to {total} cents.")
    return problems[: LIMIT * 2]


def _transfer_shapes() -> list[str]:
    good = Q()
    for kind, shapes in TRANSFER_SHAPES.items():
        for debit_kind, credit_kind in shapes:
            good |= Q(kind=kind, debit_account__kind=debit_kind, credit_account__kind=credit_kind)
    # The team side of every transfer belongs to the transfer's team.
    team_side = (Q(debit_account__team__isnull=True) | Q(debit_account__team=F("team"))) & (
        Q(credit_account__team__isnull=True) | Q(credit_account__team=F("team"))
    )
    wrong = Transfer.objects.exclude(good & team_side).order_by("pk")
    return [
        f"Transfer #{pk} ({key}, {kind}) moves money between accounts that do not fit its kind "
        "or its team."
        for pk, key, kind in wrong.values_list("pk", "idempotency_key", "kind")[:LIMIT]
    ]


def _holds() -> list[str]:
    def total(kind: str):
        return Coalesce(Sum("transfers__amount_cents", filter=Q(transfers__kind=kind)), Value(0))

    holds = Hold.objects.annotate(
        hold_sum=total(TransferKind.HOLD),
        capture_sum=total(TransferKind.CAPTURE),
        release_sum=total(TransferKind.RELEASE),
        capture_count=Count("transfers", filter=Q(transfers__kind=TransferKind.CAPTURE)),
    )
    broken = holds.filter(
        ~Q(hold_sum=F("amount_cents"))
        | ~Q(capture_sum=F("captured_cents"))
        | ~Q(release_sum=F("released_cents"))
        | ~Q(capture_count=F("captured_steps"))
        | Q(captured_cents__gt=F("amount_cents") - F("released_cents"))
        | Q(status=Hold.Status.SETTLED) & ~Q(amount_cents=F("captured_cents") + F("released_cents"))
        # Steps are counted, not numbered (settle charges Coasty's count): more step
        # charges than Coasty's count is the break, whatever their numbers.
        | Q(upstream_steps_completed__isnull=False)
        & Q(capture_count__gt=F("upstream_steps_completed"))
        # A billing admin's resolution (a credit, an explanation) answers that question.
        & (Q(reconciliation__isnull=True) | Q(reconciliation__resolution=""))
    ).order_by("pk")
    problems = []
    for hold in broken[:LIMIT]:
        name = f"Hold {hold.reference} (#{hold.pk})"
        if hold.hold_sum != hold.amount_cents:
            problems.append(
                f"{name} is for {hold.amount_cents} cents but its hold transfer moved {hold.hold_sum}."
            )
        if hold.capture_sum != hold.captured_cents or hold.capture_count != hold.captured_steps:
            problems.append(
                f"{name} records {hold.captured_cents} cents captured in {hold.captured_steps} steps, "
                f"but its capture transfers are {hold.capture_sum} cents in {hold.capture_count}."
            )
        if hold.release_sum != hold.released_cents:
            problems.append(
                f"{name} records {hold.released_cents} cents released, transfers say {hold.release_sum}."
            )
        if hold.captured_cents + hold.released_cents > hold.amount_cents:
            problems.append(
                f"{name} has {hold.captured_cents} cents captured and {hold.released_cents} released, "
                f"more than its {hold.amount_cents}."
            )
        if not hold.is_open and hold.remaining_cents:
            problems.append(f"{name} is settled but still holds {hold.remaining_cents} cents.")
        steps = hold.upstream_steps_completed
        resolved = bool(getattr(getattr(hold, "reconciliation", None), "resolution", ""))
        if steps is not None and not resolved and hold.capture_count > steps:
            problems.append(
                f"{name} has {hold.capture_count} step charges, "
                f"but Coasty reported {steps} completed steps and no resolution answers it."
            )
    return problems


def _held_matches_open_holds() -> list[str]:
    """A team's held balance is exactly what its open holds still reserve."""
    open_by_team = dict(
        Hold.objects.filter(status=Hold.Status.OPEN)
        .values_list("team")
        .annotate(rest=Sum(F("amount_cents") - F("captured_cents") - F("released_cents")))
        .order_by()
    )
    problems = []
    # A team's held money is the sum of its held shards.
    held = (
        Account.objects.filter(kind=AccountKind.HELD)
        .values_list("team_id", "team__slug")
        .annotate(balance=Sum("balance_cents"))
        .order_by()
    )
    for team_id, slug, balance in held:
        reserved = open_by_team.pop(team_id, 0)
        if balance != reserved:
            problems.append(
                f"{slug} held is {balance} cents but its open holds reserve {reserved}."
            )
    for team_id, reserved in open_by_team.items():
        if reserved:
            problems.append(
                f"Team #{team_id} has open holds of {reserved} cents but no held account."
            )
    return problems[:LIMIT]


def _month_usage_matches_holds() -> list[str]:
    """Each month row (a team's, or a member's) uses exactly what the holds counted against it
    still take (amount less released), and each such hold was placed in that month."""
    rest = Sum(F("amount_cents") - F("released_cents"))

    def taken(field: str) -> Coalesce:
        holds = Hold.objects.filter(**{field: OuterRef("pk")}).order_by().values(field)
        return Coalesce(Subquery(holds.annotate(s=rest).values("s")[:1]), Value(0))

    wrong = (
        MonthUsage.objects.annotate(expected=taken("team_usage") + taken("member_usage"))
        .exclude(used_cents=F("expected"))
        .values_list("pk", "month", "used_cents", "expected")
        .order_by("pk")
    )
    problems = [
        f"Month usage #{pk} ({month:%Y-%m}) records {cents} cents, its holds take {expected}."
        for pk, month, cents, expected in wrong[:LIMIT]
    ]
    placed = Hold.objects.filter(team_usage__isnull=False).values_list(
        "reference", "created_at", "team_usage__month", "member_usage__month"
    )
    for reference, created_at, team_month, member_month in placed.iterator():
        month = month_of(created_at)
        if team_month != month or (member_month is not None and member_month != month):
            problems.append(f"Hold {reference} was placed in {month:%Y-%m} but counts elsewhere.")
        if len(problems) >= LIMIT:
            break
    return problems[:LIMIT]


def _hold_transfers_use_the_holds_accounts() -> list[str]:
    """A hold's transfers move its money on its own shard's held and spend accounts, for its
    own team: never another shard's or another team's."""
    own = Q(team=F("hold__team")) & (
        Q(kind=TransferKind.HOLD, credit_account=F("hold__held_account"))
        | Q(
            kind=TransferKind.CAPTURE,
            debit_account=F("hold__held_account"),
            credit_account=F("hold__spend_account"),
        )
        | Q(kind=TransferKind.RELEASE, debit_account=F("hold__held_account"))
        | Q(kind=TransferKind.ADJUSTMENT)
    )
    wrong = Transfer.objects.filter(hold__isnull=False).exclude(own).order_by("pk")
    return [
        f"Transfer #{pk} ({key}, {kind}) of hold {reference} does not use that hold's own "
        "accounts or team."
        for pk, key, kind, reference in wrong.values_list(
            "pk", "idempotency_key", "kind", "hold__reference"
        )[:LIMIT]
    ]
