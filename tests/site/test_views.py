"""The site around the teams: login, health, demo data, production settings."""

import os
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from portal.teams.models import Membership, MembershipChange, Team

pytestmark = pytest.mark.django_db


def test_login_page_and_demo_login(client):
    call_command("seed_demo")
    assert client.get(reverse("login")).status_code == 200

    response = client.post(reverse("login"), {"username": "bob", "password": "demo-pass-2026"})

    assert response.status_code == 302
    assert client.get("/", follow=True).request["PATH_INFO"] == "/teams/research/"


def test_wrong_password_is_an_inline_error(client):
    call_command("seed_demo")
    response = client.post(reverse("login"), {"username": "bob", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_seed_demo_is_idempotent_and_matches_the_contract():
    call_command("seed_demo")
    snapshot = _snapshot()
    call_command("seed_demo")
    assert _snapshot() == snapshot

    User = get_user_model()
    assert User.objects.get(username="admin").is_superuser
    roles = dict(
        Membership.objects.values_list("user__username", "role").order_by("user__username")
    )
    assert roles == {"alice": "manager", "bob": "member", "carol": "member", "victor": "viewer"}
    assert set(
        Membership.objects.filter(user__username="carol").values_list("team__slug", flat=True)
    ) == {"ops"}
    for name in ["admin", "alice", "bob", "carol", "victor"]:
        assert User.objects.get(username=name).check_password("demo-pass-2026")


def _snapshot():
    User = get_user_model()
    return (
        list(User.objects.order_by("pk").values_list("pk", "username", "password")),
        list(Team.objects.order_by("pk").values_list("pk", "slug")),
        list(Membership.objects.order_by("pk").values_list("pk", "team_id", "user_id", "role")),
        MembershipChange.objects.count(),
    )


def test_healthz_reports_database_and_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]


def test_healthz_is_503_when_the_broker_is_down(client, monkeypatch):
    from django_q import brokers

    class DeadBroker:
        def ping(self):
            raise ConnectionError("refused")

    monkeypatch.setattr(brokers, "get_broker", lambda *a, **k: DeadBroker())
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == {"ok": False, "error": "ConnectionError"}


def test_healthz_is_503_when_the_database_is_down(client, monkeypatch):
    from portal.site import views

    def broken_cursor():
        raise OSError("db down")

    with monkeypatch.context() as patched:
        patched.setattr(views.connection, "cursor", broken_cursor)
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"]["ok"] is False


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
