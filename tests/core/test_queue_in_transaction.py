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
