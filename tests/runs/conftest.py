"""Fixtures of the runs tests that drive the services: a fake Coasty and a funded team."""

import pytest

from runs import upstream
from tests.factories import top_up as fund_team
from tests.runs.support import FakeCoasty


@pytest.fixture
def coasty(monkeypatch):
    fake = FakeCoasty()
    monkeypatch.setattr(upstream, "coasty", lambda: fake)
    return fake


@pytest.fixture
def funded_team(team):
    fund_team(team, 5000)
    return team
