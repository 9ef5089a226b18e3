"""Webhook deliveries: signed, retried with backoff, never in the way of a run.

Body (INTERFACES.md): ``{"event", "run_id", "status", "result", "error",
"awaiting_human_reason", "created_at"}`` where ``created_at`` is when this webhook event was
created (the moment of the status change), ISO-8601 UTC. No delivery id: a receiver dedupes by
itself. Header ``Coasty-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + raw_body)>``,
signed afresh (new ``t``) on every attempt so a retry after a long backoff is not stale.

Each delivery runs in its own asyncio task. A non-2xx answer or a connection error is retried
``webhook_max_attempts`` times in all, waiting ``webhook_retry_base_seconds * 2**(n-1)``
(simulated) between attempts. The extra deliveries of the ``webhook_forged`` and
``webhook_stale`` faults are sent once and never retried: a receiver is right to refuse them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from .engine import Simulator

logger = logging.getLogger("coasty_sim.webhooks")

STALE_BY_SECONDS = 301  # a stale delivery is signed at least this long ago (receivers allow 300)


def sign(secret: str, t: int, body: bytes) -> str:
    """hex HMAC-SHA256(secret, "<t>." + body): the v1 value of Coasty-Signature."""
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, t: int, body: bytes) -> str:
    return f"t={t},v1={sign(secret, t, body)}"


@dataclass
class Delivery:
    id: int
    run_id: str
    event: str
    url: str
    body: bytes
    secret: str
    fault: str | None = None  # None, or the fault kind that shaped this delivery
    status: str = "pending"  # pending, held, delivered, failed, refused (extras answered non-2xx)
    attempts: int = 0
    responses: list[int | str] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    extras: list[Delivery] = field(default_factory=list)
    retry: bool = True

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "event": self.event,
            "url": self.url,
            "fault": self.fault,
            "status": self.status,
            "attempts": self.attempts,
            "responses": list(self.responses),
            "sent_at": list(self.sent_at),
        }


class WebhookDispatcher:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.deliveries: list[Delivery] = []
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self._held: dict[str, list[Delivery]] = {}
        self._client: httpx.AsyncClient | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def reset(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self._held.clear()
        self.deliveries.clear()

    async def close(self) -> None:
        self.reset()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- enqueue ------------------------------------------------------------------------------

    def enqueue(self, *, run_id: str, url: str, secret: str, event: str, body: bytes) -> Delivery:
        """Queue one delivery; fault decisions are made now, so they follow the seeded RNG."""
        faults = self.sim.faults
        delivery = self._new(run_id, url, secret, event, body)
        delay = 0.0
        if faults.fire("webhook_reorder", "webhook"):
            delivery.fault = "reorder"
        elif spec := faults.fire("webhook_late", "webhook"):
            delivery.fault = "late"
            delay = spec.options.get("delay_seconds", self.sim.config.webhook_late_seconds)
        if faults.fire("webhook_duplicate", "webhook"):
            delivery.extras.append(self._copy(delivery, "duplicate", retry=True))
        if faults.fire("webhook_forged", "webhook"):
            delivery.extras.append(self._copy(delivery, "forged", retry=False))
        if faults.fire("webhook_stale", "webhook"):
            delivery.extras.append(self._copy(delivery, "stale", retry=False))

        if delivery.fault == "reorder":
            delivery.status = "held"
            self._held.setdefault(run_id, []).append(delivery)
            self._spawn(self._release_later(delivery))
        else:
            self._spawn(self._deliver(delivery, delay))
        return delivery

    def _new(self, run_id: str, url: str, secret: str, event: str, body: bytes) -> Delivery:
        delivery = Delivery(next(self._ids), run_id, event, url, body, secret)
        self.deliveries.append(delivery)
        return delivery

    def _copy(self, original: Delivery, fault: str, *, retry: bool) -> Delivery:
        copy = self._new(
            original.run_id, original.url, original.secret, original.event, original.body
        )
        copy.fault, copy.retry = fault, retry
        return copy

    # -- sending ------------------------------------------------------------------------------

    async def _release_later(self, delivery: Delivery) -> None:
        await asyncio.sleep(self.sim.config.real(self.sim.config.webhook_reorder_hold_seconds))
        self._release_held(delivery.run_id)

    def _release_held(self, run_id: str) -> None:
        for held in self._held.pop(run_id, []):
            held.status = "pending"
            self._spawn(self._deliver(held, 0.0))

    async def _deliver(self, delivery: Delivery, delay: float) -> None:
        if delay:
            await asyncio.sleep(self.sim.config.real(delay))
        ok = await self._attempt(delivery)
        # A delivery held back by webhook_reorder goes out only after a newer one for its run.
        self._release_held(delivery.run_id)
        for extra in delivery.extras:
            self._spawn(self._deliver(extra, 0.0))
        attempt = 1
        while not ok and delivery.retry and attempt < self.sim.config.webhook_max_attempts:
            backoff = self.sim.config.webhook_retry_base_seconds * 2 ** (attempt - 1)
            await asyncio.sleep(self.sim.config.real(backoff))
            ok = await self._attempt(delivery)
            attempt += 1
        if not ok:
            delivery.status = "failed" if delivery.retry else "refused"

    async def _attempt(self, delivery: Delivery) -> bool:
        t = int(time.time())
        secret = delivery.secret
        if delivery.fault == "stale":
            t -= STALE_BY_SECONDS + self.sim.faults.rng.randint(0, 600)
        if delivery.fault == "forged":
            secret = "whsec_forged_" + secrets.token_hex(16)
        headers = {
            "Content-Type": "application/json",
            "Coasty-Signature": signature_header(secret, t, delivery.body),
            "User-Agent": "coasty-simulator-webhooks/1",
        }
        delivery.attempts += 1
        delivery.sent_at.append(time.time())
        try:
            response = await self._http().post(delivery.url, content=delivery.body, headers=headers)
        except httpx.HTTPError as exc:
            delivery.responses.append(f"error: {type(exc).__name__}")
            logger.info("webhook %s to %s failed: %r", delivery.event, delivery.url, exc)
            return False
        delivery.responses.append(response.status_code)
        if 200 <= response.status_code < 300:
            delivery.status = "delivered"
            return True
        return False

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.sim.config.webhook_timeout_seconds,
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
                follow_redirects=False,
            )
        return self._client

    def describe(self) -> dict[str, Any]:
        by_fault: dict[str, int] = {}
        for d in self.deliveries:
            key = d.fault or "none"
            by_fault[key] = by_fault.get(key, 0) + 1
        return {
            "webhook_deliveries_sent": sum(1 for d in self.deliveries if d.attempts),
            "webhook_deliveries_by_fault": by_fault,
            "webhook_deliveries": [d.describe() for d in self.deliveries],
        }
