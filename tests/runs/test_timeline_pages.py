"""The run page pages back through a run's whole timeline with `?before=<seq>`, and any bad
value of it shows the latest page, never an error."""

import re

import pytest
from django.urls import reverse

from runs import services
from runs.services import IncomingEvent
from tests.runs.support import _accepted_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def long_run(funded_team, make_member, coasty):
    bob = make_member(funded_team, "member", username="bob")
    run = _accepted_run(funded_team, bob, coasty)
    services.events_ingest(
        run_id=run.pk,
        events=[IncomingEvent(seq, "text", {"text": f"event {seq}"}) for seq in range(1, 451)],
    )
    return run, bob


def _seqs(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<span class="seq">#(\d+) ', html)]


def test_show_earlier_events_pages_back_to_the_first(long_run, client_for):
    run, bob = long_run
    client = client_for(bob)
    url = reverse("run_detail", args=[run.pk])

    # the latest page: the newest 200, with a way back
    latest = client.get(url).content.decode()
    assert _seqs(latest) == list(range(251, 451))
    assert "?before=251" in latest and "Show earlier events" in latest

    # back one page, then to the first event, where there is nothing earlier
    middle = client.get(url, {"before": 251}).content.decode()
    assert _seqs(middle) == list(range(51, 251))
    first = client.get(url, {"before": 51}).content.decode()
    assert _seqs(first) == list(range(1, 51))
    assert "Show earlier events" not in first
    # the live region keeps its page while it refreshes
    assert "/live/?before=51" in first


@pytest.mark.parametrize(
    "bad", ["abc", "-5", "0", "1e3", "99999999999999999999999999", " 12", "%00", "12.5", "²", "٣"]
)
def test_a_bad_before_shows_the_latest_page(long_run, client_for, bad):
    run, bob = long_run

    response = client_for(bob).get(reverse("run_detail", args=[run.pk]) + f"?before={bad}")
    live = client_for(bob).get(reverse("run_live", args=[run.pk]) + f"?before={bad}")

    assert response.status_code == 200 and live.status_code == 200
    assert _seqs(response.content.decode())[-1] == 450


def test_the_page_query_count_does_not_grow_with_depth(
    long_run, client_for, django_assert_max_num_queries
):
    run, bob = long_run
    client = client_for(bob)
    client.get(reverse("run_detail", args=[run.pk]))  # warm the session

    with django_assert_max_num_queries(12):
        client.get(reverse("run_detail", args=[run.pk]), {"before": 51})


@pytest.mark.parametrize(("per_step", "continued"), [(3, True), (2, False)])
def test_a_step_cut_by_the_page_boundary_says_it_continues(
    funded_team, make_member, coasty, client_for, per_step, continued
):
    # given 450 events in steps of `per_step` (3: the latest page, from #251, starts in the
    # middle of step 84; 2: it starts with step 126's first event)
    bob = make_member(funded_team, "member", username="bob")
    run = _accepted_run(funded_team, bob, coasty)
    kinds = ["reasoning", "tool_call", "step"][-per_step:]
    events = [
        IncomingEvent(seq, kinds[(seq - 1) % per_step], {"step": (seq - 1) // per_step + 1})
        for seq in range(1, 451)
    ]
    services.events_ingest(run_id=run.pk, events=events)
    step = 250 // per_step + 1  # the step of #251

    # when the latest page is opened
    latest = client_for(bob).get(reverse("run_detail", args=[run.pk])).content.decode()

    # then its first step's heading says whether it began on the page before
    heading = re.search(rf"<h3>Step {step}(.*?)</h3>", latest)
    assert heading is not None
    assert ("(continued)" in heading.group(1)) is continued
