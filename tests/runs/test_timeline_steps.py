"""The run page groups a run's events per agent step, each under a "Step N" heading with the
step's cost from the ledger, and hides its billing rows on request (`?billing=hide`), a choice
kept by "Show earlier events", "Latest events" and the live refresh."""

import re
from html.parser import HTMLParser

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from runs import services
from runs.services import IncomingEvent
from tests.runs.support import _accepted_run, _step_events

pytestmark = pytest.mark.django_db


class _TimelineParser(HTMLParser):
    """The timeline's items as (label or "Step N", cost, [labels of the step's rows])."""

    def __init__(self):
        super().__init__()
        self.items = []
        self.lis = []  # the open <li>s of the timeline: [item, is_group]
        self.capture = None  # "kind", "head" or "cost" while inside one
        self.depth = 0  # spans open inside the captured one

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class") or ""
        if tag == "li" and (cls == "step-group" or "-row" in cls):
            item = {"group": cls == "step-group", "kind": "", "head": "", "cost": "", "rows": []}
            if self.lis and self.lis[-1]["group"]:
                self.lis[-1]["rows"].append(item)
            elif not self.lis:
                self.items.append(item)
            self.lis.append(item)
        elif self.lis and tag == "span" and cls.split()[:1] == ["kind"]:
            self.capture = "kind"
        elif self.lis and tag == "h3":
            self.capture = "head"
        elif self.lis and tag == "span" and cls.startswith("step-cost"):
            self.capture = "cost"
        elif tag == "span" and self.capture:
            self.depth += 1

    def handle_endtag(self, tag):
        if tag == "li" and self.lis:
            self.lis.pop()
        elif tag == "span" and self.depth:
            self.depth -= 1
        elif tag in ("span", "h3") and self.capture:
            self.capture = None

    def handle_data(self, data):
        if self.capture and self.lis:
            self.lis[-1][self.capture] += data


def timeline(html):
    parser = _TimelineParser()
    parser.feed(html)

    def shape(item):
        if item["group"]:
            cost = item["cost"].replace("Cost:", "").strip()
            head = " ".join(item["head"].split())
            return (head, cost, [row["kind"] for row in item["rows"]])
        return item["kind"]

    return [shape(item) for item in parser.items]


STEP = ["Reasoning", "Tool call", "Tool result", "Step", "Billing", "Charge"]
STEP_NO_BILLING = ["Reasoning", "Tool call", "Tool result", "Step"]


@pytest.fixture
def story(funded_team, make_member, coasty):
    """Bob's run: started, two steps, a pause he resumed, a third step, then his cancel."""
    bob = make_member(funded_team, "member", username="bob")
    run = _accepted_run(funded_team, bob, coasty)
    ingest = lambda *events: services.events_ingest(run_id=run.pk, events=events)  # noqa: E731
    ingest(
        IncomingEvent(1, "status", {"status": "running"}),
        *_step_events(2, 1),
        *_step_events(7, 2),
        IncomingEvent(12, "awaiting_human", {"reason": "captcha", "step": 2}),
    )
    run.refresh_from_db()
    services.run_request_resume(run=run, user=bob, note="solved")
    ingest(IncomingEvent(13, "resumed", {"note": "solved"}), *_step_events(14, 3))
    run.refresh_from_db()
    services.run_request_cancel(run=run, user=bob)
    return run, bob


def test_each_step_sits_under_its_heading_with_its_cost(story, client_for):
    run, bob = story

    # when bob opens the run page
    html = client_for(bob).get(reverse("run_detail", args=[run.pk])).content.decode()

    # then every step is grouped with its charge and its cost, the rest stand alone in order
    assert timeline(html) == [
        "Hold",
        "Status",
        ("Step 1", "$0.05", STEP),
        ("Step 2", "$0.05", STEP),
        "Awaiting human",
        "Resumed",
        ("Step 3", "$0.05", STEP),
        "Cancel requested",
    ]
    # and the people stay named on what they did
    assert html.count('<span class="actor">by bob</span>') == 2
    assert "Hide billing rows" in html


def test_hide_billing_rows_leaves_the_costs_in_the_headings(story, client_for):
    run, bob = story

    response = client_for(bob).get(reverse("run_detail", args=[run.pk]), {"billing": "hide"})

    html = response.content.decode()
    assert timeline(html) == [
        "Status",
        ("Step 1", "$0.05", STEP_NO_BILLING),
        ("Step 2", "$0.05", STEP_NO_BILLING),
        "Awaiting human",
        "Resumed",
        ("Step 3", "$0.05", STEP_NO_BILLING),
        "Cancel requested",
    ]
    assert "Coasty billed" not in html and "held from the team" not in html
    # the control turns back, and the live refresh keeps the choice
    assert f'href="/runs/{run.pk}/#timeline-h" id="billing-toggle">Show billing rows' in html
    assert f'hx-get="/runs/{run.pk}/live/?billing=hide"' in html
    live = client_for(bob).get(reverse("run_live", args=[run.pk]), {"billing": "hide"})
    assert timeline(live.content.decode()) == timeline(html)


