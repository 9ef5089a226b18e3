"""The wallet's ledger grouped per run: one row per run with its task, launcher, status, steps,
hold and charge; other entries in words; a run's steps behind its own URL, a page at a time;
paging by newest activity in a fixed number of queries."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import ledger_groups, services
from billing.selectors import ledger_for_team
from portal.teams.models import Role
from tests.factories import ledger_run, top_up

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob(team, make_member):
    user = make_member(team, Role.MEMBER, username="bob")
    user.first_name, user.last_name = "Bob", "Builder"
    user.save()
    return user


def test_a_run_is_one_row_with_its_task_launcher_status_steps_hold_and_charge(team, bob):
    # given a top-up and a run of three $0.05 steps out of a $1.00 hold
    top_up(team, 5000, reference="INV-12")
    run_id = ledger_run(team, bob, "Export the quarterly report", steps=3)

    # when the ledger is grouped
    page = ledger_groups.ledger_groups_page(ledger_for_team(team))

    # then the run is one row, newest first, then the top-up
    run, top = page.groups
    assert run.is_run and run.run_id == run_id
    assert (run.run.task, run.run.launched_by, run.run.status_label) == (
        "Export the quarterly report",
        "Bob Builder",
        "Succeeded",
    )
    assert run.run.url == f"/runs/{run_id}/"
    assert (run.steps, run.held_cents, run.net_cents, run.released_cents) == (3, 100, 15, 85)
    assert run.entries == 5  # hold, three steps, release
    assert run.first_at <= run.last_at
    assert not top.is_run and top.transfer.reference == "INV-12"
    assert top.by == "the tests command"


@pytest.mark.parametrize("window", [1000, 2], ids=["whole ledger in the window", "tiny window"])
def test_groups_page_by_newest_activity_without_repeating_a_run(team, bob, window, monkeypatch):
    monkeypatch.setattr(ledger_groups, "FIRST_WINDOW", window)
    # given an old run still going, then 5 top-ups, then a new charge on the old run
    top_up(team, 50_000)
    old = ledger_run(team, bob, "Long crawl", steps=1, release=False)
    for n in range(5):
        top_up(team, 10, reference=f"ref-{n}")
    services.hold_capture(reference=f"run:{old}", step=2, amount_cents=5, caused_by="r")
    transfers = ledger_for_team(team)

    # when the ledger is paged three groups at a time
    first = ledger_groups.ledger_groups_page(transfers, size=3)
    second = ledger_groups.ledger_groups_page(transfers, size=3, before=first.older_cursor)
    third = ledger_groups.ledger_groups_page(transfers, size=3, before=second.older_cursor)

    # then the old run leads (its newest activity), with both its steps, and is never repeated
    def names(page):
        return [g.run.task if g.is_run else g.transfer.reference for g in page.groups]

    assert names(first) == ["Long crawl", "ref-4", "ref-3"]
    assert first.groups[0].steps == 2
    assert names(second) == ["ref-2", "ref-1", "ref-0"]
    assert names(third) == ["test top-up"]
    assert third.older_cursor is None
    # and back to newer ones
    back = ledger_groups.ledger_groups_page(transfers, size=3, after=third.newer_cursor)
    assert names(back) == names(second)
    assert names(ledger_groups.ledger_groups_page(transfers, size=3, after=back.newer_cursor)) == (
        names(first)
    )


def test_a_run_longer_than_the_first_window_still_pages_exactly(team, bob, monkeypatch):
    # given a window smaller than a run (as a 1,000-step run is to a 1,000-transfer window)
    monkeypatch.setattr(ledger_groups, "FIRST_WINDOW", 4)
    top_up(team, 50_000, reference="first")
    ledger_run(team, bob, "Earlier run", steps=2)
    ledger_run(team, bob, "Big run", steps=30, held=500)
    top_up(team, 10, reference="last")

    # when the ledger is grouped
    page = ledger_groups.ledger_groups_page(ledger_for_team(team), size=3)

    # then the groups are found, in order, and the run's whole sums are shown
    assert [g.run.task if g.is_run else g.transfer.reference for g in page.groups] == [
        "last",
        "Big run",
        "Earlier run",
    ]
    assert page.groups[1].steps == 30 and page.groups[1].net_cents == 150


def test_the_groups_follow_the_ledger_filters(team, bob):
    top_up(team, 5000, reference="INV-1")
    ledger_run(team, bob, "Crawl", steps=2)
    from billing.selectors import LedgerFilters

    # when only captures are kept
    page = ledger_groups.ledger_groups_page(ledger_for_team(team, LedgerFilters(kind="capture")))

    # then the run's row sums its step charges only
    (run,) = page.groups
    assert (run.steps, run.held_cents, run.net_cents, run.entries) == (2, 0, 10, 2)


# --- The page -------------------------------------------------------------------------------------


def test_the_wallet_shows_runs_by_task_and_entries_in_words_never_raw_ids(
    team, bob, billing_admin, client_for
):
    # given a top-up by a billing admin, an adjustment, and a run
    services.wallet_top_up(
        team=team,
        amount_cents=5000,
        reference="INV-12",
        actor=billing_admin,
        idempotency_key="k-1",
    )
    services.wallet_adjust(
        team=team,
        amount_cents=25,
        direction="debit",
        reason="Double charge",
        actor=billing_admin,
        idempotency_key="k-2",
    )
    task = ("Reconcile every invoice of the year and flag the ones that do not add up " * 3).strip()
    run_id = ledger_run(team, bob, task, steps=2)

    # when a member opens the wallet
    page = client_for(bob).get("/teams/research/wallet/").content.decode()

    # then the run's row shows its task (cut, whole in the title), launcher, status and money
    assert f'href="/runs/{run_id}/" title="{task}"' in page
    assert "Bob Builder" in page and "Succeeded" in page
    assert '<span class="amount neutral">$1.00</span>' in page  # held
    assert '<span class="amount neutral">$0.10</span>' in page  # charged
    assert f"/teams/research/wallet/runs/{run_id}/" in page
    # and the other entries are in words, naming the billing admin
    assert "Top-up</span> — INV-12" in page and "Adjustment</span> — Double charge" in page
    assert "treasurer" in page
    # and no raw ids anywhere
    assert "run:" not in page
    assert str(run_id)[:8] + "…" not in page


def test_a_run_expands_to_its_entries_a_page_at_a_time(team, bob, client_for, monkeypatch):
    # given a run of 150 steps
    top_up(team, 50_000)
    run_id = ledger_run(team, bob, "Long crawl", steps=150, held=1000)
    client = client_for(bob)
    url = f"/teams/research/wallet/runs/{run_id}/"

    # when its entries are loaded into the page (htmx)
    first = client.get(url, headers={"HX-Request": "true"})

    # then the first 100 come, oldest first, as a fragment, with a link to the rest
    assert first.status_code == 200
    html = first.content.decode()
    assert "<html" not in html
    assert html.count("charged</span>") == 99 and "Held</span>" in html
    cursor = first.context["entries"].next_cursor
    assert f"after={cursor}" in html
    # and the rest follow, ending with the release
    rest = client.get(url, {"after": cursor}, headers={"HX-Request": "true"}).content.decode()
    assert "Step 150 charged" in rest and "Rest released" in rest
    assert "Show more entries" not in rest
    # and without JavaScript the same URL is a page of its own
    page = client.get(url).content.decode()
    assert "<html" in page and "Long crawl" in page


def test_the_wallet_page_costs_the_same_queries_for_small_and_large_runs(team, bob, client_for):
    # given a few runs
    top_up(team, 100_000)
    for n in range(3):
        ledger_run(team, bob, f"Run {n}", steps=2)
    client = client_for(bob)
    client.get("/teams/research/wallet/")

    def queries(params=None):
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/teams/research/wallet/", params or {}).status_code == 200
        return len(captured)

    small = queries()
    # when the team has twenty times the runs, each with more steps
    for n in range(60):
        ledger_run(team, bob, f"More {n}", steps=5)
    # then the page, and the older page, cost no more queries (at most four for the grouped
    # ledger; a page with no top-up skips the query for those)
    assert queries() <= small <= 13
    first = client.get("/teams/research/wallet/").context["page"]
    assert queries({"before": first.older_cursor}) <= small


def test_another_team_cannot_expand_a_run(team, other_team, bob, make_member, client_for):
    # given a run of research
    top_up(team, 5000)
    run_id = ledger_run(team, bob, "Secret crawl", steps=1)
    outsider = make_member(other_team, Role.MANAGER)

    # then an outsider gets 404 for its entries, under either team's wallet
    client = client_for(outsider)
    assert client.get(f"/teams/research/wallet/runs/{run_id}/").status_code == 404
    assert client.get(f"/teams/ops/wallet/runs/{run_id}/").status_code == 404
    # and a run that is not in the wallet is 404 as well, to its members
    assert client_for(bob).get(f"/teams/research/wallet/runs/{uuid.uuid4()}/").status_code == 404


def test_a_billing_admin_follows_a_charge_to_its_run(team, bob, billing_admin, client_for):
    # given a run of research, and a billing admin who is in no team
    top_up(team, 5000)
    run_id = ledger_run(team, bob, "Audited crawl", steps=1)
    client = client_for(billing_admin)
    # when they open research's wallet
    wallet = client.get("/teams/research/wallet/").content.decode()
    # then the run's row links to its page, which they may read, and its entries open
    assert f'<a href="/runs/{run_id}/" title="Audited crawl">' in wallet
    assert client.get(f"/runs/{run_id}/").status_code == 200
    response = client.get(f"/teams/research/wallet/runs/{run_id}/")
    assert response.status_code == 200
    assert "Step 1 charged" in response.content.decode()


def test_a_run_opened_under_a_filter_shows_the_filtered_entries(team, bob, client_for):
    # given a run of two steps
    top_up(team, 5000)
    run_id = ledger_run(team, bob, "Crawl", steps=2)
    # when its entries are opened from the ledger filtered to captures
    html = (
        client_for(bob)
        .get(
            f"/teams/research/wallet/runs/{run_id}/",
            {"kind": "capture"},
            headers={"HX-Request": "true"},
        )
        .content.decode()
    )
    # then only its step charges show
    assert "Step 2 charged" in html
    assert "Rest released" not in html and "Held</span>" not in html


def test_an_adjustment_for_a_run_is_its_own_row_naming_the_run(team, bob, billing_admin):
    # given a run, and a billing admin's credit for it (a discrepancy's correction)
    top_up(team, 5000)
    run_id = ledger_run(team, bob, "Crawl the price list", steps=2)
    from billing.models import Hold

    services.wallet_adjust(
        team=team,
        amount_cents=5,
        direction="credit",
        reason="One step charged twice",
        actor=billing_admin,
        idempotency_key="adj-run",
        hold=Hold.objects.get(run_id=run_id),
    )
    # when the ledger is grouped
    adjustment, run, _top_up = ledger_groups.ledger_groups_page(ledger_for_team(team)).groups
    # then the adjustment is a row of its own, by the admin, naming the run; the run's charge
    # is its step charges
    assert adjustment.transfer.kind == "adjustment" and adjustment.by == "treasurer"
    assert adjustment.run.task == "Crawl the price list"
    assert run.run_id == run_id and run.net_cents == 10


@pytest.mark.parametrize("window", [3, 1000])
def test_paging_both_ways_visits_every_group_once_by_newest_activity(
    team, bob, window, monkeypatch
):
    monkeypatch.setattr(ledger_groups, "FIRST_WINDOW", window)
    # given runs whose charges interleave with each other and with top-ups
    top_up(team, 100_000, reference="start")
    runs = [ledger_run(team, bob, f"Run {n}", steps=0, release=False) for n in range(4)]
    for step in range(1, 7):
        for n, run_id in enumerate(runs):
            if (step + n) % 3:
                services.hold_capture(
                    reference=f"run:{run_id}", step=step, amount_cents=5, caused_by="r"
                )
        top_up(team, 10, reference=f"mid-{step}")
    services.hold_release(reference=f"run:{runs[1]}", caused_by="r")
    transfers = ledger_for_team(team)
    # the expected order: each group at its newest transfer, newest first
    newest: dict = {}
    for pk, run_id, kind in transfers.order_by("id").values_list("id", "run_id", "kind"):
        key = run_id if run_id and kind in ledger_groups.RUN_KINDS else pk
        newest[key] = pk
    expected = sorted(newest, key=newest.__getitem__, reverse=True)

    def keys(page):
        return [g.run_id if g.is_run else g.transfer.pk for g in page.groups]

    # when the ledger is paged older, three groups at a time, then newer again
    pages = [ledger_groups.ledger_groups_page(transfers, size=3)]
    while pages[-1].older_cursor:
        pages.append(
            ledger_groups.ledger_groups_page(transfers, size=3, before=pages[-1].older_cursor)
        )
    back = [pages[-1]]
    while back[-1].newer_cursor:
        back.append(
            ledger_groups.ledger_groups_page(transfers, size=3, after=back[-1].newer_cursor)
        )

    # then every group comes once, in order, and paging back gives the same pages
    assert [k for page in pages for k in keys(page)] == expected
    assert [keys(page) for page in back] == [keys(page) for page in reversed(pages)]


@pytest.mark.parametrize(
    "first, last, text",
    [
        ("2026-12-03T07:02:10", "2026-12-03T07:02:50", "3 Dec 2026, 07:02"),
        ("2026-12-03T07:02:10", "2026-12-03T07:40:00", "3 Dec 2026, 07:02 – 07:40"),
        ("2026-12-03T23:50:00", "2026-12-04T00:20:00", "3 Dec 2026, 23:50 – 4 Dec 2026, 00:20"),
    ],
)
def test_a_runs_span_reads_in_the_viewers_time_zone(first, last, text):
    import datetime as dt
    import zoneinfo

    from django.utils import timezone

    utc = dt.UTC
    group = ledger_groups.LedgerGroup(
        last_id=1,
        first_at=dt.datetime.fromisoformat(first).replace(tzinfo=utc),
        last_at=dt.datetime.fromisoformat(last).replace(tzinfo=utc),
    )
    assert group.when_text == text  # UTC, the default
    assert group.when_title.startswith(first)

    # in New York (UTC-5) the same span is five hours earlier, the title too
    with timezone.override(zoneinfo.ZoneInfo("America/New_York")):
        shifted = ledger_groups.LedgerGroup(
            last_id=1, first_at=group.first_at, last_at=group.last_at
        )
        assert shifted.when_text.startswith(
            (dt.datetime.fromisoformat(first) - dt.timedelta(hours=5)).strftime("%-d %b %Y, %H:%M")
        )
        assert shifted.when_title.endswith("-05:00")


@pytest.mark.parametrize("language", ["en", "de"])
def test_a_runs_dates_read_as_djangos_date_format_writes_them(language):
    import datetime as dt

    from django.utils import dateformat, translation

    with translation.override(language):
        for at in (
            dt.datetime(2026, 12, 3, 7, 2),
            dt.datetime(2026, 3, 1, 0, 0),
            dt.datetime(2026, 5, 31, 23, 59),
            dt.datetime(999, 1, 9, 9, 5),
        ):
            assert ledger_groups._day_minute(at) == dateformat.format(at, "j M Y, H:i")
