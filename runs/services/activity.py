"""The portal's own records of what people did to a run (cancel asked, approved, rejected).

Coasty's stream names nothing the portal did; these records do, with the person as `actor`.
They sit beside Coasty's events, never among them: a record takes no Coasty seq (the follower
resumes from the highest one stored), it is placed after the event the run had reached.
"""

from __future__ import annotations

from typing import Any

from runs.models import Run, RunActivity


def run_activity_record(
    *, run: Run, kind: str, actor, data: dict[str, Any] | None = None
) -> RunActivity:
    """Record that `actor` did `kind` to the run, placed after the run's last stored event.

    Call it inside the transaction that makes the change, with the run's row locked, so the
    record exists exactly when the change does: a repeated request that changes nothing must
    not call it (run_request_cancel returns early for a second cancel).
    """
    return RunActivity.objects.create(
        run=run,
        kind=kind,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        after_seq=run.last_seq,
        data=data or {},
    )
