"""The teams endpoint of the REST API (the rest is in runs/apis.py and billing/apis.py)."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.selectors import wallet_summaries
from portal.core.rest.schema import COMMON_HEADERS, error_responses
from portal.site.serializers import TeamPageSerializer
from portal.teams.selectors import memberships_for_user


class TeamListApi(APIView):
    scope_area = None  # any token: the caller's own teams

    @extend_schema(
        operation_id="teams_list",
        summary="Your teams",
        description="The teams you belong to, your role in each, and each team's wallet. "
        "A person belongs to a handful of teams, so this list has one page.",
        parameters=COMMON_HEADERS,
        responses={200: TeamPageSerializer, **error_responses(401, 429, 500)},
        tags=["teams"],
    )
    def get(self, request):
        memberships = list(memberships_for_user(request.user))
        wallets = wallet_summaries([m.team for m in memberships])
        results = []
        for membership in memberships:
            wallet = wallets[membership.team_id]
            results.append(
                {
                    "slug": membership.team.slug,
                    "name": membership.team.name,
                    "role": membership.role,
                    "available_cents": wallet.available_cents,
                    "held_cents": wallet.held_cents,
                    "spent_cents": wallet.spent_cents,
                }
            )
        return Response(TeamPageSerializer({"results": results, "next": None}).data)
