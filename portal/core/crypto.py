"""Encryption at rest for the secrets the portal must keep readable (per-run webhook secrets,
notification endpoint secrets).

Secrets are Fernet tokens under their own keys, `FIELD_ENCRYPTION_KEYS` (a list, newest first):
the newest encrypts, every one decrypts, so a new key goes in front and
`manage.py rotate_encryption_keys` re-encrypts what is stored before the old ones are dropped
(MultiFernet rotation). These keys are not SECRET_KEY: a leaked session-signing key no longer
opens the secrets, and either can be rotated alone.

Before these keys existed the key was derived from SECRET_KEY (HKDF). That derived key (and
those of SECRET_KEY_FALLBACKS) stays in the ring as a decrypt-only fallback, so secrets stored
then still verify until they are rotated; with no FIELD_ENCRYPTION_KEYS at all (an upgraded
deployment that has not set them yet) it is also the encrypting key, and `check --deploy` warns.
Set FIELD_ENCRYPTION_SECRET_KEY_FALLBACK=false once everything is rotated to drop it.

Each app names its encrypted columns in its AppConfig.ready() with `register_encrypted_field`,
so the rotation command finds them without the core importing any app.
"""

import base64
from dataclasses import dataclass
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import models


class SecretUnreadable(Exception):
    """The stored secret was encrypted under a key this process no longer has."""


def _derive(secret_key: str) -> Fernet:
    """The pre-FIELD_ENCRYPTION_KEYS key: HKDF of a SECRET_KEY (kept to read old data)."""
    raw = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"coasty-portal webhook secrets v1"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(raw))


@lru_cache(maxsize=8)
def _keyring(field_keys: tuple[str, ...], legacy: tuple[str, ...]) -> MultiFernet:
    return MultiFernet(
        [Fernet(key.encode()) for key in field_keys] + [_derive(key) for key in legacy]
    )


def _settings_keys() -> tuple[tuple[str, ...], tuple[str, ...]]:
    field_keys = tuple(getattr(settings, "FIELD_ENCRYPTION_KEYS", ()) or ())
    legacy: tuple[str, ...] = ()
    if getattr(settings, "FIELD_ENCRYPTION_SECRET_KEY_FALLBACK", True) or not field_keys:
        legacy = (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS)
    return field_keys, legacy


def _current() -> MultiFernet:
    return _keyring(*_settings_keys())


def _newest() -> Fernet:
    field_keys, legacy = _settings_keys()
    return Fernet(field_keys[0].encode()) if field_keys else _derive(legacy[0])


def encrypt_secret(plain: str) -> str:
    return _current().encrypt(plain.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("secret cannot be decrypted with the current keys") from exc


def is_under_newest_key(token: str) -> bool:
    """Whether a stored token is already encrypted with the newest key (nothing to rotate)."""
    try:
        _newest().decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def reencrypt_secret(token: str) -> str:
    """The same secret under the newest key (its Fernet timestamp kept); SecretUnreadable if
    no key in the ring opens it."""
    try:
        return _current().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("secret cannot be decrypted with the current keys") from exc


def key_problems(keys: list[str]) -> list[str]:
    """What is wrong with each configured key (for the system check), empty when all are fine."""
    problems = []
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            problems.append(
                f"FIELD_ENCRYPTION_KEYS item {position} is not a Fernet key "
                "(32 url-safe base64-encoded bytes, e.g. from Fernet.generate_key())."
            )
    return problems


@dataclass(frozen=True)
class EncryptedField:
    """A text column that holds tokens from encrypt_secret (empty string: no secret)."""

    model: type[models.Model]
    field: str


_ENCRYPTED_FIELDS: list[EncryptedField] = []


def register_encrypted_field(model: type[models.Model], field: str) -> None:
    """Name a column holding encrypt_secret tokens, for rotate_encryption_keys (idempotent)."""
    entry = EncryptedField(model=model, field=field)
    if entry not in _ENCRYPTED_FIELDS:
        _ENCRYPTED_FIELDS.append(entry)


def encrypted_fields() -> list[EncryptedField]:
    return list(_ENCRYPTED_FIELDS)
