"""The follower's batches are capped in bytes as well as in events (issue 13, item 7): a burst of
big events is stored in several transactions, not one huge one."""

import pytest

from runs import follow
from runs.coasty import SseEvent
from runs.follow import Follower


@pytest.mark.django_db
def test_a_batch_stops_at_the_byte_cap(settings, monkeypatch):
    settings.RUNS_FOLLOW_BATCH_MAX_BYTES = 10_000
    batches = []
    monkeypatch.setattr(
        follow, "events_ingest", lambda *, run_id, events: batches.append([e.seq for e in events])
    )
    monkeypatch.setattr(follow, "close_old_connections", lambda: None)  # the test's transaction
    follower = Follower(client=object())  # type: ignore[arg-type]  # no stream is opened
    for seq in range(1, 11):
        follower.inbox.append(("event", "run-1", SseEvent(seq, "text", {"text": "x"}, size=4_000)))

    # when the follower drains its inbox
    while follower.inbox:
        follower._drain(wait=0)

    # then no batch held more than the cap allows (the event that crosses it ends the batch)
    assert batches == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]
