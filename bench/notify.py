#!/usr/bin/env python
"""Notifications: outbox throughput, and delivery latency from a state change to the first
attempt at a team endpoint, with a real django-q2 worker, on PostgreSQL.

    python -m bench.notify [--fan-out 400] [--deliveries 150] [--rate 15] [--db portal_bench]

Throughput: events fanned out per second by one process (each to three managers' notifications
and emails, and one endpoint's delivery row). Latency: events recorded at `--rate` per second,
each in its own transaction as producers do; a local receiver notes when each first attempt
arrives; the latency is arrival minus commit, through the on-commit task, the fan-out and the
delivery task (two trips through the ORM broker). Goals: >= 100 events/s; p99 <= 2 s.
"""

import argparse
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.common import BENCH_DB, PY, Figure, Process, django_env, emit, percentile, setup_django

ENV = {"NOTIFY_ALLOW_PRIVATE_URLS": "true", "EMAIL_URL": "dummymail://", "Q_WORKERS": "2"}


def start_receiver(arrivals: dict[str, float]) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            now = time.time()
            self.rfile.read(int(self.headers.get("content-length") or 0))
            arrivals.setdefault(self.headers.get("webhook-id", ""), now)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/hook"


def team_with_endpoint(url: str, name: str):
    from django.contrib.auth import get_user_model

    from portal.notifications.models import EventType
    from portal.notifications.services import endpoint_create
    from portal.teams.models import Membership, Role, Team

    team = Team.objects.create(slug=f"{name}-{uuid.uuid4().hex[:6]}", name=name)
    for n in range(3):
        user = get_user_model().objects.create(
            username=f"{team.slug}-m{n}", email=f"m{n}@{team.slug}.example"
        )
        Membership.objects.create(team=team, user=user, role=Role.MANAGER)
    endpoint_create(team=team, user=None, url=url, events=list(EventType.values))
    return team


def record(team, key: str, data: dict) -> None:
    from django.db import transaction

    from portal.notifications.models import EventType
    from portal.notifications.services import event_record

    with transaction.atomic():
        event_record(
            EventType.BUDGET_THRESHOLD, team_id=team.pk, subject="bench:1", key=key, data=data
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fan-out", type=int, default=400)
    parser.add_argument("--deliveries", type=int, default=150)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--db", default=BENCH_DB)
    args = parser.parse_args()
    setup_django(args.db, **ENV)
    from django_q.models import OrmQ

    from portal.notifications.models import WebhookDelivery
    from portal.notifications.services import event_fan_out

    arrivals: dict[str, float] = {}
    server, url = start_receiver(arrivals)

    # Throughput: the fan-out alone, no worker running (the queued tasks are dropped).
    team = team_with_endpoint(url, "fanout")
    keys = [f"bench:fan:{uuid.uuid4()}" for _ in range(args.fan_out)]
    for key in keys:
        record(team, key, {})
    OrmQ.objects.all().delete()
    started = time.perf_counter()
    for key in keys:
        event_fan_out(key=key)
    fan_out_rate = len(keys) / (time.perf_counter() - started)
    WebhookDelivery.objects.filter(endpoint__team=team).update(status="failed")

    # Latency: a real worker, events at a steady rate.
    team = team_with_endpoint(url, "latency")
    worker = Process(
        "bench-notify-worker", [PY, "manage.py", "qcluster"], django_env(args.db, **ENV)
    )
    committed: dict[str, float] = {}
    try:
        time.sleep(3)  # the cluster starts its workers
        for _ in range(args.deliveries):
            key = f"bench:lat:{uuid.uuid4()}"
            record(team, key, {})
            committed[key] = time.time()
            time.sleep(1 / args.rate)
        deadline = time.monotonic() + 30
        while len(arrivals) < args.deliveries and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        worker.stop()
        server.shutdown()
    ids = dict(
        WebhookDelivery.objects.filter(endpoint__team=team).values_list("webhook_id", "event__key")
    )
    latencies = [
        (arrivals[webhook_id] - committed[key]) * 1000
        for webhook_id, key in ids.items()
        if webhook_id in arrivals and key in committed
    ]
    missing = args.deliveries - len(latencies)
    note = f"{args.deliveries} events at {args.rate}/s, ORM broker, 2 worker processes"
    if missing:
        note += f"; {missing} NOT DELIVERED within 30 s"
    emit(
        [
            Figure(
                "notify: outbox fan-out, events/s (3 people + 1 endpoint each)",
                fan_out_rate,
                "events/s",
                100,
                ">=",
                note=f"{args.fan_out} events, one process",
            ),
            Figure(
                "notify: change -> first delivery attempt, p50",
                percentile(latencies, 50),
                "ms",
                1000,
                "<=",
                note=note,
            ),
            Figure(
                "notify: change -> first delivery attempt, p99",
                percentile(latencies, 99) if not missing else float("inf"),
                "ms",
                2000,
                "<=",
                note=note,
            ),
        ]
    )
    return 0 if not missing else 1


if __name__ == "__main__":
    raise SystemExit(main())
