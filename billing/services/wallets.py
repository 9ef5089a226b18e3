"""A team's wallet: top-ups and corrections by billing admins, and its low-balance level."""

import logging
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction

from billing import keys
from billing.errors import (
    IdempotencyConflict,
    InvalidAmount,
)
from billing.locks import (
    in_lock_order,
)
from billing.models import (
    Account,
    AccountKind,
    Hold,
    Transfer,
    TransferKind,
)
from billing.services.posting import (
    CausedBy,
    cause,
    check_cents,
    first_transfer,
    org_account,
    post_balances,
    required_text,
    same_request,
    team_accounts,
)
from portal.core.money import format_cents as _fmt
from portal.teams.models import Team

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


def wallet_top_up(
    *,
    team: Team,
    amount_cents: int,
    reference: str,
    actor: CausedBy,
    idempotency_key: str,
) -> tuple[Transfer, bool]:
    """Add prepaid money to a team's wallet (funding -> available).

    Only billing admins may do this: the page and the API check the permission; the service
    records who it was. `reference` (an invoice or purchase-order number, say) is required.
    Returns (the transfer, whether this call made it): the same idempotency key returns the
    first top-up and False; with different figures it is refused (IdempotencyConflict).
    """
    check_cents(amount_cents, what="A top-up")
    ceiling = settings.BILLING_TOP_UP_MAX_CENTS
    if amount_cents > ceiling:
        raise InvalidAmount(
            f"A top-up can be at most {_fmt(ceiling)}; split larger amounts or ask to raise "
            "BILLING_TOP_UP_MAX_CENTS."
        )
    reference = required_text(reference, what="a reference", max_length=255)
    key = keys.top_up_key(required_text(idempotency_key, what="an idempotency key", max_length=200))
    user, label = cause(actor)
    try:
        with transaction.atomic():
            accounts = team_accounts(team.pk)
            funding = org_account(AccountKind.FUNDING)
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
            post_balances({funding: -amount_cents, available: amount_cents}, available=available)
    except IntegrityError:
        first = first_transfer(key)
        if first is None:
            raise  # not a duplicate: a constraint said no
        same_request(first, key, team_id=team.pk, amount_cents=amount_cents, reference=reference)
        return first, False
    return transfer, True


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
) -> tuple[Transfer, bool]:
    """A billing admin's correction of a team's available balance, with a required reason.

    `direction` is "credit" (give the team money) or "debit" (take it back), always against the
    organisation's adjustments account. Nothing is ever edited or deleted: the correction is a
    new transfer. A debit cannot take the available balance below zero (InsufficientFunds).
    `hold`, for a correction of one run's charges (a discrepancy's), ties the transfer to that
    hold and run: reconciliation reads what was already adjusted for the run from them.
    Returns (the transfer, whether this call made it), as `wallet_top_up`.
    """
    check_cents(amount_cents, what="An adjustment")
    if direction not in ("credit", "debit"):
        raise InvalidAmount('An adjustment\'s direction is "credit" or "debit".')
    reason = required_text(reason, what="a reason", max_length=255)
    key = keys.adjust_key(required_text(idempotency_key, what="an idempotency key", max_length=200))
    user, label = cause(actor)
    try:
        with transaction.atomic():
            available = team_accounts(team.pk)[AccountKind.AVAILABLE]
            adjustments = org_account(AccountKind.ADJUSTMENTS)
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
            post_balances({debit: -amount_cents, credit: amount_cents}, available=available)
    except IntegrityError:
        first = first_transfer(key)
        if first is None:
            raise  # not a duplicate: a constraint said no
        same_request(
            first,
            key,
            team_id=team.pk,
            amount_cents=amount_cents,
            reference=reason,
            hold_id=hold.pk if hold is not None else None,
        )
        adjustments = org_account(AccountKind.ADJUSTMENTS)
        first_direction = "debit" if first.credit_account_id == adjustments else "credit"
        if first_direction != direction:
            raise IdempotencyConflict(
                key, f"it was a {first_direction}, not a {direction}."
            ) from None
        return first, False
    return transfer, True


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
    cause(actor)
    with transaction.atomic():
        available_id = team_accounts(team.pk)[AccountKind.AVAILABLE]
        # Lock the available account: the alert flag must agree with the balance it describes.
        account = in_lock_order(Account.objects.filter(pk=available_id)).get()
        account.low_balance_threshold_cents = threshold_cents
        account.low_balance_alerted = account.balance_cents < threshold_cents
        account.save(update_fields=["low_balance_threshold_cents", "low_balance_alerted"])
    return account
