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


def unread_count(user: Any) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()


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
