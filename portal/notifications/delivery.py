"""Delivering to team endpoints: claim a delivery under a lease, POST it (signed, no redirects,
a short answer prefix kept), record the attempt, and back off until it is delivered or failed.

The same `webhook-id` and body go out on every attempt; a worker killed mid-send loses its lease
and the next claim sends the same delivery again.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from portal.notifications.destinations import DestinationRefused, pinned_url, url_check
from portal.notifications.models import (
    ENDPOINT_DISABLED,
    DeliveryAttempt,
    DeliveryStatus,
    EndpointFormat,
    Notification,
    OutboxEvent,
    WebhookDelivery,
    WebhookEndpoint,
)
from portal.notifications.presenters import absolute
from portal.notifications.recipients import team_managers
from portal.notifications.services import _email_send, endpoint_secrets
from portal.notifications.signing import signature_header

logger = logging.getLogger(__name__)


# --- Delivery -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None = None
    error: str = ""
    response_prefix: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


RESPONSE_PREFIX_BYTES = 200


def max_attempts() -> int:
    return len(settings.NOTIFY_RETRY_DELAYS) + 1


def retry_delay(tries: int) -> timedelta:
    """The wait after the `tries`-th failed attempt of a round: exponential, ±20% jitter so
    endpoints that failed together are not retried together."""
    delays = settings.NOTIFY_RETRY_DELAYS
    base = delays[min(tries, len(delays)) - 1]
    return timedelta(seconds=base * random.uniform(0.8, 1.2))


def lease_length() -> timedelta:
    # Longer than one send can take (the HTTP timeout), so a live worker never loses its lease.
    return timedelta(seconds=settings.NOTIFY_DELIVERY_LEASE_SECONDS)


def delivery_claim(*, delivery_id: int, now: Any = None) -> DeliveryAttempt | None:
    """Take the lease on a due delivery and open its next attempt, or None if it is not due,
    finished, or leased by a live worker. One UPDATE decides it, so two workers never both
    send the same attempt; a lease that ran out belongs to a worker that died mid-send."""
    now = now or timezone.now()
    with transaction.atomic():
        claimed = (
            WebhookDelivery.objects.filter(
                pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
            )
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .update(lease_until=now + lease_length(), attempts=F("attempts") + 1)
        )
        if not claimed:
            return None
        delivery = WebhookDelivery.objects.select_related("endpoint", "endpoint__team").get(
            pk=delivery_id
        )
        return DeliveryAttempt.objects.create(
            delivery=delivery, number=delivery.attempts, started_at=now
        )


def delivery_attempt(*, delivery_id: int, now: Any = None) -> WebhookDelivery | None:
    """One attempt at a due delivery: claim, send, record. Returns the delivery after it, or
    None if there was nothing to attempt."""
    now = now or timezone.now()
    attempt = delivery_claim(delivery_id=delivery_id, now=now)
    if attempt is None:
        return None
    delivery = attempt.delivery
    endpoint = delivery.endpoint
    if not endpoint.enabled:
        result = AttemptResult(error="The endpoint is disabled.")
    else:
        result = delivery_post(endpoint=endpoint, delivery=delivery, now=now)
    return delivery_attempt_record(attempt=attempt, result=result, now=now)


def delivery_post(
    *, endpoint: WebhookEndpoint, delivery: WebhookDelivery, now: Any
) -> AttemptResult:
    """POST the delivery once: destination checked after DNS, no redirects, a timeout, and
    only the first bytes of the answer read."""
    try:
        address = url_check(endpoint.url, resolve=True)
    except DestinationRefused as exc:
        return AttemptResult(error=str(exc)[:300])
    url, extensions = endpoint.url, {}
    if address is not None:
        # Connect to the address just checked; Host and the TLS server name (so the
        # certificate is verified for it) stay the endpoint's host.
        host = urlsplit(endpoint.url).hostname or ""
        url = pinned_url(endpoint.url, address)
        extensions = {"sni_hostname": host}
    timestamp = int(now.timestamp())
    headers = {
        "content-type": "application/json",
        "user-agent": "CoastyPortal-Webhooks/1.0",
        "webhook-id": delivery.webhook_id,
        "webhook-timestamp": str(timestamp),
    }
    if address is not None:
        headers["host"] = urlsplit(endpoint.url).netloc.rsplit("@", 1)[-1]
    if endpoint.format == EndpointFormat.STANDARD:
        headers["webhook-signature"] = signature_header(
            endpoint_secrets(endpoint, now=now),
            webhook_id=delivery.webhook_id,
            timestamp=timestamp,
            body=delivery.body,
        )
    try:
        with (
            httpx.Client(
                timeout=settings.NOTIFY_DELIVERY_TIMEOUT_SECONDS,
                follow_redirects=False,
                trust_env=False,
            ) as client,
            client.stream(
                "POST",
                url,
                content=delivery.body.encode(),
                headers=headers,
                extensions=extensions,
            ) as response,
        ):
            prefix = b""
            for chunk in response.iter_bytes():
                prefix += chunk
                if len(prefix) >= RESPONSE_PREFIX_BYTES:
                    break
            return AttemptResult(
                status_code=response.status_code,
                response_prefix=prefix[:RESPONSE_PREFIX_BYTES].decode("utf-8", "replace"),
                error="" if response.status_code < 300 else _redirect_note(response),
            )
    except httpx.HTTPError as exc:
        return AttemptResult(error=f"{exc.__class__.__name__}: {exc}"[:300])


def _redirect_note(response: httpx.Response) -> str:
    if 300 <= response.status_code < 400:
        return "Redirects are not followed: give the final URL."
    return ""


def delivery_attempt_record(
    *, attempt: DeliveryAttempt, result: AttemptResult, now: Any
) -> WebhookDelivery:
    """Write what an attempt got, and what happens next: delivered, a later retry, or failed
    after the round's last attempt."""
    delivery = attempt.delivery
    finished = timezone.now()
    with transaction.atomic():
        # UPDATE by id (not save()): a manager may have deleted the endpoint meanwhile.
        DeliveryAttempt.objects.filter(pk=attempt.pk).update(
            finished_at=finished,
            status_code=result.status_code,
            error=result.error[:300],
            response_prefix=result.response_prefix[:RESPONSE_PREFIX_BYTES],
        )
        fields: dict[str, Any] = {
            "lease_until": None,
            "last_status_code": result.status_code,
            "last_error": result.error[:300],
        }
        tries = delivery.attempts - delivery.round_start
        ended_failed = False
        if result.ok:
            fields |= {"status": DeliveryStatus.DELIVERED, "delivered_at": finished}
        elif tries >= max_attempts() or not delivery.endpoint.enabled:
            fields |= {"status": DeliveryStatus.FAILED}
            ended_failed = True
        else:
            fields |= {"next_attempt_at": now + retry_delay(tries)}
        # Only while the lease is still ours: a worker that outlived its lease does not
        # overwrite what the one that took over decided.
        mine = WebhookDelivery.objects.filter(
            pk=delivery.pk, attempts=delivery.attempts, status=DeliveryStatus.PENDING
        ).update(**fields)
        if mine:
            if result.ok:
                WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(failed_streak=0)
            elif ended_failed and delivery.event_id is not None:
                _endpoint_count_failure(delivery.endpoint_id)
    return WebhookDelivery.objects.filter(pk=delivery.pk).first() or delivery


