"""Coasty's signed webhook deliveries: verified first, then stored and applied once.

The webhook URL is public and unauthenticated until the signature is checked, so the order of
things is what keeps it from being a free disk or a lock anyone can take:

1. rate limit (cache only, no database): a run, and a client address, that caused too many
   refusals this minute are answered 429 without the body being read;
2. the run's secret is read WITHOUT a lock; an unknown run and a run without a secret answer the
   same 404, so the URL tells nobody which runs exist;
3. the signature is verified (constant time), then the JSON and its run id;
4. only a verified delivery locks the run and is stored and applied, in one transaction.

A refusal is counted (WebhookRefusalCount: per run and verdict, with the bytes refused) and only
sampled: the first few of each verdict per run and then every power of two, each sample being the
body's hash, size and first bytes, never the whole body. Refusals are logged at DEBUG; a WARNING is
logged once per minute per run or address that hits the rate limit.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from portal.core.crypto import SecretUnreadable, decrypt_secret
from portal.core.queue import (
    QueuedTask,
    enqueue_on_commit,
    enqueue_with_transaction,
    orm_task_rows,
    task_path,
    tasks_collected,
    tasks_enqueue,
)
from portal.notifications import tasks as notification_tasks
from portal.notifications.services import events_collected
from runs import sql, tasks
from runs.coasty import WebhookSignatureError, strict_json, verify
from runs.coasty.signing import WebhookSignatureMalformed, WebhookSignatureStale
from runs.models import (
    UPSTREAM_TERMINAL_STATUSES,
    Run,
    RunStatus,
    WebhookDelivery,
    WebhookRefusalCount,
)
from runs.services.status import apply_status, parse_at
from runs.services.upstream_data import error_text, without_nul

logger = logging.getLogger(__name__)

WEBHOOK_KEPT_HEADERS = (
    "content-type",
    "user-agent",
    "coasty-signature",
    "x-coasty-signature",
    "x-coasty-request-id",
)

# A delivery's body is at most this large (Coasty's are a few hundred bytes).
WEBHOOK_MAX_BYTES = 256 * 1024
# What a refusal sample keeps: the first bytes of the body, and of each kept header's value.
WEBHOOK_SAMPLE_BYTES = 256
WEBHOOK_SAMPLE_HEADER_CHARS = 200
# Every refusal of a verdict for a run is sampled up to this count, then at powers of two.
WEBHOOK_SAMPLES_FIRST = 5
WINDOW_SECONDS = 60


def _webhook_apply(run: Run, payload: dict[str, Any]) -> tuple[str, list[str]]:
    """Move `run` (locked, in memory) as a verified webhook says: (what happened in words, the
    fields to save, empty when nothing moved).

    Webhooks carry no seq: a terminal state is applied (terminal states are final) and the
    money is settled from GET /v1/runs/{id}, never from this body; an awaiting_human is applied
    only when Coasty's timestamp on it is newer than the status we have.
    """
    status = str(payload.get("status") or "")
    event = str(payload.get("event") or "")
    if event == "run.awaiting_human" and not status:
        status = RunStatus.AWAITING_HUMAN
    before = run.status
    moved = apply_status(
        run,
        status,
        at=parse_at(payload.get("created_at")),
        reason=str(payload.get("awaiting_human_reason") or payload.get("reason") or ""),
    )
    if not moved:
        return f"no change (status stays {before})", []
    if status in UPSTREAM_TERMINAL_STATUSES and isinstance(payload.get("error"), dict):
        run.error = error_text(payload["error"])
    return f"status {before} → {status}", sql.WEBHOOK_STATUS_FIELDS


def _orphan_check_maybe(run_id, body: bytes | Callable[[], bytes], size: int | None) -> None:
    """A delivery for a run closed here before Coasty's acceptance was known: Coasty writes
    about it, so it may have run it after all (an orphan). The delivery cannot be verified (the
    run has no secret), so it only asks for the check (run_check_orphan: the idempotency lookup
    decides, and a run Coasty names counts only if its metadata names ours). The answer stays
    the unknown run's; the refusal limits bound how often this can be asked."""
    closed = (
        Run.objects.filter(pk=run_id, upstream_id__isnull=True, orphan_upstream_id="")
        .exclude(status=RunStatus.PENDING)
        .exists()
    )
    if not closed:
        return
    if isinstance(body, bytes):
        raw = body
    elif size is not None and size <= WEBHOOK_MAX_BYTES:
        raw = body()
    else:
        raw = b""
    enqueue_on_commit(tasks.check_orphan, str(run_id), _named_run(raw[:WEBHOOK_MAX_BYTES]))


