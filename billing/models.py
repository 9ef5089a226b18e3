"""The money: a double-entry ledger in integer cents (after TigerBeetle).

Every movement of money is one immutable `Transfer` from a debit account to a credit account.
Each `Account` keeps its balance in a column, defined as *credits minus debits*, and updated in the
same transaction as the transfer. Balances start at zero and every transfer subtracts its amount
from one account and adds it to another, so **the balances of all accounts always sum to zero**
(`manage.py check_ledger` proves it against the transfers).

Accounts, and what a transfer between them means:

    top_up      funding (org)      -> available (team)   a billing admin adds prepaid money
    hold        available (team)   -> held (team)        a run reserves max_steps x price
    capture     held (team)        -> spend (team)       one completed step is charged
    release     held (team)        -> available (team)   the unused rest of a hold goes back
    adjustment  adjustments (org) <-> available (team)   a billing admin's correction

The organisation's `funding` account goes negative by exactly what was paid in; `spend` is kept
per team rather than as one organisation-wide account, because every capture of every team would
otherwise update (and lock) the same row. The organisation's total spend is the roll-up (sum) of
the team spend accounts, so nothing is lost and the sum-to-zero invariant is untouched.

For the same reason a team's `held` and `spend` money is split over a few *shards*: accounts of
the same kind numbered 0..BILLING_ACCOUNT_SHARDS-1. Each hold is placed on one shard (chosen from
its reference) and its captures and release move money only between that shard's held and spend
accounts, so the team's concurrent runs no longer queue on one hot row for every step they
charge. The team's held (or spent) money is the sum of its shards; the available account, which
guards the team's spending, stays one row (shard 0).
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from billing import keys
from portal.teams.models import Team


class AccountKind(models.TextChoices):
    AVAILABLE = "available", "Available"
    HELD = "held", "Held"
    SPEND = "spend", "Spend"
    FUNDING = "funding", "Funding"
    ADJUSTMENTS = "adjustments", "Adjustments"


TEAM_ACCOUNT_KINDS = (AccountKind.AVAILABLE, AccountKind.HELD, AccountKind.SPEND)
ORG_ACCOUNT_KINDS = (AccountKind.FUNDING, AccountKind.ADJUSTMENTS)
# The team account kinds split over shards (hold_place picks one for each hold).
SHARDED_KINDS = (AccountKind.HELD, AccountKind.SPEND)
# Balances that are money a team has (or has spent) and so can never be negative.
NON_NEGATIVE_KINDS = (AccountKind.AVAILABLE, AccountKind.HELD, AccountKind.SPEND)


class Account(models.Model):
    """One ledger account: a team's available, held or spent money, or an organisation account.

    `balance_cents` is the sum of the account's credits minus its debits, stored so that reads
    and the "can the team afford it?" check cost one row. A team's accounts are created lazily
    (teams are created in `portal`, which does not know about billing), idempotently under the
    unique constraints below.

    A team's *available* account also carries the team's low-balance alert level and whether the
    alert for the current dip below it has been sent: both change in the same row update as the
    balance, under the same lock, so "crossed below" is decided exactly once.
    """

    team = models.ForeignKey(
        Team,
        null=True,
        blank=True,
        on_delete=models.PROTECT,  # a team with money history cannot vanish
        related_name="billing_accounts",
    )
    kind = models.CharField(max_length=16, choices=AccountKind.choices)
    # Which of the team's accounts of this kind (see the module docstring); always 0 for the
    # available account and the organisation's accounts.
    shard = models.PositiveSmallIntegerField(default=0)
    balance_cents = models.BigIntegerField(default=0)
    low_balance_threshold_cents = models.PositiveBigIntegerField(default=0)
    low_balance_alerted = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "kind", "shard"],
                condition=Q(team__isnull=False),
                name="billing_account_one_per_team_kind_shard",
            ),
            models.CheckConstraint(
                condition=Q(shard=0) | Q(kind__in=SHARDED_KINDS),
                name="billing_account_only_held_and_spend_sharded",
            ),
            models.UniqueConstraint(
                fields=["kind"],
                condition=Q(team__isnull=True),
                name="billing_account_one_per_org_kind",
            ),
            models.CheckConstraint(
                condition=(
                    Q(team__isnull=False, kind__in=TEAM_ACCOUNT_KINDS)
                    | Q(team__isnull=True, kind__in=ORG_ACCOUNT_KINDS)
                ),
                name="billing_account_kind_matches_owner",
            ),
            # The backstop under every service check: no wallet ever goes below zero.
            models.CheckConstraint(
                condition=~Q(kind__in=NON_NEGATIVE_KINDS) | Q(balance_cents__gte=0),
                name="billing_account_wallet_balance_not_negative",
            ),
        ]
        permissions = [("manage_wallets", "Can top up, adjust and reconcile every team's wallet")]

    def __str__(self) -> str:
        owner = self.team.slug if self.team is not None else "organisation"
        return f"{owner} {self.kind}" + (f" #{self.shard}" if self.shard else "")


class Budget(models.Model):
    """A team's spend controls: its monthly budget, the launch cost above which a manager
    must approve, and the percentages of the budget at which the team is told.

    `monthly_limit_cents` caps what the team's holds placed in one calendar month (in
    TIME_ZONE) may take: their whole amount counts from the moment each is placed, and what a
    hold releases comes back (see MonthUsage). None means no budget. The runs app reads
    `approval_above_cents`; billing only stores it.
    """

    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="billing_budget")
    monthly_limit_cents = models.PositiveBigIntegerField(null=True, blank=True)
    approval_above_cents = models.PositiveBigIntegerField(null=True, blank=True)
    alert_percents = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"budget of {self.team}"


class MemberLimit(models.Model):
    """What one member may have held and spent in a team in one calendar month."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="billing_member_limits")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    monthly_limit_cents = models.PositiveBigIntegerField()
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="billing_member_limit_unique"),
        ]

    def __str__(self) -> str:
        return f"limit of {self.user} in {self.team}"


