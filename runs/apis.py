"""The runs endpoints of the REST API: list and launch, one run, cancel, resume, events.

Each handler parses, checks the caller's membership and role like the pages do (runs of a team
you are not in are 404; a viewer asking for a member's action gets 403), calls one selector or
service, and answers with an output serializer. Launch goes through runs.services.run_launch,
the same service as the launch form.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.errors import BudgetExceeded, InsufficientFunds, MemberLimitExceeded
from portal.core.money import format_cents
from portal.core.rest.errors import (
    BudgetExceededError,
    InsufficientFundsError,
    InvalidStateError,
    MemberLimitExceededError,
)
from portal.core.rest.idempotency import launch_token_for, respond_idempotently
from portal.core.rest.pages import next_link
from portal.core.rest.schema import (
    COMMON_HEADERS,
    IDEMPOTENCY_KEY,
    IDEMPOTENT_409,
    IDEMPOTENT_REPLAYED,
    READ_ERRORS,
    RETRY_AFTER_IN_FLIGHT,
    RUN_ID,
    TEAM_SLUG,
    WRITE_ERRORS,
    error_responses,
)
from portal.teams.access import membership_or_404, require_role
from portal.teams.models import Role
from runs import selectors, services
from runs.serializers import (
    RunEventPageSerializer,
    RunEventSerializer,
    RunEventsQuerySerializer,
    RunLaunchInputSerializer,
    RunListQuerySerializer,
    RunPageSerializer,
    RunRejectInputSerializer,
    RunResumeInputSerializer,
    RunSerializer,
)

RUN_ACTION_ERRORS = error_responses(
    *WRITE_ERRORS,
    409,
    descriptions={409: "INVALID_STATE: the run's state does not allow it (it has ended, say)."},
)


class TeamRunsApi(APIView):
    """GET lists a team's runs, POST launches one: one path in the contract, two handlers."""

    scope_area = "runs"

    @extend_schema(
        operation_id="runs_list",
        summary="A team's runs",
        description="Newest first, a page at a time; follow `next` for older runs.",
        parameters=[TEAM_SLUG, RunListQuerySerializer, *COMMON_HEADERS],
        responses={200: RunPageSerializer, **error_responses(*READ_ERRORS)},
        tags=["runs"],
    )
    def get(self, request, slug):
        membership = membership_or_404(request.user, slug)
        query = RunListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = selectors.RunFilters(status=query.validated_data.get("status", ""))
        runs = selectors.runs_for_team(membership.team, filters)
        try:
            page = selectors.keyset_page(
                runs,
                before=query.validated_data.get("cursor", ""),
                size=query.validated_data["limit"],
            )
        except selectors.InvalidCursor:
            raise exceptions.ValidationError(
                {"cursor": ["Not a cursor from this list: follow the `next` link as given."]}
            ) from None
        return Response(
            {
                "results": RunSerializer(page.items, many=True).data,
                "next": next_link(request, cursor=page.older) if page.older else None,
            }
        )

    @extend_schema(
        operation_id="runs_launch",
        summary="Launch a run",
        description="Creates the run and holds its maximum cost (max_steps × step price) from "
        "the team's wallet, or refuses with 402 (INSUFFICIENT_FUNDS, BUDGET_EXCEEDED or "
        "MEMBER_LIMIT_EXCEEDED) and creates nothing. The run is sent to Coasty right after; its "
        "status is `pending` until Coasty accepts it. A run whose maximum cost is above the "
        "team's `approval_above_cents` is created `awaiting_approval`: it holds its money and "
        "waits for a manager's approve or reject. Members and managers.",
        request=RunLaunchInputSerializer,
        parameters=[
            TEAM_SLUG,
            IDEMPOTENCY_KEY,
            IDEMPOTENT_REPLAYED,
            RETRY_AFTER_IN_FLIGHT,
            *COMMON_HEADERS,
        ],
        responses={
            201: RunSerializer,
            **error_responses(*WRITE_ERRORS, 402, 409, 422, descriptions={409: IDEMPOTENT_409}),
        },
        tags=["runs"],
    )
    def post(self, request, slug):
        membership = membership_or_404(request.user, slug)
        require_role(membership, Role.MEMBER, action="launch runs")

        def launch(derived: str | None) -> Response:
            data = RunLaunchInputSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            try:
                run, _ = services.run_launch(
                    team=membership.team,
                    user=request.user,
                    request=services.LaunchRequest.from_fields(data.validated_data),
                    launch_token=launch_token_for(derived) if derived else None,
                )
            except InsufficientFunds as exc:
                raise InsufficientFundsError(
                    f"The team's wallet cannot cover this run: it can cost up to "
                    f"{format_cents(exc.needed_cents)} ({exc.needed_cents} cents) and "
                    f"{format_cents(exc.available_cents)} ({exc.available_cents} cents) is "
                    "available. Lower max_steps, or ask a billing admin to top up the wallet."
                ) from None
            except BudgetExceeded as exc:
                raise BudgetExceededError(str(exc)) from None
            except MemberLimitExceeded as exc:
                raise MemberLimitExceededError(str(exc)) from None
            return Response(
                RunSerializer(run).data,
                status=status.HTTP_201_CREATED,
                headers={"Location": f"/api/v1/runs/{run.pk}/"},
            )

        return respond_idempotently(request, launch)


