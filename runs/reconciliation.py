"""What Coasty says a finished run did, for billing's reconciliation job.

Billing cannot import runs, so it names `upstream_report` in settings (BILLING_UPSTREAM_REPORTER)
and calls it, or its batch form `upstream_report.many`, for the finished holds it re-checks. The figures
are read as settle reads them: steps clamped to the run's max_steps (what settle may charge), and
the run's own test mode stored at launch, so a check never re-opens what settle decided alone.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings

from billing.verdicts import UpstreamReport
from runs.coasty import CoastyNotFound
from runs.models import Run
from runs.upstream import coasty_quick, upstream_is_test_mode

logger = logging.getLogger(__name__)


def upstream_report(hold) -> UpstreamReport | None:
    """Coasty's current figures for the run behind `hold`; None when there is no such run.

    Errors other than "not found" propagate: billing logs them and checks the other holds.
    """
    result = upstream_reports([hold])[hold.pk]
    if isinstance(result, Exception):
        raise result
    return result


def upstream_reports(holds: list[Any]) -> dict[int, UpstreamReport | Exception | None]:
    """Coasty's figures for many holds at once: one query for their runs, then at most
    BILLING_RECONCILE_CONCURRENCY calls to Coasty in flight. {hold pk: report, None when there
    is no upstream run to ask about, or the error Coasty's answer raised}."""
    runs = {
        run.pk: run
        for run in Run.objects.filter(pk__in=[h.run_id for h in holds if h.run_id]).only(
            "upstream_id", "price_cents", "max_steps", "test_mode"
        )
    }
    asked = {h.pk: runs[h.run_id] for h in holds if h.run_id in runs and runs[h.run_id].upstream_id}
    results: dict[int, UpstreamReport | Exception | None] = {h.pk: None for h in holds}
    if not asked:
        return results
    client = coasty_quick()  # thread-safe (httpx); the threads touch no database

    def fetch(run: Run) -> dict[str, Any] | Exception | None:
        try:
            return client.get_run(str(run.upstream_id))
        except CoastyNotFound:
            logger.warning("reconcile: Coasty no longer knows run %s (%s)", run.pk, run.upstream_id)
            return None
        except Exception as exc:  # handed back to billing, which logs it per hold
            return exc

    workers = max(1, min(settings.BILLING_RECONCILE_CONCURRENCY, len(asked)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        records = dict(zip(asked, pool.map(fetch, asked.values()), strict=True))
    for hold_pk, record in records.items():
        run = asked[hold_pk]
        if record is None or isinstance(record, Exception):
            results[hold_pk] = record
            continue
        results[hold_pk] = UpstreamReport(
            steps_completed=min(_count(record.get("steps_completed")), run.max_steps),
            credits_charged=_count(record.get("credits_charged")),
            test_mode=run.test_mode if run.test_mode is not None else upstream_is_test_mode(),
            step_price_cents=run.price_cents,
        )
    return results


upstream_report.many = upstream_reports  # type: ignore[attr-defined]


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
