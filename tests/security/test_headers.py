"""Headers (issue 13, case 8): a Content-Security-Policy that allows no inline script, and pages
that need none; Referrer-Policy and Permissions-Policy; a /healthz that tells strangers only
whether the portal is up."""

import re

import pytest
from django.urls import reverse

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

# An executable inline script: a <script> without src (a JSON data block is not executed).
INLINE_SCRIPT = re.compile(
    r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/(?:json|ld\+json)\")[^>]*>", re.I
)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
JAVASCRIPT_URL = re.compile(r"""(?:href|src|action)\s*=\s*["']?\s*javascript:""", re.I)


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    parsed = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            parsed[words[0]] = words[1:]
    return parsed


def pages_of(world) -> list[str]:
    run = world.run.pk
    return [
        "/teams/",
        "/teams/research/",
        "/teams/research/runs/",
        "/teams/research/runs/new/",
        f"/runs/{run}/",
        f"/runs/{run}/live/",
        "/teams/research/wallet/",
        "/teams/research/members/",
        "/account/",
        "/teams/no-such-team/",  # the 404 page
    ]


def assert_no_inline_code(url: str, html: str) -> None:
    assert not INLINE_SCRIPT.search(html), f"inline <script> on {url}"
    assert not INLINE_HANDLER.search(html), f"inline event handler on {url}"
    assert not JAVASCRIPT_URL.search(html), f"javascript: URL on {url}"


def test_every_page_has_a_csp_without_inline_script_and_needs_none(world, client_for):
    client = client_for(world.manager)
    for url in pages_of(world):
        # when a page is loaded
        response = client.get(url)
        assert response.status_code in (200, 404), url
        # then its policy runs only our own scripts: no inline code, no eval
        policy = directives(response)
        assert policy["script-src"] == ["'self'"], url
        assert "'unsafe-inline'" not in policy.get("default-src", []), url
        assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
        # and the page itself has no inline script, handler or javascript: URL to be blocked
        assert_no_inline_code(url, response.content.decode())


def test_the_403_page_has_no_javascript_url(world, client_for):
    # a viewer may not launch: the 403 page's "Go back" used to be javascript:history.back()
    response = client_for(world.viewer).post(
        reverse("run_launch", args=["research"]), {"machine_id": "vm", "task": "t"}
    )
    assert response.status_code == 403
    assert_no_inline_code("403", response.content.decode())


def test_the_login_page_the_admin_and_the_api_docs_need_no_inline_script(client):
    assert_no_inline_code("login", client.get(reverse("login")).content.decode())
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    for url in ("/admin/", "/admin/runs/run/", "/admin/runs/webhookrefusalcount/", "/api/docs/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert directives(response)["script-src"] == ["'self'"]
        assert_no_inline_code(url, response.content.decode())
    # Swagger UI's set-up script is a URL of its own
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and "javascript" in script["Content-Type"]


def test_referrer_and_permissions_policies_are_set(client):
    response = client.get(reverse("login"))
    assert response["Referrer-Policy"] == "same-origin"
    permissions = response["Permissions-Policy"]
    for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=()"):
        assert feature in permissions


def test_the_api_answers_carry_the_headers_too(api_client_for):
    response = api_client_for(None).get("/api/v1/teams/")
    assert response.status_code == 401
    assert "Content-Security-Policy" in response and "Permissions-Policy" in response


def test_healthz_tells_an_anonymous_caller_only_the_status(client):
    # when a stranger probes /healthz
    response = client.get("/healthz")
    # then it learns that the portal is up, and nothing of what it runs on
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    for secret in (b"sqlite", b"postgresql", b"orm", b"redis", b"queued", b"vendor"):
        assert secret not in response.content


def test_healthz_tells_a_bad_token_only_the_status(client):
    response = client.get("/healthz", headers={"Authorization": "Bearer cp_nonsense"})
    assert response.json() == {"status": "ok"}


def test_healthz_gives_details_to_staff_and_to_api_tokens(client, api_token_for):
    # given a staff member signed in, and a person with an API token
    staff = UserFactory(is_staff=True)
    person = UserFactory()
    token = api_token_for(person)
    # then both see the checks
    client.force_login(staff)
    assert "vendor" in client.get("/healthz").json()["checks"]["database"]
    client.logout()
    with_token = client.get("/healthz", headers={"Authorization": f"Bearer {token}"}).json()
    assert with_token["checks"]["broker"]["ok"] is True
    # while a signed-in person who is not staff, without a token, does not
    client.force_login(person)
    assert client.get("/healthz").json() == {"status": "ok"}
