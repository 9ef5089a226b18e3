"""The endpoint pages (managers of the team only) and a person's notifications and email choices."""

import pytest

from portal.notifications import services
from portal.notifications.models import EmailPreference, WebhookDelivery, WebhookEndpoint
from portal.teams.models import Role
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db


def test_a_manager_adds_an_endpoint_and_sees_its_secret_once(team, make_member, client_for):
    client = client_for(make_member(team, Role.MANAGER))
    answer = client.post(
        "/teams/research/endpoints/",
        {"url": "https://hooks.example.com/x", "format": "standard", "events": ["run.failed"]},
    )
    endpoint = WebhookEndpoint.objects.get()
    assert answer["Location"] == f"/teams/research/endpoints/{endpoint.pk}/"
    first = client.get(answer["Location"]).content.decode()
    assert "whsec_" in first
    assert "whsec_" not in client.get(answer["Location"]).content.decode()


def test_a_bad_url_is_a_form_error(team, make_member, client_for, settings):
    settings.NOTIFY_ALLOW_PRIVATE_URLS = False
    client = client_for(make_member(team, Role.MANAGER))
    answer = client.post(
        "/teams/research/endpoints/",
        {"url": "http://10.0.0.1/x", "format": "standard", "events": ["run.failed"]},
    )
    assert answer.status_code == 400 and "https://" in answer.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_members_get_403_and_other_teams_404(team, make_member, client_for):
    endpoint, _ = services.endpoint_create(
        team=team, user=None, url="https://hooks.example.com/x", events=["run.failed"]
    )
    member = client_for(make_member(team, Role.MEMBER))
    assert member.get("/teams/research/endpoints/").status_code == 403
    other_manager = client_for(make_member(TeamFactory(slug="ops"), Role.MANAGER))
    assert other_manager.get("/teams/research/endpoints/").status_code == 404
    # another team's endpoint through one's own team's URL is 404 too
    assert other_manager.get(f"/teams/ops/endpoints/{endpoint.pk}/").status_code == 404
    assert other_manager.post(f"/teams/ops/endpoints/{endpoint.pk}/disable/").status_code == 404


def test_test_send_rotate_disable_and_resend(
    team, make_member, client_for, receiver, tasks_inline, django_capture_on_commit_callbacks
):
    client = client_for(make_member(team, Role.MANAGER))
    endpoint, _ = services.endpoint_create(
        team=team, user=None, url=receiver.url, events=["run.failed"]
    )
    base = f"/teams/research/endpoints/{endpoint.pk}/"
    with django_capture_on_commit_callbacks(execute=True):
        client.post(base + "test/")
    [delivery] = WebhookDelivery.objects.all()
    assert delivery.status == "delivered" and delivery.event_type == "webhook.test"
    page = client.get(base).content.decode()
    assert delivery.webhook_id in page and "HTTP 200" in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(base + f"deliveries/{delivery.pk}/resend/")
    assert [r.headers["webhook-id"] for r in receiver.received] == [delivery.webhook_id] * 2
    client.post(base + "rotate/")
    endpoint.refresh_from_db()
    assert endpoint.previous_secret_until is not None
    client.post(base + "disable/")
    endpoint.refresh_from_db()
    assert not endpoint.enabled


def test_email_choices_are_saved_from_the_account_page(team, make_member, client_for):
    person = make_member(team)
    client = client_for(person)
    assert (
        'name="email" value="run.awaiting_human" checked'
        in client.get("/account/").content.decode()
    )
    client.post("/account/email/", {"email": ["run.succeeded"]})
    chosen = dict(EmailPreference.objects.filter(user=person).values_list("event_type", "enabled"))
    assert chosen["run.succeeded"] is True and chosen["run.awaiting_human"] is False


def test_opening_a_notification_marks_it_read_and_goes_to_its_page(team, make_member, client_for):
    from portal.notifications.models import Notification

    person = make_member(team)
    mine = Notification.objects.create(
        user=person, type="run.failed", text="x", url="http://127.0.0.1:8000/runs/abc/"
    )
    theirs = Notification.objects.create(user=make_member(team), type="run.failed", text="y")
    client = client_for(person)
    answer = client.post(f"/notifications/{mine.pk}/open/")
    assert answer["Location"] == "/runs/abc/"
    mine.refresh_from_db()
    assert mine.read_at is not None
    assert client.post(f"/notifications/{theirs.pk}/open/").status_code == 404


def test_marking_read_ignores_ids_that_are_not_plain_numbers(team, make_member, client_for):
    from portal.notifications.models import Notification

    person = make_member(team)
    one, two = (
        Notification.objects.create(user=person, type="run.failed", text=t) for t in ("a", "b")
    )
    client = client_for(person)
    # when the ids posted include ones int() or the database cannot take
    answer = client.post("/notifications/", {"ids": [str(one.pk), "²", "٣", "9" * 40, "-1", "x"]})
    # then the plain one is marked read, and only it
    assert answer.status_code == 302
    one.refresh_from_db()
    two.refresh_from_db()
    assert one.read_at is not None and two.read_at is None
