"""`Idempotency-Key` for the API's creating POSTs (launch a run, top up a wallet).

The contract (README, "REST API"): keys are per user and kept 24 h. The same key with the same
body gets the first response again, marked `Idempotent-Replayed: true`; with another body, 422
IDEMPOTENCY_KEY_REUSED; while the first is still being carried out, 409 IDEMPOTENCY_IN_FLIGHT.

How two requests with one key are kept from both executing: before executing, a request INSERTs
its IdempotentRequest row in its own, immediately committed transaction. The (user, key) unique
constraint lets one INSERT through; every other one fails (on PostgreSQL it first waits for the
winner's INSERT to commit) and then reads the winner's row: in flight, or completed and
replayable. No lock is held while the request executes.

A process that dies mid-request leaves its row in flight; the row's lease (API_IDEMPOTENCY_LEASE_
SECONDS) lets a later retry take it over, with a conditional UPDATE that only one retry wins.
Should the dead request have got as far as committing, the retry finds its work, not a second
copy: the views pass a key derived from the reservation row (its user, key, body and pk) down to
the service (run_launch's launch_token, wallet_top_up's idempotency key), and those are unique
in the database too. A takeover keeps the row, so it keeps the derived key; once a row has
expired, the same key and body make a new row and so a new operation (a script that sends one
key every day tops up every day, not once).

Only successes are stored. A refusal (validation, insufficient funds, wrong state) changed
nothing, so its reservation is dropped and the same key can be retried once the cause is fixed.
An unexpected failure may come after the work committed (a task queue that refuses the task
queued on commit, say), so its reservation is kept with its lease ended: the retry takes it over
at once and finds that work. Expired rows are ignored at once and deleted by the purge job
(portal.tasks).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.http import Http404, QueryDict
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from portal.core.models import IdempotentRequest
from portal.core.rest.errors import IdempotencyInFlightError, IdempotencyKeyReusedError

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_PATTERN = r"^[A-Za-z0-9_\-:]{1,128}$"
_KEY_SHAPE = re.compile(KEY_PATTERN)
# Response headers worth replaying (the body carries everything else).
STORED_HEADERS = ("Location",)
PURGE_BATCH = 1000
# What a view raises to refuse a request (the envelope's 4xx): nothing was done, so the key is
# freed. Anything else is unexpected and may follow committed work.
REFUSALS = (exceptions.APIException, Http404, PermissionDenied)


def _ttl() -> dt.timedelta:
    return dt.timedelta(seconds=settings.API_IDEMPOTENCY_TTL_SECONDS)


def _lease() -> dt.timedelta:
    return dt.timedelta(seconds=settings.API_IDEMPOTENCY_LEASE_SECONDS)


def idempotency_key(request) -> str | None:
    """The request's key, or None; 400 VALIDATION_ERROR when it is malformed."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    if not _KEY_SHAPE.fullmatch(raw):
        raise exceptions.ValidationError(
            {HEADER: ["Use 1 to 128 characters of A-Z, a-z, 0-9, '_', '-' and ':'."]}
        )
    return raw


def request_fingerprint(request) -> str:
    data = request.data  # parses the body: malformed JSON is a 400 before anything is reserved
    if isinstance(data, QueryDict):
        data = data.dict()
    return body_fingerprint(method=request.method, path=request.path, data=data)


