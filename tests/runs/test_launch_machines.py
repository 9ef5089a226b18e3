"""The launch form knows Coasty's machines: an id that is not one of them is refused at once,
naming the ones there are; when the list cannot be fetched, an id is taken as typed."""

import uuid

import pytest
from django.core.cache import cache
from django.urls import reverse

from runs.models import Run
from runs.selectors import MACHINES_CACHE_KEY
from tests.factories import top_up

pytestmark = pytest.mark.django_db

MACHINES = [
    {"id": "vm-linux-1", "name": "Linux desktop", "status": "ready"},
    {"id": "vm-win-2", "name": "Windows desktop", "status": "ready"},
]


def _form(machine_id):
    return {
        "launch_token": str(uuid.uuid4()),
        "machine_id": machine_id,
        "task": "Export the leads",
        "cua_version": "v5",
        "max_steps": "5",
        "on_awaiting_human": "pause",
    }


@pytest.fixture
def bob(team, make_member):
    top_up(team, 5000)
    return make_member(team, "member", username="bob")


def test_an_unknown_machine_is_refused_with_the_list(team, bob, client_for):
    cache.set(MACHINES_CACHE_KEY, MACHINES, 60)

    response = client_for(bob).post(reverse("run_launch", args=[team.slug]), _form("vm-typo"))

    assert response.status_code == 400
    body = response.content.decode()
    assert "Coasty has no machine “vm-typo”" in body
    assert "vm-linux-1, vm-win-2" in body
    assert Run.objects.count() == 0


def test_a_listed_machine_launches(team, bob, client_for):
    cache.set(MACHINES_CACHE_KEY, MACHINES, 60)

    response = client_for(bob).post(reverse("run_launch", args=[team.slug]), _form("vm-win-2"))

    assert response.status_code == 302
    assert Run.objects.get().machine_id == "vm-win-2"


def test_without_the_list_any_machine_id_is_taken(team, bob, client_for):
    # given Coasty's list cannot be fetched (the tests' Coasty refuses connections)
    response = client_for(bob).post(reverse("run_launch", args=[team.slug]), _form("vm-typed"))

    assert response.status_code == 302
    assert Run.objects.get().machine_id == "vm-typed"
