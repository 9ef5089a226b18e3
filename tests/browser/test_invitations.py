"""Invitations by email in a browser (issue 18): a manager invites an address, the link from the
email makes an account and lands on the team's dashboard; a revoked link stops working.

The live server runs in the tests' process, with Django's in-memory mail backend: the email is
read from `django.core.mail.outbox`, as a person would read it from their mailbox."""

import re
from urllib.parse import urlsplit

from django.core import mail
from playwright.sync_api import expect

from portal.teams.models import Invitation, Membership
from tests.browser.pages import accessibility_problems

PASSWORD = "a-long-pass-2026"


def invite(page, email: str, role: str = "member"):
    page.goto("/teams/research/members/")
    invite_card = page.locator("section", has=page.get_by_role("heading", name="Invite by email"))
    invite_card.get_by_label("Email address").fill(email)
    invite_card.get_by_label("Role").select_option(role)
    invite_card.get_by_role("button", name="Send the invitation").click()
    expect(page.locator("#messages")).to_contain_text(f"Invited {email}")


def link_path_in_last_email() -> str:
    body = mail.outbox[-1].body
    found = re.search(r"https?://\S+/invitations/\S+/", body)
    assert found, body
    return urlsplit(found.group(0)).path


def test_an_invited_person_sets_a_password_and_lands_on_the_dashboard(demo, open_page):
    # given alice, manager of research, inviting dana as a member
    mail.outbox.clear()
    alice = open_page("alice")
    invite(alice, "dana@example.com")
    pending = alice.locator(
        "section", has=alice.get_by_role("heading", name=re.compile("Pending invitations"))
    )
    expect(pending.get_by_role("row", name=re.compile("dana@example.com"))).to_contain_text(
        "invited by alice"
    )
    path = link_path_in_last_email()

    # when dana opens the link from her email (on a phone), and chooses a name and password
    dana = open_page(viewport={"width": 390, "height": 844})
    dana.goto(path)
    expect(dana.get_by_role("heading", name="Join Research")).to_be_visible()
    dana.get_by_label("Your name").fill("Dana Scully")
    dana.get_by_label("Username").fill("dana")
    dana.get_by_label("Password", exact=True).fill(PASSWORD)
    dana.get_by_label("Password confirmation").fill(PASSWORD)
    dana.get_by_role("button", name="Create my account and join").click()

    # then she is logged in on the team's dashboard, as a member
    expect(dana).to_have_url(re.compile(r"/teams/research/$"))
    expect(dana.locator("#messages")).to_contain_text("Welcome to Research")
    expect(dana.locator(".user-menu")).to_contain_text("dana")
    assert Membership.objects.get(team__slug="research", user__username="dana").role == "member"
    no_overflow = dana.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert no_overflow, "the dashboard scrolls sideways on a phone"

    # and the link does not work a second time
    dana.goto(path)
    expect(dana.get_by_role("heading", name="This invitation was already used")).to_be_visible()
    # and alice's members page lists dana, no longer as pending
    alice.reload()
    expect(alice.get_by_role("heading", name="Pending invitations (0)")).to_be_visible()
    expect(alice.get_by_role("cell", name=re.compile(r"^dana"))).to_be_visible()


def test_a_revoked_invitation_link_says_so(demo, open_page):
    # given a pending invitation
    mail.outbox.clear()
    alice = open_page("alice")
    invite(alice, "erin@example.com", role="viewer")
    path = link_path_in_last_email()

    # when alice revokes it (confirming the question)
    alice.once("dialog", lambda dialog: dialog.accept())
    alice.get_by_role("button", name="Revoke the invitation of erin@example.com").click()
    expect(alice.locator("#messages")).to_contain_text("Revoked the invitation of erin@example.com")
    assert Invitation.objects.get(email="erin@example.com").status == "revoked"

    # then the link answers that it was withdrawn, and makes no account
    erin = open_page()
    erin.goto(path)
    expect(erin.get_by_role("heading", name="This invitation was withdrawn")).to_be_visible()
    expect(erin.get_by_label("Password", exact=True)).to_have_count(0)


def test_the_invitation_pages_pass_the_accessibility_audit(demo, open_page):
    # given a pending invitation, with the members page listing it
    mail.outbox.clear()
    alice = open_page("alice")
    invite(alice, "gail@example.com")
    path = link_path_in_last_email()
    problems = {"members page": accessibility_problems(alice)}
    # the invite form refused (an existing member's address): errors tied to their field
    invite_card = alice.locator("section", has=alice.get_by_role("heading", name="Invite by email"))
    invite_card.get_by_label("Email address").fill("bob@example.com")
    invite_card.get_by_role("button", name="Send the invitation").click()
    expect(invite_card.get_by_label("Email address")).to_have_attribute("aria-invalid", "true")
    problems["members page, invite refused"] = accessibility_problems(alice)

    # the link's pages: sign-up, sign-up refused, and used
    gail = open_page()
    gail.goto(path)
    problems["sign-up"] = accessibility_problems(gail)
    gail.get_by_label("Username").fill("gail")
    gail.get_by_label("Password", exact=True).fill("short")
    gail.get_by_label("Password confirmation").fill("short")
    gail.get_by_role("button", name="Create my account and join").click()
    expect(gail.get_by_role("alert")).to_be_visible()
    problems["sign-up refused"] = accessibility_problems(gail)
    gail.get_by_label("Password", exact=True).fill(PASSWORD)
    gail.get_by_label("Password confirmation").fill(PASSWORD)
    gail.get_by_role("button", name="Create my account and join").click()
    expect(gail).to_have_url(re.compile(r"/teams/research/$"))
    gail.goto(path)
    problems["used"] = accessibility_problems(gail)
    for where, page in (("members page", alice), ("used", gail)):
        page.set_viewport_size({"width": 320, "height": 640})
        width = page.evaluate("document.scrollingElement.scrollWidth")
        if width > 320:
            problems[where].append(f"the page scrolls sideways at 320 px ({width} px wide)")

    assert {where: found for where, found in problems.items() if found} == {}
