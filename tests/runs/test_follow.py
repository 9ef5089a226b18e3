"""The follower: many runs in one process, leases between followers, and hand-over."""

import datetime as dt
import os
import signal
import time

import pytest
from django.db import OperationalError
from django.utils import timezone

from runs import follow
from runs.follow import Follower, runs_claim, runs_needing_follower, runs_release
from runs.models import Run, RunEvent, RunStatus
from runs.services import LaunchRequest, run_launch, run_settle, run_submit
from runs.simulator.testing import run_simulator
from runs.upstream import client_from_settings
from tests.factories import top_up

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sim(settings):
    with run_simulator(speed=4) as sim:
        settings.COASTY_BASE_URL = sim.base_url
        settings.PORTAL_PUBLIC_URL = "https://portal.invalid"  # no webhooks: the stream only
        yield sim


def accepted_runs(team, user, count, task):
    runs = []
    for _ in range(count):
        run, _ = run_launch(
            team=team,
            user=user,
            request=LaunchRequest(machine_id="vm-linux-1", task=task, max_steps=500),
        )
        run_submit(run_id=run.pk)
        runs.append(run.pk)
    return runs


def test_one_process_follows_200_live_runs_at_once(sim, team, make_member):
    # given 200 runs that keep stepping
    top_up(team, 1_000_000)
    runs = accepted_runs(team, make_member(team), 200, "[forever] [slow] watch the queue")
    assert Run.objects.filter(pk__in=runs, upstream_id__isnull=False).count() == 200

    # when one follower follows them for a few seconds
    report = Follower(budget_seconds=12, capacity=500, client=client_from_settings()).run()

    # then it held all 200 streams at once and stored events for every run, none twice
    assert report.max_concurrent == 200 and report.runs_followed == 200
    runs_with_events = set(
        RunEvent.objects.filter(run_id__in=runs).values_list("run_id", flat=True)
    )
    assert len(runs_with_events) == 200
    stored = RunEvent.objects.filter(run_id__in=runs).count()
    assert stored == sum(Run.objects.filter(pk__in=runs).values_list("last_seq", flat=True))
    # and let them go when its time was up
    assert not Run.objects.filter(pk__in=runs).exclude(follow_owner="").exists()


def test_leases_keep_two_followers_off_the_same_run(sim, team, make_member):
    top_up(team, 100_000)
    accepted_runs(team, make_member(team), 6, "[forever] [slow] watch")

    first = runs_claim("follower-a", limit=4, exclude=set())
    second = runs_claim("follower-b", limit=10, exclude=set())

    assert len(first) == 4 and len(second) == 2
    assert {r[0] for r in first}.isdisjoint({r[0] for r in second})
    assert not runs_needing_follower()
    runs_release("follower-a", [r[0] for r in first])
    assert runs_needing_follower()
    assert {r[0] for r in runs_claim("follower-c", limit=10, exclude=set())} == {
        r[0] for r in first
    }


def test_a_follower_resumes_after_the_last_stored_event(sim, team, make_member, settings):
    # given a run followed for a while by one follower that then hands over
    top_up(team, 100_000)
    [run_id] = accepted_runs(team, make_member(team), 1, "[steps=12] do it")
    Follower(budget_seconds=1.5, capacity=10).run()
    first_part = Run.objects.get(pk=run_id).last_seq
    assert first_part > 0

    # when a second follower takes over until the run is done
    Follower(budget_seconds=20, capacity=10).run()

    # then every event is stored exactly once, in one unbroken sequence
    run = Run.objects.get(pk=run_id)
    seqs = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, run.last_seq + 1))
    assert run.status == RunStatus.SUCCEEDED and run.steps_completed == 12
    assert first_part < run.last_seq, "the first follower saw the whole run: no hand-over tested"


def test_a_batch_that_fails_to_store_is_fetched_again_not_skipped(
    sim, team, make_member, monkeypatch
):
    # given a run whose first batch of events fails to store (a database hiccup, say)
    top_up(team, 100_000)
    [run_id] = accepted_runs(team, make_member(team), 1, "[steps=6] do it")
    real_ingest = follow.events_ingest
    failures = []

    def flaky_ingest(*, run_id, events):
        if not failures:
            failures.append([e.seq for e in events])
            raise OperationalError("database is locked")
        return real_ingest(run_id=run_id, events=events)

    monkeypatch.setattr(follow, "events_ingest", flaky_ingest)

    # when a follower follows it: it stops following that run and keeps its lease to run out
    report = Follower(budget_seconds=3, capacity=10).run()
    run = Run.objects.get(pk=run_id)
    assert failures and report.errors.get("ingest") == 1
    assert run.last_seq == 0, "a later batch moved past the events that were not stored"
    assert run.follow_lease_until is not None

    # and once that lease has run out, the next follower starts again from the last stored seq
    Run.objects.filter(pk=run_id).update(follow_lease_until=None, follow_owner="")
    Follower(budget_seconds=20, capacity=10).run()

    # then every event is stored once, in one unbroken sequence, and every step is charged
    run = Run.objects.get(pk=run_id)
    seqs = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, run.last_seq + 1))
    assert run.status == RunStatus.SUCCEEDED and run.steps_completed == 6
    assert run.charged_cents == 6 * run.price_cents


