#!/usr/bin/env python
"""Pages: SQL queries and median server time of the runs list, the run page and the wallet
(ledger) page, for a team with 100,000 runs and 1,000,000 ledger rows, on PostgreSQL.

    python -m bench.pages [--requests 30] [--regenerate]

The dataset is made with bulk SQL (generate_series) in its own database, portal_bench_pages,
and kept: the next `make bench` reuses it while its version and the migrations match. It is
consistent: every run has its hold, captures and release, the balances are the sums of the
transfers, and `check_ledger` passes on it. Pages are requested in-process through Django's
test client, as a member of the team, with DEBUG off (production settings): the time is the
server's, from request to rendered response. Goals: <= 10 queries (13 for the wallet, whose
ledger is grouped per run), median <= 50 ms.
"""

import argparse
import statistics
import time

from bench.common import PAGES_DB, REPO, Figure, database_exists, emit, migrate, recreate_database

RUNS = 100_000
LIVE = 10  # the newest runs are still running: open holds, no release
STEPS = 8  # steps charged per finished run (3 for a live one)
EVENTS = 45  # events stored for each of the newest 50 runs (the run page shows them)
DATASET_VERSION = "pages-v4"


def dataset_version() -> str:
    """The dataset's version: ours, plus the latest migration of each app it fills."""
    latest = []
    for app in ("portal", "runs", "billing"):
        names = sorted(p.stem for p in (REPO / app / "migrations").glob("0*.py"))
        latest.append(f"{app}:{names[-1] if names else '-'}")
    return f"{DATASET_VERSION}|{RUNS}|{'|'.join(latest)}"


def dataset_ready() -> bool:
    if not database_exists(PAGES_DB):
        return False
    import psycopg

    from bench.common import database_url

    with psycopg.connect(database_url(PAGES_DB)) as conn:
        try:
            row = conn.execute("SELECT version FROM bench_dataset").fetchone()
        except psycopg.errors.UndefinedTable:
            return False
    return bool(row) and row[0] == dataset_version()


def generate() -> None:
    """Fill the (freshly migrated) pages database: team, member, runs, holds, ledger, events."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from billing.models import Account, AccountKind
    from portal.teams.models import Membership, Role, Team

    user = get_user_model().objects.create_user("pages-member", password="bench-pass-2026")  # noqa: S106
    team = Team.objects.create(slug="pages", name="Pages")
    Membership.objects.create(team=team, user=user, role=Role.MEMBER)
    accounts = {
        kind: Account.objects.create(team=team, kind=kind, low_balance_threshold_cents=500).pk
        for kind in (AccountKind.AVAILABLE, AccountKind.HELD, AccountKind.SPEND)
    }
    funding = Account.objects.create(team=None, kind=AccountKind.FUNDING).pk
    params = {
        "team": team.pk,
        "user": user.pk,
        "runs": RUNS,
        "live": LIVE,
        "steps": STEPS,
        "avail": accounts[AccountKind.AVAILABLE],
        "held": accounts[AccountKind.HELD],
        "spend": accounts[AccountKind.SPEND],
        "funding": funding,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(RUNS_SQL, params)
        cursor.execute(HOLDS_SQL, params)
        cursor.execute(TOP_UP_SQL, params)
        cursor.execute(TRANSFERS_SQL, params)
        cursor.execute(EVENTS_SQL, {**params, "events": EVENTS})
        # Balances are the sums of the transfers, as the ledger's first invariant says.
        cursor.execute(BALANCES_SQL)
        cursor.execute("CREATE TABLE bench_dataset (version text)")
        cursor.execute("INSERT INTO bench_dataset VALUES (%s)", [dataset_version()])
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


RUNS_SQL = """
INSERT INTO runs_run (
    id, machine_id, task, cua_version, max_steps, on_awaiting_human, system_prompt,
    instructions, webhook_url, price_cents, held_cents, charged_cents, idempotency_key,
    upstream_id, webhook_secret_encrypted, submit_attempts, status, status_seq, status_at,
    last_seq, steps_completed, awaiting_human_reason, pending_action, resume_note, result, error,
    follow_owner, last_event_at, upstream_steps_completed, upstream_credits_charged, settled_at,
    created_at, accepted_at, finished_at, created_by_id, team_id, events_complete,
    orphan_upstream_id, decision_reason
)
SELECT md5('pages-run-' || i)::uuid, 'vm-linux-' || (1 + i %% 2),
       'Export the weekly leads report from the CRM, batch ' || i, 'v5', 10, 'pause', '', '', '',
       5, 50, CASE WHEN i <= %(live)s THEN 15 ELSE 5 * %(steps)s END,
       'portal-run-' || md5('pages-run-' || i)::uuid, 'run_pages_' || i, '', 1,
       CASE WHEN i <= %(live)s THEN 'running' WHEN i %% 20 = 0 THEN 'failed' ELSE 'succeeded' END,
       0, t.at + interval '60 seconds', CASE WHEN i <= %(live)s THEN 20 ELSE 45 END,
       CASE WHEN i <= %(live)s THEN 3 ELSE %(steps)s END, '', '', '',
       CASE WHEN i <= %(live)s THEN NULL ELSE '{"text": "Exported.", "steps": 8}'::jsonb END,
       CASE WHEN i %% 20 = 0 THEN 'The CRM refused the export.' ELSE '' END, '',
       t.at + interval '100 seconds',
       CASE WHEN i <= %(live)s THEN NULL ELSE %(steps)s END,
       CASE WHEN i <= %(live)s THEN NULL ELSE 5 * %(steps)s END,
       CASE WHEN i <= %(live)s THEN NULL ELSE t.at + interval '120 seconds' END,
       t.at, t.at + interval '2 seconds',
       CASE WHEN i <= %(live)s THEN NULL ELSE t.at + interval '110 seconds' END,
       %(user)s, %(team)s, i > %(live)s, '', ''
  FROM generate_series(%(runs)s, 1, -1) AS i,
       LATERAL (SELECT now() - make_interval(secs => i * 315) AS at) AS t
