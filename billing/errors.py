"""What billing services refuse, with messages a person can act on.

Callers (the runs app, views, the API) catch these by class; each carries its numbers as
attributes so an API can put them in its error body.
"""

from portal.core.money import format_cents as _money


class BillingError(Exception):
    """Base class: a billing service refused to move money. Nothing was written."""


class InvalidAmount(BillingError, ValueError):
    """An amount, reference or reason a person or caller gave is not acceptable."""


class InsufficientFunds(BillingError):
    def __init__(self, available_cents: int, needed_cents: int):
        self.available_cents = available_cents
        self.needed_cents = needed_cents
        super().__init__(
            f"Insufficient funds: {_money(needed_cents)} needed, "
            f"{_money(available_cents)} available. Ask a billing admin to top up the wallet."
        )


class HoldNotFound(BillingError, LookupError):
    def __init__(self, reference: str):
        self.reference = reference
        super().__init__(f"No hold with reference {reference!r}.")


class HoldExceeded(BillingError):
    """A capture would take more than what is left of the hold (or the hold is settled)."""

    def __init__(self, reference: str, remaining_cents: int, needed_cents: int, *, settled: bool):
        self.reference = reference
        self.remaining_cents = remaining_cents
        self.needed_cents = needed_cents
        self.settled = settled
        if settled:
            message = (
                f"Hold {reference} is settled; nothing is left to capture "
                f"({_money(needed_cents)} asked)."
            )
        else:
            message = (
                f"Capturing {_money(needed_cents)} would exceed hold {reference}: "
                f"only {_money(remaining_cents)} is left."
            )
        super().__init__(message)


class IdempotencyConflict(BillingError):
    """The same idempotency key (or hold reference) came back with different figures."""

    def __init__(self, key: str, detail: str):
        self.key = key
        super().__init__(f"{key} was already used for a different request: {detail}")


class DiscrepancyNotOpen(BillingError):
    """A resolution was asked for a reconciliation that is not an open discrepancy (any more):
    another billing admin resolved it first, or a later check found that it matched, for
    example while the page was open."""

    def __init__(self, reference: str, *, resolved_by: str = "", resolution: str = ""):
        self.reference = reference
        self.resolved_by = resolved_by
        self.resolution = resolution
        if resolution:
            message = (
                f"Already resolved by {resolved_by or 'someone'} ({resolution}). "
                "Nothing was changed."
            )
        else:
            message = (
                f"This discrepancy is no longer open: the latest check of {reference} matched. "
                "Nothing was changed."
            )
        super().__init__(message)


class MonthlyCapExceeded(BillingError):
    """A hold would take a month's held plus spent cents above a cap: a team's budget or a
    member's limit. Each kind says what is left of its cap, and what to do, in `explain`."""

    def __init__(self, *, limit_cents: int, used_cents: int, needed_cents: int, month: str):
        self.limit_cents = limit_cents
        self.used_cents = used_cents
        self.needed_cents = needed_cents
        self.month = month
        self.remaining_cents = max(0, limit_cents - used_cents)
        super().__init__(self.explain())

    def explain(self) -> str:
        raise NotImplementedError


class BudgetExceeded(MonthlyCapExceeded):
    """A hold would take the team's month (held plus spent) above its monthly budget."""

    def explain(self) -> str:
        return (
            f"Over the team's monthly budget: this launch can cost up to "
            f"{_money(self.needed_cents)} and {_money(self.remaining_cents)} of the "
            f"{_money(self.limit_cents)} budget is left for {self.month}. Lower max_steps, "
            "wait for running launches to release their holds, or ask a manager to raise the "
            "budget."
        )


class MemberLimitExceeded(MonthlyCapExceeded):
    """A hold would take the member's month (held plus spent) above their monthly limit."""

    def explain(self) -> str:
        return (
            f"Over your monthly limit in this team: this launch can cost up to "
            f"{_money(self.needed_cents)} and {_money(self.remaining_cents)} of your "
            f"{_money(self.limit_cents)} limit is left for {self.month}. Lower max_steps or "
            "ask a manager to raise your limit."
        )