def body_fingerprint(*, method: str, path: str, data) -> str:
    """SHA-256 of the method, the path and the body as canonical JSON (sorted keys, no spaces,
    ASCII escapes), so key order and spacing do not make two bodies differ."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{method}\n{path}\n{canonical}".encode()).hexdigest()


def derived_key(record: IdempotentRequest) -> str:
    """A stable id for "this person's request with this key and this body, under this
    reservation", for the services' own idempotency (see the module docstring). The row's pk is
    in it so that a retry taking over the row gets the same id, while the same key and body after
    the row expired get a new one: otherwise the service would hand back the old run or top-up
    as if it were new (201, not marked as a replay)."""
    return hashlib.sha256(
        f"{record.user_id}\n{record.key}\n{record.fingerprint}\n{record.pk}".encode()
    ).hexdigest()


def launch_token_for(derived: str) -> uuid.UUID:
    return uuid.UUID(hex=derived[:32])


@dataclass(frozen=True)
class Reservation:
    record: IdempotentRequest
    holder: uuid.UUID


def idempotency_reserve(
    *, user, key: str, method: str, path: str, fingerprint: str
) -> Reservation | IdempotentRequest:
    """Reserve (user, key) for this request: a Reservation to go ahead, or the completed earlier
    request to replay. Raises IdempotencyKeyReusedError or IdempotencyInFlightError."""
    for _ in range(3):
        now = timezone.now()
        holder = uuid.uuid4()
        try:
            # Its own transaction, committed before the request executes: the unique constraint
            # is what lets exactly one of several concurrent requests with this key through.
            with transaction.atomic():
                record = IdempotentRequest.objects.create(
                    user=user,
                    key=key,
                    method=method,
                    path=path[:512],
                    fingerprint=fingerprint,
                    holder=holder,
                    lease_until=now + _lease(),
                    expires_at=now + _ttl(),
                )
            return Reservation(record=record, holder=holder)
        except IntegrityError:
            pass
        existing = IdempotentRequest.objects.filter(user=user, key=key).first()
        if existing is None:
            continue  # purged between our INSERT and this read: try again
        if existing.expires_at <= now:
            # Past its 24 h: as if it were gone (the purge job may not have run yet).
            IdempotentRequest.objects.filter(pk=existing.pk, expires_at__lte=now).delete()
            continue
        if existing.fingerprint != fingerprint:
            raise IdempotencyKeyReusedError(
                f"Idempotency-Key {key!r} was already used with a different request "
                f"({existing.method} {existing.path} with another body). Use a new key for a "
                "new request."
            )
        if existing.completed_at is not None:
            return existing
        if existing.lease_until > now:
            raise IdempotencyInFlightError(
                f"A request with Idempotency-Key {key!r} is still being carried out. Retry with "
                "the same key and body in a moment to get its result.",
                retry_after=1,
            )
        # The first holder's lease ran out (its process died): take the reservation over.
        # Conditional on the holder we saw, so of several retries exactly one takes it.
        taken = IdempotentRequest.objects.filter(
            pk=existing.pk, holder=existing.holder, completed_at__isnull=True
        ).update(holder=holder, lease_until=now + _lease())
        if taken:
            existing.holder = holder
            return Reservation(record=existing, holder=holder)
    raise IdempotencyInFlightError(
        f"A request with Idempotency-Key {key!r} is still being carried out. Retry in a moment.",
        retry_after=1,
    )


def idempotency_complete(*, reservation: Reservation, response: Response) -> None:
    """Store the response to replay. Only the current holder's completion counts."""
    body = json.loads(JSONRenderer().render(response.data)) if response.data is not None else None
    headers = {name: response[name] for name in STORED_HEADERS if response.has_header(name)}
    IdempotentRequest.objects.filter(
        pk=reservation.record.pk, holder=reservation.holder, completed_at__isnull=True
    ).update(
        completed_at=timezone.now(),
        response_status=response.status_code,
        response_body=body,
        response_headers=headers,
    )


def idempotency_release(*, reservation: Reservation) -> None:
    """Drop a reservation whose request was refused or failed: the key may be used again."""
    IdempotentRequest.objects.filter(
        pk=reservation.record.pk, holder=reservation.holder, completed_at__isnull=True
    ).delete()


def idempotency_abandon(*, reservation: Reservation) -> None:
    """End the lease of a reservation whose request failed unexpectedly, keeping the row: the
    work may have committed, and a retry that takes the row over keeps its derived key."""
    IdempotentRequest.objects.filter(
        pk=reservation.record.pk, holder=reservation.holder, completed_at__isnull=True
    ).update(lease_until=timezone.now())


def idempotency_purge_expired(*, now: dt.datetime | None = None) -> int:
    """Delete expired rows, in small batches so no long lock is held. Returns how many."""
    now = now or timezone.now()
    deleted = 0
    while True:
        batch = list(
            IdempotentRequest.objects.filter(expires_at__lte=now).values_list("pk", flat=True)[
                :PURGE_BATCH
            ]
        )
        if not batch:
            return deleted
        deleted += IdempotentRequest.objects.filter(pk__in=batch, expires_at__lte=now).delete()[0]


def replay(record: IdempotentRequest) -> Response:
    return Response(
        record.response_body,
        status=record.response_status,
        headers={**record.response_headers, REPLAYED_HEADER: "true"},
    )


def respond_idempotently(request, execute: Callable[[str | None], Response]) -> Response:
    """Carry out a creating POST at most once per Idempotency-Key.

    `execute(derived)` does the work and returns the response; `derived` is None without a key,
    else the id to hand to the service (see derived_key).
    """
    key = idempotency_key(request)
    if key is None:
        return execute(None)
    fingerprint = request_fingerprint(request)
    outcome = idempotency_reserve(
        user=request.user,
        key=key,
        method=request.method,
        path=request.path,
        fingerprint=fingerprint,
    )
    if isinstance(outcome, IdempotentRequest):
        return replay(outcome)
    try:
        response = execute(derived_key(outcome.record))
    except REFUSALS:
        idempotency_release(reservation=outcome)
        raise
    except BaseException:
        idempotency_abandon(reservation=outcome)
        raise
    if 200 <= response.status_code < 300:
        idempotency_complete(reservation=outcome, response=response)
    else:
        idempotency_release(reservation=outcome)
    return response
