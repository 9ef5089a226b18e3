"""portal.core.queue: on the ORM broker, `enqueue_with_transaction` writes a task's row in the
caller's transaction (one commit, not one more per task); it still leaves with a rollback."""

import pytest
from django.db import transaction
from django_q.models import OrmQ

from portal.core.queue import enqueue_on_commit, enqueue_with_transaction
from runs import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def test_inside_the_block_the_task_row_is_written_in_the_transaction():
    with enqueue_with_transaction(), transaction.atomic():
        enqueue_on_commit(tasks.settle_run, "run-1")
        assert OrmQ.objects.count() == 1  # already there, before the commit
    assert OrmQ.objects.count() == 1


def test_a_rollback_takes_the_task_with_it():
    with pytest.raises(RuntimeError), enqueue_with_transaction(), transaction.atomic():
        enqueue_on_commit(tasks.settle_run, "run-1")
        raise RuntimeError("the delivery failed")
    assert OrmQ.objects.count() == 0


def test_outside_the_block_the_task_waits_for_the_commit():
    with transaction.atomic():
        enqueue_on_commit(tasks.settle_run, "run-1")
        assert OrmQ.objects.count() == 0
    assert OrmQ.objects.count() == 1


def test_a_collected_task_row_is_the_package_django_q2_runs():
    """The webhook intake's rows are packed by portal.core.queue itself (not by async_task):
    django-q2's own loader must read back exactly the task async_task would have made."""
    from django_q.signing import SignedPackage

    from portal.core.queue import orm_task_rows, tasks_collected

    with tasks_collected() as collected:
        enqueue_on_commit(tasks.settle_run, "run-1")
        enqueue_on_commit(tasks.settle_run, "run-2")
    rows = orm_task_rows(collected)
    assert rows is not None and len(rows) == 2
    key, payload, lock = rows[0]
    task = SignedPackage.loads(payload)
    assert key == "portal" and lock == task["started"]
    assert task["func"] == "runs.tasks.settle_run" and task["args"] == ("run-1",)
    assert task["kwargs"] == {} and task["ack_failure"] is True
    assert task["name"].startswith("settle_run-") and len(task["id"]) == 32
    assert SignedPackage.loads(rows[1][1])["id"] != task["id"]


def test_a_tampered_package_is_refused_by_django_q2():
    from django_q.signing import BadSignature, SignedPackage

    from portal.core.queue import orm_task_rows, tasks_collected

    with tasks_collected() as collected:
        enqueue_on_commit(tasks.settle_run, "run-1")
    payload = orm_task_rows(collected)[0][1]
    data, stamp, signature = payload.split(":")
    forged = ("B" if signature[0] == "A" else "A") + signature[1:]  # always a different one
    with pytest.raises(BadSignature):
        SignedPackage.loads(f"{data}:{stamp}:{forged}")
    assert SignedPackage.loads(payload)["args"] == ("run-1",)
