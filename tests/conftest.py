import os

import pytest
from django.db import connection
from hypothesis import settings as hypothesis_settings

from portal.teams.models import Role
from tests.api_world import make_world
from tests.factories import BillingAdminFactory, MembershipFactory, TeamFactory, UserFactory

# Hypothesis: a failure prints a @reproduce_failure blob, so a CI failure can be replayed from its
# log; and no example database, whose saved examples would make a run depend on earlier runs on
# the same machine. Each test keeps its own max_examples. HYPOTHESIS_PROFILE=dev keeps the
# database (a local failure is tried first next time).
hypothesis_settings.register_profile("ci", print_blob=True, database=None)
hypothesis_settings.register_profile("dev", print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Team endpoints on 127.0.0.1 (local receivers), here and in the worker processes tests start.
os.environ.setdefault("NOTIFY_ALLOW_PRIVATE_URLS", "true")


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _notify_private_urls(settings):
    settings.NOTIFY_ALLOW_PRIVATE_URLS = True


@pytest.fixture(autouse=True)
def _no_upstream_unless_asked(settings):
    """Unit tests never reach a Coasty by accident (not even a simulator left running on
    :8765): port 9 refuses at once. Tests that want one start the simulator themselves."""
    from django.core.cache import cache

    settings.COASTY_BASE_URL = "http://127.0.0.1:9"
    cache.clear()


@pytest.fixture
def team(db):
    return TeamFactory(slug="research", name="Research")


@pytest.fixture
def other_team(db):
    return TeamFactory(slug="ops", name="Ops")


@pytest.fixture
def make_member(db):
    """make_member(team, role) -> a user with that role in that team."""

    def make(team, role=Role.MEMBER, username=None):
        user = UserFactory(**({"username": username} if username else {}))
        MembershipFactory(team=team, user=user, role=role)
        return user

    return make


@pytest.fixture
def client_for(client):
    """client_for(user) -> a test client logged in as that user."""
    from django.test import Client

    def make(user):
        c = Client()
        c.force_login(user)
        return c

    return make


@pytest.fixture
def requires_postgres(db):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: run with DATABASE_URL=postgres://…")


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """SQLite test databases live in a file, so a worker process can share them."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        db.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


@pytest.fixture(autouse=True)
def _ledger_invariants_hold_after_test(request):
    """After every test that uses the database, the ledger's invariants hold (check_ledger)."""
    uses_db = request.node.get_closest_marker("django_db") or (
        {"db", "transactional_db"} & set(request.fixturenames)
    )
    if not uses_db:
        yield
        return
    # Set the database up first, so it is torn down after this check.
    marker = request.node.get_closest_marker("django_db")
    transactional = (
        "transactional_db" in request.fixturenames
        or "live_server" in request.fixturenames
        or (marker is not None and marker.kwargs.get("transaction"))
    )
    request.getfixturevalue("transactional_db" if transactional else "db")
    yield
    from billing.invariants import ledger_problems

    assert ledger_problems() == [], "the ledger's invariants broke during this test"


@pytest.fixture
def billing_admin(db):
    """A user with billing.manage_wallets and no team."""
    return BillingAdminFactory(username="treasurer")


@pytest.fixture
def tasks_inline(monkeypatch):
    """django-q2 runs enqueued tasks inline (e.g. the low-balance email)."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def live_stack(live_server, settings, transactional_db):
    """The whole product running: live server, simulator, and a real django-q2 worker process."""
    from runs.simulator.testing import run_simulator
    from tests.live import Worker

    with run_simulator(speed=20, sse_rotate_seconds=60) as sim:
        settings.COASTY_BASE_URL = sim.base_url
        settings.PORTAL_PUBLIC_URL = live_server.url
        from django.core.cache import cache

        cache.clear()
        worker = Worker(
            coasty_base_url=sim.base_url,
            public_url=live_server.url,
            extra_env={"RUNS_FOLLOW_BUDGET_SECONDS": "8"},
        ).start()
        try:
            yield LiveStack(sim=sim, worker=worker, url=live_server.url)
        finally:
            worker.stop()


class LiveStack:
    def __init__(self, *, sim, worker, url):
        self.sim, self.worker, self.url = sim, worker, url


@pytest.fixture
def api_token_for(db):
    """api_token_for(user) -> a new API token of that user (the token itself, shown once)."""
    from portal.core.services import api_token_create

    def make(user, name="tests"):
        return api_token_create(user=user, name=name)[1]

    return make


@pytest.fixture
def api_client_for(api_token_for):
    """api_client_for(user) -> a DRF test client sending a bearer token of that user;
    api_client_for(None) sends none, api_client_for(token="...") sends that one."""
    from django.core.cache import cache
    from rest_framework.test import APIClient

    cache.clear()  # throttle counts are kept in the cache; start each test from zero

    def make(user=None, *, token=None):
        client = APIClient()
        token = token or (api_token_for(user) if user is not None else None)
        if token:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    return make


# The API tests' organisation (tests/api_world.py), and a client for its research team's member.
@pytest.fixture
def world():
    return make_world()


@pytest.fixture
def bob(world, api_client_for):
    """A client for the research team's member."""
    return api_client_for(world.member)
