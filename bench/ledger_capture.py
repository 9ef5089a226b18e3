#!/usr/bin/env python
"""Ledger hot-path benchmark: step captures per second on ONE hot wallet, N concurrent runs.

    DATABASE_URL=postgres://... .venv/bin/python bench/ledger_capture.py [--runs 50] [--steps 40]

Compares against the floor any ledger must pay: a plain guarded `UPDATE ... SET balance =
balance - x WHERE balance >= x`, one transaction each, from the same number of threads. Writes
its own team (bench-<random>) and leaves the ledger consistent (it runs check_ledger's checks).
"""

import argparse
import os
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django

django.setup()

from django.db import connection, connections, transaction  # noqa: E402

from billing import services  # noqa: E402
from billing.invariants import ledger_problems  # noqa: E402
from portal.models import Team  # noqa: E402


def run_threads(count, work):
    barrier = threading.Barrier(count + 1)
    errors = []

    def target(i):
        try:
            barrier.wait()
            work(i)
        except Exception as exc:  # report, don't hide
            errors.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - started, errors


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Run against PostgreSQL: set DATABASE_URL=postgres://...")
    price = 5
    team = Team.objects.create(slug=f"bench-{uuid.uuid4().hex[:8]}", name="Bench")
    services.wallet_top_up(
        team=team,
        amount_cents=args.runs * args.steps * price,
        reference="bench",
        actor="command:bench",
        idempotency_key=f"bench:{team.slug}",
    )
    refs = []
    for _ in range(args.runs):
        run_id = uuid.uuid4()
        hold = services.hold_place(
            team=team,
            amount_cents=args.steps * price,
            reference=f"run:{run_id}",
            run_id=run_id,
            caused_by=f"run:{run_id}",
        )
        refs.append(hold.reference)
    connections.close_all()

    def capture(i):
        for step in range(1, args.steps + 1):
            services.hold_capture(
                reference=refs[i], step=step, amount_cents=price, caused_by=refs[i]
            )

    elapsed, errors = run_threads(args.runs, capture)
    total = args.runs * args.steps
    ledger_rate = total / elapsed

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_plain_wallet")
        cursor.execute(
            "CREATE TABLE bench_plain_wallet (id int primary key, balance bigint not null)"
        )
        cursor.execute("INSERT INTO bench_plain_wallet VALUES (1, %s)", [total * price])
    connections.close_all()

    def plain(i):
        for _ in range(args.steps):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE bench_plain_wallet SET balance = balance - %s "
                    "WHERE id = 1 AND balance >= %s",
                    [price, price],
                )

    plain_elapsed, plain_errors = run_threads(args.runs, plain)
    plain_rate = total / plain_elapsed
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_plain_wallet")

    problems = ledger_problems()
    print(f"captures: {total} in {elapsed:.2f}s = {ledger_rate:,.0f}/s ({len(errors)} errors)")
    print(f"plain guarded UPDATE: {total} in {plain_elapsed:.2f}s = {plain_rate:,.0f}/s")
    print(f"ratio: {ledger_rate / plain_rate:.0%}")
    print("ledger:", problems or "OK")
    for error in errors[:5] + plain_errors[:5]:
        print("error:", error)
    return 0 if not errors and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
