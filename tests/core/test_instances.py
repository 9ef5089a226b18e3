"""Instances made without Model.__init__ behave as Django's own for what the hot paths use."""

from __future__ import annotations

import pytest

from portal.core.instances import instance
from portal.teams.models import Team
from tests.factories import TeamFactory

pytestmark = pytest.mark.django_db


def test_a_loaded_instance_has_what_was_given_and_loads_the_rest_on_access():
    team = TeamFactory(name="Research")
    made = instance(Team, [("id", team.pk), ("slug", team.slug)], db="default")
    # as from_db leaves it: not adding, on its database, equal to the row's own instance
    assert (made._state.adding, made._state.db) == (False, "default")
    assert made == team
    assert made.get_deferred_fields() >= {"name"}
    assert made.name == "Research"  # a field not given is loaded on access
    made.name = "Renamed"
    made.save(update_fields=["name"])
    assert Team.objects.get(pk=team.pk).name == "Renamed"


def test_an_unsaved_instance_given_every_field_is_saved_as_new():
    # an unsaved instance must be given every field (a missing one would be loaded, and an
    # unsaved row has nothing to load from); what Team() itself would hold, with two set
    fields = {f.attname: getattr(Team(), f.attname) for f in Team._meta.concrete_fields}
    made = instance(Team, {**fields, "slug": "new-team", "name": "New team"})
    assert made._state.adding and made.pk is None
    Team.objects.bulk_create([made])
    assert Team.objects.filter(slug="new-team", name="New team").exists()
