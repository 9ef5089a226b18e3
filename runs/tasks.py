"""django-q2 entry points: take ids, call a service. Every one is safe to run twice."""

from django_q.tasks import async_task

from runs import services
from runs.follow import follow_runs_once


def submit_run(run_id: str) -> None:
    services.run_submit(run_id=run_id)


def follow_runs() -> str:
    report = follow_runs_once()
    if report is None:
        return "another follower holds every slot"
    if report.still_live:
        # Hand over: the next follower resumes each stream after its last stored seq.
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
