"""Every write to runs, one module per kind of change (as Zulip's `zerver/actions/`).

- launch: the run and its wallet hold, in one transaction;
- approval: runs above the team's approval threshold wait for a manager (approve, reject, expire);
- submit: POST /v1/runs under the run's own idempotency key, until Coasty has it (or, past
  the age limit, adopted from the idempotency lookup or failed); orphans cancelled upstream;
- ingest: stream events, stored and applied once per (run, seq);
- webhooks: Coasty's signed deliveries, verified, stored and applied once;
- actions: cancel and resume, asked for by people and carried to Coasty;
- activity: the portal's own records of what a person did to a run, with the person (actor);
- settle: the money of an ended run, from Coasty's own record, or on what was captured when
  Coasty forgot the run or it overran its deadline (with a discrepancy);
- housekeeping: the every-minute safety net for whatever a crash left behind.

Each is idempotent: a retry, a duplicate event, a second worker or a crash in the middle repeats
it without a second upstream run or a second charge. `status` holds the one rule by which a
run's status moves; `upstream_data` makes what Coasty sends safe to store; the SQL of the hot
paths is in `runs.sql`. docs/architecture.md tells the whole flow.
"""

from runs.services.actions import (
    RunActionRefused,
    run_cancel_upstream,
    run_request_cancel,
    run_request_resume,
    run_resume_upstream,
)
from runs.services.activity import run_activity_record
from runs.services.approval import (
    NotAnApprover,
    may_decide,
    run_approve,
    run_reject,
    runs_expire_approvals,
)
from runs.services.housekeeping import runs_housekeeping
from runs.services.ingest import IncomingEvent, events_ingest, events_ingest_runs
from runs.services.launch import LaunchRequest, run_launch, upstream_request_body
from runs.services.settle import run_settle, run_settle_lost
from runs.services.submit import (
    run_cancel_orphan_upstream,
    run_check_orphan,
    run_mark_accepted,
    run_mark_submit_failed,
    run_submit,
)
from runs.services.webhooks import WebhookAnswer, webhook_receive

__all__ = [
    "IncomingEvent",
    "LaunchRequest",
    "NotAnApprover",
    "RunActionRefused",
    "WebhookAnswer",
    "events_ingest",
    "events_ingest_runs",
    "may_decide",
    "run_activity_record",
    "run_approve",
    "run_cancel_orphan_upstream",
    "run_cancel_upstream",
    "run_check_orphan",
    "run_launch",
    "run_mark_accepted",
    "run_mark_submit_failed",
    "run_reject",
    "run_request_cancel",
    "run_request_resume",
    "run_resume_upstream",
    "run_settle",
    "run_settle_lost",
    "run_submit",
    "runs_expire_approvals",
    "runs_housekeeping",
    "upstream_request_body",
    "webhook_receive",
]
