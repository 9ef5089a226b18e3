"""What the wallet endpoints take and answer. Output serializers only read; the services write."""

from django.conf import settings
from rest_framework import serializers

from billing.models import TransferKind
from billing.selectors import ledger_cursor
from portal.core.rest.fields import StrictCharField, StrictInputSerializer, StrictIntegerField
from portal.core.rest.pages import LimitField, page_serializer

REFERENCE_MAX = 255  # Transfer.reference, as on the top-up form


class WalletSerializer(serializers.Serializer):
    team = serializers.SlugField(source="team.slug")
    available_cents = serializers.IntegerField(help_text="What the team can spend now.")
    held_cents = serializers.IntegerField(help_text="Reserved by runs that have not ended.")
    spent_cents = serializers.IntegerField(help_text="Everything ever charged.")


class TransferSerializer(serializers.Serializer):
    """One movement of the team's money (the ledger is append-only)."""

    id = serializers.IntegerField()
    kind = serializers.ChoiceField(
        choices=TransferKind.choices,
        help_text="top_up adds money; hold reserves it for a run; capture charges one step "
        "of the hold; release returns the rest of a hold; adjustment is a billing admin's "
        "correction.",
    )
    amount_cents = serializers.IntegerField(help_text="Always positive; `kind` says which way.")
    run = serializers.UUIDField(source="run_id", allow_null=True)
    reference = serializers.CharField()
    created_at = serializers.DateTimeField()


TransferPageSerializer = page_serializer(TransferSerializer, "TransferPage")


class LedgerQuerySerializer(serializers.Serializer):
    cursor = serializers.CharField(
        required=False, max_length=40, help_text="From `next`: where the page starts."
    )
    limit = LimitField()

    def validate_cursor(self, value: str) -> int:
        # The cursor is the id of the last transfer on the previous page.
        cursor = ledger_cursor(value)
        if cursor is None:
            raise serializers.ValidationError(
                "Not a cursor from this list: follow the `next` link as given."
            )
        return cursor


class TopUpInputSerializer(StrictInputSerializer):
    amount_cents = StrictIntegerField(
        min_value=1, help_text="Whole cents, at most BILLING_TOP_UP_MAX_CENTS."
    )
    reference = StrictCharField(
        max_length=REFERENCE_MAX, help_text="An invoice or purchase-order number."
    )

    def validate_amount_cents(self, value: int) -> int:
        ceiling = settings.BILLING_TOP_UP_MAX_CENTS
        if value > ceiling:
            raise serializers.ValidationError(f"A top-up can be at most {ceiling} cents.")
        return value


class BudgetSerializer(serializers.Serializer):
    """A team's spend controls and its month so far (months are calendar months in the
    portal's TIME_ZONE; a hold counts in the month it was placed)."""

    monthly_limit_cents = serializers.IntegerField(
        allow_null=True, help_text="The month's budget for held plus spent; null: none."
    )
    approval_above_cents = serializers.IntegerField(
        allow_null=True,
        help_text="Launches whose maximum cost is above this wait for a manager's approval; "
        "null: never.",
    )
    alert_percents = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Percentages of the budget at which the team is told (budget.threshold), "
        "each once per month.",
    )
    month = serializers.CharField(help_text="YYYY-MM")
    month_spent_cents = serializers.IntegerField()
    month_held_cents = serializers.IntegerField()
    month_remaining_cents = serializers.IntegerField(
        allow_null=True, help_text="What new launches may still hold this month; null: no budget."
    )


# The largest budget or limit taken ($10 billion): far above any real one, well inside bigint.
LIMIT_MAX_CENTS = 10**12


class BudgetInputSerializer(StrictInputSerializer):
    monthly_limit_cents = StrictIntegerField(
        min_value=0, max_value=LIMIT_MAX_CENTS, allow_null=True
    )
    approval_above_cents = StrictIntegerField(
        min_value=0, max_value=LIMIT_MAX_CENTS, allow_null=True, required=False, default=None
    )
    alert_percents = serializers.ListField(
        child=StrictIntegerField(min_value=1, max_value=100),
        max_length=10,
        required=False,
        default=list,
    )


class MemberLimitInputSerializer(StrictInputSerializer):
    monthly_limit_cents = StrictIntegerField(
        min_value=0,
        max_value=LIMIT_MAX_CENTS,
        allow_null=True,
        help_text="null removes the member's limit.",
    )


class MemberLimitSerializer(serializers.Serializer):
    username = serializers.CharField()
    monthly_limit_cents = serializers.IntegerField(allow_null=True)
    month = serializers.CharField(help_text="YYYY-MM")
    month_used_cents = serializers.IntegerField(help_text="Held plus spent by them this month.")
