"""The schedules endpoints of the REST API (the contract's "Schedules").

Roles as on the pages: members list and create; members change their own schedules and
managers any; viewers read. A schedule of a team the caller is not in is 404.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.core.rest.pages import LimitField, next_link
from portal.core.rest.schema import (
    COMMON_HEADERS,
    READ_ERRORS,
    TEAM_SLUG,
    WRITE_ERRORS,
    error_responses,
)
from portal.teams.access import membership_or_404, require_role
from portal.teams.models import Role
from schedules import selectors, services
from schedules.serializers import (
    ScheduleInputSerializer,
    ScheduleLaunchPageSerializer,
    ScheduleLaunchSerializer,
    SchedulePageSerializer,
    ScheduleSerializer,
)

SCHEDULE_ID = OpenApiParameter(
    "schedule_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The schedule's id."
)


class PageQuerySerializer(serializers.Serializer):
    cursor = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=10**9,
        help_text="From `next`: where the page starts.",
    )
    limit = LimitField()


def _values(validated: dict) -> dict:
    """The input's fields as the services take them: the run template's fields flattened."""
    values = {name: value for name, value in validated.items() if name != "run"}
    values.update(validated.get("run", {}))
    return values


def _invalid(exc: services.ScheduleInvalid) -> exceptions.ValidationError:
    fields = {
        (f"run.{name}" if name in services.TEMPLATE_FIELDS else name): [message]
        for name, message in exc.fields.items()
    }
    return exceptions.ValidationError(fields)


def _page(request, rows, serializer):
    query = PageQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    start, limit = query.validated_data.get("cursor", 0), query.validated_data["limit"]
    items = list(rows[start : start + limit + 1])
    more = len(items) > limit
    return {
        "results": serializer(items[:limit], many=True).data,
        "next": next_link(request, cursor=start + limit) if more else None,
    }


class TeamSchedulesApi(APIView):
    scope_area = "runs"  # a schedule launches runs: reads need runs:read, changes runs:write

    @extend_schema(
        operation_id="schedules_list",
        summary="A team's schedules",
        parameters=[TEAM_SLUG, PageQuerySerializer, *COMMON_HEADERS],
        responses={200: SchedulePageSerializer, **error_responses(*READ_ERRORS)},
        tags=["schedules"],
    )
    def get(self, request, slug):
        membership = membership_or_404(request.user, slug)
        rows = selectors.schedules_for_team(membership.team).order_by("created_at", "id")
        return Response(_page(request, rows, ScheduleSerializer))

    @extend_schema(
        operation_id="schedules_create",
        summary="Create a schedule",
        description="Each occurrence launches the run as you, from the team's wallet, through "
        "the same launch as POST /runs/; an occurrence that cannot launch is recorded as "
        "skipped with the reason. Members and managers.",
        request=ScheduleInputSerializer,
        parameters=[TEAM_SLUG, *COMMON_HEADERS],
        responses={201: ScheduleSerializer, **error_responses(*WRITE_ERRORS)},
        tags=["schedules"],
    )
    def post(self, request, slug):
        membership = membership_or_404(request.user, slug)
        require_role(membership, Role.MEMBER, action="create schedules")
        data = ScheduleInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            schedule = services.schedule_create(
                team=membership.team, user=request.user, values=_values(data.validated_data)
            )
        except services.ScheduleInvalid as exc:
            raise _invalid(exc) from None
        return Response(
            ScheduleSerializer(schedule).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/schedules/{schedule.pk}/"},
        )


class ScheduleDetailApi(APIView):
    scope_area = "runs"  # a schedule launches runs: reads need runs:read, changes runs:write

    @extend_schema(
        operation_id="schedules_retrieve",
        summary="One schedule",
        parameters=[SCHEDULE_ID, *COMMON_HEADERS],
        responses={200: ScheduleSerializer, **error_responses(401, 404, 429, 500)},
        tags=["schedules"],
    )
    def get(self, request, schedule_id):
        schedule, _ = selectors.schedule_for_member(request.user, schedule_id)
        return Response(ScheduleSerializer(schedule).data)

    @extend_schema(
        operation_id="schedules_update",
        summary="Change a schedule",
        description="Only the fields given change (in `run`, too). A new cron, zone or a "
        "resume (`enabled: true`) starts the clock again from now. Members change their own "
        "schedules, managers any.",
        request=ScheduleInputSerializer(partial=True),
        parameters=[SCHEDULE_ID, *COMMON_HEADERS],
        responses={200: ScheduleSerializer, **error_responses(*WRITE_ERRORS)},
        tags=["schedules"],
    )
    def patch(self, request, schedule_id):
        schedule, _ = self._editable(request, schedule_id, "change schedules")
        data = ScheduleInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        try:
            schedule = services.schedule_update(
                schedule=schedule, values=_values(data.validated_data)
            )
        except services.ScheduleInvalid as exc:
            raise _invalid(exc) from None
        return Response(ScheduleSerializer(schedule).data)

    @extend_schema(
        operation_id="schedules_destroy",
        summary="Delete a schedule",
        description="Its history goes; the runs it launched stay. Members delete their own "
        "schedules, managers any.",
        request=None,
        parameters=[SCHEDULE_ID, *COMMON_HEADERS],
        responses={204: None, **error_responses(401, 403, 404, 429, 500)},
        tags=["schedules"],
    )
    def delete(self, request, schedule_id):
        schedule, _ = self._editable(request, schedule_id, "delete schedules")
        services.schedule_delete(schedule=schedule)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @staticmethod
    def _editable(request, schedule_id, action):
        schedule, membership = selectors.schedule_for_member(request.user, schedule_id)
        require_role(membership, Role.MEMBER, action=action)
        if not services.may_edit(membership, schedule):
            raise exceptions.PermissionDenied(
                "Members change only their own schedules; this one is "
                f"{schedule.created_by.username if schedule.created_by else 'no one'}'s. "
                "Ask one of the team's managers."
            )
        return schedule, membership


class ScheduleLaunchesApi(APIView):
    scope_area = "runs"  # a schedule launches runs: reads need runs:read, changes runs:write

    @extend_schema(
        operation_id="schedules_launches",
        summary="What became of a schedule's occurrences",
        description="Newest first: each occurrence, the run it launched or why it was skipped.",
        parameters=[SCHEDULE_ID, PageQuerySerializer, *COMMON_HEADERS],
        responses={200: ScheduleLaunchPageSerializer, **error_responses(*READ_ERRORS)},
        tags=["schedules"],
    )
    def get(self, request, schedule_id):
        schedule, _ = selectors.schedule_for_member(request.user, schedule_id)
        rows = selectors.launches_of(schedule)
        return Response(_page(request, rows, ScheduleLaunchSerializer))
