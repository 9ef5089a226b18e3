#!/usr/bin/env python
"""Ledger hot-path benchmark: step captures per second on ONE hot wallet, N concurrent runs.

    DATABASE_URL=postgres://... .venv/bin/python bench/ledger_capture.py \
        [--runs 50] [--steps 40] [--processes 1]

The runs are spread over `--processes` processes (threads within each), as the portal's
workers are. The same layout then runs the floor any ledger must pay: a plain guarded
`UPDATE ... SET balance = balance - x WHERE balance >= x`, one transaction each. The script
writes its own team (bench-<random>), and checks the ledger's invariants at the end.
"""

import argparse
import multiprocessing
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

PRICE = 5


def capture_work(reference: str, steps: int) -> None:
    for step in range(1, steps + 1):
        services.hold_capture(
            reference=reference, step=step, amount_cents=PRICE, caused_by=reference
        )


def plain_work(_reference: str, steps: int) -> None:
    for _ in range(steps):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "UPDATE bench_plain_wallet SET balance = balance - %s WHERE id = 1 AND balance >= %s",
                [PRICE, PRICE],
            )


WORK = {"capture": capture_work, "plain": plain_work}


def process_main(kind, references, steps, barrier, errors):
    """One worker process: a thread per run, all released by the shared barrier."""
    failures = []

    def target(reference):
        try:
            WORK[kind](reference, steps)
        except Exception as exc:
            failures.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(ref,)) for ref in references]
    barrier.wait()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors.extend(failures)


def timed(kind, references, steps, processes):
    connections.close_all()  # never share a connection with a child process
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(processes + 1)
    errors = context.Manager().list()
    shares = [references[i::processes] for i in range(processes)]
    children = [
        context.Process(target=process_main, args=(kind, share, steps, barrier, errors))
        for share in shares
    ]
    for child in children:
        child.start()
    barrier.wait()
    started = time.perf_counter()
    for child in children:
        child.join()
    return time.perf_counter() - started, list(errors)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Run against PostgreSQL: set DATABASE_URL=postgres://...")
    team = Team.objects.create(slug=f"bench-{uuid.uuid4().hex[:8]}", name="Bench")
    total = args.runs * args.steps
    services.wallet_top_up(
        team=team,
        amount_cents=total * PRICE,
        reference="bench",
        actor="command:bench",
        idempotency_key=f"bench:{team.slug}",
    )
    references = []
    for _ in range(args.runs):
        run_id = uuid.uuid4()
        hold = services.hold_place(
            team=team,
            amount_cents=args.steps * PRICE,
            reference=f"run:{run_id}",
            run_id=run_id,
            caused_by=f"run:{run_id}",
        )
        references.append(hold.reference)

    elapsed, errors = timed("capture", references, args.steps, args.processes)
    ledger_rate = total / elapsed

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_plain_wallet")
        cursor.execute(
            "CREATE TABLE bench_plain_wallet (id int primary key, balance bigint not null)"
        )
        cursor.execute("INSERT INTO bench_plain_wallet VALUES (1, %s)", [total * PRICE])
    plain_elapsed, plain_errors = timed("plain", references, args.steps, args.processes)
    plain_rate = total / plain_elapsed
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_plain_wallet")

    problems = ledger_problems()
    layout = f"{args.runs} runs on one wallet, {args.processes} process(es)"
    print(f"{layout}")
    print(f"  step captures:        {total} in {elapsed:.2f}s = {ledger_rate:,.0f}/s")
    print(f"  plain guarded UPDATE: {total} in {plain_elapsed:.2f}s = {plain_rate:,.0f}/s")
    print(f"  captures / plain:     {ledger_rate / plain_rate:.0%}")
    print("  ledger invariants:   ", problems or "OK")
    for error in (errors + plain_errors)[:5]:
        print("  error:", error)
    return 0 if not errors and not plain_errors and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
