"""A run's row of the wallet's grouped ledger, built in Python (billing/templatetags/ledger.py):
it says what the template said, escapes every value, and cuts a long task as truncatechars did."""

import datetime as dt
import uuid

import pytest
from django.utils.text import Truncator

from billing.ledger_groups import LedgerGroup, LedgerRun
from billing.templatetags.ledger import ledger_run_row
from portal.teams.models import Role
from tests.factories import ledger_run, top_up

pytestmark = pytest.mark.django_db

AT = dt.datetime(2026, 12, 3, 7, 2, tzinfo=dt.UTC)


def group(**fields) -> LedgerGroup:
    run_id = fields.pop("run_id", uuid.uuid4())
    task = fields.pop("task", "Export the report")
    defaults = {
        "last_id": 9,
        "run_id": run_id,
        "run": LedgerRun(
            task=task,
            launched_by="Bob Builder",
            status="succeeded",
            status_label="Succeeded",
            url=f"/runs/{run_id}/",
        ),
        "held_cents": 100,
        "captured_cents": 15,
        "released_cents": 85,
        "steps": 3,
        "entries": 5,
        "first_at": AT,
        "last_at": AT,
    }
    return LedgerGroup(**{**defaults, **fields})


def test_a_task_with_markup_is_escaped_in_the_link_and_its_title(team):
    task = """<script>alert("x")</script> & 'quotes'"""
    html = ledger_run_row(group(task=task), team)
    assert "<script>" not in html
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;quotes&#x27;"
    assert f'title="{escaped}">{escaped}</a>' in html


def test_a_long_task_is_cut_as_truncatechars_cuts_it_and_kept_whole_in_the_title(team):
    task = "Reconcile every invoice of the year " * 8
    html = ledger_run_row(group(task=task), team)
    cut = Truncator(task).chars(160)
    assert len(cut) == 160 and cut.endswith("…")
    assert f'title="{task}">{cut}</a>' in html


def test_the_row_says_steps_money_and_status_and_links_its_entries_with_the_filters(team):
    g = group()
    html = ledger_run_row(g, team, "kind=capture")
    entries = f"/teams/{team.slug}/wallet/runs/{g.run_id}/?kind=capture"
    assert f'hx-get="{entries}"' in html and f'<a href="{entries}">' in html
    assert "5 entries · $0.85 released</summary>" in html
    assert '<span class="badge succeeded">Succeeded</span>' in html
    assert '<td class="num" data-label="Steps">3</td>' in html
    assert '<span class="amount neutral">$1.00</span>' in html  # held
    assert '<span class="amount neutral">$0.15</span>' in html  # charged
    assert "3 Dec 2026, 07:02" in html


def test_a_run_no_longer_listed_is_said_so_without_a_link(team):
    html = ledger_run_row(group(run=None), team)
    assert '<span class="muted">a run no longer listed</span>' in html
    assert 'data-label="By">—</td>' in html and "badge" not in html


def test_a_run_still_going_shows_its_one_entry_and_what_is_still_held(
    team, make_member, client_for
):
    # given a run that has only its $1.00 hold so far
    bob = make_member(team, Role.MEMBER, username="bob")
    top_up(team, 5000)
    ledger_run(team, bob, "Long crawl", steps=0, release=False)
    # when the wallet is opened
    page = client_for(bob).get(f"/teams/{team.slug}/wallet/").content.decode()
    # then its row says one entry, still held, and it is the page's only run row
    assert "1 entry · $1.00 still held</summary>" in page
    assert page.count('<tr class="ledger-run">') == 1


def test_a_runs_launcher_is_named_by_full_name_else_username_else_a_dash(team, make_member):
    from runs.models import Run
    from runs.selectors import runs_for_ledger

    # given runs by a person with a name, one without, and one whose account was deleted
    named = make_member(team, Role.MEMBER, username="bob")
    named.first_name, named.last_name = "Bob", "Builder"
    named.save()
    plain = make_member(team, Role.MEMBER, username="carol")
    gone = make_member(team, Role.MEMBER, username="dave")
    top_up(team, 5000)
    ids = [ledger_run(team, user, f"Task of {user.username}") for user in (named, plain, gone)]
    gone.delete()

    # when the ledger describes them
    described = runs_for_ledger(ids)

    # then each is named as the ledger names people, with its task, status and page
    assert [described[pk].launched_by for pk in ids] == ["Bob Builder", "carol", "—"]
    assert described[ids[0]].task == "Task of bob"
    assert (described[ids[0]].status, described[ids[0]].status_label) == ("succeeded", "Succeeded")
    assert described[ids[0]].url == f"/runs/{ids[0]}/"
    assert Run.objects.get(pk=ids[2]).created_by is None
