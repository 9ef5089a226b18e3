#!/usr/bin/env python
"""Webhook intake: signed deliveries per second and p99 latency at 32 concurrent senders.

    python -m bench.webhook [--senders 32] [--seconds 8] [--runs 8000]

The portal runs under gunicorn (gthread workers) on PostgreSQL, as in production. The bench
makes real runs (each with its own webhook secret, encrypted at rest as the portal stores it)
and sends each one Coasty's real deliveries, signed as Coasty signs them: `run.awaiting_human`,
then its terminal `run.succeeded` (which also enqueues the run's settle task). The same
senders, on the same server, then post the same bytes to `/bench/ok`, a bare view with no
database (PORTAL_BENCH_ENDPOINTS), which is the limit. Re-sent deliveries (each a duplicate
that must change nothing) are a figure of their own.
Goals: >= 70 % of the bare endpoint's rate, p99 <= 50 ms.
"""

import argparse
import datetime as dt
import itertools
import json
import time
import uuid

from bench.common import Figure, django_env, emit, gunicorn, percentile, setup_django
from bench.loadgen import request_bytes, run_load


def make_runs(count: int) -> list[tuple[str, str, str]]:
    """`count` live runs accepted by Coasty: [(portal id, upstream id, webhook secret)]."""
    from django.contrib.auth import get_user_model

    from portal.core.crypto import encrypt_secret
    from portal.teams.models import Team
    from runs.models import Run, RunStatus

    team = Team.objects.create(slug=f"hooks-{uuid.uuid4().hex[:8]}", name="Webhook bench")
    user = get_user_model().objects.create(username=f"hooks-{uuid.uuid4().hex[:8]}")
    now = dt.datetime.now(dt.UTC)
    rows, runs = [], []
    for _ in range(count):
        run_id = uuid.uuid4()
        secret = "whsec_" + uuid.uuid4().hex + uuid.uuid4().hex[:16]
        upstream = f"run_{uuid.uuid4().hex[:24]}"
        rows.append(
            Run(
                id=run_id,
                team=team,
                created_by=user,
                machine_id="vm-linux-1",
                task="bench",
                price_cents=5,
                held_cents=250,
                idempotency_key=f"portal-run-{run_id}",
                upstream_id=upstream,
                webhook_secret_encrypted=encrypt_secret(secret),
                status=RunStatus.RUNNING,
                status_at=now,
                accepted_at=now,
            )
        )
        runs.append((str(run_id), upstream, secret))
    Run.objects.bulk_create(rows, batch_size=2000)
    return runs


def delivery_body(run: tuple[str, str, str], event: str) -> bytes:
    """A delivery's body as Coasty sends it (INTERFACES.md)."""
    _run_id, upstream, _secret = run
    status = {"run.awaiting_human": "awaiting_human", "run.succeeded": "succeeded"}[event]
    return json.dumps(
        {
            "event": event,
            "run_id": upstream,
            "status": status,
            "result": {"text": "done", "steps": 3} if status == "succeeded" else None,
            "error": None,
            "awaiting_human_reason": "captcha" if status == "awaiting_human" else None,
            "created_at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        },
        separators=(",", ":"),
    ).encode()


def signed(base: str, run: tuple[str, str, str], body: bytes, path: str = "") -> bytes:
    """The POST of `body` to the run's webhook URL (or `path`), signed now as Coasty signs."""
    from runs.coasty import signature_header

    run_id, _upstream, secret = run
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Coasty-Webhooks/1.0",
        "Coasty-Signature": signature_header(secret, int(time.time()), body),
    }
    url = f"{base}{path or f'/webhooks/coasty/runs/{run_id}/'}"
    return request_bytes("POST", url, body, headers)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    setup_django()
    from django.db.models import Count

    from runs.models import WebhookDelivery

    runs = make_runs(args.runs)
    env = django_env(PORTAL_BENCH_ENDPOINTS="true")
    with gunicorn(env, workers=args.workers, threads=args.threads) as (base, _server):
        first = delivery_body(runs[0], "run.awaiting_human")
        bare_requests = [signed(base, runs[0], first, "/bench/ok")] * 500
        # Warm every worker and thread (imports, connections) before anything is timed.
        run_load(base, itertools.cycle(bare_requests), concurrency=args.senders, seconds=4)

        bodies = [(run, delivery_body(run, "run.awaiting_human")) for run in runs]
        bare1 = run_load(
            base, itertools.cycle(bare_requests), concurrency=args.senders, seconds=args.seconds
        )
        # Unique deliveries: every run's awaiting_human, then its terminal state (which also
        # enqueues the run's settle task). Signed as they are sent, as Coasty does.
        unique = itertools.chain(
            (signed(base, run, body) for run, body in bodies),
            (signed(base, run, delivery_body(run, "run.succeeded")) for run, _ in bodies),
        )
        hooks = run_load(base, unique, concurrency=args.senders, seconds=args.seconds)
        bare2 = run_load(
            base, itertools.cycle(bare_requests), concurrency=args.senders, seconds=args.seconds
        )
        # Duplicates: bodies already applied, signed afresh (as Coasty's retries are).
        applied = bodies[: max(1, min(len(bodies), hooks.sent))]
        again = (signed(base, run, body) for run, body in itertools.cycle(applied))
        dups = run_load(base, again, concurrency=args.senders, seconds=args.seconds / 2)

    bare = max(bare1, bare2, key=lambda r: r.rate)
    verdicts = dict(
        WebhookDelivery.objects.values_list("verdict").annotate(n=Count("id")).order_by()
    )
    note = (
        f"{args.workers} gunicorn workers x {args.threads} threads; bare {bare1.rate:.0f}/"
        f"{bare2.rate:.0f}/s; statuses {dict(hooks.statuses)} dup {dict(dups.statuses)}; "
        f"verdicts {verdicts}"
    )
    ok = hooks.statuses.get(200, 0) == hooks.sent and dups.statuses.get(200, 0) == dups.sent
    if not ok:
        note = "NOT ALL 200: " + note
    p99 = percentile(hooks.latencies, 99) * 1000
    emit(
        [
            Figure(
                "webhook: signed deliveries/s (32 senders)",
                hooks.rate,
                "req/s",
                bare.rate,
                ">=70%",
                note=note,
            ),
            Figure(
                "webhook: p99 latency",
                p99,
                "ms",
                50,
                "<=",
                note=f"p50 {percentile(hooks.latencies, 50) * 1000:.1f} ms; bare p99 {percentile(bare.latencies, 99) * 1000:.1f} ms",
            ),
            Figure(
                "webhook: duplicate deliveries/s",
                dups.rate,
                "req/s",
                bare.rate,
                ">=70%",
                note=f"p99 {percentile(dups.latencies, 99) * 1000:.1f} ms",
            ),
        ]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
