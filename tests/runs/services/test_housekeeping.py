"""The every-minute housekeeping: what a crash left behind is picked up, and nothing else."""

import pytest

from portal.core import queue
from runs import services
from runs.models import Run, RunStatus
from tests.runs.support import _accepted_run, _launch

pytestmark = pytest.mark.django_db


def test_housekeeping_picks_up_what_a_crash_left_behind(
    funded_team, make_member, coasty, monkeypatch, django_capture_on_commit_callbacks
):
    import datetime as dt

    from django.utils import timezone

    enqueued = []
    monkeypatch.setattr(queue, "async_task", lambda func, *args: enqueued.append((func, *args)))
    user = make_member(funded_team)
    long_ago = timezone.now() - dt.timedelta(hours=1)

    # a pending run whose submit task was lost
    stuck, _ = _launch(funded_team, user)
    Run.objects.filter(pk=stuck.pk).update(created_at=long_ago)
    # a live run past its deadline (plus grace) that no event or webhook has ended
    overdue = _accepted_run(funded_team, user, coasty, deadline_seconds=60)
    Run.objects.filter(pk=overdue.pk).update(accepted_at=long_ago, last_event_at=timezone.now())
    # a run that ended but was never settled
    ended = _accepted_run(funded_team, user, coasty)
    Run.objects.filter(pk=ended.pk).update(status=RunStatus.SUCCEEDED)
    # a live run within its deadline and followed by nobody
    fresh = _accepted_run(funded_team, user, coasty, deadline_seconds=3600)
    Run.objects.filter(pk=fresh.pk).update(last_event_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        counts = services.runs_housekeeping()

    assert ("runs.tasks.submit_run", str(stuck.pk)) in enqueued
    assert ("runs.tasks.settle_run", str(overdue.pk)) in enqueued
    assert ("runs.tasks.settle_run", str(ended.pk)) in enqueued
    assert ("runs.tasks.settle_run", str(fresh.pk)) not in enqueued
    assert ("runs.tasks.follow_runs",) in enqueued
    assert counts["submit"] == 1 and counts["settle"] == 2
