"""What an event says to a person: one line of text and a link, for every type.

Event data comes from several producers (runs, billing, budgets, schedules) and is read without
assuming any field exists: an unknown type, or a known type without the expected fields, still
reads sensibly (its label, the team, and the team's dashboard).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.urls import reverse

from portal.core.money import format_cents
from portal.notifications.models import EventType, OutboxEvent

RUN_ENDINGS = {
    EventType.RUN_SUCCEEDED: "succeeded",
    EventType.RUN_FAILED: "failed",
    EventType.RUN_CANCELLED: "was cancelled",
    EventType.RUN_TIMED_OUT: "timed out",
}


@dataclass(frozen=True)
class Presented:
    text: str
    url: str  # absolute, under PORTAL_PUBLIC_URL


def absolute(path: str) -> str:
    return settings.PORTAL_PUBLIC_URL.rstrip("/") + path


def _str(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    return value if isinstance(value, str) else ""


def _cents(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _safe_url(data: dict[str, Any], fallback: str) -> str:
    """The event's own link if it points into the portal, else `fallback`."""
    url = _str(data, "url")
    base = settings.PORTAL_PUBLIC_URL.rstrip("/") + "/"
    return url if url.startswith(base) else fallback


def present(event: OutboxEvent) -> Presented:
    return present_parts(event.type, event.data, team_name=event.team.name, slug=event.team.slug)


def present_parts(type: str, data: dict[str, Any], *, team_name: str, slug: str) -> Presented:
    data = data if isinstance(data, dict) else {}
    dashboard = absolute(reverse("team_dashboard", args=[slug]))
    task = _short(_str(data, "task")) or "a run"
    run_url = _safe_url(data, dashboard)
    if type == EventType.RUN_AWAITING_HUMAN:
        return Presented(f"“{task}” in {team_name} waits for a person", run_url)
    if type == EventType.RUN_AWAITING_APPROVAL:
        return Presented(f"“{task}” in {team_name} waits for a manager's approval", run_url)
    if type in RUN_ENDINGS:
        return Presented(f"“{task}” in {team_name} {RUN_ENDINGS[EventType(type)]}", run_url)
    if type == EventType.WALLET_LOW_BALANCE:
        available = _cents(data, "available_cents")
        left = f": {format_cents(available)} left" if available is not None else ""
        return Presented(
            f"{team_name}'s wallet is low{left}",
            absolute(f"/teams/{slug}/wallet/"),
        )
    if type == EventType.BUDGET_THRESHOLD:
        percent = _cents(data, "percent")
        used = f"{percent}% of " if percent is not None else "a threshold of "
        return Presented(
            f"{team_name} has used {used}its monthly budget",
            _safe_url(data, absolute(f"/teams/{slug}/budget/")),
        )
    if type == EventType.BILLING_DISCREPANCY_OPENED:
        difference = _cents(data, "difference_cents")
        amount = f" of {format_cents(abs(difference))}" if difference is not None else ""
        return Presented(
            f"A billing discrepancy{amount} opened in {team_name}", _safe_url(data, dashboard)
        )
    if type == EventType.SCHEDULE_SKIPPED:
        name = _short(_str(data, "name") or _str(data, "schedule_name")) or "a schedule"
        reason = _short(_str(data, "reason"))
        return Presented(
            f"A launch of “{name}” in {team_name} was skipped" + (f": {reason}" if reason else ""),
            _safe_url(data, absolute(f"/teams/{slug}/schedules/")),
        )
    try:
        label = str(EventType(type).label)
    except ValueError:
        label = type
    return Presented(f"{label} in {team_name}", _safe_url(data, dashboard))
