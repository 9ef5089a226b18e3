#!/usr/bin/env python
"""Pages: SQL queries and median server time of the runs list, the run page and the wallet
(ledger) page, for one team at two scales, on PostgreSQL: 100,000 runs with 1,000,000 ledger
rows, and 1,000,000 runs with 10,000,000 (the same year of history, ten times busier).

    python -m bench.pages [--requests 30] [--rounds 3] [--scales 100000,1000000] [--regenerate]

Each scale's dataset is made with bulk SQL (generate_series) in its own database
(portal_bench_pages, portal_bench_pages_1000000) and kept: the next `make bench` reuses it while
its version (ours, the scale, the latest migrations) matches. While loading, the tables'
secondary indexes and unique constraints are dropped and made again afterwards, and foreign-key
triggers are off (session_replication_role = replica): the rows are consistent by construction —
every run has its hold, captures and release, the balances are the sums of the transfers, and
`check_ledger` passes on it.

Pages are requested in-process through Django's test client, as a member of the team, with
DEBUG off (production settings): the time is the server's, from request to rendered response.
Each scale is measured in its own process, the scales alternating round by round; each keeps its
best median. Goals: the same query counts at both scales (<= 10; 13 for the wallet, whose ledger is grouped
per run), medians <= 50 ms at both, and
the larger scale's median <= 1.5 x the smaller's.
"""

import argparse
import json
import os
import statistics
import subprocess
import time

from bench.common import (
    PAGES_DB,
    PY,
    REPO,
    Figure,
    database_exists,
    database_url,
    django_env,
    emit,
    migrate,
    recreate_database,
)

SCALES = (100_000, 1_000_000)
YEAR_SECONDS = 31_500_000  # every scale's runs are spread over the same year
LIVE = 10  # the newest runs are still running: open holds, no release
STEPS = 8  # steps charged per finished run (3 for a live one)
EVENTS = 45  # events stored for each of the newest 50 runs (the run page shows them)
DATASET_VERSION = "pages-v5"


def database_for(runs: int) -> str:
    return PAGES_DB if runs == 100_000 else f"{PAGES_DB}_{runs}"


def dataset_version(runs: int) -> str:
    """The dataset's version: ours, the scale, and the latest migration of each app it fills."""
    latest = []
    for app in ("portal", "runs", "billing"):
        names = sorted(p.stem for p in (REPO / app / "migrations").glob("0*.py"))
        latest.append(f"{app}:{names[-1] if names else '-'}")
    return f"{DATASET_VERSION}|{runs}|{'|'.join(latest)}"


def dataset_ready(runs: int) -> bool:
    db = database_for(runs)
    if not database_exists(db):
        return False
    import psycopg

    with psycopg.connect(database_url(db)) as conn:
        try:
            row = conn.execute("SELECT version FROM bench_dataset").fetchone()
        except psycopg.errors.UndefinedTable:
            return False
    return bool(row) and row[0] == dataset_version(runs)


LOADED_TABLES = ("runs_run", "billing_hold", "billing_transfer", "runs_runevent")


def drop_secondary_indexes(cursor) -> list[str]:
    """Drop the loaded tables' indexes and unique constraints other than their primary keys;
    the statements that make them again. Building an index once over the loaded rows is many
    times cheaper than keeping it up to date row by row."""
    cursor.execute(
        """
        SELECT format('ALTER TABLE %%I ADD CONSTRAINT %%I %%s', t.relname, c.conname,
                      pg_get_constraintdef(c.oid)),
               format('ALTER TABLE %%I DROP CONSTRAINT %%I', t.relname, c.conname)
          FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
         WHERE t.relname = ANY(%(tables)s) AND c.contype = 'u'
        """,
        {"tables": list(LOADED_TABLES)},
    )
    constraints = cursor.fetchall()
    cursor.execute(
        """
        SELECT i.indexdef, format('DROP INDEX %%I', i.indexname)
          FROM pg_indexes i
         WHERE i.tablename = ANY(%(tables)s)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
        """,
        {"tables": list(LOADED_TABLES)},
    )
    indexes = cursor.fetchall()
    for _make, drop in constraints + indexes:
        cursor.execute(drop)
    return [make for make, _drop in constraints + indexes]


