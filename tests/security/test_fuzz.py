"""The fuzz pass (issue 13): schemathesis over every operation of /api/schema/, and Hypothesis
over the pages' query parameters. Neither may find a 5xx.

Example counts are kept small so the file runs in well under a minute; raise FUZZ_EXAMPLES
(environment) for a longer hunt. Each test prints what it sent and how many answered 5xx.
"""

import itertools
import os
from collections import Counter

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.core.models import TokenScope
from portal.core.services import api_token_create
from portal.teams.models import Role
from tests.factories import BillingAdminFactory, MembershipFactory

# About 40 s with the default counts (mostly schemathesis's own phases per operation): slow.
pytestmark = [pytest.mark.django_db, pytest.mark.slow]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no example database written into the work tree
    suppress_health_check=list(HealthCheck),
)

API_STATUSES: Counter = Counter()
TURNS = itertools.count()


@pytest.fixture
def connection_kept():
    """The fuzzer calls the WSGI application itself, whose request signals close the database
    connection, and with it the test's transaction: keep it open, as Django's test client does."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_world(world, settings, connection_kept):
    """The API world, and tokens of a manager of `research` who is also a billing admin, so
    that every endpoint (top-ups too) is reached past its permission checks: one with every
    scope and one per single scope, taken in turn, so each scope's refusals are fuzzed too.
    Throttles are lifted: the fuzzer sends far more than 60 writes a minute."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api_read": "100000/min", "api_write": "100000/min"},
    }
    person = BillingAdminFactory(username="fuzzer")
    MembershipFactory(team=world.team, user=person, role=Role.MANAGER)
    world.fuzz_tokens = [api_token_create(user=person, name="fuzz: all")[1]] + [
        api_token_create(user=person, name=f"fuzz: {scope}", scopes=[scope])[1]
        for scope in TokenScope.values
    ]
    world.fuzz_user = person
    return world


# Loaded when the module is collected (pytest-django has set Django up by then); generating the
# schema reads no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@schema.parametrize()
@FUZZ_SETTINGS
def test_no_api_operation_answers_5xx(case, fuzz_world):
    # given generated path, query, headers and body for one operation; half of the time aimed
    # at the caller's own team and run, so the fuzzer gets past the 404s
    params = case.path_parameters or {}
    turn = next(TURNS)
    aim = turn % 2 == 0
    token = fuzz_world.fuzz_tokens[turn % len(fuzz_world.fuzz_tokens)]
    if "slug" in params and aim:
        params["slug"] = fuzz_world.team.slug
    if "run_id" in params and aim:
        params["run_id"] = str(fuzz_world.run.pk)
    # when it is sent with one of the tokens (every scope, or a single one)
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    API_STATUSES[response.status_code] += 1
    # then it is answered, never with a server error, and errors use the envelope
    assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])
    if response.status_code >= 400 and response.headers.get("Content-Type", "").startswith(
        "application/json"
    ):
        assert "error" in response.json(), response.text[:300]


def test_zz_report_the_api_fuzz_counts():
    """Prints the schemathesis pass's figures (runs after it: pytest keeps file order)."""
    sent = sum(API_STATUSES.values())
    errors = sum(n for status, n in API_STATUSES.items() if status >= 500)
    print(f"API fuzz: {sent} requests, {errors} answered 5xx; by status {dict(API_STATUSES)}")
    assert errors == 0


# --- Pages ------------------------------------------------------------------------------------

PAGE_PARAMS = (
    "before",
    "after",
    "status",
    "creator",
    "since",
    "until",
    "q",
    "kind",
    "date_from",
    "date_to",
    "run",
    "team",
    "from",
    "cursor",
    "page",
)

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.integers(min_value=4290, max_value=6000).map(lambda n: "9" * n),  # past int()'s limit
    st.sampled_from(["", "0", "-1", "1e309", "NaN", "٣", "²", "0x10", " 7 ", "1_000"]),
)
values = st.one_of(
    numbers,
    st.text(max_size=40),
    st.sampled_from(["2026-02-30", "9999-12-31", "0001-01-01", "live", "succeeded"]),
)
queries = st.dictionaries(st.sampled_from(PAGE_PARAMS), values, max_size=4)


def page_urls(world) -> list[str]:
    run = world.run.pk
    return [
        "/teams/",
        "/teams/research/",
        "/teams/research/runs/",
        "/teams/research/runs/new/",
        f"/runs/{run}/",
        f"/runs/{run}/live/",
        "/teams/research/wallet/",
        "/teams/research/wallet/ledger.csv",
        "/teams/research/members/",
        "/account/",
        "/billing/",
        "/billing/teams/research/",
        "/billing/discrepancies/",
    ]


def test_no_page_answers_5xx_to_any_query(fuzz_world, client):
    # given a manager of research who is also a billing admin, signed in
    client.force_login(fuzz_world.fuzz_user)
    statuses: Counter = Counter()

    @FUZZ_SETTINGS
    @given(query=queries)
    def probe(query):
        for url in page_urls(fuzz_world):
            # when a page is asked for with generated query parameters
            response = client.get(url, query)
            statuses[response.status_code] += 1
            # then it answers, with the page, a clear 400 or a redirect: never a 5xx
            assert response.status_code < 500, (url, query)

    probe()
    sent = sum(statuses.values())
    print(f"page fuzz: {sent} requests, 0 answered 5xx; by status {dict(statuses)}")