def _endpoint_count_failure(endpoint_id: int) -> None:
    """One more delivery ended failed; past the limit the endpoint is disabled and its managers
    are told (in the portal and by email), once."""
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(failed_streak=F("failed_streak") + 1)
    limit = settings.NOTIFY_DISABLE_AFTER_FAILED_DELIVERIES
    disabled = WebhookEndpoint.objects.filter(
        pk=endpoint_id, enabled=True, failed_streak__gte=limit
    ).update(
        enabled=False,
        disabled_reason=f"Disabled after {limit} deliveries in a row failed every attempt.",
    )
    if not disabled:
        return
    endpoint = WebhookEndpoint.objects.select_related("team").get(pk=endpoint_id)
    text = f"An endpoint of {endpoint.team.name} was disabled: {endpoint.url[:120]} keeps failing"
    url = absolute(f"/teams/{endpoint.team.slug}/endpoints/{endpoint.pk}/")
    notifications = [
        Notification.objects.create(user=user, type=ENDPOINT_DISABLED, text=text[:300], url=url)
        for user in team_managers(endpoint.team_id)
    ]
    team_name = endpoint.team.name

    def email_all() -> None:
        for notification in notifications:
            if notification.user.email:
                Notification.objects.filter(pk=notification.pk).update(email_sent_at=timezone.now())
                _email_send(notification, team_name=team_name, event_id=None)

    transaction.on_commit(email_all)


def due_deliveries(*, now: Any = None, limit: int = 500) -> list[int]:
    """Pending deliveries whose next attempt is due and that no live worker holds."""
    now = now or timezone.now()
    return list(
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def undispatched_event_keys(*, older_than: timedelta, limit: int = 500) -> list[str]:
    """Events whose fan-out has not finished and whose on-commit task had time to run."""
    cutoff = timezone.now() - older_than
    return list(
        OutboxEvent.objects.filter(dispatched_at__isnull=True, created_at__lte=cutoff)
        .order_by("created_at")
        .values_list("key", flat=True)[:limit]
    )