"""

HOLDS_SQL = """
INSERT INTO billing_hold (
    reference, run_id, amount_cents, captured_cents, released_cents, captured_steps, status,
    step_price_cents, upstream_steps_completed, upstream_credits_charged, upstream_test_mode,
    created_at, settled_at, held_account_id, spend_account_id, team_id
)
SELECT 'run:' || r.id, r.id, 50, r.charged_cents,
       CASE WHEN r.settled_at IS NULL THEN 0 ELSE 50 - r.charged_cents END, r.steps_completed,
       CASE WHEN r.settled_at IS NULL THEN 'open' ELSE 'settled' END,
       CASE WHEN r.settled_at IS NULL THEN NULL ELSE 5 END, r.upstream_steps_completed,
       r.upstream_credits_charged, CASE WHEN r.settled_at IS NULL THEN NULL ELSE false END,
       r.created_at, r.settled_at, %(held)s, %(spend)s, %(team)s
  FROM runs_run r WHERE r.team_id = %(team)s ORDER BY r.created_at
"""

TOP_UP_SQL = """
INSERT INTO billing_transfer (
    idempotency_key, kind, debit_account_id, credit_account_id, amount_cents, team_id, reference,
    memo, caused_by, created_at
)
SELECT 'topup:bench-pages', 'top_up', %(funding)s, %(avail)s,
       5000 + sum(h.amount_cents - h.released_cents), %(team)s, 'PO-BENCH', '',
       'command:bench', now() - interval '400 days'
  FROM billing_hold h WHERE h.team_id = %(team)s
"""

TRANSFERS_SQL = """
INSERT INTO billing_transfer (
    idempotency_key, kind, debit_account_id, credit_account_id, amount_cents, team_id, hold_id,
    run_id, step, reference, memo, caused_by, created_at
)
SELECT x.key, x.kind, x.debit, x.credit, x.amount, %(team)s, h.id, h.run_id, x.step,
       h.reference, '', h.reference, h.created_at + make_interval(secs => x.offset_s)
  FROM billing_hold h
 CROSS JOIN LATERAL (
       SELECT 'hold:' || h.reference AS key, 'hold' AS kind, %(avail)s::bigint AS debit,
              %(held)s::bigint AS credit, h.amount_cents AS amount, NULL::integer AS step,
              1 AS offset_s
       UNION ALL
       SELECT 'capture:' || h.reference || ':' || n, 'capture', %(held)s, %(spend)s, 5, n, 2 + 10 * n
         FROM generate_series(1, h.captured_steps) AS n
       UNION ALL
       SELECT 'release:' || h.reference, 'release', %(held)s, %(avail)s, h.released_cents, NULL, 119
        WHERE h.status = 'settled' AND h.released_cents > 0
 ) AS x
 WHERE h.team_id = %(team)s
 ORDER BY h.created_at, x.offset_s
