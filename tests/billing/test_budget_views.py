"""The budget on the wallet page, dashboard and billing overview, and the spend-controls page."""

import pytest
from django.urls import reverse

from billing.models import Budget, MemberLimit
from billing.services import budget_set
from tests.factories import BillingAdminFactory, place_hold, top_up

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(team, make_member):
    top_up(team, 5000)
    budget_set(
        team=team,
        monthly_limit_cents=1000,
        approval_above_cents=None,
        alert_percents=[80],
        caused_by="command:tests",
    )
    place_hold(team, 250)
    return {
        "bob": make_member(team, "member", username="bob"),
        "alice": make_member(team, "manager", username="alice"),
    }


@pytest.mark.parametrize("page", ["wallet", "team_dashboard", "budget"])
def test_pages_show_the_months_budget_use_with_a_bar(team, people, client_for, page):
    body = client_for(people["bob"]).get(reverse(page, args=[team.slug])).content.decode()
    assert "$2.50 used of $10.00" in body and "$7.50 left" in body
    assert 'aria-label="Budget used this month"' in body
    assert "projected month-end" in body


def test_the_billing_overview_shows_every_teams_budget(team, other_team, people, client_for):
    body = client_for(BillingAdminFactory()).get(reverse("billing_overview")).content.decode()
    assert "$2.50 of $10.00" in body
    assert "no budget" in body  # the other team


def test_a_manager_sets_the_budget_in_dollars(team, people, client_for):
    response = client_for(people["alice"]).post(
        reverse("budget", args=[team.slug]),
        {
            "form": "budget",
            "monthly_limit": "300.00",
            "approval_above": "10",
            "alert_percents": "50, 80%, 100",
        },
    )
    assert response.status_code == 302
    budget = Budget.objects.get(team=team)
    assert (budget.monthly_limit_cents, budget.approval_above_cents) == (30000, 1000)
    assert budget.alert_percents == [50, 80, 100]


@pytest.mark.parametrize("bad", ["150", "0", "²", "50, ٣", "9" * 50])
def test_bad_alert_percents_are_a_form_error(team, people, client_for, bad):
    response = client_for(people["alice"]).post(
        reverse("budget", args=[team.slug]),
        {"form": "budget", "monthly_limit": "3", "alert_percents": bad},
    )
    assert response.status_code == 400
    assert "from 1 to 100" in response.content.decode()


def test_a_member_cannot_set_budgets_or_limits(team, people, client_for):
    client = client_for(people["bob"])
    url = reverse("budget", args=[team.slug])
    assert client.post(url, {"form": "budget", "monthly_limit": "1"}).status_code == 403
    response = client.post(url, {"form": "limit", "username": "bob", "monthly_limit": "1"})
    assert response.status_code == 403
    assert Budget.objects.get(team=team).monthly_limit_cents == 1000
    assert not MemberLimit.objects.exists()


def test_a_manager_sets_and_removes_a_members_limit(team, people, client_for):
    client = client_for(people["alice"])
    url = reverse("budget", args=[team.slug])
    client.post(url, {"form": "limit", "username": "bob", "monthly_limit": "20.50"})
    assert MemberLimit.objects.get(user=people["bob"]).monthly_limit_cents == 2050
    assert 'value="20.50"' in client.get(url).content.decode()
    client.post(url, {"form": "limit", "username": "bob", "monthly_limit": ""})
    assert not MemberLimit.objects.exists()
