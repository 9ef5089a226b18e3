#!/usr/bin/env python
"""Ledger: step captures per second on ONE hot wallet, 50 concurrent runs, on PostgreSQL.

    python -m bench.ledger [--runs 50] [--steps 60] [--processes 2] [--rounds 2]

The runs are spread over `--processes` processes (a thread per run), as the portal's workers
are; each run captures its steps one `hold_capture` at a time (the unbatched worst case: the
event follower usually brings several steps of a run at once). The same layout then runs the
floor any ledger must pay: a plain guarded `UPDATE wallet SET balance = balance - x WHERE
balance >= x`, one statement per transaction, on one row. Rounds alternate the two so that a
noisy neighbour hurts both alike; the best round of each is kept. Goals: >= 1,000 captures/s
and >= 50 % of the plain UPDATE loop. The ledger's invariants are checked at the end.
"""

import argparse
import multiprocessing
import threading
import time
import uuid

from bench.common import Figure, emit, setup_django

PRICE = 5


def capture_work(reference: str, steps: int) -> None:
    from billing import services

    for step in range(1, steps + 1):
        services.hold_capture(
            reference=reference, step=step, amount_cents=PRICE, caused_by=reference
        )


def plain_work(_reference: str, steps: int) -> None:
    from django.db import connection

    # Autocommit: each UPDATE is its own transaction, the cheapest a guarded debit can be.
    with connection.cursor() as cursor:
        for _ in range(steps):
            cursor.execute(
                "UPDATE bench_plain_wallet SET balance = balance - %s WHERE id = 1 AND balance >= %s",
                [PRICE, PRICE],
            )


WORK = {"capture": capture_work, "plain": plain_work}


def process_main(kind, references, steps, barrier, errors):
    """One worker process: a thread per run, all released by the shared barrier."""
    from django.db import connections

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
    from django.db import connections

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


def holds_for(team, runs: int, steps: int) -> list[str]:
    from billing import services

    references = []
    for _ in range(runs):
        run_id = uuid.uuid4()
        hold = services.hold_place(
            team=team,
            amount_cents=steps * PRICE,
            reference=f"run:{run_id}",
            run_id=run_id,
            caused_by=f"run:{run_id}",
        )
        references.append(hold.reference)
    return references


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    setup_django()
    from django.db import connection

    from billing import services
    from billing.invariants import ledger_problems
    from portal.teams.models import Team

    team = Team.objects.create(slug=f"bench-{uuid.uuid4().hex[:8]}", name="Ledger bench")
    total = args.runs * args.steps
    services.wallet_top_up(
        team=team,
        amount_cents=total * PRICE * args.rounds,
        reference="bench",
        actor="command:bench",
        idempotency_key=f"bench:{team.slug}",
    )
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_plain_wallet")
        cursor.execute(
            "CREATE TABLE bench_plain_wallet (id int primary key, balance bigint not null)"
        )
        cursor.execute("INSERT INTO bench_plain_wallet VALUES (1, %s)", [total * PRICE * 10])
    capture_rates, plain_rates, errors = [], [], []
    for _ in range(args.rounds):
        references = holds_for(team, args.runs, args.steps)
        elapsed, failed = timed("capture", references, args.steps, args.processes)
        capture_rates.append(total / elapsed)
        errors += failed
        elapsed, failed = timed("plain", references, args.steps, args.processes)
        plain_rates.append(total / elapsed)
        errors += failed
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_plain_wallet")
    problems = ledger_problems()
    captures, plain = max(capture_rates), max(plain_rates)
    layout = f"{args.runs} runs on one wallet, {args.processes} processes"
    note = (
        f"{layout}; rounds {[round(r) for r in capture_rates]} vs {[round(r) for r in plain_rates]}"
    )
    if errors or problems:
        note += f"; ERRORS {(errors + problems)[:3]}"
    emit(
        [
            Figure(
                "ledger: step captures/s, one hot wallet",
                captures,
                "captures/s",
                1000,
                ">=",
                note=note,
            ),
            Figure(
                "ledger: captures vs plain guarded UPDATE",
                captures,
                "captures/s",
                plain,
                ">=50%",
                note=note,
            ),
        ]
    )
    return 0 if not errors and not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