"""

EVENTS_SQL = """
INSERT INTO runs_runevent (run_id, seq, type, data, created_at)
SELECT r.id, s,
       (ARRAY['reasoning', 'tool_call', 'tool_result', 'step', 'billing'])[1 + (s - 1) %% 5],
       CASE (s - 1) %% 5
         WHEN 0 THEN jsonb_build_object('step', 1 + (s - 1) / 5, 'text',
                                        'The export dialog is open; choosing the CSV format.')
         WHEN 1 THEN jsonb_build_object('step', 1 + (s - 1) / 5, 'tool', 'click',
                                        'input', jsonb_build_object('x', 410, 'y', 233))
         WHEN 2 THEN jsonb_build_object('step', 1 + (s - 1) / 5, 'tool', 'click', 'ok', true,
                                        'output', 'clicked')
         WHEN 3 THEN jsonb_build_object('step', 1 + (s - 1) / 5,
                                        'steps_completed', 1 + (s - 1) / 5)
         ELSE jsonb_build_object('step', 1 + (s - 1) / 5, 'credits_charged', 5, 'cost_cents', 5,
                                 'total_credits_charged', 5 * (1 + (s - 1) / 5))
       END,
       r.created_at + make_interval(secs => s)
  FROM (SELECT id, created_at FROM runs_run WHERE team_id = %(team)s
         ORDER BY created_at DESC LIMIT 50) AS r,
       generate_series(1, %(events)s) AS s
"""

BALANCES_SQL = """
UPDATE billing_account a
   SET balance_cents = COALESCE((SELECT sum(amount_cents) FROM billing_transfer
                                  WHERE credit_account_id = a.id), 0)
                     - COALESCE((SELECT sum(amount_cents) FROM billing_transfer
                                  WHERE debit_account_id = a.id), 0)
"""


PAGES = ("runs list", "run page", "wallet page")
# The wallet's ledger grouped per run costs four queries where a flat page cost one: the page's
# groups, the runs' sums, the other entries, the runs' names (billing.ledger_groups).
QUERY_GOALS = {"wallet page": 13}


def measure(requests: int) -> list[Figure]:
    from django.contrib.auth import get_user_model
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from runs.models import Run

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(get_user_model().objects.get(username="pages-member"))
    newest = Run.objects.filter(team__slug="pages").order_by("-created_at").first()
    urls = {
        "runs list": "/teams/pages/runs/",
        "run page": f"/runs/{newest.pk}/",
        "wallet page": "/teams/pages/wallet/",
    }
    figures = []
    for name, url in urls.items():
        for _ in range(3):  # warm: templates compiled, connection open, plans cached
            assert client.get(url).status_code == 200, url
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, url
        with CaptureQueriesContext(connection) as captured:
            client.get(url)
        queries = len(captured.captured_queries)
        reset_queries()
        median = statistics.median(times)
        note = f"{url}; p90 {sorted(times)[int(len(times) * 0.9)]:.1f} ms over {requests}"
        figures.append(
            Figure(
                f"pages: {name} SQL queries",
                queries,
                "queries",
                QUERY_GOALS.get(name, 10),
                "<=",
                note=note,
            )
        )
        figures.append(
            Figure(f"pages: {name} median server time", median, "ms", 50, "<=", note=note)
        )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    made = False
    if args.regenerate or not dataset_ready():
        recreate_database(PAGES_DB)
        made = True
    else:
        migrate(PAGES_DB)
    from bench.common import setup_django

    setup_django(PAGES_DB)
    if made:
        generate()
    setup = time.perf_counter() - started
    figures = measure(args.requests)
    for figure in figures:
        figure.note += f"; dataset {'made' if made else 'reused'} ({setup:.0f} s)"
    emit(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
