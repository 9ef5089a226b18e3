"""The site around the teams: login and health."""

import pytest
from django.core.management import call_command
from django.urls import reverse

from tests.factories import UserFactory

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


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True))
    return client


def test_healthz_reports_database_and_broker_to_staff(staff_client):
    response = staff_client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]


def test_healthz_tells_anonymous_callers_the_status_only(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_healthz_is_503_when_the_broker_is_down(staff_client, monkeypatch):
    from django_q import brokers

    class DeadBroker:
        def ping(self):
            raise ConnectionError("refused")

    monkeypatch.setattr(brokers, "get_broker", lambda *a, **k: DeadBroker())
    response = staff_client.get("/healthz")
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
    assert response.json() == {"status": "unavailable"}  # anonymous: no details
