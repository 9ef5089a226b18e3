"""Coasty webhook signatures: `Coasty-Signature: t=<unix>,v1=<hex>`.

v1 is the hex HMAC-SHA256, keyed with the run's webhook secret, of `"<t>." + raw body`. A
receiver verifies against the raw bytes it received (never a re-serialised body), accepts any
of several secrets (during a rotation both the old and the new one are valid), compares in
constant time, and rejects timestamps more than `tolerance` seconds away from its clock in
either direction, which bounds how long a captured delivery can be replayed.

Coasty also documents a legacy header name, `X-Coasty-Signature`, with the same format;
choosing which header to read is the receiver's business, not this module's.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

__all__ = [
    "DEFAULT_TOLERANCE",
    "WebhookSignatureError",
    "WebhookSignatureMalformed",
    "WebhookSignatureMismatch",
    "WebhookSignatureStale",
    "sign",
    "signature_header",
    "verify",
]

DEFAULT_TOLERANCE = 300  # seconds; Coasty's replay protection window is 5 minutes

_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class WebhookSignatureError(ValueError):
    """A webhook delivery whose signature does not prove it came from Coasty just now."""


class WebhookSignatureMalformed(WebhookSignatureError):
    """The header is missing or not `t=<unix>,v1=<hex>[,v1=<hex>...]`."""


class WebhookSignatureMismatch(WebhookSignatureError):
    """No v1 signature matches the body under any of the secrets."""


class WebhookSignatureStale(WebhookSignatureError):
    """Correctly signed, but the timestamp is too far from now (a replay, or a skewed clock)."""


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def sign(secret: str | bytes, t: int, body: str | bytes) -> str:
    """The v1 signature: hex HMAC-SHA256(secret, f"{t}." + body)."""
    message = f"{int(t)}.".encode("ascii") + _as_bytes(body)
    return hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()


def signature_header(secret: str | bytes, t: int, body: str | bytes) -> str:
    """The `Coasty-Signature` header value for `body` sent at unix time `t`."""
    return f"t={int(t)},v1={sign(secret, t, body)}"


def _parse(header: str | None) -> tuple[int, list[str]]:
    if not isinstance(header, str) or not header.strip():
        raise WebhookSignatureMalformed("missing Coasty-Signature header")
    timestamps: list[str] = []
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise WebhookSignatureMalformed(f"Coasty-Signature element without '=': {part!r}")
        name, value = name.strip(), value.strip()
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            if not _HEX_SHA256.fullmatch(value):
                raise WebhookSignatureMalformed("Coasty-Signature v1 is not 64 hex digits")
            signatures.append(value.lower())
        # Other schemes (a future v2, say) are ignored, as signers add them alongside v1.
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]):
        raise WebhookSignatureMalformed("Coasty-Signature needs exactly one t=<unix seconds>")
    if not signatures:
        raise WebhookSignatureMalformed("Coasty-Signature has no v1 signature")
    return int(timestamps[0]), signatures


def verify(
    header: str | None,
    body: bytes,
    secrets: str | bytes | Iterable[str | bytes],
    *,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> None:
    """Return if `header` signs `body` under one of `secrets` within `tolerance` of `now`.

    Raises `WebhookSignatureMalformed`, `WebhookSignatureMismatch` or `WebhookSignatureStale`
    (all `WebhookSignatureError`). The signature is checked before the timestamp, so "stale"
    always means "authentic but too old or too new".
    """
    if isinstance(secrets, str | bytes):
        secrets = [secrets]  # one secret, not an iterable of characters
    secret_list = [s for s in secrets if s]
    if not secret_list:
        raise ValueError("verify() needs at least one non-empty secret")
    if not isinstance(body, bytes):
        raise TypeError("verify() takes the raw body bytes, exactly as received")
    t, signatures = _parse(header)
    matched = False
    for secret in secret_list:
        expected = sign(secret, t, body)
        for candidate in signatures:
            # compare_digest on every pair: how long this takes says nothing about the secret.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookSignatureMismatch("Coasty-Signature does not match the body")
    skew = now - t
    if abs(skew) > tolerance:
        direction = "old" if skew > 0 else "in the future"
        raise WebhookSignatureStale(
            f"Coasty-Signature timestamp is {abs(skew):.0f}s {direction} (tolerance {tolerance:g}s)"
        )
