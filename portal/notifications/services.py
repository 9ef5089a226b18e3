"""Recording notification events: the one way producers (runs, billing, schedules) speak.

Call `event_record` inside the transaction that makes the change, with a key that names the
change; recording the same key again is a no-op.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone

from portal.core.collect import collecting
from portal.core.crypto import decrypt_secret, encrypt_secret
from portal.core.instances import instance
from portal.core.money import format_cents
from portal.core.queue import enqueue_on_commit
from portal.notifications import tasks
from portal.notifications.destinations import DestinationRefused, url_check
from portal.notifications.models import (
    WEBHOOK_TEST,
    DeliveryStatus,
    EmailPreference,
    EndpointFormat,
    EventType,
    Notification,
    OutboxEvent,
    WebhookDelivery,
    WebhookEndpoint,
)
from portal.notifications.presenters import Presented, absolute, present
from portal.notifications.recipients import EMAIL_DEFAULTS, event_recipients
from portal.notifications.signing import secret_new

logger = logging.getLogger(__name__)

_COLLECTED: contextvars.ContextVar[list[OutboxEvent] | None] = contextvars.ContextVar(
    "events_collected", default=None
)


@contextmanager
def events_collected() -> Iterator[list[OutboxEvent]]:
    """Within this block `event_record` stores nothing: it adds the unsaved event to the list
    yielded (its fan-out task still goes to `enqueue_on_commit`), for a caller that writes its
    change and the events in one statement of its own (the webhook intake), with the same
    once-per-key rule: ON CONFLICT (key) DO NOTHING."""
    with collecting(_COLLECTED) as collected:
        yield collected


def events_write(collected: list[OutboxEvent]) -> None:
    """Store events collected by `events_collected`, in ONE INSERT that skips any key already
    recorded (as `event_record` does for one)."""
    if collected:
        OutboxEvent.objects.bulk_create(collected, ignore_conflicts=True)


def event_record(
    type: EventType | str,
    *,
    team_id: int,
    subject: str,
    key: str,
    data: dict[str, Any] | None = None,
    user_id: int | None = None,
) -> None:
    """Record one event under `key`, once: recording a key that exists changes nothing.

    One INSERT that skips a conflicting key (ON CONFLICT DO NOTHING on PostgreSQL and SQLite),
    so it costs the caller's transaction one statement and never aborts it, even when a
    concurrent recorder of the same key wins.
    """
    EventType(type)  # an unknown type is a programming error, raised here
    values = dict(type=type, team_id=team_id, subject=subject, key=key, data=data or {})
    collected = _COLLECTED.get()
    if collected is not None:
        collected.append(_unsaved_event(**values, user_id=user_id, created_at=timezone.now()))
    else:
        event = OutboxEvent(**values, user_id=user_id)
        OutboxEvent.objects.bulk_create([event], ignore_conflicts=True)
    # Fan-out after commit; the sweep (tasks.notifications_sweep) catches any event whose task
    # was lost (a crash between commit and enqueue), and fanning out twice changes nothing.
    enqueue_on_commit(tasks.event_fan_out, key)


def _unsaved_event(**values: Any) -> OutboxEvent:
    """OutboxEvent(**values), unsaved, for a collector that writes it in a statement of its own
    (the webhook intake records one per delivery): made without Model.__init__, whose walk over
    every field and its descriptor cost a fifth of a delivery's status change in Python. Every
    field not given takes its default, as __init__ would give it."""
    return instance(OutboxEvent, {**_event_defaults(), **values})


@functools.cache
def _event_defaults() -> dict[str, Any]:
    """The defaults of OutboxEvent's fields that have a constant one (a callable default, such
    as `data`'s dict, is made afresh by whoever passes the field)."""
    return {
        f.attname: f.get_default()
        for f in OutboxEvent._meta.concrete_fields
        if not (f.has_default() and callable(f.default))
    }


# --- Fan-out: from one event to notifications, emails and deliveries ------------------------------


