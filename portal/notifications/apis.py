"""The notifications endpoints of the REST API: a team's webhook endpoints (managers), their
deliveries, and the caller's own notifications.

As everywhere in the API: a team you are not in, and its endpoints, are 404; a member below
manager asking to manage endpoints gets 403.
"""

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.core.rest.pages import next_link
from portal.core.rest.schema import (
    COMMON_HEADERS,
    READ_ERRORS,
    TEAM_SLUG,
    WRITE_ERRORS,
    error_responses,
)
from portal.notifications import selectors, services
from portal.notifications.models import WebhookEndpoint
from portal.notifications.serializers import (
    CursorQuerySerializer,
    DeliveryPageSerializer,
    DeliverySerializer,
    EndpointCreatedSerializer,
    EndpointInputSerializer,
    EndpointPageSerializer,
    EndpointSerializer,
    NotificationPageSerializer,
    NotificationSerializer,
)
from portal.teams.access import membership_or_404, require_role
from portal.teams.models import Role

ENDPOINT_ID = OpenApiParameter(
    "endpoint_id", int, OpenApiParameter.PATH, description="The endpoint's id."
)
MANAGE = "manage the team's webhook endpoints"


def _page(request, rows: QuerySet, serializer) -> Response:
    """Newest first by id; `next` carries the last id as the cursor."""
    query = CursorQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    if "cursor" in query.validated_data:
        rows = rows.filter(pk__lt=query.validated_data["cursor"])
    limit = query.validated_data["limit"]
    items = list(rows.order_by("-pk")[: limit + 1])
    more = len(items) > limit
    items = items[:limit]
    return Response(
        {
            "results": serializer(items, many=True).data,
            "next": next_link(request, cursor=items[-1].pk) if more else None,
        }
    )


def _managed_endpoint(request, endpoint_id: int) -> WebhookEndpoint:
    # One 404, in the same words, for an endpoint that does not exist and another team's.
    endpoint = WebhookEndpoint.objects.select_related("team").filter(pk=endpoint_id).first()
    try:
        if endpoint is None:
            raise Http404
        membership = membership_or_404(request.user, endpoint.team)
    except Http404 as exc:
        raise Http404("No such endpoint.") from exc
    require_role(membership, Role.MANAGER, action=MANAGE)
    return endpoint


class TeamEndpointsApi(APIView):
    scope_area = "runs"

    @extend_schema(
        operation_id="webhook_endpoints_list",
        summary="A team's webhook endpoints",
        description="Managers of the team.",
        parameters=[TEAM_SLUG, CursorQuerySerializer, *COMMON_HEADERS],
        responses={200: EndpointPageSerializer, **error_responses(*READ_ERRORS, 403)},
        tags=["notifications"],
    )
    def get(self, request, slug):
        membership = membership_or_404(request.user, slug)
        require_role(membership, Role.MANAGER, action=MANAGE)
        return _page(request, selectors.endpoints_for_team(membership.team), EndpointSerializer)

    @extend_schema(
        operation_id="webhook_endpoints_create",
        summary="Add a webhook endpoint",
        description="Returns the signing secret once (`whsec_` + base64); only an encrypted "
        "copy is kept. URLs must be `https://` and public (unless the deployment sets "
        "NOTIFY_ALLOW_PRIVATE_URLS). Managers of the team.",
        request=EndpointInputSerializer,
        parameters=[TEAM_SLUG, *COMMON_HEADERS],
        responses={201: EndpointCreatedSerializer, **error_responses(*WRITE_ERRORS)},
        tags=["notifications"],
    )
    def post(self, request, slug):
        membership = membership_or_404(request.user, slug)
        require_role(membership, Role.MANAGER, action=MANAGE)
        data = EndpointInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            endpoint, secret = services.endpoint_create(
                team=membership.team, user=request.user, **data.validated_data
            )
        except ValidationError as exc:
            raise exceptions.ValidationError(exc.message_dict) from None
        body = {**EndpointSerializer(endpoint).data, "secret": secret}
        return Response(body, status=status.HTTP_201_CREATED)


class EndpointApi(APIView):
    scope_area = "runs"

    @extend_schema(
        operation_id="webhook_endpoints_delete",
        summary="Delete a webhook endpoint",
        description="With its delivery log. Managers of its team.",
        parameters=[ENDPOINT_ID, *COMMON_HEADERS],
        responses={204: None, **error_responses(*WRITE_ERRORS)},
        tags=["notifications"],
    )
    def delete(self, request, endpoint_id):
        services.endpoint_delete(endpoint=_managed_endpoint(request, endpoint_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointTestApi(APIView):
    scope_area = "runs"

    @extend_schema(
        operation_id="webhook_endpoints_test",
        summary="Send a test delivery",
        description="Queues a `webhook.test` delivery, sent and retried like any other.",
        request=None,
        parameters=[ENDPOINT_ID, *COMMON_HEADERS],
        responses={202: DeliverySerializer, **error_responses(*WRITE_ERRORS)},
        tags=["notifications"],
    )
    def post(self, request, endpoint_id):
        delivery = services.endpoint_test_send(endpoint=_managed_endpoint(request, endpoint_id))
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class EndpointDeliveriesApi(APIView):
    scope_area = "runs"

    @extend_schema(
        operation_id="webhook_endpoints_deliveries",
        summary="An endpoint's deliveries",
        description="Newest first; follow `next` for older ones. Managers of its team.",
        parameters=[ENDPOINT_ID, CursorQuerySerializer, *COMMON_HEADERS],
        responses={200: DeliveryPageSerializer, **error_responses(*READ_ERRORS, 403)},
        tags=["notifications"],
    )
    def get(self, request, endpoint_id):
        endpoint = _managed_endpoint(request, endpoint_id)
        return _page(request, selectors.deliveries_for_endpoint(endpoint), DeliverySerializer)


class NotificationsApi(APIView):
    scope_area = None

    @extend_schema(
        operation_id="notifications_list",
        summary="My notifications",
        description="What concerns the caller across their teams, newest first.",
        parameters=[CursorQuerySerializer, *COMMON_HEADERS],
        responses={200: NotificationPageSerializer, **error_responses(400, 401, 429, 500)},
        tags=["notifications"],
    )
    def get(self, request):
        return _page(
            request, selectors.notifications_for_user(request.user), NotificationSerializer
        )
