"""Recording notification events: the one way producers (runs, billing, schedules) speak.

Call `event_record` inside the transaction that makes the change, with a key that names the
change; recording the same key again is a no-op.
"""

from __future__ import annotations

from typing import Any

from portal.notifications.models import EventType, OutboxEvent


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
    OutboxEvent.objects.bulk_create(
        [
            OutboxEvent(
                type=type,
                team_id=team_id,
                subject=subject,
                key=key,
                data=data or {},
                user_id=user_id,
            )
        ],
        ignore_conflicts=True,
    )
