"""Standard Webhooks signing (https://www.standardwebhooks.com), as Svix sends them.

A secret is `whsec_` + base64 of 32 random bytes; the key is those bytes. The signature of a
delivery is `v1,` + base64(HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")); during
a secret rotation the header carries one signature per secret, separated by spaces.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 — the standard's prefix, not a secret


def secret_new() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature(secret: str, *, webhook_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{webhook_id}.{timestamp}.{body}".encode()
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(
    secrets_in_use: list[str], *, webhook_id: str, timestamp: int, body: str
) -> str:
    return " ".join(
        signature(secret, webhook_id=webhook_id, timestamp=timestamp, body=body)
        for secret in secrets_in_use
    )
