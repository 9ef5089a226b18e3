"""What every ledger service shares: accounts, posting balance changes, and the checks on
what callers pass in. Services own their transactions; these helpers run inside them."""

import zlib
from typing import TYPE_CHECKING, Union

from django.conf import settings
from django.utils import timezone

from billing.errors import (
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
)
from billing.locks import (
    change_balances,
)
from billing.models import (
    SHARDED_KINDS,
    Account,
    AccountKind,
    Transfer,
)
from portal.notifications.models import EventType
from portal.notifications.services import event_record

if TYPE_CHECKING:
    from django.contrib.auth.models import User


# Who or what caused a movement: a person, or a label such as "run:<uuid>", "job:reconcile_billing".
CausedBy = Union["User", str]


class NoRoom(Exception):
    """The hold's guarded UPDATE matched nothing: settled, or the step does not fit."""


def post_balances(deltas: dict[int, int], *, available: int | None = None) -> None:
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
    """Crossing below the team's level records one `wallet.low_balance` event (its managers and
    the billing admins hear about it, by email too); climbing back to it re-arms the alert.
    The caller holds the account's lock, so the crossing is decided once."""
    account = Account.objects.only(
        "team_id", "balance_cents", "low_balance_threshold_cents", "low_balance_alerted"
    ).get(pk=available)
    below = account.balance_cents < account.low_balance_threshold_cents
    if below == account.low_balance_alerted:
        return
    Account.objects.filter(pk=available).update(low_balance_alerted=below)
    if below and account.team_id is not None:
        event_record(
            EventType.WALLET_LOW_BALANCE,
            team_id=account.team_id,
            subject=f"account:{available}",
            # One per crossing: the caller holds the account's lock and the flag flips once.
            key=f"{EventType.WALLET_LOW_BALANCE}:{available}:{timezone.now().isoformat()}",
            data={
                "available_cents": account.balance_cents,
                "threshold_cents": account.low_balance_threshold_cents,
            },
        )


def account_shard(reference: str) -> int:
    """Which of the team's held/spend shards a hold with this reference uses (stable)."""
    return zlib.crc32(reference.encode()) % max(1, settings.BILLING_ACCOUNT_SHARDS)


def team_accounts(team_id: int, shard: int | None = None) -> dict[str, int]:
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


def org_account(kind: str) -> int:
    pk = Account.objects.filter(team=None, kind=kind).values_list("pk", flat=True).first()
    if pk is None:
        Account.objects.bulk_create([Account(team=None, kind=kind)], ignore_conflicts=True)
        pk = Account.objects.filter(team=None, kind=kind).values_list("pk", flat=True).get()
    return pk


def cause(caused_by: CausedBy | None) -> tuple["User | None", str]:
    if isinstance(caused_by, str):
        label = caused_by.strip()
        if not label:
            raise InvalidAmount("Say who or what caused this (caused_by).")
        return None, label[:200]
    if caused_by is None or not getattr(caused_by, "is_authenticated", False):
        raise InvalidAmount("Say who or what caused this (caused_by).")
    return caused_by, f"user:{caused_by.get_username()}"


def check_cents(value: int, *, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmount(f"{what} is a whole number of cents.")
    if value <= 0:
        raise InvalidAmount(f"{what} must be more than zero.")


def check_step(step: int) -> None:
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise InvalidAmount("A step number is a whole number from 1.")


def required_text(value: str, *, what: str, max_length: int) -> str:
    text = (value or "").strip()
    if not text:
        raise InvalidAmount(f"Give {what}.")
    if len(text) > max_length:
        raise InvalidAmount(f"Keep {what} to {max_length} characters.")
    return text


def first_transfer(key: str) -> Transfer | None:
    return Transfer.objects.filter(idempotency_key=key).first()


def same_request(first, key: str, **expected) -> None:
    differences = [
        f"{name} was {getattr(first, name)!r}, not {value!r}"
        for name, value in expected.items()
        if getattr(first, name) != value
    ]
    if differences:
        raise IdempotencyConflict(key, "; ".join(differences) + ".")
