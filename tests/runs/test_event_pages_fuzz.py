"""Pages are never broken by upstream data (issue 12, case 5): whatever JSON an event of any
type holds, the run page and its live fragment answer 200 and show a non-blank row for it."""

import re

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs.models import Run, RunEvent, RunStatus
from runs.presenters import KNOWN_TYPES
from runs.services import LaunchRequest, run_launch
from runs.services.upstream_data import as_dict
from tests.factories import top_up

pytestmark = pytest.mark.django_db

text = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=30
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=15,
)
field_names = (
    st.sampled_from(
        [
            "step",
            "steps_completed",
            "tool",
            "name",
            "args",
            "input",
            "action_type",
            "params",
            "ok",
            "success",
            "result",
            "output",
            "status",
            "text",
            "message",
            "code",
            "details",
            "reason",
            "note",
            "credits_charged",
            "total_credits_charged",
            "_portal",
        ]
    )
    | text
)
event_data = st.dictionaries(field_names, json_values, max_size=6) | json_values

# An event's row (the ledger's hold, charge and release rows beside them are not events).
ROW = re.compile(
    r'<li class="(?!ledger-row)[^"]*-row[^"]*">.*?<span class="body">(.*?)</li>', re.DOTALL
)
TAG = re.compile(r"<[^>]+>")


@pytest.fixture
def watched_run(team, make_member, client_for):
    top_up(team, 5000)
    bob = make_member(team)
    run, _ = run_launch(
        team=team, user=bob, request=LaunchRequest(machine_id="vm", task="t", max_steps=10)
    )
    Run.objects.filter(pk=run.pk).update(upstream_id="run_fuzz", status=RunStatus.RUNNING)
    return run, client_for(bob)


def rows_of(html: str) -> list[str]:
    return [TAG.sub("", body).strip() for body in ROW.findall(html)]


@pytest.mark.parametrize("event_type", [*sorted(KNOWN_TYPES), "telemetry"])
def test_any_event_data_renders_on_the_page_and_the_live_fragment(watched_run, event_type):
    run, client = watched_run

    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(event_data, min_size=1, max_size=3))
    def check(datas):
        # given events of this type holding arbitrary JSON (stored as ingest stores it)
        RunEvent.objects.filter(run=run).delete()
        RunEvent.objects.bulk_create(
            RunEvent(run=run, seq=seq, type=event_type, data=as_dict(data))
            for seq, data in enumerate(datas, start=1)
        )
        # when the run page and its live fragment are fetched
        for url in (reverse("run_detail", args=[run.pk]), reverse("run_live", args=[run.pk])):
            response = client.get(url)
            # then each answers 200 with one non-blank row per event
            assert response.status_code == 200
            rows = rows_of(response.content.decode())
            assert len(rows) == len(datas)
            assert all(rows), rows

    check()
