"""Coasty's signed webhook deliveries: verified, stored and applied once."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from portal.core.crypto import SecretUnreadable, decrypt_secret
from portal.core.queue import enqueue_on_commit
from runs import sql, tasks
from runs.coasty import WebhookSignatureError, verify
from runs.coasty.signing import WebhookSignatureMalformed, WebhookSignatureStale
from runs.models import UPSTREAM_TERMINAL_STATUSES, Run, RunStatus, WebhookDelivery
from runs.services.status import apply_status, parse_at
from runs.services.upstream_data import without_nul

logger = logging.getLogger(__name__)

WEBHOOK_KEPT_HEADERS = (
    "content-type",
    "user-agent",
    "coasty-signature",
    "x-coasty-signature",
    "x-coasty-request-id",
)


def _webhook_apply(run: Run, payload: dict[str, Any]) -> tuple[str, list[str]]:
    """Move `run` (locked, in memory) as a verified webhook says: (what happened in words, the
    fields to save, empty when nothing moved).

    Webhooks carry no seq: a terminal state is applied (terminal states are final) and the
    money is settled from GET /v1/runs/{id}, never from this body; an awaiting_human is applied
    only when Coasty's timestamp on it is newer than the status we have.
    """
    payload = without_nul(payload)
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
        run.error = str(payload["error"].get("message") or payload["error"])[:2000]
    return f"status {before} → {status}", sql.WEBHOOK_STATUS_FIELDS


def _named_run(body: bytes) -> str | None:
    """The Coasty run id an unverified delivery names, if it looks like one: only a hint, to
    ask Coasty about (run_check_orphan checks the run is ours)."""
    try:
        payload = json.loads(body)
    except ValueError:
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
    """What the webhook view answers Coasty: a status code and a short message."""

    status: int
    message: str


def webhook_receive(
    *, run_id, body: bytes, headers: dict[str, str], now: float | None = None
) -> WebhookAnswer:
    """Take one of Coasty's signed deliveries for a run: verify it, store it, apply it once.

    Every delivery for a known run is stored verbatim with its verdict, refused ones included.
    A verified delivery is stored and applied in ONE transaction, with the run locked: the row
    says "accepted" exactly when its effect is committed, and the unique (run, dedupe_key) lets
    one delivery of a given body through, so a retry or a duplicate changes nothing. That one
    transaction is also the fast path (one commit, four statements): Coasty's senders wait for
    our answer, and the answer should only wait for the database once.

    If applying fails, the transaction rolls back and the failure is recorded on a row of its
    own, outside it; the delivery is answered 500, so Coasty redelivers it.
    """
    Verdict = WebhookDelivery.Verdict
    kept = {k: v for k, v in headers.items() if k.lower() in WEBHOOK_KEPT_HEADERS}
    digest = hashlib.sha256(body).hexdigest()
    lower = {k.lower(): v for k, v in headers.items()}
    header = lower.get("coasty-signature") or lower.get("x-coasty-signature") or ""
    found = False
    try:
        with transaction.atomic():
            # Lock the run: the stream's ingest and settle serialise with this delivery on it.
            run = sql.run_locked_for_webhook(run_id)
            if run is None:
                return WebhookAnswer(404, "unknown run")
            found = True

            def refuse(verdict: str, status: int, reason: str) -> WebhookAnswer:
                logger.warning("webhook for run %s refused (%s): %s", run_id, verdict, reason)
                sql.delivery_insert(run_id, kept, body, digest, verdict=verdict, result=reason)
                return WebhookAnswer(status, reason)

            if not run.webhook_secret_encrypted:
                if run.status != RunStatus.PENDING and not run.upstream_id:
                    # Closed here before Coasty's acceptance was known, yet Coasty writes about
                    # it: an orphan, maybe. Unverifiable without a secret, so the idempotency
                    # lookup decides (run_check_orphan); once recorded, deliveries are taken.
                    if run.orphan_upstream_id:
                        return refuse(Verdict.DEFERRED, 200, "run closed here; orphan cancelled")
                    enqueue_on_commit(tasks.check_orphan, str(run.pk), _named_run(body))
                    return refuse(Verdict.DEFERRED, 409, "run closed here; checking for an orphan")
                # Coasty knows the run before we stored its answer (a lost response): retry later.
                return refuse(Verdict.DEFERRED, 409, "run not yet accepted here")
            try:
                secret = decrypt_secret(run.webhook_secret_encrypted)
                verify(header, body, [secret], now=time.time() if now is None else now)
            except WebhookSignatureMalformed as exc:
                return refuse(Verdict.MALFORMED, 400, str(exc))
            except WebhookSignatureStale as exc:
                return refuse(Verdict.STALE, 400, str(exc))
            except (WebhookSignatureError, SecretUnreadable) as exc:
                return refuse(Verdict.BAD_SIGNATURE, 401, str(exc))
            try:
                payload = json.loads(body)
                if not isinstance(payload, dict):
                    raise ValueError("body is not a JSON object")
            except ValueError as exc:
                return refuse(Verdict.MALFORMED, 400, f"bad JSON: {exc}")
            if str(payload.get("run_id")) != run.upstream_id:
                return refuse(Verdict.MALFORMED, 400, "run_id does not match this run")
            event = str(payload.get("event") or "")[:64]
            outcome, changed = _webhook_apply(run, payload)
            stored = sql.delivery_insert(
                run_id,
                kept,
                body,
                digest,
                verdict=Verdict.ACCEPTED,
                result=outcome,
                event=event,
                dedupe_key=digest,
            )
            if not stored:
                # This body was applied before: record the duplicate, apply nothing.
                sql.delivery_insert(
                    run_id,
                    kept,
                    body,
                    digest,
                    verdict=Verdict.DUPLICATE,
                    result="same body already applied",
                    event=event,
                )
                return WebhookAnswer(200, "duplicate")
            if changed:
                sql.run_status_save(run)
            if run.is_terminal and run.settled_at is None:
                enqueue_on_commit(tasks.settle_run, str(run.pk))
            return WebhookAnswer(200, outcome)
    except Exception as exc:
        if not found:
            raise
        logger.exception("webhook for run %s failed", run_id)
        sql.delivery_insert(
            run_id,
            kept,
            body,
            digest,
            verdict=Verdict.FAILED,
            result=f"{type(exc).__name__}: {exc}",
        )
        return WebhookAnswer(500, "processing failed; redeliver")
