"""What Coasty says a finished run did, for billing's reconciliation job.

Billing cannot import runs, so it names this function in settings (BILLING_UPSTREAM_REPORTER)
and calls it for each finished hold it re-checks.
"""

import logging

from billing.verdicts import UpstreamReport
from runs.coasty import CoastyNotFound
from runs.models import Run
from runs.upstream import coasty_quick, upstream_is_test_mode

logger = logging.getLogger(__name__)


def upstream_report(hold) -> UpstreamReport | None:
    """Coasty's current figures for the run behind `hold`; None when there is no such run.

    Errors other than "not found" propagate: billing logs them and checks the other holds.
    """
    run = Run.objects.filter(pk=hold.run_id).only("upstream_id", "price_cents").first()
    if run is None or not run.upstream_id:
        return None  # never reached Coasty (submit failed): nothing upstream to compare with
    try:
        upstream = coasty_quick().get_run(run.upstream_id)
    except CoastyNotFound:
        logger.warning(
            "reconcile: Coasty no longer knows run %s (%s)", hold.run_id, run.upstream_id
        )
        return None
    return UpstreamReport(
        steps_completed=int(upstream.get("steps_completed") or 0),
        credits_charged=int(upstream.get("credits_charged") or 0),
        test_mode=upstream_is_test_mode(),
        step_price_cents=run.price_cents,
    )
