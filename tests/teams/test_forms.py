"""The team form: a team may not take as its address a word the portal's own URLs use."""

import pytest

pytestmark = pytest.mark.django_db


def _routes(patterns, prefix=""):
    """Every route in the URLconf, as its full path pattern ("teams/<slug:slug>/", …)."""
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if hasattr(pattern, "url_patterns"):
            yield from _routes(pattern.url_patterns, route)
        else:
            yield route


def test_every_literal_address_under_teams_is_reserved():
    from django.urls import get_resolver

    from portal.teams.forms import RESERVED_TEAM_SLUGS

    # given the pages whose address is a fixed word right under /teams/ (like /teams/new/)
    literals = {
        route.split("/")[1]
        for route in _routes(get_resolver().url_patterns)
        if route.startswith("teams/") and route.count("/") == 2 and "<" not in route
    }

    # then a team may not take any of those words as its address
    assert literals  # at least /teams/new/
    assert literals <= RESERVED_TEAM_SLUGS
