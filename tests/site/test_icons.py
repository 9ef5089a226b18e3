"""Icons are SVG drawn in the text's colour, never emoji (which show as empty boxes where no
emoji font is installed)."""

import re

import pytest
from django.urls import reverse

from portal.core.templatetags.portal_tags import ICONS, icon

pytestmark = pytest.mark.django_db

EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")


@pytest.mark.parametrize("name", list(ICONS))
def test_each_icon_is_inline_svg_hidden_from_screen_readers(name):
    svg = icon(name)

    assert svg.startswith("<svg") and 'aria-hidden="true"' in svg and "<script" not in svg


def test_empty_pages_show_svg_not_emoji(team, make_member, client_for):
    bob = make_member(team, "member", username="bob")
    client = client_for(bob)

    for url in (
        reverse("run_list", args=[team.slug]),
        reverse("team_dashboard", args=[team.slug]),
        reverse("wallet", args=[team.slug]),
        "/no-such-page/",
    ):
        html = client.get(url).content.decode()
        assert not EMOJI.search(html), url
        assert '<svg class="icon"' in html, url
