"""System checks for the secrets at rest (`manage.py check`, and `check --deploy`)."""

from django.conf import settings
from django.core import checks

from portal.core.crypto import key_problems


@checks.register(checks.Tags.security)
def field_encryption_keys_valid(app_configs, **kwargs):
    """A malformed key would fail on the first webhook: refuse it at start instead."""
    return [
        checks.Error(problem, id="portal.E001")
        for problem in key_problems(list(getattr(settings, "FIELD_ENCRYPTION_KEYS", [])))
    ]


@checks.register(checks.Tags.security, deploy=True)
def field_encryption_keys_set(app_configs, **kwargs):
    if getattr(settings, "FIELD_ENCRYPTION_KEYS", None):
        return []
    return [
        checks.Warning(
            "FIELD_ENCRYPTION_KEYS is not set: secrets at rest are encrypted with a key derived "
            "from SECRET_KEY, so whoever has SECRET_KEY can read them.",
            hint=(
                "Set FIELD_ENCRYPTION_KEYS to a key of its own (python -c 'from "
                "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'), "
                "then run manage.py rotate_encryption_keys."
            ),
            id="portal.W001",
        )
    ]