def event_fan_out(*, key: str) -> list[int]:
    """Turn the event recorded under `key` into what each channel sends; return the ids of the
    deliveries waiting for their first attempt.

    One transaction, under the event's row lock (so two fan-outs of one event take turns):
    notifications (unique per event and person), deliveries (unique per event and endpoint),
    the claim on each email, and `dispatched_at`. Running it again finds the event dispatched
    and does nothing. Emails leave after the commit; one that cannot be sent gives its claim
    back and clears `dispatched_at`, so the sweep tries the fan-out again.
    """
    with transaction.atomic():
        event = (
            OutboxEvent.objects.select_for_update(of=("self",))
            .select_related("team", "user")
            .filter(key=key, dispatched_at__isnull=True)
            .first()
        )
        if event is None:
            return []  # unknown, or already fanned out
        presented = present(event)
        recipients = event_recipients(event)
        endpoints = [
            endpoint
            for endpoint in WebhookEndpoint.objects.filter(team_id=event.team_id, enabled=True)
            if event.type in endpoint.events
        ]
        now = timezone.now()
        people = [user for user in recipients if user.email]
        # A fan-out commits whole, under this lock: the first one knows no row of the event
        # exists, so it claims the emails in the notifications' INSERT and takes the
        # deliveries' ids from theirs (two statements fewer). One tried again, after an email
        # that could not be sent, skips the rows made before and claims what is left.
        first = event.fan_outs == 0
        wanted = _email_wanted([user.pk for user in people], event.type) if first else set()
        notifications = Notification.objects.bulk_create(
            [
                _notification(
                    event, user, presented, email_sent_at=now if user.pk in wanted else None
                )
                for user in recipients
            ],
            ignore_conflicts=not first,
        )
        made = WebhookDelivery.objects.bulk_create(
            [
                WebhookDelivery(
                    endpoint=endpoint,
                    event=event,
                    event_type=event.type,
                    webhook_id=webhook_id_new(),
                    body=delivery_body(endpoint, event, presented),
                    next_attempt_at=now,
                )
                for endpoint in endpoints
            ],
            ignore_conflicts=not first,
        )
        if first and all(delivery.pk is not None for delivery in made):
            deliveries = [delivery.pk for delivery in made]
            emails = [n for n in notifications if n.email_sent_at is not None]
        else:
            deliveries = list(
                WebhookDelivery.objects.filter(
                    event=event, status=DeliveryStatus.PENDING, attempts=0
                ).values_list("pk", flat=True)
            )
            emails = (
                [n for n in notifications if n.email_sent_at is not None]
                if first
                else _emails_claim(event, people, now=now, presented=presented)
            )
        OutboxEvent.objects.filter(pk=event.pk).update(
            dispatched_at=now, fan_outs=F("fan_outs") + 1
        )
    for notification in emails:
        _email_send(notification, team_name=event.team.name, event_id=event.pk)
    return deliveries


def webhook_id_new() -> str:
    return f"msg_{uuid.uuid4().hex}"


def delivery_body(endpoint: WebhookEndpoint, event: OutboxEvent, presented: Presented) -> str:
    """The exact body every attempt of this delivery sends (compact JSON)."""
    if endpoint.format == EndpointFormat.SLACK:
        return _json({"text": slack_text(event.type, event.data, presented)})
    return _json(
        {
            "type": event.type,
            "timestamp": event.created_at.isoformat(),
            "data": event.public_data(),
        }
    )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(type: str, data: dict[str, Any], presented: Presented) -> str:
    """A Slack message: the line as a link, then the run's task, status and cost if known."""
    lines = [f"<{presented.url}|{_slack_escape(presented.text)}>"]
    if isinstance(data.get("task"), str):
        lines.append(f"*Task:* {_slack_escape(data['task'][:300])}")
    if isinstance(data.get("status"), str):
        lines.append(f"*Status:* {_slack_escape(data['status'])}")
    cost = data.get("charged_cents")
    if isinstance(cost, int) and not isinstance(cost, bool):
        lines.append(f"*Cost so far:* {format_cents(cost)}")
    return "\n".join(lines)


# --- Email ----------------------------------------------------------------------------------------