def _named_run(body: bytes) -> str | None:
    """The Coasty run id an unverified delivery names, if it looks like one: only a hint, to
    ask Coasty about (run_check_orphan checks the run is ours)."""
    try:
        payload = strict_json.loads_object(body)
    except (ValueError, UnicodeDecodeError):
        return None
    named = payload.get("run_id") if isinstance(payload, dict) else None
    if (
        isinstance(named, str)
        and 0 < len(named) <= 128
        and named.isprintable()
        and "/" not in named
    ):
        return named
    return None


@dataclass(frozen=True)
class WebhookAnswer:
    """What the webhook view answers: a status code, a short message, and for a 429 how many
    seconds to wait."""

    status: int
    message: str
    retry_after: int | None = None


UNKNOWN_RUN = WebhookAnswer(404, "unknown run")


def webhook_receive(
    *,
    run_id,
    body: bytes | Callable[[], bytes],
    headers: dict[str, str],
    client_address: str = "",
    size: int | None = None,
    now: float | None = None,
) -> WebhookAnswer:
    """Take one delivery for a run: rate-limit, verify, and only then store and apply it once.

    `body` may be a callable that reads it, with `size` its declared length: a body that is
    too large, or from a sender that is rate limited, is then never read at all.

    A verified delivery is stored and applied in ONE transaction, with the run locked: the row
    says "accepted" exactly when its effect is committed, and the unique (run, dedupe_key) lets
    one delivery of a given body through, so a retry or a duplicate changes nothing. If applying
    fails, the transaction rolls back and the failure is recorded on a row of its own, outside
    it; the delivery is answered 500, so Coasty redelivers it.
    """
    address = _ip_or_none(client_address)
    limits = RefusalLimits(run_id=run_id, address=address or "")
    if limits.exhausted():
        limits.throttled()
        return WebhookAnswer(429, "too many refused deliveries; slow down", WINDOW_SECONDS)

    # No lock, no write: a forged delivery costs this one indexed read. On PostgreSQL it reads
    # the run's status too, for the one-statement intake below.
    one_statement = connection.vendor == "postgresql"
    if one_statement:
        read = sql.run_for_webhook(run_id)
        known = (read.webhook_secret_encrypted, read.upstream_id or "") if read else None
    else:
        read, known = None, sql.run_webhook_secret(run_id)
    if known is None or not known[0]:
        # Also a run without a secret (launched without webhooks, or not yet accepted: Coasty
        # retries a non-2xx, and by then the secret is stored): exactly like an unknown run.
        limits.refused(run_known=False)
        if known is not None and not known[1]:
            _orphan_check_maybe(run_id, body, size)
        return UNKNOWN_RUN
    secret_encrypted, upstream_id = known
    lower = {k.lower(): v for k, v in headers.items()}
    Verdict = WebhookDelivery.Verdict

    def refuse(
        verdict: str, status: int, reason: str, raw: bytes = b"", length: int | None = None
    ) -> WebhookAnswer:
        limits.refused(run_known=True)
        refusal_record(
            run_id=run_id,
            verdict=verdict,
            reason=reason,
            body=raw,
            size=len(raw) if length is None else length,
            headers=lower,
            client_address=address,
        )
        return WebhookAnswer(status, reason)

    if isinstance(body, bytes):
        size = len(body)
    if size is not None and size > WEBHOOK_MAX_BYTES:
        return refuse(Verdict.MALFORMED, 413, "payload too large", length=size)
    raw = body if isinstance(body, bytes) else body()
    if len(raw) > WEBHOOK_MAX_BYTES:
        return refuse(Verdict.MALFORMED, 413, "payload too large", length=len(raw))
    header = lower.get("coasty-signature") or lower.get("x-coasty-signature") or ""
    try:
        secret = decrypt_secret(secret_encrypted)
        verify(header, raw, [secret], now=time.time() if now is None else now)
    except WebhookSignatureMalformed as exc:
        return refuse(Verdict.MALFORMED, 400, str(exc), raw)
    except WebhookSignatureStale as exc:
        return refuse(Verdict.STALE, 400, str(exc), raw)
    except (WebhookSignatureError, SecretUnreadable) as exc:
        return refuse(Verdict.BAD_SIGNATURE, 401, str(exc), raw)
    # Signed by Coasty from here on: what follows is trusted to be bounded.
    try:
        # Strictly: a NaN or an oversize number from upstream is refused (null) and noted in
        # the payload, never stored or applied as sent.
        payload = strict_json.loads_object(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return refuse(Verdict.MALFORMED, 400, f"bad JSON: {exc}", raw)
    if b"\\u0000" in raw or b"\x00" in raw:
        # Rare (a NUL escape, or a UTF-16/32 body): only then walk the payload. PostgreSQL's
        # text and jsonb refuse NUL, and the run's fields are written from this payload.
        payload = without_nul(payload)
    if str(payload.get("run_id")) != upstream_id:
        return refuse(Verdict.MALFORMED, 400, "run_id does not match this run", raw)
    delivery = Delivery(
        payload=payload,
        body=raw,
        headers={k: v for k, v in headers.items() if k.lower() in WEBHOOK_KEPT_HEADERS},
        client_address=address,
    )
    if read is not None:
        answer = _webhook_one_statement(read, delivery)
        if answer is not None:
            return answer
    return _webhook_store_and_apply(run_id, delivery)


@dataclass
class Delivery:
    """A verified delivery, as it is stored."""

    payload: dict[str, Any]
    body: bytes
    headers: dict[str, str]
    client_address: str | None

    def __post_init__(self) -> None:
        self.digest = hashlib.sha256(self.body).hexdigest()
        self.event = str(self.payload.get("event") or "")[:64]

    def row(self, *, verdict: str, result: str, duplicate: bool = False) -> dict[str, Any]:
        """The delivery's sql.delivery_insert arguments (but the run); a duplicate keeps only
        the hash and size of its body, which are the accepted row's."""
        return {
            "headers": self.headers,
            "body": b"" if duplicate else self.body,
            "digest": self.digest,
            "verdict": verdict,
            "result": result,
            "event": self.event,
            "dedupe_key": None if duplicate else self.digest,
            "body_size": len(self.body),
            "client_address": self.client_address,
        }


def _webhook_one_statement(run: Run, delivery: Delivery) -> WebhookAnswer | None:
    """PostgreSQL: store and apply a verified delivery in ONE statement (sql.webhook_intake),
    worked out from the run as read without a lock; None when the run changed since it was read
    (or is gone), and the caller takes the locked path instead.

    Everything the locked path writes, this writes, in one commit and one round trip: the
    delivery (unique per body), the run's status fields, its outbox event and its tasks (on the
    ORM broker; on Redis they are enqueued once the statement has committed).
    """
    seen = [getattr(run, name) for name in sql.WEBHOOK_STATUS_FIELDS]
    try:
        with events_collected() as events, tasks_collected() as queued:
            outcome, changed = _webhook_apply(run, delivery.payload)
            if run.is_terminal and run.settled_at is None:
                # The settle task fans out this delivery's events first: one queue row, not
                # one per event and one more for the settle (each costs the delivery a
                # signed package, an INSERT and ~0.7 KB of WAL).
                enqueue_on_commit(tasks.settle_run, str(run.pk), events=_fan_outs_taken(queued))
        rows = orm_task_rows(queued)
        # Inside a caller's transaction (tests), a savepoint keeps a failure from ending it.
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            locked, stored = sql.webhook_intake(
                run,
                seen=seen,
                delivery=delivery.row(verdict=WebhookDelivery.Verdict.ACCEPTED, result=outcome),
                moved=bool(changed),
                events=events,
                task_rows=rows or [],
            )
    except Exception as exc:
        return _webhook_failed(run.pk, delivery, exc)
    if not locked:
        return None
    if not stored:
        return _duplicate_record(run.pk, delivery)
    if rows is None:
        tasks_enqueue(queued)
    return WebhookAnswer(200, outcome)


def _fan_outs_taken(queued: list[QueuedTask]) -> list[str]:
    """Take the event fan-outs out of `queued`; their event keys."""
    path = task_path(notification_tasks.event_fan_out)
    keys = [str(task.args[0]) for task in queued if task.path == path]
    queued[:] = [task for task in queued if task.path != path]
    return keys


def _webhook_store_and_apply(run_id, delivery: Delivery) -> WebhookAnswer:
    """Store and apply a verified delivery with the run locked, in one transaction."""
    try:
        # On the ORM broker the settle and the notifications' fan-out are queued in this
        # transaction: one commit per delivery instead of one more per task.
        with enqueue_with_transaction(), transaction.atomic():
            # Lock the run: the stream's ingest and settle serialise with this delivery on it.
            run = sql.run_locked_for_webhook(run_id)
            if run is None:
                return UNKNOWN_RUN  # deleted since the lookup
            outcome, changed = _webhook_apply(run, delivery.payload)
            row = delivery.row(verdict=WebhookDelivery.Verdict.ACCEPTED, result=outcome)
            if not sql.delivery_insert(run_id, **row):
                return _duplicate_record(run_id, delivery)
            if changed:
                sql.run_status_save(run)
            if run.is_terminal and run.settled_at is None:
                enqueue_on_commit(tasks.settle_run, str(run.pk))
            return WebhookAnswer(200, outcome)
    except Exception as exc:
        return _webhook_failed(run_id, delivery, exc)


def _duplicate_record(run_id, delivery: Delivery) -> WebhookAnswer:
    """This body was applied before: record the duplicate, apply nothing. Only its hash and
    size are kept, so a replayed delivery cannot grow the table by its size either."""
    result = "same body already applied"
    verdict = WebhookDelivery.Verdict.DUPLICATE
    sql.delivery_insert(run_id, **delivery.row(verdict=verdict, result=result, duplicate=True))
    return WebhookAnswer(200, "duplicate")


def _webhook_failed(run_id, delivery: Delivery, exc: Exception) -> WebhookAnswer:
    """Applying failed and was rolled back: the failure is recorded on a row of its own and
    answered 500, so Coasty redelivers it."""
    logger.exception("webhook for run %s failed", run_id)
    result = f"{type(exc).__name__}: {exc}"
    row = delivery.row(verdict=WebhookDelivery.Verdict.FAILED, result=result)
    sql.delivery_insert(run_id, **{**row, "dedupe_key": None})
    return WebhookAnswer(500, "processing failed; redeliver")


# --- Refusals: counted, sampled, rate limited -----------------------------------------------------


def refusal_record(
    *,
    run_id,
    verdict: str,
    reason: str,
    body: bytes,
    size: int,
    headers: dict[str, str],
    client_address: str | None,
) -> None:
    """Count one refused delivery for a known run, and keep a sample of it if its turn has come.

    The sample is the body's SHA-256, its size, its first WEBHOOK_SAMPLE_BYTES bytes and the
    kept headers, cut short: a few hundred bytes however large the body was.
    """
    count = _refusal_count_add(run_id, verdict, n=1, size=size)
    logger.debug("webhook for run %s refused (%s, #%s): %s", run_id, verdict, count, reason[:200])
    if not _sampled(count):
        return
    kept = {
        k: str(v)[:WEBHOOK_SAMPLE_HEADER_CHARS]
        for k, v in headers.items()
        if k.lower() in WEBHOOK_KEPT_HEADERS
    }
    sql.delivery_insert(
        run_id,
        kept,
        body[:WEBHOOK_SAMPLE_BYTES],
        hashlib.sha256(body).hexdigest() if body else "",
        verdict=verdict,
        result=reason[:200],
        body_size=size,
        client_address=client_address,
    )


def _sampled(count: int) -> bool:
    """The first few refusals of a kind, then the 8th, 16th, 32nd...: log(n) rows for n."""
    return count <= WEBHOOK_SAMPLES_FIRST or count & (count - 1) == 0


def _refusal_count_add(run_id, verdict: str, *, n: int, size: int) -> int:
    """Add to the run's count of `verdict` refusals; the count after it. Its own short
    statement, no lock on the run: a flood of forgeries never queues behind the run's work."""
    counts = WebhookRefusalCount.objects.filter(run_id=run_id, verdict=verdict)
    bump = dict(count=F("count") + n, bytes_refused=F("bytes_refused") + size)
    if not counts.update(**bump, last_at=timezone.now()):
        try:
            with transaction.atomic():
                WebhookRefusalCount.objects.create(
                    run_id=run_id, verdict=verdict, count=n, bytes_refused=size
                )
            return n
        except IntegrityError:  # another process created it first
            counts.update(**bump, last_at=timezone.now())
    return counts.values_list("count", flat=True).first() or n


@dataclass
class RefusalLimits:
    """How many deliveries were refused this minute for a run and from a client address, in
    Django's cache (shared by every process once REDIS_URL is set).

    Only refusals use the budget: Coasty's own signed deliveries never do, so a busy Coasty
    sender is never throttled, while a forger is after a few tries. Counts are per fixed
    one-minute window.
    """

    run_id: Any
    address: str

    def __post_init__(self) -> None:
        window = int(time.time() // WINDOW_SECONDS)
        self.run_key = f"webhook-refusals:run:{self.run_id}:{window}"
        self.address_key = f"webhook-refusals:addr:{self.address}:{window}"
        self.throttled_key = f"webhook-throttled:run:{self.run_id}:{window}"

    def exhausted(self) -> bool:
        seen = cache.get_many([self.run_key, self.address_key])
        return seen.get(self.run_key, 0) >= settings.WEBHOOK_REFUSALS_PER_RUN_PER_MINUTE or (
            bool(self.address)
            and seen.get(self.address_key, 0) >= settings.WEBHOOK_REFUSALS_PER_ADDRESS_PER_MINUTE
        )

    def refused(self, *, run_known: bool) -> None:
        if run_known:
            _cache_incr(self.run_key)
        if self.address:
            _cache_incr(self.address_key)

    def throttled(self) -> None:
        """Count a request refused by the rate limit: in the cache each time, in the database
        only when the window's count reaches a power of two (1, 2, 4, 8...), adding what came
        since: log(n) writes for n requests, and the stored count is within a factor of two."""
        n = _cache_incr(self.throttled_key)
        if n == 1:
            logger.warning(
                "webhook deliveries for run %s (from %s) rate limited: too many refusals",
                self.run_id,
                self.address or "?",
            )
        if n & (n - 1):
            return
        if Run.objects.filter(pk=self.run_id).exclude(webhook_secret_encrypted="").exists():
            _refusal_count_add(
                self.run_id, WebhookDelivery.Verdict.THROTTLED, n=max(1, n - n // 2), size=0
            )


def _cache_incr(key: str) -> int:
    cache.add(key, 0, timeout=2 * WINDOW_SECONDS)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=2 * WINDOW_SECONDS)
        return 1


@functools.lru_cache(maxsize=1024)
def _ip_or_none(value: str) -> str | None:
    """The address in its canonical form, or None; cached, as Coasty sends from a few."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None
