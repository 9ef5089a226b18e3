"""The wallet endpoints of the REST API: a team's wallet and ledger, top-ups, and the spend
controls (a team's budget, members' monthly limits).

A team's wallet and ledger are for its members (any role) and for billing admins; to anyone
else the team does not exist (404). Top-ups are for billing admins only: a member of the team
is told so (403), anyone else gets 404.
"""

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import selectors, services
from billing.errors import BillingError, IdempotencyConflict
from billing.months import month_label, month_of
from billing.serializers import (
    BudgetInputSerializer,
    BudgetSerializer,
    LedgerQuerySerializer,
    MemberLimitInputSerializer,
    MemberLimitSerializer,
    TopUpInputSerializer,
    TransferPageSerializer,
    TransferSerializer,
    WalletSerializer,
)
from portal.core.rest.errors import ApiError, IdempotencyKeyReusedError
from portal.core.rest.idempotency import respond_idempotently
from portal.core.rest.pages import next_link
from portal.core.rest.schema import (
    COMMON_HEADERS,
    IDEMPOTENCY_KEY,
    IDEMPOTENT_409,
    IDEMPOTENT_REPLAYED,
    READ_ERRORS,
    RETRY_AFTER_IN_FLIGHT,
    TEAM_SLUG,
    WRITE_ERRORS,
    error_responses,
)
from portal.teams.access import is_billing_admin, require_role, team_access
from portal.teams.models import Membership, Role, Team


def _wallet_team(user, slug: str) -> Team:
    """The team whose wallet `user` may read (members and billing admins), or 404."""
    return team_access(user, slug, billing_admins_read=True).team


class WalletApi(APIView):
    scope_area = "billing"

    @extend_schema(
        operation_id="wallet_retrieve",
        summary="A team's wallet",
        parameters=[TEAM_SLUG, *COMMON_HEADERS],
        responses={200: WalletSerializer, **error_responses(401, 404, 429, 500)},
        tags=["wallets"],
    )
    def get(self, request, slug):
        team = _wallet_team(request.user, slug)
        summary = selectors.wallet_summary(team)
        return Response(
            WalletSerializer(
                {
                    "team": team,
                    "available_cents": summary.available_cents,
                    "held_cents": summary.held_cents,
                    "spent_cents": summary.spent_cents,
                }
            ).data
        )


class LedgerApi(APIView):
    scope_area = "billing"

    @extend_schema(
        operation_id="ledger_list",
        summary="A team's ledger",
        description="The team's transfers, newest first, a page at a time; follow `next`.",
        parameters=[TEAM_SLUG, LedgerQuerySerializer, *COMMON_HEADERS],
        responses={200: TransferPageSerializer, **error_responses(*READ_ERRORS)},
        tags=["wallets"],
    )
    def get(self, request, slug):
        team = _wallet_team(request.user, slug)
        query = LedgerQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page = selectors.ledger_page(
            selectors.ledger_for_team(team),
            before=query.validated_data.get("cursor"),
            size=query.validated_data["limit"],
        )
        return Response(
            {
                "results": TransferSerializer(page.rows, many=True).data,
                "next": (
                    next_link(request, cursor=page.older_cursor) if page.older_cursor else None
                ),
            }
        )


class TopUpApi(APIView):
    scope_area = "billing"

    @extend_schema(
        operation_id="wallet_top_up",
        summary="Top up a team's wallet",
        description="Billing admins only. Adds `amount_cents` to the team's available balance, "
        "recorded on the ledger with your `reference`. Answers the ledger's transfer.",
        request=TopUpInputSerializer,
        parameters=[
            TEAM_SLUG,
            IDEMPOTENCY_KEY,
            IDEMPOTENT_REPLAYED,
            RETRY_AFTER_IN_FLIGHT,
            *COMMON_HEADERS,
        ],
        responses={
            201: TransferSerializer,
            **error_responses(
                *WRITE_ERRORS,
                409,
                422,
                descriptions={
                    403: "PERMISSION_DENIED: only billing admins top up wallets.",
                    409: IDEMPOTENT_409.replace("INVALID_STATE, or ", ""),
                },
            ),
        },
        tags=["wallets"],
    )
    def post(self, request, slug):
        team = _wallet_team(request.user, slug)  # 404 to anyone who may not see the wallet
        if not is_billing_admin(request.user):
            raise exceptions.PermissionDenied(
                f"Only billing admins top up wallets. Ask one to add money to {team.name}'s wallet."
            )

        def top_up(derived: str | None) -> Response:
            data = TopUpInputSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            # With an Idempotency-Key, the ledger's own key is derived from its reservation, so
            # even a retry that finds no stored response (after a crash) adds the money once.
            key = f"api:{derived}" if derived else f"api:{uuid.uuid4().hex}"
            try:
                transfer, _created = services.wallet_top_up(
                    team=team,
                    amount_cents=data.validated_data["amount_cents"],
                    reference=data.validated_data["reference"],
                    actor=request.user,
                    idempotency_key=key,
                )
            except IdempotencyConflict as exc:
                raise IdempotencyKeyReusedError(str(exc)) from None
            except BillingError as exc:
                raise ApiError(str(exc)) from None
            return Response(TransferSerializer(transfer).data, status=status.HTTP_201_CREATED)

        return respond_idempotently(request, top_up)


