"""Handing work to the django-q2 workers, the one way the portal does it.

A task is named by its function (a `tasks.py` entry point), never by a string, so a renamed or
mistyped task fails at import time instead of in a worker. Work is enqueued only once the
current transaction commits (or, on the ORM broker inside `enqueue_with_transaction`, as part of
it): a write that rolls back never leaves a task behind, and a task
never reads a row its enqueuer has not committed yet (Zulip's `send_event_on_commit`). Outside a
transaction, Django runs the callback at once.
"""

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django_q.tasks import async_task

_WITH_TRANSACTION = contextvars.ContextVar("enqueue_with_transaction", default=False)


def task_path(task: Callable[..., Any]) -> str:
    """The dotted path django-q2 stores for `task` (in queued tasks and in schedules)."""
    return f"{task.__module__}.{task.__qualname__}"


def enqueue_on_commit(task: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Enqueue `task(*args, **kwargs)` once the current transaction commits.

    Inside `enqueue_with_transaction()` on the ORM broker, the task's row is written in the
    current transaction instead: the worker sees it exactly when the transaction commits, as
    after an on-commit enqueue, but without a commit (a WAL flush) of its own.
    """
    path = task_path(task)
    if _WITH_TRANSACTION.get() and connection.in_atomic_block and _orm_broker_on_default():
        async_task(path, *args, **kwargs)
        return
    transaction.on_commit(lambda: async_task(path, *args, **kwargs))


@contextmanager
def enqueue_with_transaction() -> Iterator[None]:
    """Within this block, `enqueue_on_commit` on the ORM broker (the queue is a table of the
    default database) writes the task in the caller's transaction. A hot path whose transaction
    is short (the webhook intake) saves a commit per task; with Redis nothing changes."""
    token = _WITH_TRANSACTION.set(True)
    try:
        yield
    finally:
        _WITH_TRANSACTION.reset(token)


def _orm_broker_on_default() -> bool:
    cluster = settings.Q_CLUSTER
    return (
        cluster.get("orm") == DEFAULT_DB_ALIAS
        and not cluster.get("redis")
        and not cluster.get("sync")
    )
