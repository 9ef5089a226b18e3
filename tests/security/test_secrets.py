"""Secure by default: DEBUG off unless asked for, no start without SECRET_KEY, and secrets at
rest under keys of their own (FIELD_ENCRYPTION_KEYS), rotated by a command, with the old
SECRET_KEY-derived key still opening what was stored before."""

import base64
import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.core.management import CommandError, call_command

from portal.core.crypto import SecretUnreadable, decrypt_secret, encrypt_secret
from runs.models import Run
from tests.api_world import launch
from tests.factories import TeamFactory, UserFactory, top_up

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
PLAIN = "whsec_rotate_me_42"


def _settings_process(env_overrides, code):
    """A fresh process on the real settings module, without the tests' DEBUG and keys."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SECRET_KEY", "DEBUG", "DATABASE_URL", "FIELD_ENCRYPTION_KEYS")
    }
    env.update({"DJANGO_SETTINGS_MODULE": "portal.settings", **env_overrides})
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


def _legacy_fernet(secret_key: str) -> Fernet:
    """The key the portal used before FIELD_ENCRYPTION_KEYS: HKDF-SHA256 of SECRET_KEY."""
    raw = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"coasty-portal webhook secrets v1"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(raw))


def _run_with_token(token: str) -> Run:
    team = TeamFactory()
    top_up(team, 1000)
    run = launch(team, UserFactory())
    Run.objects.filter(pk=run.pk).update(webhook_secret_encrypted=token)
    return run


def _stored(run: Run) -> str:
    return Run.objects.values_list("webhook_secret_encrypted", flat=True).get(pk=run.pk)


# --- DEBUG and SECRET_KEY ---------------------------------------------------------------------


def test_debug_is_off_unless_asked_for():
    # given a process with SECRET_KEY and nothing else
    # when it loads the settings
    result = _settings_process(
        {"SECRET_KEY": "k" * 50},
        "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)",
    )
    # then DEBUG is off
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_production_refuses_to_start_without_secret_key():
    result = _settings_process({}, "import django; django.setup()")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_development_makes_its_keys_once_in_var(tmp_path):
    # given development mode with no keys set
    code = (
        "import django; django.setup(); from django.conf import settings;"
        "print(settings.SECRET_KEY); print(settings.FIELD_ENCRYPTION_KEYS[0])"
    )
    env = {"DEBUG": "true", "PORTAL_VAR_DIR": str(tmp_path)}
    # when two processes start
    first = _settings_process(env, code)
    second = _settings_process(env, code)
    # then both use the same keys, made once in var/, and the field key is not SECRET_KEY's
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    secret_key, field_key = first.stdout.split()
    assert (tmp_path / "dev-secret-key").read_text().strip() == secret_key
    assert (tmp_path / "dev-field-encryption-key").read_text().strip() == field_key
    assert "dev-only-not-secret" not in secret_key  # no key from the source code
    Fernet(field_key.encode())  # a valid Fernet key


def test_deploy_check_warns_without_field_encryption_keys():
    # given production settings without FIELD_ENCRYPTION_KEYS
    code = (
        "import django; django.setup(); from django.core.management import call_command;"
        "call_command('check', deploy=True, fail_level='WARNING')"
    )
    base = {
        "DEBUG": "false",
        "SECRET_KEY": "x7" * 30 + "q9Zk",
        "ALLOWED_HOSTS": "portal.example.com",
        "PORTAL_PUBLIC_URL": "https://portal.example.com",
    }
    # when check --deploy runs
    without = _settings_process(base, code)
    with_keys = _settings_process({**base, "FIELD_ENCRYPTION_KEYS": NEW_KEY}, code)
    # then it warns without the keys (the process still starts: the old derived key serves)
    assert without.returncode != 0
    assert "portal.W001" in without.stderr
    assert with_keys.returncode == 0, with_keys.stderr


def test_a_malformed_key_is_a_check_error():
    result = _settings_process(
        {"DEBUG": "false", "SECRET_KEY": "k" * 50, "FIELD_ENCRYPTION_KEYS": "not-a-key"},
        "import django; django.setup(); from django.core.management import call_command;"
        "call_command('check')",
    )
    assert result.returncode != 0
    assert "portal.E001" in result.stderr


# --- Keys of their own ------------------------------------------------------------------------


def test_secrets_are_not_encrypted_with_a_key_derived_from_secret_key(settings):
    # given field keys of their own
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    # when a secret is encrypted
    token = encrypt_secret(PLAIN)
    # then SECRET_KEY alone does not open it; the field key does
    with pytest.raises(InvalidToken):
        _legacy_fernet(settings.SECRET_KEY).decrypt(token.encode())
    assert Fernet(NEW_KEY.encode()).decrypt(token.encode()).decode() == PLAIN


def test_the_newest_key_encrypts_and_every_key_decrypts(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    old_token = encrypt_secret(PLAIN)
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    new_token = encrypt_secret(PLAIN)
    assert decrypt_secret(old_token) == PLAIN
    Fernet(NEW_KEY.encode()).decrypt(new_token.encode())  # under the newest key


@pytest.mark.django_db
def test_rotation_moves_every_secret_to_the_newest_key_and_repeats_harmlessly(settings, capsys):
    # given a run whose secret was stored under the old key
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    run = _run_with_token(encrypt_secret(PLAIN))
    empty = _run_with_token("")  # a run that never got a secret
    # when a new key goes first and the command runs, twice
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    call_command("rotate_encryption_keys")
    first = capsys.readouterr().out
    after_first = _stored(run)
    call_command("rotate_encryption_keys")
    second = capsys.readouterr().out
    # then the secret is under the new key, and the second run changed nothing
    assert "Re-encrypted 1 secret(s); 0 already" in first
    assert "Re-encrypted 0 secret(s); 1 already" in second
    assert _stored(run) == after_first
    assert _stored(empty) == ""
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]  # the old key can now be dropped
    settings.FIELD_ENCRYPTION_SECRET_KEY_FALLBACK = False
    assert decrypt_secret(_stored(run)) == PLAIN


@pytest.mark.django_db
def test_secrets_stored_under_the_old_secret_key_derived_key_still_open_and_rotate(settings):
    # given a secret stored before FIELD_ENCRYPTION_KEYS existed (key derived from SECRET_KEY)
    legacy_token = _legacy_fernet(settings.SECRET_KEY).encrypt(PLAIN.encode()).decode()
    run = _run_with_token(legacy_token)
    # when the deployment sets a key of its own
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    # then the old secret still decrypts (the derived key is a fallback) ...
    assert decrypt_secret(_stored(run)) == PLAIN
    # ... and after rotation it no longer needs SECRET_KEY at all
    call_command("rotate_encryption_keys")
    settings.FIELD_ENCRYPTION_SECRET_KEY_FALLBACK = False
    settings.SECRET_KEY = "another-secret-key-after-a-leak-" + "z" * 30
    assert decrypt_secret(_stored(run)) == PLAIN


@pytest.mark.django_db
def test_a_secret_no_key_opens_is_reported_and_left_alone(settings):
    # given a secret under a key nobody has any more
    lost = Fernet(Fernet.generate_key()).encrypt(PLAIN.encode()).decode()
    run = _run_with_token(lost)
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    # when the command runs
    with pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("rotate_encryption_keys")
    # then the row is as it was, and reading it says why
    assert _stored(run) == lost
    with pytest.raises(SecretUnreadable):
        decrypt_secret(lost)
