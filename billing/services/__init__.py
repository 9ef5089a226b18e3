"""Every write to the ledger, one module per kind of change.

- wallets: top-ups and corrections by billing admins, and a wallet's low-balance level;
- holds: a run's reserved money, captured per step and released when it ends;
- captures: the steps of several holds charged in one commit (the event follower's batches);
- budgets: a team's monthly budget and alert thresholds, members' monthly limits (counted in
  the hold's own transaction);
- reconciliation: checking settled holds against Coasty's figures, and resolving discrepancies;
- posting: what they share (accounts, balance changes, argument checks).

Each service owns its transaction (`transaction.atomic`, a savepoint when the caller already has
one), is idempotent under its key (`billing.keys`), and either moves the money completely or not
at all. A retried call inserts the same key, the database refuses it (IntegrityError), the
transaction rolls back, and the service returns what the first call wrote; when the first call
is still in flight on another connection, the duplicate waits on the unique index (or the hold
row) until it commits. Locks follow the one order in `billing.locks`; docs/architecture.md tells
the flow of a cent.
"""

from billing.services.budgets import budget_set, member_limit_set
from billing.services.captures import StepsCaptured, StepsToCapture, holds_capture_steps
from billing.services.holds import (
    hold_capture,
    hold_capture_steps,
    hold_capture_steps_totalled,
    hold_discrepancy_open,
    hold_place,
    hold_release,
    hold_settle,
    hold_settle_unverified,
)
from billing.services.posting import CausedBy, account_shard
from billing.services.reconciliation import (
    QUESTION_FIELDS,
    ReconcileSummary,
    reconcile_finished_holds,
    reconcile_hold,
    reconciliation_mark_explained,
    reconciliation_resolve_with_adjustment,
)
from billing.services.wallets import (
    wallet_adjust,
    wallet_set_low_balance_threshold,
    wallet_top_up,
)

__all__ = [
    "QUESTION_FIELDS",
    "CausedBy",
    "ReconcileSummary",
    "StepsCaptured",
    "StepsToCapture",
    "account_shard",
    "budget_set",
    "hold_capture",
    "hold_capture_steps",
    "hold_capture_steps_totalled",
    "hold_discrepancy_open",
    "hold_place",
    "hold_release",
    "hold_settle",
    "hold_settle_unverified",
    "holds_capture_steps",
    "member_limit_set",
    "reconcile_finished_holds",
    "reconcile_hold",
    "reconciliation_mark_explained",
    "reconciliation_resolve_with_adjustment",
    "wallet_adjust",
    "wallet_set_low_balance_threshold",
    "wallet_top_up",
]
