"""Production settings: refused without a secret key, clean under check --deploy."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.django_db


def _run_settings(env_overrides, code="import django; django.setup(); print('ok')"):
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "DATABASE_URL")}
    env.update({"DJANGO_SETTINGS_MODULE": "portal.settings", **env_overrides})
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


def test_production_refuses_to_start_without_secret_key():
    result = _run_settings({"DEBUG": "false"})
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_settings_pass_check_deploy():
    result = _run_settings(
        {
            "DEBUG": "false",
            "SECRET_KEY": "x7" * 30 + "q9Zk",
            "ALLOWED_HOSTS": "portal.example.com",
            "PORTAL_PUBLIC_URL": "https://portal.example.com",
        },
        code=(
            "import django, sys; django.setup(); from django.core.management import call_command;"
            "call_command('check', deploy=True, fail_level='WARNING')"
        ),
    )
    assert result.returncode == 0, result.stderr


def _manage(*args):
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "DATABASE_URL")}
    env["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    return subprocess.run(
        [sys.executable, "manage.py", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_commands_that_only_read_the_code_run_without_a_key():
    # a fresh checkout: no SECRET_KEY, DEBUG off
    assert _manage("check").returncode == 0
    assert _manage("makemigrations", "--check", "--dry-run").returncode == 0


@pytest.mark.parametrize("args", [("check", "--deploy"), ("migrate", "--plan")])
def test_commands_that_serve_or_judge_production_still_need_the_key(args):
    result = _manage(*args)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize(
    ("value", "expected"), [("", None), ("off", None), ("5", 5), ("0", 0), (None, 5)]
)
def test_the_prepare_threshold_is_a_number_or_off(value, expected):
    overrides = {"DEBUG": "true", "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused"}
    if value is not None:
        overrides["DATABASE_PREPARE_THRESHOLD"] = value
    code = (
        "from django.conf import settings;"
        "print(repr(settings.DATABASES['default']['OPTIONS']['prepare_threshold']))"
    )
    result = _run_settings(overrides, code=code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(expected)


def test_a_prepare_threshold_that_is_not_a_number_is_refused_clearly():
    result = _run_settings(
        {
            "DEBUG": "true",
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused",
            "DATABASE_PREPARE_THRESHOLD": "often",
        },
        code="from django.conf import settings; settings.DATABASES",
    )
    assert result.returncode != 0
    assert "DATABASE_PREPARE_THRESHOLD must be a whole number or 'off'" in result.stderr
