"""Reading the ledger in the billing tests: a team's balances by kind, and the
organisation's own accounts."""

from billing.models import Account


def balances(team) -> dict[str, int]:
    """The team's balance by kind (held and spend summed over their shards)."""
    totals: dict[str, int] = {}
    for kind, balance in Account.objects.filter(team=team).values_list("kind", "balance_cents"):
        totals[kind] = totals.get(kind, 0) + balance
    return totals


def org_balance(kind) -> int:
    return Account.objects.get(team=None, kind=kind).balance_cents