@pytest.mark.parametrize("value", ["", "show", "HIDE", "hide'><script>", "1"])
def test_any_other_billing_value_shows_the_billing_rows(story, client_for, value):
    run, bob = story

    response = client_for(bob).get(reverse("run_detail", args=[run.pk]), {"billing": value})

    assert response.status_code == 200
    assert timeline(response.content.decode())[2] == ("Step 1", "$0.05", STEP)


def test_a_step_the_ledger_did_not_charge_says_not_charged(
    funded_team, make_member, coasty, client_for
):
    # given a one-step run whose stream also says step 9, a number never charged
    bob = make_member(funded_team, "member", username="bob")
    run = _accepted_run(funded_team, bob, coasty, max_steps=1)
    services.events_ingest(
        run_id=run.pk,
        events=[*_step_events(1, 1), IncomingEvent(6, "step", {"step": 9, "steps_completed": 9})],
    )

    html = client_for(bob).get(reverse("run_detail", args=[run.pk])).content.decode()

    assert timeline(html) == [
        "Hold",
        ("Step 1", "$0.05", STEP),
        ("Step 9", "not charged", ["Step"]),
    ]


@pytest.fixture
def long_story(funded_team, make_member, coasty):
    """A 60-step run: 300 events, so the latest page of 200 starts within step 21."""
    bob = make_member(funded_team, "member", username="bob")
    run = _accepted_run(funded_team, bob, coasty, max_steps=100)
    events = [e for step in range(1, 61) for e in _step_events(5 * step - 4, step)]
    services.events_ingest(run_id=run.pk, events=events)
    return run, bob


def test_hiding_billing_rows_is_kept_through_the_pages(long_story, client_for):
    run, bob = long_story
    client = client_for(bob)
    url = reverse("run_detail", args=[run.pk])

    # the latest page, billing rows hidden: 200 events from seq 101 (step 21) on
    latest = client.get(url, {"billing": "hide"}).content.decode()
    shown = timeline(latest)
    assert shown[0] == ("Step 21", "$0.05", STEP_NO_BILLING)
    assert shown[-1] == ("Step 60", "$0.05", STEP_NO_BILLING)
    assert f'href="/runs/{run.pk}/?before=101&amp;billing=hide" id="earlier-events"' in latest

    # when bob shows the earlier events
    earlier = client.get(url, {"before": 101, "billing": "hide"}).content.decode()

    # then they are grouped, still without billing rows, and the way back keeps the choice
    shown = timeline(earlier)
    assert [item[0] for item in shown] == [f"Step {n}" for n in range(1, 21)]
    assert all(item[1] == "$0.05" and item[2] == STEP_NO_BILLING for item in shown)
    assert f'href="/runs/{run.pk}/?billing=hide">Latest events' in earlier
    assert f'hx-get="/runs/{run.pk}/live/?before=101&amp;billing=hide"' in earlier
    assert (
        f'href="/runs/{run.pk}/?before=101#timeline-h" id="billing-toggle">Show billing rows'
        in earlier
    )
    # and with billing rows shown, that page opens with the hold and has no release
    shown = timeline(client.get(url, {"before": 101}).content.decode())
    assert shown[0] == "Hold" and shown[1] == ("Step 1", "$0.05", STEP)


def test_the_step_costs_cost_one_query_however_many_steps(
    funded_team, make_member, coasty, client_for
):
    bob = make_member(funded_team, "member", username="bob")
    run = _accepted_run(funded_team, bob, coasty, max_steps=100)
    client = client_for(bob)
    url = reverse("run_detail", args=[run.pk])
    services.events_ingest(run_id=run.pk, events=_step_events(1, 1))
    client.get(url)  # warm the session
    with CaptureQueriesContext(connection) as one_step:
        client.get(url)

    # when the run has done 60 steps, 40 of them on the latest page
    events = [e for step in range(2, 61) for e in _step_events(5 * step - 4, step)]
    services.events_ingest(run_id=run.pk, events=events)
    with CaptureQueriesContext(connection) as forty_steps:
        html = client.get(url).content.decode()

    # then each of the 40 shows its cost, for the queries one step cost, within the budget
    assert len(re.findall(r'<span class="step-cost">', html)) == 40
    assert len(forty_steps.captured_queries) == len(one_step.captured_queries) <= 10


@pytest.mark.parametrize("name", ["run_detail", "run_live"])
def test_another_team_gets_the_same_404(story, client_for, make_member, other_team, name):
    run, _ = story
    carol = make_member(other_team, "manager", username="carol")

    response = client_for(carol).get(reverse(name, args=[run.pk]), {"billing": "hide"})

    assert response.status_code == 404
    assert "Step 1" not in response.content.decode()


def test_a_billing_admin_reads_the_grouped_timeline(story, client_for, billing_admin):
    run, _ = story

    html = client_for(billing_admin).get(reverse("run_detail", args=[run.pk])).content.decode()

    assert ("Step 2", "$0.05", STEP) in timeline(html)
    assert 'id="cancel-run"' not in html
