"""The notifications API: managers manage their team's endpoints; nobody else's exist for them;
people read their own notifications."""

import pytest

from portal.notifications import services
from portal.notifications.models import EventType, Notification, WebhookEndpoint
from portal.teams.models import Role
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db

BODY = {
    "url": "https://hooks.example.com/in",
    "events": ["run.awaiting_human"],
    "description": "ops",
}


def test_a_manager_creates_lists_tests_and_deletes_an_endpoint(team, make_member, api_client_for):
    api = api_client_for(make_member(team, Role.MANAGER))
    created = api.post("/api/v1/teams/research/webhook-endpoints/", BODY, format="json")
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "url", "events", "format", "description", "enabled", "secret"}
    assert body["secret"].startswith("whsec_") and body["format"] == "standard"
    listed = api.get("/api/v1/teams/research/webhook-endpoints/").json()
    assert [e["id"] for e in listed["results"]] == [body["id"]]
    assert "secret" not in listed["results"][0] and listed["next"] is None
    tested = api.post(f"/api/v1/webhook-endpoints/{body['id']}/test/")
    assert tested.status_code == 202 and tested.json()["status"] == "pending"
    deliveries = api.get(f"/api/v1/webhook-endpoints/{body['id']}/deliveries/").json()
    [delivery] = deliveries["results"]
    assert set(delivery) == {
        "id",
        "event_type",
        "webhook_id",
        "attempts",
        "status",
        "last_status_code",
        "created_at",
        "delivered_at",
    }
    assert api.delete(f"/api/v1/webhook-endpoints/{body['id']}/").status_code == 204
    assert not WebhookEndpoint.objects.exists()


def test_bad_input_is_the_error_envelope(team, make_member, api_client_for, settings):
    settings.NOTIFY_ALLOW_PRIVATE_URLS = False
    api = api_client_for(make_member(team, Role.MANAGER))
    for body in (
        {**BODY, "events": ["run.exploded"]},
        {**BODY, "events": []},
        {**BODY, "url": "http://169.254.169.254/"},
        {**BODY, "format": "carrier-pigeon"},
    ):
        answer = api.post("/api/v1/teams/research/webhook-endpoints/", body, format="json")
        assert answer.status_code == 400, body
        assert answer.json()["error"]["code"] == "VALIDATION_ERROR"


def test_members_get_403_and_other_teams_endpoints_are_404(team, make_member, api_client_for):
    endpoint, _ = services.endpoint_create(
        team=team, user=None, url="https://hooks.example.com/x", events=["run.failed"]
    )
    member = api_client_for(make_member(team, Role.MEMBER))
    answer = member.post("/api/v1/teams/research/webhook-endpoints/", BODY, format="json")
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "PERMISSION_DENIED"
    assert member.delete(f"/api/v1/webhook-endpoints/{endpoint.pk}/").status_code == 403
    outsider = api_client_for(make_member(TeamFactory(slug="ops"), Role.MANAGER))
    for answer in (
        outsider.get("/api/v1/teams/research/webhook-endpoints/"),
        outsider.delete(f"/api/v1/webhook-endpoints/{endpoint.pk}/"),
        outsider.post(f"/api/v1/webhook-endpoints/{endpoint.pk}/test/"),
        outsider.get(f"/api/v1/webhook-endpoints/{endpoint.pk}/deliveries/"),
    ):
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "NOT_FOUND"
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


def test_my_notifications_page_by_cursor(team, make_member, api_client_for):
    person = make_member(team)
    other = make_member(team)
    for n in range(3):
        Notification.objects.create(user=person, type=EventType.RUN_FAILED, text=f"n{n}", url="u")
    Notification.objects.create(user=other, type=EventType.RUN_FAILED, text="not mine", url="u")
    api = api_client_for(person)
    first = api.get("/api/v1/notifications/?limit=2").json()
    assert [r["text"] for r in first["results"]] == ["n2", "n1"]
    assert set(first["results"][0]) == {"id", "type", "text", "url", "created_at", "read"}
    second = api.get(first["next"]).json()
    assert [r["text"] for r in second["results"]] == ["n0"] and second["next"] is None


def test_the_schema_describes_the_endpoints(client):
    schema = client.get("/api/schema/?format=json").json()
    for path in (
        "/api/v1/teams/{slug}/webhook-endpoints/",
        "/api/v1/webhook-endpoints/{endpoint_id}/",
        "/api/v1/webhook-endpoints/{endpoint_id}/test/",
        "/api/v1/webhook-endpoints/{endpoint_id}/deliveries/",
        "/api/v1/notifications/",
    ):
        assert path in schema["paths"], path