class MonthUsage(models.Model):
    """What a team (user None) or one member of it has held plus spent in one calendar month.

    `used_cents` is the sum over the holds placed in `month` that count against this row
    (Hold.team_usage / Hold.member_usage) of their amount less what they released: a hold
    counts whole from the moment it is placed, captures move money from held to spent without
    changing the sum, and a release gives its cents back to the month the hold was placed in.
    It changes in the same transaction as the hold, under a guarded UPDATE of this row
    (billing.locks), so the budget check has no read-then-write race. check_ledger proves it
    against the holds.
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="billing_month_usage")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    month = models.DateField(help_text="The first day of the calendar month, in TIME_ZONE.")
    used_cents = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "month"],
                condition=Q(user__isnull=True),
                name="billing_month_usage_one_per_team",
            ),
            models.UniqueConstraint(
                fields=["team", "user", "month"],
                condition=Q(user__isnull=False),
                name="billing_month_usage_one_per_member",
            ),
            models.CheckConstraint(
                condition=Q(used_cents__gte=0), name="billing_month_usage_not_negative"
            ),
        ]

    def __str__(self) -> str:
        who = f"{self.user} in " if self.user_id else ""
        return f"{who}{self.team} {self.month:%Y-%m}: {self.used_cents} cents"


class Hold(models.Model):
    """Money reserved for one run (or anything else with a reference): a pending transfer.

    Placing it moves `amount_cents` from the team's available to its held account; each captured
    step moves one step price from held to spend; settling or releasing returns what is left.
    `captured_cents + released_cents <= amount_cents` always, and once settled they are equal.
    The figures Coasty reported when the hold was settled are kept, so reconciliation can be
    re-run without asking Coasty again.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        SETTLED = "settled", "Settled"

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="billing_holds")
    reference = models.CharField(max_length=200)
    run_id = models.UUIDField(null=True, blank=True, db_index=True)
    amount_cents = models.PositiveBigIntegerField()
    captured_cents = models.PositiveBigIntegerField(default=0)
    released_cents = models.PositiveBigIntegerField(default=0)
    captured_steps = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    # Recorded by hold_settle: what Coasty said about the finished run.
    step_price_cents = models.PositiveIntegerField(null=True, blank=True)
    # Where the hold's money sits and where its captures go, fixed when it is placed, so a
    # capture finds both accounts in the row it already updates (no lookup on the hot path).
    held_account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    spend_account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    upstream_steps_completed = models.PositiveBigIntegerField(null=True, blank=True)
    upstream_credits_charged = models.PositiveBigIntegerField(null=True, blank=True)
    upstream_test_mode = models.BooleanField(null=True, blank=True)
    # The month rows this hold counts against (the month it was placed in): its release gives
    # its cents back to them. Null on holds placed before budgets existed.
    team_usage = models.ForeignKey(
        MonthUsage, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    member_usage = models.ForeignKey(
        MonthUsage, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["reference"], name="billing_hold_unique_reference"),
            models.CheckConstraint(
                condition=Q(amount_cents__gt=0), name="billing_hold_amount_positive"
            ),
            models.CheckConstraint(
                condition=Q(captured_cents__lte=F("amount_cents") - F("released_cents")),
                name="billing_hold_never_beyond_amount",
            ),
            models.CheckConstraint(
                condition=Q(status="open")
                | Q(status="settled", amount_cents=F("captured_cents") + F("released_cents")),
                name="billing_hold_settled_means_nothing_left",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["open", "settled"]), name="billing_hold_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["team", "-created_at"], name="billing_hold_team_recent")]

    def __str__(self) -> str:
        return f"hold {self.reference} ({self.amount_cents} cents, {self.status})"

    @property
    def remaining_cents(self) -> int:
        return self.amount_cents - self.captured_cents - self.released_cents

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN


class TransferKind(models.TextChoices):
    TOP_UP = "top_up", "Top-up"
    HOLD = "hold", "Hold"
    CAPTURE = "capture", "Capture"
    RELEASE = "release", "Release"
    ADJUSTMENT = "adjustment", "Adjustment"


class Transfer(models.Model):
    """One movement of money: `amount_cents` from `debit_account` to `credit_account`.

    Append-only: rows are never edited or deleted (a correction is a new adjustment). Each has a
    unique idempotency key (`topup:<key>`, `hold:<ref>`, `capture:<ref>:<step>`, `release:<ref>`,
    `adjust:<key>`), so a retried or duplicated write finds the first transfer instead of moving
    money twice. `caused_by` says who or what caused it ("user:alice", "run:<uuid>",
    "job:reconcile_billing", "command:seed_demo").
    """

    idempotency_key = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=TransferKind.choices)
    debit_account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="debits", db_index=False
    )
    credit_account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="credits", db_index=False
    )
    amount_cents = models.PositiveBigIntegerField()
    # Indexed through the composite (team, ...) indexes below.
    team = models.ForeignKey(
        Team, on_delete=models.PROTECT, related_name="billing_transfers", db_index=False
    )
    hold = models.ForeignKey(
        Hold, null=True, blank=True, on_delete=models.PROTECT, related_name="transfers"
    )
    run_id = models.UUIDField(null=True, blank=True)
    step = models.PositiveIntegerField(null=True, blank=True)
    reference = models.CharField(max_length=255)
    memo = models.TextField(blank=True)
    caused_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    caused_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_key"], name="billing_transfer_unique_idempotency_key"
            ),
            models.CheckConstraint(
                condition=Q(amount_cents__gt=0), name="billing_transfer_amount_positive"
            ),
            models.CheckConstraint(
                condition=~Q(debit_account=F("credit_account")),
                name="billing_transfer_between_two_accounts",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=TransferKind.values), name="billing_transfer_kind_valid"
            ),
            models.CheckConstraint(
                condition=~Q(kind="capture") | Q(step__isnull=False, hold__isnull=False),
                name="billing_transfer_capture_has_hold_and_step",
            ),
        ]
        indexes = [
            # The team's ledger, newest first, paged by id (keyset).
            models.Index(fields=["team", "id"], name="billing_xfer_team_id"),
            models.Index(fields=["team", "kind", "id"], name="billing_xfer_team_kind_id"),
            # Date filters and the spend-per-day / this-month sums. amount_cents rides along in
            # the index (INCLUDE, PostgreSQL) so those sums are index-only scans: on a team with
            # a million transfers the wallet page's month of captures is ~65,000 rows.
            models.Index(
                fields=["team", "kind", "created_at"],
                include=["amount_cents"],
                name="billing_xfer_team_kind_time",
            ),
            models.Index(fields=["team", "created_at"], name="billing_xfer_team_time"),
            # A run's entries in order: the grouped ledger's sums and expanded steps, and "has
            # this run an entry newer than the page's cursor?" (billing.ledger_groups) in one seek.
            models.Index(fields=["run_id", "id"], name="billing_xfer_run_id"),
            models.Index(
                fields=["caused_by_user"],
                condition=Q(caused_by_user__isnull=False),
                name="billing_xfer_by_user",
            ),
            # "Was this invoice paid in before?", asked by the top-up review step.
            models.Index(
                fields=["reference"],
                condition=Q(kind="top_up"),
                name="billing_xfer_topup_reference",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount_cents} cents ({self.idempotency_key})"

    @property
    def display_reference(self) -> str:
        """The reference, unless it only repeats the run (which the ledger shows anyway)."""
        return (
            ""
            if self.run_id and self.reference == keys.run_hold_reference(self.run_id)
            else self.reference
        )

    @property
    def badge(self) -> str:
        """The CSS badge class the ledger shows the kind with."""
        return TRANSFER_BADGES.get(self.kind, "idle")


TRANSFER_BADGES: dict[str, str] = {
    TransferKind.TOP_UP: "credit",
    TransferKind.HOLD: "info",
    TransferKind.CAPTURE: "capture",  # a step's charge: the ordinary case, not an alarm
    TransferKind.RELEASE: "idle",
    TransferKind.ADJUSTMENT: "warn",
}


class Reconciliation(models.Model):
    """The check of one finished hold against what Coasty reported for the run.

    `status` is the outcome of the comparison (matched or discrepancy), in numbers and in
    `explanation`; `resolution` is what a billing admin did about a discrepancy (an adjustment
    or an explanation). Re-checks update the figures and `checked_at`; a resolved discrepancy
    stays resolved while the figures stay the same, and new figures re-open it unless the
    team's charge, net of the adjustments already made for the run, now agrees. Those
    adjustments are the ledger's adjustment transfers on the hold; `adjustment` is the latest.
    """

    class Status(models.TextChoices):
        MATCHED = "matched", "Matched"
        DISCREPANCY = "discrepancy", "Discrepancy"

    class Resolution(models.TextChoices):
        NONE = "", "Open"
        ADJUSTED = "adjusted", "Adjusted"
        EXPLAINED = "explained", "Explained"

    hold = models.OneToOneField(Hold, on_delete=models.PROTECT, related_name="reconciliation")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="billing_reconciliations")
    run_id = models.UUIDField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    ledger_captured_cents = models.BigIntegerField()
    ledger_step_count = models.PositiveIntegerField()
    upstream_steps_completed = models.PositiveBigIntegerField()  # Coasty's figure: 64-bit
    step_price_cents = models.PositiveIntegerField()
    expected_cents = models.BigIntegerField()
    upstream_credits_charged = models.BigIntegerField()
    upstream_test_mode = models.BooleanField()
    # What the team paid (ledger_captured_cents, less what adjustments for the run gave back)
    # minus what it should have been charged: > 0 means the team paid too much, < 0 too little.
    # What is still outstanding, as of the last check.
    difference_cents = models.BigIntegerField()
    explanation = models.TextField()
    source = models.CharField(max_length=32)  # settle, recorded figures, upstream reporter
    checked_by = models.CharField(max_length=200)  # "job:reconcile_billing", "run:<uuid>", ...
    checked_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    resolution = models.CharField(
        max_length=16, choices=Resolution.choices, default=Resolution.NONE, blank=True
    )
    resolution_note = models.TextField(blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    adjustment = models.ForeignKey(
        Transfer, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["matched", "discrepancy"]),
                name="billing_reconciliation_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(resolution="") | Q(resolved_at__isnull=False),
                name="billing_reconciliation_resolved_has_time",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "resolution", "-id"], name="billing_recon_open"),
        ]

    def __str__(self) -> str:
        return f"{self.status} for {self.hold.reference}"

    @property
    def is_open_discrepancy(self) -> bool:
        return self.status == self.Status.DISCREPANCY and not self.resolution


class ReconcileCursor(models.Model):
    """Where a batched re-check of holds stopped: the next job resumes after `last_hold_id`.

    One row per job name. A job that runs out of time stores its place here, so a list of holds
    longer than one task's timeout is still checked to its end, a batch per run."""

    name = models.CharField(max_length=64, unique=True)
    last_hold_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} after hold #{self.last_hold_id}"
