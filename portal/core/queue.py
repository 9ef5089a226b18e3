"""Handing work to the django-q2 workers, the one way the portal does it.

A task is named by its function (a `tasks.py` entry point), never by a string, so a renamed or
mistyped task fails at import time instead of in a worker. Work is enqueued only once the
current transaction commits: a write that rolls back never leaves a task behind, and a task
never reads a row its enqueuer has not committed yet (Zulip's `send_event_on_commit`). Outside a
transaction, Django runs the callback at once.
"""

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django_q.tasks import async_task


def task_path(task: Callable[..., Any]) -> str:
    """The dotted path django-q2 stores for `task` (in queued tasks and in schedules)."""
    return f"{task.__module__}.{task.__qualname__}"


def enqueue_on_commit(task: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Enqueue `task(*args, **kwargs)` once the current transaction commits."""
    path = task_path(task)
    transaction.on_commit(lambda: async_task(path, *args, **kwargs))
