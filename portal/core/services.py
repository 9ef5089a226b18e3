"""Writes to the core's records: personal API tokens."""

import datetime as dt
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from portal.core import crypto
from portal.core.models import ALL_TOKEN_SCOPES, ApiToken
from portal.core.selectors import api_tokens_live

# A token is this marker and 43 URL-safe characters (256 random bits). The marker makes a leaked
# token easy to recognise (secret scanners, logs); the token's first PREFIX_LENGTH characters are
# kept in clear so a person can tell their tokens apart.
API_TOKEN_MARKER = "cpt_"  # noqa: S105 (a public marker, not a secret)
API_TOKEN_PREFIX_LENGTH = 12
API_TOKEN_NAME_MAX = 100
# A person's live (not revoked, not expired) tokens at most: a leaked session cannot mint
# tokens without end, and a list this long is still one a person can review.
API_TOKENS_LIVE_MAX = 20
# last_used_at is a hint for people, not an audit log: one write a minute per token is plenty,
# and saves a write on every API call.
API_TOKEN_USE_RESOLUTION = dt.timedelta(minutes=1)


def api_token_create(
    *,
    user,
    name: str,
    scopes: Iterable[str] | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[ApiToken, str]:
    """Make a personal API token; returns the row and the token, which is never stored.

    `scopes` are TokenScope values (None: all of them; the account page and the command pass
    what the person chose, or what their roles allow). `expires_at` None: until revoked. A
    person has at most API_TOKENS_LIVE_MAX live tokens.
    """
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the token a name, e.g. the script that will use it."})
    if len(name) > API_TOKEN_NAME_MAX:
        raise ValidationError({"name": f"Keep the name to {API_TOKEN_NAME_MAX} characters."})
    chosen = list(ALL_TOKEN_SCOPES) if scopes is None else list(dict.fromkeys(scopes))
    unknown = [scope for scope in chosen if scope not in ALL_TOKEN_SCOPES]
    if unknown:
        raise ValidationError(
            {"scopes": f"Unknown scope {unknown[0]!r}; choose from {', '.join(ALL_TOKEN_SCOPES)}."}
        )
    if not chosen:
        raise ValidationError({"scopes": "Choose at least one scope."})
    now = timezone.now()
    if expires_at is not None and expires_at <= now:
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    token = API_TOKEN_MARKER + secrets.token_urlsafe(32)
    with transaction.atomic():
        # The person's row is locked so two requests at once cannot both make the 20th token.
        get_user_model().objects.select_for_update().filter(pk=user.pk).exists()
        if api_tokens_live(user=user, now=now).count() >= API_TOKENS_LIVE_MAX:
            raise ValidationError(
                f"You have {API_TOKENS_LIVE_MAX} live API tokens, the most allowed. "
                "Revoke one you no longer use first."
            )
        row = ApiToken.objects.create(
            user=user,
            name=name,
            prefix=token[:API_TOKEN_PREFIX_LENGTH],
            secret_sha256=ApiToken.digest(token),
            scopes=[scope for scope in ALL_TOKEN_SCOPES if scope in chosen],
            expires_at=expires_at,
        )
    return row, token


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke a token for good; revoking twice keeps the first date."""
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db(fields=["revoked_at"])
    return token


def api_token_mark_used(*, token: ApiToken) -> None:
    """Record that the token was just used, at most once per API_TOKEN_USE_RESOLUTION."""
    now = timezone.now()
    stale = now - API_TOKEN_USE_RESOLUTION
    if token.last_used_at is not None and token.last_used_at > stale:
        return  # recent enough: no write at all
    # The condition repeats the check in SQL, so concurrent calls write once between them.
    ApiToken.objects.filter(pk=token.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale)
    ).update(last_used_at=now)
    token.last_used_at = now


# --- Secrets at rest --------------------------------------------------------------------------


@dataclass
class KeyRotationReport:
    """What rotate_encryption_keys did: per column, rows re-encrypted, already current, and
    unreadable (encrypted under a key no longer configured: those secrets are lost)."""

    rotated: int = 0
    current: int = 0
    unreadable: list[str] = field(default_factory=list)


def encrypted_secrets_rotate(*, batch_size: int = 500) -> KeyRotationReport:
    """Re-encrypt every stored secret (every register_encrypted_field column) with the newest
    FIELD_ENCRYPTION_KEYS key.

    Idempotent: a token already under the newest key is left as it is, so a second run (or a
    run that was interrupted and started again) changes nothing it already did. Each row is
    written with a conditional UPDATE on its old token, so a secret written meanwhile (a run
    that just got its webhook secret) is never overwritten with a stale one.
    """
    report = KeyRotationReport()
    for entry in crypto.encrypted_fields():
        manager = entry.model._default_manager
        rows = (
            manager.exclude(**{entry.field: ""})
            .order_by("pk")
            .values_list("pk", entry.field)
            .iterator(chunk_size=batch_size)
        )
        for pk, token in rows:
            if crypto.is_under_newest_key(token):
                report.current += 1
                continue
            try:
                fresh = crypto.reencrypt_secret(token)
            except crypto.SecretUnreadable:
                report.unreadable.append(f"{entry.model._meta.label}.{entry.field} pk={pk}")
                continue
            report.rotated += manager.filter(pk=pk, **{entry.field: token}).update(
                **{entry.field: fresh}
            )
    return report