class RunDetailApi(APIView):
    scope_area = "runs"

    @extend_schema(
        operation_id="runs_retrieve",
        summary="One run",
        parameters=[RUN_ID, *COMMON_HEADERS],
        responses={200: RunSerializer, **error_responses(401, 404, 429, 500)},
        tags=["runs"],
    )
    def get(self, request, run_id):
        run, _ = selectors.run_for_member(request.user, run_id)
        return Response(RunSerializer(run).data)


class RunCancelApi(APIView):
    scope_area = "runs"

    @extend_schema(
        operation_id="runs_cancel",
        summary="Cancel a run",
        description="Asks for the cancel; the portal carries it to Coasty. The run's status "
        "turns `cancelled` when Coasty confirms, and the unused hold returns to the wallet. "
        "Asking twice is one cancel. Members and managers.",
        request=None,
        parameters=[RUN_ID, *COMMON_HEADERS],
        responses={202: RunSerializer, **RUN_ACTION_ERRORS},
        tags=["runs"],
    )
    def post(self, request, run_id):
        run, membership = selectors.run_for_member(request.user, run_id)
        require_role(membership, Role.MEMBER, action="cancel runs")
        try:
            run = services.run_request_cancel(run=run, user=request.user)
        except services.RunActionRefused as exc:
            raise InvalidStateError(str(exc)) from None
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class RunResumeApi(APIView):
    scope_area = "runs"

    @extend_schema(
        operation_id="runs_resume",
        summary="Resume a run that waits for a human",
        description="Only a run in `awaiting_human`. The optional note is recorded on the "
        "run's timeline. Members and managers.",
        request=RunResumeInputSerializer,
        parameters=[RUN_ID, *COMMON_HEADERS],
        responses={202: RunSerializer, **RUN_ACTION_ERRORS},
        tags=["runs"],
    )
    def post(self, request, run_id):
        run, membership = selectors.run_for_member(request.user, run_id)
        require_role(membership, Role.MEMBER, action="resume runs")
        data = RunResumeInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            run = services.run_request_resume(
                run=run, user=request.user, note=data.validated_data["note"] or ""
            )
        except services.RunActionRefused as exc:
            raise InvalidStateError(str(exc)) from None
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


APPROVAL_ERRORS = error_responses(
    *WRITE_ERRORS,
    409,
    descriptions={
        403: "PERMISSION_DENIED: only the team's managers decide, and never on their own run.",
        409: "INVALID_STATE: the run does not wait for approval (decided the other way).",
    },
)


class RunApproveApi(APIView):
    scope_area = "runs"

    @extend_schema(
        operation_id="runs_approve",
        summary="Approve a run that waits for approval",
        description="Managers of the run's team other than its launcher. The run becomes "
        "`pending` and is sent to Coasty like any launch. Approving again answers the run "
        "unchanged (one submit).",
        request=None,
        parameters=[RUN_ID, *COMMON_HEADERS],
        responses={200: RunSerializer, **APPROVAL_ERRORS},
        tags=["runs"],
    )
    def post(self, request, run_id):
        run, membership = selectors.run_for_member(request.user, run_id)
        require_role(membership, Role.MANAGER, action="approve runs")
        try:
            run = services.run_approve(run=run, user=request.user)
        except services.NotAnApprover as exc:
            raise exceptions.PermissionDenied(str(exc)) from None
        except services.RunActionRefused as exc:
            raise InvalidStateError(str(exc)) from None
        return Response(RunSerializer(run).data)


class RunRejectApi(APIView):
    scope_area = "runs"

    @extend_schema(
        operation_id="runs_reject",
        summary="Reject a run that waits for approval",
        description="Managers of the run's team other than its launcher, with a `reason`. The "
        "run ends `rejected` and its hold returns to the wallet. Rejecting again answers the "
        "run unchanged.",
        request=RunRejectInputSerializer,
        parameters=[RUN_ID, *COMMON_HEADERS],
        responses={200: RunSerializer, **APPROVAL_ERRORS},
        tags=["runs"],
    )
    def post(self, request, run_id):
        run, membership = selectors.run_for_member(request.user, run_id)
        require_role(membership, Role.MANAGER, action="reject runs")
        data = RunRejectInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            run = services.run_reject(
                run=run, user=request.user, reason=data.validated_data["reason"]
            )
        except services.NotAnApprover as exc:
            raise exceptions.PermissionDenied(str(exc)) from None
        except services.RunActionRefused as exc:
            raise InvalidStateError(str(exc)) from None
        return Response(RunSerializer(run).data)


class RunEventsApi(APIView):
    scope_area = "runs"

    @extend_schema(
        operation_id="runs_events",
        summary="A run's stored events",
        description="Oldest first. Pass the last `seq` you have as `after` to get only newer "
        "events (or follow `next`). Besides Coasty's events, the portal's own records of what a "
        "person did (`cancel_requested`, `approved`, `rejected`) carry the `seq` of the Coasty "
        "event they followed. Events a person caused (those records, and `resumed` when asked "
        "for in the portal) carry `actor`, their username; it is null on the others.",
        parameters=[RUN_ID, RunEventsQuerySerializer, *COMMON_HEADERS],
        responses={200: RunEventPageSerializer, **error_responses(*READ_ERRORS)},
        tags=["runs"],
    )
    def get(self, request, run_id):
        run, _ = selectors.run_for_member(request.user, run_id)
        query = RunEventsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        limit = query.validated_data["limit"]
        events, more = selectors.run_events_with_activity(
            run, after=query.validated_data["after"], limit=limit
        )
        return Response(
            {
                "results": RunEventSerializer(events, many=True).data,
                "next": next_link(request, after=events[-1].seq) if more else None,
            }
        )