def generate(runs: int) -> None:
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
        "runs": runs,
        "spacing": YEAR_SECONDS / runs,
        "live": LIVE,
        "steps": STEPS,
        "avail": accounts[AccountKind.AVAILABLE],
        "held": accounts[AccountKind.HELD],
        "spend": accounts[AccountKind.SPEND],
        "funding": funding,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        # Foreign-key triggers off while loading: every reference is made here, consistently.
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        cursor.execute("SET LOCAL work_mem = '64MB'")
        remake = drop_secondary_indexes(cursor)
        cursor.execute(RUNS_SQL, params)
        cursor.execute(HOLDS_SQL, params)
        cursor.execute(TOP_UP_SQL, params)
        cursor.execute(TRANSFERS_SQL, params)
        cursor.execute(EVENTS_SQL, {**params, "events": EVENTS})
        # Balances are the sums of the transfers, as the ledger's first invariant says.
        cursor.execute(BALANCES_SQL)
        for statement in remake:
            cursor.execute(statement)
        cursor.execute("CREATE TABLE bench_dataset (version text)")
        cursor.execute("INSERT INTO bench_dataset VALUES (%s)", [dataset_version(runs)])
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
       LATERAL (SELECT now() - make_interval(secs => i * %(spacing)s) AS at) AS t
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
  FROM (SELECT * FROM billing_hold ORDER BY created_at) h
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
WITH moved AS (
    SELECT account, sum(amount) AS total
      FROM (SELECT credit_account_id AS account, amount_cents AS amount FROM billing_transfer
            UNION ALL
            SELECT debit_account_id, -amount_cents FROM billing_transfer) AS m
     GROUP BY account
)
UPDATE billing_account a SET balance_cents = COALESCE(moved.total, 0)
  FROM billing_account b LEFT JOIN moved ON moved.account = b.id
 WHERE a.id = b.id
"""


PAGES = ("runs list", "run page", "wallet page")
# The wallet's ledger grouped per run costs four queries where a flat page cost one: the page's
# groups, the runs' sums, the other entries, the runs' names (billing.ledger_groups).
QUERY_GOALS = {"wallet page": 13}


def measure(requests: int) -> dict[str, dict]:
    """In this process (set up on one scale's database): each page's SQL queries, median and p90
    server time over `requests` requests, after three to warm up."""
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
    measured = {}
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
        queries = len(captured.captured_queries)  # before reset_queries() empties the log
        reset_queries()
        measured[name] = {
            "url": url,
            "queries": queries,
            "median": statistics.median(times),
            "p90": sorted(times)[int(len(times) * 0.9)],
        }
    return measured


def in_child(*args: str, db: str) -> str:
    """Run this module in a child process set up on `db`; its last line of output."""
    done = subprocess.run(
        [PY, "-m", "bench.pages", *args],
        cwd=REPO,
        env=django_env(db),
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def prepare(runs: int, regenerate: bool) -> str:
    """Make sure the scale's dataset is there (made, or reused); how long that took."""
    started = time.perf_counter()
    db = database_for(runs)
    if regenerate or not dataset_ready(runs):
        recreate_database(db)
        in_child("--generate", str(runs), db=db)
        return f"made in {time.perf_counter() - started:.0f} s"
    migrate(db)
    return f"reused ({time.perf_counter() - started:.0f} s)"


def label(runs: int) -> str:
    return f"{runs // 1000:,}k runs" if runs < 1_000_000 else f"{runs // 1_000_000:,}M runs"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scales", default=",".join(str(n) for n in SCALES))
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)  # in a child
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # in a child
    args = parser.parse_args()
    if args.generate or args.measure:
        from bench.common import setup_django

        setup_django(os.environ["DATABASE_URL"].rsplit("/", 1)[1])
        if args.generate:
            generate(args.generate)
            print("generated")
        else:
            print(json.dumps(measure(args.requests)))
        return 0

    small, large = sorted(int(n) for n in args.scales.split(","))
    made = {runs: prepare(runs, args.regenerate) for runs in (small, large)}
    rounds: dict[int, list[dict]] = {small: [], large: []}
    for n in range(args.rounds):
        for runs in (small, large) if n % 2 == 0 else (large, small):
            result = json.loads(
                in_child("--measure", "--requests", str(args.requests), db=database_for(runs))
            )
            rounds[runs].append(result)
    figures = []
    for page in PAGES:
        best = {runs: min(r[page]["median"] for r in rounds[runs]) for runs in rounds}
        queries = {runs: max(r[page]["queries"] for r in rounds[runs]) for runs in rounds}
        medians = {
            runs: "/".join(f"{r[page]['median']:.1f}" for r in rounds[runs]) for runs in rounds
        }
        url = rounds[small][0][page]["url"]
        note = {
            runs: f"{url}; medians {medians[runs]} ms over {args.requests} requests a round; "
            f"dataset {made[runs]}"
            for runs in rounds
        }
        s_label, l_label = label(small), label(large)
        figures += [
            Figure(
                f"pages: {page} SQL queries ({s_label})",
                queries[small],
                "queries",
                QUERY_GOALS.get(page, 10),
                "<=",
                note=note[small],
            ),
            Figure(
                f"pages: {page} SQL queries ({l_label} vs {s_label})",
                queries[large],
                "queries",
                queries[small],
                "==",
                basis="side by side",
                note=note[large],
            ),
            Figure(
                f"pages: {page} median ({s_label})", best[small], "ms", 50, "<=", note=note[small]
            ),
            Figure(
                f"pages: {page} median ({l_label})", best[large], "ms", 50, "<=", note=note[large]
            ),
            Figure(
                f"pages: {page} median ({l_label} vs {s_label})",
                best[large],
                "ms",
                best[small],
                "<=150%",
                note=f"best medians {best[large]:.1f} / {best[small]:.1f} ms",
            ),
        ]
    emit(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
