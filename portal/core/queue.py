"""Handing work to the django-q2 workers, the one way the portal does it.

A task is named by its function (a `tasks.py` entry point), never by a string, so a renamed or
mistyped task fails at import time instead of in a worker. Work is enqueued only once the
current transaction commits (or, on the ORM broker inside `enqueue_with_transaction`, as part of
it): a write that rolls back never leaves a task behind, and a task
never reads a row its enqueuer has not committed yet (Zulip's `send_event_on_commit`). Outside a
transaction, Django runs the callback at once.
"""

import contextvars
import datetime as dt
import functools
import hashlib
import hmac
import pickle
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.signing import b62_encode, b64_encode
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.utils import timezone
from django_q import tasks as django_q_tasks
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signals import pre_enqueue
from django_q.tasks import async_task

from portal.core.collect import collecting

_WITH_TRANSACTION = contextvars.ContextVar("enqueue_with_transaction", default=False)


@dataclass(frozen=True)
class QueuedTask:
    """A task `enqueue_on_commit` was asked for inside `tasks_collected()`: not enqueued yet."""

    path: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


_COLLECTED: contextvars.ContextVar[list[QueuedTask] | None] = contextvars.ContextVar(
    "tasks_collected", default=None
)


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
    collected = _COLLECTED.get()
    if collected is not None:
        collected.append(QueuedTask(path, args, kwargs))
        return
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


@contextmanager
def tasks_collected() -> Iterator[list[QueuedTask]]:
    """Within this block `enqueue_on_commit` enqueues nothing: it adds the task to the list
    yielded, for a caller that writes its change in one statement of its own (the webhook
    intake) and then either puts the tasks' rows in that statement (`orm_task_rows`) or hands
    them to `tasks_enqueue` once it knows the change was stored."""
    with collecting(_COLLECTED) as collected:
        yield collected


def tasks_enqueue(collected: list[QueuedTask]) -> None:
    """Enqueue collected tasks as `enqueue_on_commit` would have."""
    for queued in collected:
        transaction.on_commit(functools.partial(_enqueue, queued))


def _enqueue(queued: QueuedTask) -> None:
    async_task(queued.path, *queued.args, **queued.kwargs)


class _Packer:
    """A stand-in broker for django-q2's `async_task`: it keeps the signed package instead of
    pushing it, so the package is exactly the one django-q2 itself builds."""

    def __init__(self, list_key: str) -> None:
        self.list_key = list_key
        self.packages: list[str] = []

    def enqueue(self, package: str) -> int:
        self.packages.append(package)
        return len(self.packages)


def orm_task_rows(collected: list[QueuedTask]) -> list[tuple[str, str, dt.datetime]] | None:
    """The ORM broker's queue rows (key, payload, lock) for collected tasks, for a caller to
    INSERT in its own statement; None when the queue is not the ORM broker on the default
    database (Redis, or sync), and the tasks must go through `tasks_enqueue` instead."""
    if not _orm_broker_on_default():
        return None
    now = timezone.now()
    packages = [_package(queued, now) for queued in collected]
    return [(Conf.CLUSTER_NAME, package, now) for package in packages]


# What async_task takes out of a task's keyword arguments as options for django-q2 itself.
_Q_OPTIONS = frozenset(
    {"hook", "group", "save", "sync", "cached", "ack_failure", "iter_count", "iter_cached",
     "chain", "broker", "cluster", "timeout", "q_options", "task_name"}
)  # fmt: skip


def _package(queued: QueuedTask, now: dt.datetime) -> str:
    """The signed package django-q2's `async_task` would push for `queued`, made without its
    per-call costs (a four-word human name hashed from the id, a signer and its key derived
    anew, a log line formatted): the webhook intake queues one or two tasks per delivery, and
    async_task cost it more than its whole outbox event. The task is the dict async_task
    builds, named by its function and id; the signature is Django's TimestampSigner's, keyed
    as django-q2 keys it (tests/core/test_queue_in_transaction.py reads it back with
    django-q2's own loader). A task with django-q2 options goes through async_task itself."""
    if Conf.COMPRESSED or Conf.SECRET_KEY is None or not _Q_OPTIONS.isdisjoint(queued.kwargs):
        packer = _Packer(Conf.CLUSTER_NAME)
        django_q_tasks.async_task(queued.path, *queued.args, broker=packer, **queued.kwargs)
        return packer.packages[0]
    task_id = uuid.uuid4().hex
    task: dict[str, Any] = {
        "id": task_id,
        "name": f"{queued.path.rsplit('.', 1)[-1]}-{task_id[:12]}",
        "func": queued.path,
        "args": queued.args,
    }
    if Conf.CACHED:
        task["cached"] = Conf.CACHED
    if Conf.SYNC:
        task["sync"] = Conf.SYNC
    if Conf.ACK_FAILURES:
        task["ack_failure"] = Conf.ACK_FAILURES
    task["kwargs"] = dict(queued.kwargs)
    task["started"] = now
    if pre_enqueue.has_listeners():
        pre_enqueue.send(sender="django_q", task=task)
    # django.core.signing.dumps(task, key=Conf.SECRET_KEY, salt=Conf.PREFIX, serializer=pickle)
    data = b64_encode(pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)).decode()
    value = f"{data}:{b62_encode(int(time.time()))}"
    key = _signing_key(str(Conf.SECRET_KEY), Conf.PREFIX)
    signature = b64_encode(hmac.new(key, value.encode(), hashlib.sha256).digest()).decode()
    return f"{value}:{signature}"


@functools.cache
def _signing_key(secret: str, salt: str) -> bytes:
    """The HMAC key of Django's Signer(key=secret, salt=salt), as salted_hmac derives it."""
    return hashlib.sha256(f"{salt}signer{secret}".encode()).digest()


def tasks_write(collected: list[QueuedTask]) -> None:
    """Hand collected tasks to the queue: on the ORM broker, inside a transaction, as ONE
    INSERT of their rows in it (the worker sees them when it commits); otherwise as
    `enqueue_on_commit` would."""
    rows = orm_task_rows(collected) if connection.in_atomic_block else None
    if rows is None:
        tasks_enqueue(collected)
        return
    OrmQ.objects.bulk_create(
        [OrmQ(key=key, payload=payload, lock=lock) for key, payload, lock in rows]
    )


def _orm_broker_on_default() -> bool:
    cluster = settings.Q_CLUSTER
    return (
        cluster.get("orm") == DEFAULT_DB_ALIAS
        and not cluster.get("redis")
        and not cluster.get("sync")
    )
