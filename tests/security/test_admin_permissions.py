"""The admin as a staff user with too few permissions sees it: every page and every action of
every ModelAdmin needs its model permission, and django-q2's admins are for superusers only."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.test import Client, RequestFactory
from django.urls import reverse
from django_q.models import Failure, OrmQ, Schedule, Success

from portal.core.admin import SuperusersOnly
from portal.core.models import ApiToken
from portal.core.services import api_token_create
from tests.api_world import make_world
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    world = make_world()
    api_token_create(user=world.member, name="script")
    Schedule.objects.create(name="sneaky", func="os.system", args="'true'")
    Client(REMOTE_ADDR="198.51.100.5").post(
        "/accounts/login/", {"username": world.member.username, "password": "wrong"}
    )  # an axes attempt and failure row
    return world


def _staff(*permissions: str):
    user = UserFactory(username=f"staff-{len(permissions)}-{'-'.join(permissions)}"[:150])
    user.is_staff = True
    user.save()
    for codename in permissions:
        app_label, code = codename.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=code)
        )
    client = Client()
    client.force_login(user)
    return user, client


def _urls(model):
    meta = model._meta
    name = f"admin:{meta.app_label}_{meta.model_name}"
    urls = {"changelist": reverse(f"{name}_changelist"), "add": reverse(f"{name}_add")}
    first = model._default_manager.order_by("pk").first()
    if first is not None:
        for view in ("change", "delete", "history"):
            urls[view] = reverse(f"{name}_{view}", args=[first.pk])
    return urls, first


@pytest.mark.parametrize("model", list(admin.site._registry), ids=lambda m: m._meta.label)
def test_a_staff_user_without_the_models_permissions_gets_403_everywhere(world, model):
    # given staff with no permission at all
    _user, client = _staff()
    urls, first = _urls(model)
    # when they open each of the model's admin pages, and post each of its actions
    answers = {view: client.get(url).status_code for view, url in urls.items()}
    model_admin = admin.site._registry[model]
    for action in model_admin.actions or []:
        name = action if isinstance(action, str) else action.__name__
        answers[f"action {name}"] = client.post(
            urls["changelist"],
            {"action": name, admin.helpers.ACTION_CHECKBOX_NAME: [first.pk if first else 1]},
        ).status_code
    # then every answer is 403
    assert set(answers.values()) == {403}, answers


@pytest.mark.parametrize(
    "model",
    [m for m, ma in admin.site._registry.items() if not isinstance(ma, SuperusersOnly)],
    ids=lambda m: m._meta.label,
)
def test_view_permission_alone_offers_no_action(world, model):
    # given staff who may only view this model
    meta = model._meta
    user, _client = _staff(f"{meta.app_label}.view_{meta.model_name}")
    request = RequestFactory().get("/admin/")
    request.user = user
    # then the list offers no action (each one changes something and names its permission)
    assert list(admin.site._registry[model].get_actions(request)) == []


def test_viewing_tokens_does_not_allow_revoking_them(world):
    # given staff who may view tokens, and someone's live token
    token = ApiToken.objects.get(user=world.member)
    _user, client = _staff("core.view_apitoken")
    url = reverse("admin:core_apitoken_changelist")
    # when they list tokens and post the revoke action
    listing = client.get(url)
    client.post(url, {"action": "revoke", admin.helpers.ACTION_CHECKBOX_NAME: [token.pk]})
    # then they see the list, and the token is still live; nor can they open it to edit
    assert listing.status_code == 200
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None
    change = client.post(reverse("admin:core_apitoken_change", args=[token.pk]), {"name": "x"})
    assert change.status_code == 403


def test_the_change_permission_revokes_tokens(world):
    token = ApiToken.objects.get(user=world.member)
    _user, client = _staff("core.view_apitoken", "core.change_apitoken")
    url = reverse("admin:core_apitoken_changelist")
    client.post(url, {"action": "revoke", admin.helpers.ACTION_CHECKBOX_NAME: [token.pk]})
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None


@pytest.mark.parametrize("model", [Schedule, Success, Failure, OrmQ], ids=lambda m: m.__name__)
def test_django_q_admins_are_for_superusers_only(world, model):
    # given staff with every permission django-q2 has, and a superuser
    codenames = Permission.objects.filter(content_type__app_label="django_q").values_list(
        "codename", flat=True
    )
    _user, staff = _staff(*[f"django_q.{code}" for code in codenames])
    root = Client()
    root.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    urls, _first = _urls(model)
    # then the staff user is refused every page, the superuser is not
    assert {staff.get(url).status_code for url in urls.values()} == {403}
    assert root.get(urls["changelist"]).status_code == 200
    if model is Schedule:
        created = staff.post(urls["add"], {"name": "x", "func": "os.system", "schedule_type": "O"})
        assert created.status_code == 403
        assert not Schedule.objects.filter(name="x").exists()
