"""Reads that the notification pages, the bell and the API share."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from portal.notifications.models import (
    DeliveryAttempt,
    Notification,
    WebhookDelivery,
    WebhookEndpoint,
)

UNREAD_SHOWN = 99  # the bell says "99+" past this


def unread_count(user: Any) -> int:
    """Unread notifications, counted up to UNREAD_SHOWN + 1: the bell is on every page, so it
    reads a few ids through the partial index instead of a COUNT over a long history."""
    return len(
        Notification.objects.filter(user=user, read_at__isnull=True).values_list("pk", flat=True)[
            : UNREAD_SHOWN + 1
        ]
    )


def notifications_for_user(user: Any) -> QuerySet[Notification]:
    return Notification.objects.filter(user=user).order_by("-created_at", "-id")


def endpoints_for_team(team: Any) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(team=team).order_by("created_at", "id")


def deliveries_for_endpoint(endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-created_at", "-id")


def attempts_for_deliveries(deliveries: list[WebhookDelivery]) -> dict[int, list[DeliveryAttempt]]:
    grouped: dict[int, list[DeliveryAttempt]] = {d.pk: [] for d in deliveries}
    for attempt in DeliveryAttempt.objects.filter(delivery__in=deliveries).order_by("number"):
        grouped[attempt.delivery_id].append(attempt)
    return grouped
