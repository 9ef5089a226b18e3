"""Encryption at rest for per-run webhook secrets.

The key is derived from SECRET_KEY (HKDF), and SECRET_KEY_FALLBACKS still decrypt, so rotating
the secret key the Django way keeps in-flight runs verifiable. Secrets never leave this module
in clear except to verify a delivery.
"""

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class SecretUnreadable(Exception):
    """The stored secret was encrypted under a key this process no longer has."""


def _derive(secret_key: str) -> Fernet:
    raw = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"coasty-portal webhook secrets v1"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(raw))


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_derive(key) for key in keys])


def _current() -> MultiFernet:
    return _fernet((settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS))


def encrypt_secret(plain: str) -> str:
    return _current().encrypt(plain.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("webhook secret cannot be decrypted with the current keys") from exc