def email_preferences_for(user: Any) -> dict[str, bool]:
    """Every event type with whether `user` gets an email for it (their choice or the default)."""
    chosen = dict(EmailPreference.objects.filter(user=user).values_list("event_type", "enabled"))
    return {value: chosen.get(value, EMAIL_DEFAULTS.get(value, True)) for value in EventType.values}


def email_preferences_set(*, user: Any, enabled_types: set[str]) -> None:
    """Store `user`'s choice for every event type: email for `enabled_types`, not for others."""
    with transaction.atomic():
        for value in EventType.values:
            EmailPreference.objects.update_or_create(
                user=user, event_type=value, defaults={"enabled": value in enabled_types}
            )


def _email_wanted(user_ids: list[int], event_type: str) -> set[int]:
    chosen = dict(
        EmailPreference.objects.filter(user_id__in=user_ids, event_type=event_type).values_list(
            "user_id", "enabled"
        )
    )
    default = EMAIL_DEFAULTS.get(event_type, True)
    return {pk for pk in user_ids if chosen.get(pk, default)}


def _emails_claim(
    event: OutboxEvent, people: list[Any], *, now: Any, presented: Presented
) -> list[Notification]:
    """Mark the email of each person who wants one as sent (inside the fan-out's transaction);
    the caller sends them after the commit."""
    wanted = _email_wanted([user.pk for user in people], event.type)
    if not wanted:
        return []
    rows = Notification.objects.filter(event=event, user_id__in=wanted, email_sent_at__isnull=True)
    if rows.update(email_sent_at=now) == len(wanted):
        claimed = wanted  # each wanted person's row was unclaimed (the first fan-out): all ours
    else:  # a fan-out tried again after an email that could not be sent: only those not sent
        claimed = set(
            Notification.objects.filter(event=event, user_id__in=wanted, email_sent_at=now)
            .order_by()
            .values_list("user_id", flat=True)
        )
    return [
        _notification(event, user, presented, email_sent_at=now)
        for user in people
        if user.pk in claimed
    ]


def _notification(
    event: OutboxEvent, user: Any, presented: Presented, *, email_sent_at: Any
) -> Notification:
    """The notification of `event` for `user`, as the fan-out writes it (and sends its email)."""
    return Notification(
        user=user,
        event=event,
        type=event.type,
        text=presented.text[:300],
        url=presented.url[:500],
        email_sent_at=email_sent_at,
    )


def _email_send(notification: Notification, *, team_name: str, event_id: int | None) -> None:
    """Send one claimed email; if it cannot be sent, give the claim back (and reopen the event
    for the sweep) and raise."""
    context = {
        "text": notification.text,
        "url": notification.url,
        "team_name": team_name,
        "user": notification.user,
        "preferences_url": absolute("/account/#email-preferences"),
    }
    message = EmailMultiAlternatives(
        subject=f"[Coasty Portal] {notification.text}"[:200],
        body=render_to_string("notifications/email.txt", context),
        to=[notification.user.email],
    )
    message.attach_alternative(render_to_string("notifications/email.html", context), "text/html")
    try:
        message.send()
    except Exception:
        # A claim made by the fan-out is named by its event and person (the row's id was not
        # read back); one made by the delivery sweep, by its id.
        claim = (
            Notification.objects.filter(pk=notification.pk)
            if notification.pk is not None
            else Notification.objects.filter(
                event_id=notification.event_id, user_id=notification.user_id
            )
        )
        claim.update(email_sent_at=None)
        if event_id is not None:
            OutboxEvent.objects.filter(pk=event_id).update(dispatched_at=None)
        raise


# --- In the portal --------------------------------------------------------------------------------


def notifications_mark_read(*, user: Any, ids: list[int] | None = None) -> int:
    """Mark `user`'s notifications read (these ids, or all); returns how many changed."""
    rows = Notification.objects.filter(user=user, read_at__isnull=True)
    if ids is not None:
        rows = rows.filter(pk__in=ids)
    return rows.update(read_at=timezone.now())


