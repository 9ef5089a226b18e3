"""The shared core's own records: API tokens and the API's idempotency log.

Both belong to a person (Django's user), not to a team, and the REST plumbing in
`portal.core.rest` is what reads and writes them. Their tables keep the names they had when
they lived in the teams app (`portal_apitoken`, `portal_idempotentrequest`), so moving them here
changed no data (see migrations/0001_initial.py).
"""

import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone


class TokenScope(models.TextChoices):
    """What an API token may do; each endpoint names the scope it needs (`scope_area` on the
    view: reads need `<area>:read`, writes `<area>:write`). A scope only narrows a token: the
    person's team roles still apply to every call."""

    RUNS_READ = "runs:read", "Read runs and their events"
    RUNS_WRITE = "runs:write", "Launch, cancel and resume runs"
    BILLING_READ = "billing:read", "Read wallets and ledgers"
    BILLING_WRITE = "billing:write", "Top up wallets (billing admins)"


ALL_TOKEN_SCOPES = tuple(TokenScope.values)


class ApiToken(models.Model):
    """One personal token a person made to call the REST API as themselves.

    The token itself is shown once, when it is made; only its SHA-256 is kept. A token is 256
    random bits, so a fast hash is right here: there is nothing to brute-force, and the lookup
    by hash is one indexed query per request (a slow password hash would cost ~100 ms each).
    `prefix` is the token's public beginning, enough for a person to tell their tokens apart.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    secret_sha256 = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Written at most once a minute per token (see services.api_token_mark_used), not per call.
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # TokenScope values, chosen when the token is made (tokens made before scopes have all).
    scopes = models.JSONField(default=list)
    # None: until revoked.
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "portal_apitoken"
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) of {self.user}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or ())

    @staticmethod
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()


class IdempotentRequest(models.Model):
    """One API request made with an `Idempotency-Key`, and the response it got.

    The row is inserted (and committed) before the request is carried out: the unique
    (user, key) constraint lets exactly one of any number of concurrent requests with one key
    go ahead. Until `completed_at` is set the request is in flight; its reservation lasts until
    `lease_until`, after which a retry may take it over (the first holder crashed). A completed
    row replays its stored response until `expires_at` (24 h); a scheduled job deletes it after.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    key = models.CharField(max_length=128)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=512)
    # SHA-256 of method, path and the canonical (sorted-key) JSON body.
    fingerprint = models.CharField(max_length=64)
    # Who holds the reservation: a random value per attempt, so only the holder completes it.
    holder = models.UUIDField()
    lease_until = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "portal_idempotentrequest"
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotent_request_unique_key"),
        ]

    def __str__(self) -> str:
        state = "done" if self.completed_at else "in flight"
        return f"{self.method} {self.path} [{self.key}] ({state})"
