"""django-q2 entry points: take ids, call a service. Every one is safe to run twice."""

from django_q.tasks import async_task

from runs import services
from runs.follow import follow_runs_once, runs_needing_follower


def submit_run(run_id: str) -> None:
    services.run_submit(run_id=run_id)


def follow_runs() -> str:
    report = follow_runs_once()
    if report is None:
        # The followers running now claim new runs every second; nothing to do here.
        return "another follower holds every slot"
    # Hand over, checked after this follower let go of its slot and leases, so that a run
    # accepted while it was finishing is not left behind: the next follower resumes each
    # stream after its last stored seq.
    if runs_needing_follower():
        async_task("runs.tasks.follow_runs")
    return f"followed {report.runs_followed} runs, {report.events} events"


def settle_run(run_id: str) -> None:
    services.run_settle(run_id=run_id)


def cancel_run_upstream(run_id: str) -> None:
    services.run_cancel_upstream(run_id=run_id)


def resume_run_upstream(run_id: str) -> None:
    services.run_resume_upstream(run_id=run_id)


def housekeeping() -> dict:
    return services.runs_housekeeping()