def test_a_follower_whose_streams_process_dies_hands_its_runs_over_at_once(sim, team, make_member):
    # given a follower following a run that keeps stepping, with a long budget
    top_up(team, 100_000)
    [run_id] = accepted_runs(team, make_member(team), 1, "[forever] [slow] watch")
    follower = Follower(budget_seconds=120, capacity=10)
    killed = []

    def kill_streams_once_following():
        # on the follower's first tick (its first claim is made): the child is killed outright
        if not killed and follower.streams is not None:
            os.kill(follower.streams.pid, signal.SIGKILL)
            killed.append(time.monotonic())

    # when its streams' process dies (killed, out of memory)
    report = follower.run(on_tick=kill_streams_once_following)

    # then it stopped long before its budget, said why, and let the run go for the next one
    assert killed and time.monotonic() - killed[0] < 60
    assert report.errors.get("StreamsProcessGone") == 1
    run = Run.objects.get(pk=run_id)
    assert run.follow_owner == "" and run.follow_lease_until is None
    assert runs_needing_follower()


def test_a_gone_stream_is_settled_and_not_claimed_again_at_once(
    sim, team, make_member, monkeypatch
):
    # given a live run whose stream Coasty no longer knows (404)
    top_up(team, 100_000)
    [run_id] = accepted_runs(team, make_member(team), 1, "[forever] [slow] watch")
    Run.objects.filter(pk=run_id).update(upstream_id="run_gone_for_good")
    settles = []
    monkeypatch.setattr(
        "portal.core.queue.async_task", lambda name, *args, **kw: settles.append((name, args))
    )

    # when a follower runs for a few seconds (it claims every second)
    report = Follower(budget_seconds=4, capacity=10).run()

    # then it asked for the run's settle once and left the run alone for minutes
    assert report.errors.get("CoastyNotFound") == 1
    assert settles == [("runs.tasks.settle_run", (str(run_id),))]
    run = Run.objects.get(pk=run_id)
    assert run.follow_lease_until > timezone.now() + dt.timedelta(minutes=4)
    assert not runs_needing_follower()


def test_a_run_that_ended_before_any_follower_gets_its_whole_log_once(
    sim, team, make_member, monkeypatch
):
    # given a short run that ended at Coasty, and was settled, before any follower attached
    monkeypatch.setattr("portal.core.queue.async_task", lambda *args, **kwargs: None)
    top_up(team, 100_000)
    [run_id] = accepted_runs(team, make_member(team), 1, "[steps=2] quick one")
    upstream_id = Run.objects.get(pk=run_id).upstream_id
    sim.wait_for_run(upstream_id, "succeeded")
    run_settle(run_id=run_id)
    settled = Run.objects.get(pk=run_id)
    assert (settled.status, settled.last_seq, settled.charged_cents) == ("succeeded", 0, 10)
    assert runs_needing_follower()

    # when followers run, twice
    first = Follower(budget_seconds=6, capacity=10).run()
    second = Follower(budget_seconds=2, capacity=10).run()

    # then the first stored its whole log, ending in done, and charged nothing more; the
    # second found nothing to do
    run = Run.objects.get(pk=run_id)
    seqs = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, run.last_seq + 1)) and run.last_seq > 5
    assert RunEvent.objects.get(run=run, seq=run.last_seq).type == "done"
    assert run.events_complete and run.charged_cents == 10
    assert (first.runs_followed, second.runs_followed) == (1, 0)
    assert not runs_needing_follower()


def test_a_run_sent_with_every_data_fault_is_stored_charged_and_shown(
    sim, team, make_member, client_for
):
    # given Coasty sending NaN in results and events, envelope-shaped data, both step shapes
    # and other tool field names
    sim.set_faults(
        nan_values=1.0, envelope_data=0.5, step_event_shape=0.5, tool_field_names=1.0, seed=7
    )
    top_up(team, 100_000)
    bob = make_member(team)
    [run_id] = accepted_runs(team, bob, 1, "[steps=4] odd data")

    # when it is followed to the end (on PostgreSQL as on SQLite) and settled
    Follower(budget_seconds=20, capacity=10).run()
    run_settle(run_id=run_id)

    # then its whole log is stored, unwrapped, its steps charged once, the NaN refused, and
    # its page shows every event
    run = Run.objects.get(pk=run_id)
    events = list(RunEvent.objects.filter(run=run).order_by("seq"))
    assert [e.seq for e in events] == list(range(1, run.last_seq + 1))
    assert events[-1].type == "done" and run.events_complete
    assert all(set(e.data) != {"seq", "type", "data"} for e in events)
    assert (run.status, run.steps_completed, run.charged_cents) == ("succeeded", 4, 20)
    assert run.result["score"] is None
    page = client_for(bob).get(f"/runs/{run.pk}/")
    assert page.status_code == 200
    # one row per stored event (the ledger's rows on the timeline carry no #seq)
    assert page.content.decode().count('<span class="seq">#') == len(events)
