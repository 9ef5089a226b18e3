"""Collecting what a block of code asks for, instead of doing it at once.

A hot path that writes its whole change in one statement of its own (the webhook intake, a
follower's batch) runs the usual services inside `collecting(...)`: the services that honour the
context variable (`portal.core.queue.enqueue_on_commit`,
`portal.notifications.services.event_record`) add what they would have written to the list
yielded, and the caller writes it all together.
"""

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


@contextmanager
def collecting(var: contextvars.ContextVar[list[T] | None]) -> Iterator[list[T]]:
    """Set `var` to a fresh list for the block, and yield it."""
    collected: list[T] = []
    token = var.set(collected)
    try:
        yield collected
    finally:
        var.reset(token)