def budget_body(team: Team) -> dict:
    budget = selectors.budget_status(team)
    return BudgetSerializer(
        {
            "monthly_limit_cents": budget.monthly_limit_cents,
            "approval_above_cents": budget.approval_above_cents,
            "alert_percents": budget.alert_percents,
            "month": budget.month_label,
            "month_spent_cents": budget.month_spent_cents,
            "month_held_cents": budget.month_held_cents,
            "month_remaining_cents": budget.month_remaining_cents,
        }
    ).data


class BudgetApi(APIView):
    scope_area = "billing"

    @extend_schema(
        operation_id="budget_retrieve",
        summary="A team's budget and its month so far",
        description="Members (any role) and billing admins. A launch counts its whole hold "
        "against the month from the moment it is placed; released cents come back.",
        parameters=[TEAM_SLUG, *COMMON_HEADERS],
        responses={200: BudgetSerializer, **error_responses(401, 404, 429, 500)},
        tags=["budgets"],
    )
    def get(self, request, slug):
        return Response(budget_body(_wallet_team(request.user, slug)))

    @extend_schema(
        operation_id="budget_update",
        summary="Set a team's budget, approval threshold and alerts",
        description="Managers of the team and billing admins. `null` limit: no budget; `null` "
        "approval_above_cents: no approval needed. Lowering the budget below what the month "
        "already uses refuses new launches; nothing already held moves.",
        request=BudgetInputSerializer,
        parameters=[TEAM_SLUG, *COMMON_HEADERS],
        responses={200: BudgetSerializer, **error_responses(*WRITE_ERRORS)},
        tags=["budgets"],
    )
    def put(self, request, slug):
        access = team_access(request.user, slug, billing_admins_read=True)
        if not is_billing_admin(request.user):
            assert access.membership is not None
            require_role(access.membership, Role.MANAGER, action="set the team's budget")
        data = BudgetInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            services.budget_set(
                team=access.team,
                monthly_limit_cents=data.validated_data["monthly_limit_cents"],
                approval_above_cents=data.validated_data["approval_above_cents"],
                alert_percents=data.validated_data["alert_percents"],
                caused_by=request.user,
            )
        except BillingError as exc:
            raise ApiError(str(exc)) from None
        return Response(budget_body(access.team))


class MemberLimitApi(APIView):
    scope_area = "billing"

    @extend_schema(
        operation_id="member_limit_update",
        summary="Set or remove a member's monthly limit",
        description="Managers of the team. What the member's launches may hold plus spend in "
        "one calendar month; `null` removes the limit.",
        request=MemberLimitInputSerializer,
        parameters=[TEAM_SLUG, *COMMON_HEADERS],
        responses={200: MemberLimitSerializer, **error_responses(*WRITE_ERRORS)},
        tags=["budgets"],
    )
    def put(self, request, slug, username):
        access = team_access(request.user, slug)
        assert access.membership is not None
        require_role(access.membership, Role.MANAGER, action="set members' limits")
        member = (
            Membership.objects.select_related("user")
            .filter(team=access.team, user__username=username)
            .first()
        )
        if member is None:
            raise exceptions.NotFound(f"{username} is not a member of {access.team.name}.")
        data = MemberLimitInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            services.member_limit_set(
                team=access.team,
                user=member.user,
                monthly_limit_cents=data.validated_data["monthly_limit_cents"],
                caused_by=request.user,
            )
        except BillingError as exc:
            raise ApiError(str(exc)) from None
        month = selectors.member_month(access.team, member.user)
        return Response(
            MemberLimitSerializer(
                {
                    "username": member.user.username,
                    "monthly_limit_cents": month.limit_cents,
                    "month": month_label(month_of()),
                    "month_used_cents": month.used_cents,
                }
            ).data
        )