# --- Team endpoints -------------------------------------------------------------------------------


def _events_clean(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - set(EventType.values))
    if unknown:
        raise ValidationError({"events": [f"Unknown event type(s): {', '.join(unknown)}."]})
    if not events:
        raise ValidationError({"events": ["Choose at least one event type."]})
    return [value for value in EventType.values if value in set(events)]


def endpoint_create(
    *,
    team: Any,
    user: Any,
    url: str,
    events: list[str],
    format: str = EndpointFormat.STANDARD,
    description: str = "",
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret, which the caller shows once: only its encrypted
    form is kept."""
    try:
        url_check(url, resolve=False)
    except DestinationRefused as exc:
        raise ValidationError({"url": [str(exc)]}) from None
    if format not in EndpointFormat.values:
        raise ValidationError({"format": ["Choose standard or slack."]})
    secret = secret_new()
    endpoint = WebhookEndpoint.objects.create(
        team=team,
        url=url,
        events=_events_clean(events),
        format=format,
        description=description[:200],
        secret_encrypted=encrypt_secret(secret),
        created_by=user if getattr(user, "pk", None) else None,
    )
    return endpoint, secret


def endpoint_secret_rotate(*, endpoint: WebhookEndpoint) -> str:
    """A new secret (returned once); the old one keeps signing alongside it for the overlap
    window, so receivers can switch without missing a delivery."""
    secret = secret_new()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted
    endpoint.previous_secret_until = timezone.now() + timedelta(
        hours=settings.NOTIFY_SECRET_OVERLAP_HOURS
    )
    endpoint.secret_encrypted = encrypt_secret(secret)
    endpoint.save(
        update_fields=["secret_encrypted", "previous_secret_encrypted", "previous_secret_until"]
    )
    return secret


def endpoint_secrets(endpoint: WebhookEndpoint, *, now: Any = None) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one during the
    overlap window."""
    now = now or timezone.now()
    secrets = [decrypt_secret(endpoint.secret_encrypted)]
    if (
        endpoint.previous_secret_encrypted
        and endpoint.previous_secret_until
        and endpoint.previous_secret_until > now
    ):
        secrets.append(decrypt_secret(endpoint.previous_secret_encrypted))
    return secrets


def endpoint_set_enabled(*, endpoint: WebhookEndpoint, enabled: bool) -> WebhookEndpoint:
    endpoint.enabled = enabled
    endpoint.disabled_reason = "" if enabled else "Disabled by a manager."
    if enabled:
        endpoint.failed_streak = 0
    endpoint.save(update_fields=["enabled", "disabled_reason", "failed_streak"])
    return endpoint


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    endpoint.delete()


def endpoint_test_send(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A `webhook.test` delivery to the endpoint, sent like any other (retries included)."""
    now = timezone.now()
    data = {
        "team": endpoint.team.slug,
        "message": "A test delivery from the Coasty Portal.",
        "url": absolute(f"/teams/{endpoint.team.slug}/endpoints/"),
    }
    if endpoint.format == EndpointFormat.SLACK:
        body = _json({"text": f"<{data['url']}|Test delivery> from the Coasty Portal"})
    else:
        body = _json({"type": WEBHOOK_TEST, "timestamp": now.isoformat(), "data": data})
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event=None,
        event_type=WEBHOOK_TEST,
        webhook_id=webhook_id_new(),
        body=body,
        next_attempt_at=now,
    )
    enqueue_on_commit(tasks.delivery_send, delivery_id=delivery.pk)
    return delivery


def delivery_resend(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a finished delivery again, same webhook-id and body, with a new round of retries."""
    changed = (
        WebhookDelivery.objects.filter(pk=delivery.pk)
        .exclude(status=DeliveryStatus.PENDING)
        .update(
            status=DeliveryStatus.PENDING,
            round_start=F("attempts"),
            next_attempt_at=timezone.now(),
            lease_until=None,
        )
    )
    if changed:
        enqueue_on_commit(tasks.delivery_send, delivery_id=delivery.pk)
    delivery.refresh_from_db()
    return delivery
