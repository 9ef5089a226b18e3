"""The webhook intake on PostgreSQL: a verified delivery is stored and applied in one statement
(runs.sql.webhook_intake), worked out from the run as read without a lock. These tests pin what
that must never change: a run that moved since it was read is not overwritten (the locked path
takes over), the outbox event and the tasks are written with the delivery or not at all, and on a
queue that is not the ORM broker the tasks are enqueued after the statement."""

import pytest
from django.db import connection

from portal.core import queue
from portal.notifications.models import OutboxEvent
from runs import sql
from runs.models import Run, RunStatus
from tests.runs.services import test_webhook_intake as intake
from tests.runs.support import queued_tasks

pytestmark = pytest.mark.django_db

run = intake.run  # the same live run, with a webhook secret
body_for, deliver, verdicts = intake.body_for, intake.deliver, intake.verdicts


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: run with DATABASE_URL=postgres://…")


def test_an_accepted_delivery_is_a_read_and_one_statement(client, run, django_assert_num_queries):
    # the unlocked read, then the one statement (the test's transaction adds a savepoint pair)
    with django_assert_num_queries(4) as captured:
        response = deliver(client, run, body_for(run))
    assert response.status_code == 200
    statement = captured.captured_queries[2]["sql"]
    assert statement.startswith("WITH run AS") and "FOR UPDATE" in statement
    run.refresh_from_db()
    assert run.status == RunStatus.AWAITING_HUMAN
    assert verdicts(run) == ["accepted"]
    assert OutboxEvent.objects.filter(subject=f"run:{run.pk}").count() == 1
    assert [t[0] for t in queued_tasks()] == ["portal.notifications.tasks.event_fan_out"]


def test_a_run_that_moved_since_it_was_read_is_not_overwritten(client, run, monkeypatch):
    # given the run ends (the stream said so) between the intake's read and its statement
    real_read = sql.run_for_webhook

    def read_then_the_run_ends(run_id):
        read = real_read(run_id)
        Run.objects.filter(pk=run_id).update(status=RunStatus.SUCCEEDED)
        return read

    monkeypatch.setattr(sql, "run_for_webhook", read_then_the_run_ends)
    # when a pause is delivered, worked out from the run as it was (running)
    response = deliver(client, run, body_for(run))
    # then the locked path applied it to the run as it is: an end is final
    assert response.status_code == 200
    assert response.json()["message"] == "no change (status stays succeeded)"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert verdicts(run) == ["accepted"]
    assert not OutboxEvent.objects.filter(type="run.awaiting_human").exists()


def test_a_duplicate_writes_no_event_and_no_task(client, run):
    body = body_for(run, "run.succeeded")
    assert deliver(client, run, body).status_code == 200
    events, tasks = OutboxEvent.objects.count(), queued_tasks()
    # when Coasty delivers the same body twice more
    assert deliver(client, run, body).json()["message"] == "duplicate"
    assert deliver(client, run, body).json()["message"] == "duplicate"
    # then nothing more is recorded or queued
    assert OutboxEvent.objects.count() == events == 1
    assert queued_tasks() == tasks
    assert queued_tasks("runs.") == [("runs.tasks.settle_run", str(run.pk))]
    assert verdicts(run) == ["accepted", "duplicate", "duplicate"]


def test_on_redis_the_tasks_are_enqueued_once_the_statement_committed(
    client, run, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.Q_CLUSTER = {
        **{k: v for k, v in settings.Q_CLUSTER.items() if k != "orm"},
        "redis": "redis://127.0.0.1:6379/15",
    }
    enqueued = []
    monkeypatch.setattr(queue, "async_task", lambda path, *args, **kw: enqueued.append(path))
    body = body_for(run, "run.succeeded")
    with django_capture_on_commit_callbacks(execute=True):
        first = deliver(client, run, body)
        again = deliver(client, run, body)
    assert first.status_code == again.status_code == 200
    assert queued_tasks() == []  # not in the ORM queue
    assert enqueued == ["runs.tasks.settle_run"]  # which fans out the end's event first


def test_an_end_queues_one_task_that_fans_out_its_event_then_settles(
    client, run, monkeypatch, make_member
):
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    from portal.notifications.models import Notification
    from runs import tasks

    run.created_by = make_member(run.team)
    run.save(update_fields=["created_by"])
    # when Coasty says the run succeeded
    assert deliver(client, run, body_for(run, "run.succeeded")).status_code == 200
    # then one task is queued: the settle, carrying the key of the event the end recorded
    (event,) = OutboxEvent.objects.filter(subject=f"run:{run.pk}")
    (package,) = [SignedPackage.loads(p) for p in OrmQ.objects.values_list("payload", flat=True)]
    assert (package["func"], package["args"]) == ("runs.tasks.settle_run", (str(run.pk),))
    assert package["kwargs"] == {"events": [event.key]}
    # and running it fans the event out, then settles
    settled = []
    monkeypatch.setattr("runs.services.run_settle", lambda run_id: settled.append(run_id))
    tasks.settle_run(*package["args"], **package["kwargs"])
    event.refresh_from_db()
    dispatched, told = event.dispatched_at, Notification.objects.filter(event=event).count()
    assert dispatched is not None and told == 1  # the launcher hears of the end
    assert settled == [str(run.pk)]
    # and running it again (a retried task) fans out nothing more
    tasks.settle_run(*package["args"], **package["kwargs"])
    event.refresh_from_db()
    assert event.dispatched_at == dispatched
    assert Notification.objects.filter(event=event).count() == told
    assert settled == [str(run.pk), str(run.pk)]


def test_a_fan_out_that_fails_does_not_hold_the_settle_back(client, run, monkeypatch):
    from runs import tasks

    assert deliver(client, run, body_for(run, "run.succeeded")).status_code == 200
    (event,) = OutboxEvent.objects.filter(subject=f"run:{run.pk}")

    def broken_fan_out(*, key):
        raise ConnectionError("mail server down")

    settled = []
    monkeypatch.setattr("portal.notifications.services.event_fan_out", broken_fan_out)
    monkeypatch.setattr("runs.services.run_settle", lambda run_id: settled.append(run_id))
    tasks.settle_run(str(run.pk), events=[event.key])
    assert settled == [str(run.pk)]
    event.refresh_from_db()
    assert event.dispatched_at is None  # left to the notifications sweep


def test_the_statements_are_prepared_once_per_connection(client, run):
    # psycopg prepares a statement once it has run 5 times on a connection (prepare_threshold):
    # the first pause moves the run, the next ones, older, change nothing (one shape of statement)
    bodies = [body_for(run, created_at=f"2026-11-28T10:00:0{9 - n}Z") for n in range(8)]
    for body in bodies:
        assert deliver(client, run, body).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any(s.startswith("WITH run AS") for s in prepared), prepared
    assert any(s.startswith('SELECT "id", "team_id"') for s in prepared), prepared
