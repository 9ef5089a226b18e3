"""The wallet page's ledger, grouped per run: one row per run (its hold, step charges and
release), and one row for each other entry (top-ups, adjustments, holds without a run).

A group's place is its newest activity: the id of its newest transfer (`last_id`). Pages are
keyset pages on that id, newest first, and every page is found by a GROUP BY over the ledger's
entries in a few queries, however long the ledger is:

- **Which groups** (`_group_keys`): the groups of a page are the first distinct groups met when
  the team's transfers are read newest first (the billing_xfer_team_id index). So the GROUP BY
  runs over a *window* of the newest transfers only (1,000; when a window holds fewer groups than
  a page, because a few long runs fill it, the window grows tenfold, at most three times, then
  to the whole ledger): every group met in a window has its newest transfer in it, so the order
  is exact. A run that also has entries newer than the cursor was shown on a newer page and is
  left out (NOT EXISTS on the billing_xfer_run_id index). "Newer" pages read the window the
  other way, oldest first from the cursor (one more query when it finds less than a page).
- **What they sum to** (`_run_sums`): one GROUP BY run_id over the page's runs (billing_xfer_run_id).
- **The other entries** and **the runs' names**: one query each. The runs are described by the
  function `BILLING_LEDGER_RUNS` names (the runs app's), since billing cannot import runs.

Integer cents throughout. The groups follow the ledger's filters: a group sums the entries that
the filters keep.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from uuid import UUID

from django.conf import settings
from django.db.models import (
    BigIntegerField,
    Case,
    Exists,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    UUIDField,
    Value,
    When,
)
from django.utils import timezone
from django.utils.dates import MONTHS_3
from django.utils.module_loading import import_string

from billing.models import Transfer, TransferKind
from billing.selectors import LEDGER_PAGE_SIZE, team_deltas

# The kinds that belong to a run's group; anything else (top-ups, adjustments, even one made for
# a run's discrepancy) is a row of its own.
RUN_KINDS = (TransferKind.HOLD, TransferKind.CAPTURE, TransferKind.RELEASE)
RUN_ENTRY = Q(run_id__isnull=False, kind__in=RUN_KINDS)
# How many of the newest transfers the first GROUP BY reads; grown tenfold while too few groups.
FIRST_WINDOW = 1000
WINDOW_GROWTHS = 3
RUN_ENTRIES_PAGE_SIZE = 100


@dataclass(frozen=True)
class LedgerRun:
    """What the ledger says about a run, given by the runs app (billing cannot import it)."""

    task: str
    launched_by: str
    status: str
    status_label: str
    url: str


@dataclass
class LedgerGroup:
    """One row of the grouped ledger: a run's entries (`run_id` set) or one other `transfer`."""

    last_id: int
    run_id: UUID | None = None
    transfer: Transfer | None = None
    run: LedgerRun | None = None
    held_cents: int = 0
    captured_cents: int = 0
    released_cents: int = 0
    steps: int = 0
    entries: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    change: dict[str, int] = field(default_factory=dict)
    by: str = ""  # who or what caused the entry, in words (a run's launcher is run.launched_by)

    @property
    def is_run(self) -> bool:
        return self.transfer is None

    @property
    def net_cents(self) -> int:
        """What the run cost the team: its step charges (the rest of the hold came back)."""
        return self.captured_cents

    @property
    def still_held_cents(self) -> int:
        return self.held_cents - self.captured_cents - self.released_cents

    # A run's span, said once here rather than by eight `date` filters per row in the template
    # (the wallet page's rendering time was mostly those). Local time, as the filter shows it.
    @cached_property
    def when_text(self) -> str:
        """ "3 Dec 2026, 07:02", "3 Dec 2026, 07:02 – 07:40", or across days both in full."""
        if self.first_at is None:
            return ""
        first, last = _local(self.first_at), _local(self.last_at or self.first_at)
        text = _day_minute(first)
        if last.replace(second=0, microsecond=0) != first.replace(second=0, microsecond=0):
            same_day = last.date() == first.date()
            text += " – " + (f"{last:%H:%M}" if same_day else _day_minute(last))
        return text

    @cached_property
    def when_title(self) -> str:
        if self.first_at is None:
            return ""
        first, last = _local(self.first_at), _local(self.last_at or self.first_at)
        return f"{first.isoformat()} – {last.isoformat()}"


def _day_minute(at: datetime) -> str:
    """`dateformat.format(at, "j M Y, H:i")` ("3 Dec 2026, 07:02", the month as the active
    language abbreviates it), without parsing the format anew for each of a page's ~100 dates
    (22 µs each, against 2)."""
    return f"{at.day} {MONTHS_3[at.month].title()} {at.year:04d}, {at:%H:%M}"


def _local(at: datetime) -> datetime:
    return timezone.localtime(at) if timezone.is_aware(at) else at


@dataclass(frozen=True)
class GroupPage:
    groups: list[LedgerGroup]
    newer_cursor: int | None  # pass as ?after= to see newer groups
    older_cursor: int | None  # pass as ?before= to see older groups


def ledger_groups_page(
    transfers: QuerySet[Transfer],
    *,
    before: int | None = None,
    after: int | None = None,
    size: int = LEDGER_PAGE_SIZE,
) -> GroupPage:
    """One page of `transfers` (a team's, filtered: billing.selectors.ledger_for_team) grouped
    per run, newest activity first. `before`/`after` are the last_id of the page's neighbour."""
    transfers = transfers.order_by()
    if after is not None:
        keys = _newer_group_keys(transfers, after=after, size=size)
        if not keys:
            return ledger_groups_page(transfers, size=size)  # nothing newer: the newest page
        has_newer, has_older = len(keys) > size, True
        keys = keys[:size][::-1]
    else:
        keys = _group_keys(transfers, before=before, size=size)
        has_newer, has_older = before is not None, len(keys) > size
        keys = keys[:size]
    groups = _fill(transfers, keys)
    if not groups:
        return GroupPage(groups=[], newer_cursor=None, older_cursor=None)
    return GroupPage(
        groups=groups,
        newer_cursor=groups[0].last_id if has_newer else None,
        older_cursor=groups[-1].last_id if has_older else None,
    )


# A group is (run id, 0) for a run's entries and (None, transfer id) for any other entry.
def _grouped(transfers: QuerySet[Transfer]) -> QuerySet:
    return (
        transfers.annotate(
            g_run=Case(When(RUN_ENTRY, then=F("run_id")), default=None, output_field=UUIDField()),
            g_solo=Case(
                When(RUN_ENTRY, then=Value(0)), default=F("id"), output_field=BigIntegerField()
            ),
        )
        .values("g_run", "g_solo")
        .annotate(last_id=Max("id"))
    )


GroupKey = tuple[UUID | None, int, int]  # (run id, solo transfer id, last_id)


def _group_keys(transfers: QuerySet[Transfer], *, before: int | None, size: int) -> list[GroupKey]:
    """The size + 1 newest groups whose newest transfer is older than `before`."""
    candidates = transfers
    if before is not None:
        later = transfers.filter(RUN_ENTRY, run_id=OuterRef("run_id"), id__gte=before)
        candidates = transfers.filter(id__lt=before).exclude(RUN_ENTRY & Q(Exists(later)))
    window = FIRST_WINDOW
    for _ in range(WINDOW_GROWTHS + 1):
        newest = candidates.order_by("-id").values("id")[:window]
        rows = list(
            _grouped(transfers.filter(id__in=Subquery(newest)))
            .annotate(n=Sum(Value(1)))
            .order_by("-last_id")
            .values_list("g_run", "g_solo", "last_id", "n")[: size + 1]
        )
        # Enough groups: exact. Fewer, and so all of the window's groups: exact when their
        # transfers do not fill the window (it held every candidate); else read a larger one.
        if len(rows) > size or sum(n for *_key, n in rows) < window:
            return [(run_id, solo, last_id) for run_id, solo, last_id, _n in rows]
        window *= 10
    return list(
        _grouped(candidates)
        .order_by("-last_id")
        .values_list("g_run", "g_solo", "last_id")[: size + 1]
    )


def _newer_group_keys(transfers: QuerySet[Transfer], *, after: int, size: int) -> list[GroupKey]:
    """The size + 1 oldest groups whose newest transfer is newer than `after` (for "Newer").

    The mirror of _group_keys: a window of the oldest transfers newer than the cursor, less the
    runs that go on past the window's end (their newest activity is later than every group that
    ends in it); grown while it holds fewer groups than a page and more transfers follow it.
    """
    candidates = transfers.filter(id__gt=after)
    window = FIRST_WINDOW
    for _ in range(WINDOW_GROWTHS + 1):
        in_order = candidates.order_by("id").values("id")
        end = in_order[window - 1 : window]  # the window's last id; none when it is not full
        later = transfers.filter(RUN_ENTRY, run_id=OuterRef("run_id"), id__gt=Subquery(end))
        rows = list(
            _grouped(
                transfers.filter(id__in=Subquery(in_order[:window])).exclude(
                    RUN_ENTRY & Q(Exists(later))
                )
            )
            .order_by("last_id")
            .values_list("g_run", "g_solo", "last_id")[: size + 1]
        )
        if len(rows) > size or not in_order[window : window + 1].exists():
            return rows
        window *= 10
    return list(
        _grouped(candidates)
        .order_by("last_id")
        .values_list("g_run", "g_solo", "last_id")[: size + 1]
    )


def _fill(transfers: QuerySet[Transfer], keys: list[GroupKey]) -> list[LedgerGroup]:
    run_ids = [run_id for run_id, _solo, _last in keys if run_id is not None]
    solo_ids = [solo for run_id, solo, _last in keys if run_id is None]
    sums = _run_sums(transfers, run_ids)
    solos = {
        t.pk: t
        for t in transfers.filter(id__in=solo_ids).select_related(
            "debit_account", "credit_account", "caused_by_user"
        )
    }
    described = describe_runs(
        set(run_ids) | {t.run_id for t in solos.values() if t.run_id is not None}
    )
    groups = []
    for run_id, solo, last_id in keys:
        if run_id is not None:
            group = sums.get(run_id) or LedgerGroup(last_id=last_id, run_id=run_id)
            group.run = described.get(run_id)
            groups.append(group)
        elif solo in solos:
            t = solos[solo]
            groups.append(
                LedgerGroup(
                    last_id=last_id,
                    transfer=t,
                    run=described.get(t.run_id) if t.run_id else None,
                    entries=1,
                    first_at=t.created_at,
                    last_at=t.created_at,
                    change=team_deltas(t),
                    by=caused_by_words(t),
                )
            )
    return groups


def _run_sums(transfers: QuerySet[Transfer], run_ids: list[UUID]) -> dict[UUID, LedgerGroup]:
    if not run_ids:
        return {}

    def of_kind(kind: str, value) -> Sum:
        return Sum(Case(When(kind=kind, then=value), default=Value(0)))

    rows = (
        transfers.filter(RUN_ENTRY, run_id__in=run_ids)
        .values("run_id")
        .annotate(
            last_id=Max("id"),
            held=of_kind(TransferKind.HOLD, F("amount_cents")),
            captured=of_kind(TransferKind.CAPTURE, F("amount_cents")),
            released=of_kind(TransferKind.RELEASE, F("amount_cents")),
            # Sums, not COUNT: the step charges and entries of the page's runs.
            steps=of_kind(TransferKind.CAPTURE, Value(1)),
            entries=Sum(Value(1)),
            first_at=Min("created_at"),
            last_at=Max("created_at"),
        )
        .order_by()
    )
    sums: dict[UUID, LedgerGroup] = {}
    for row in rows:
        run_id = row["run_id"]
        if run_id is None:  # never: RUN_ENTRY keeps entries with a run
            continue
        sums[run_id] = LedgerGroup(
            last_id=row["last_id"],
            run_id=run_id,
            held_cents=row["held"] or 0,
            captured_cents=row["captured"] or 0,
            released_cents=row["released"] or 0,
            steps=row["steps"] or 0,
            entries=row["entries"] or 0,
            first_at=row["first_at"],
            last_at=row["last_at"],
        )
    return sums


def describe_runs(run_ids: Iterable[UUID]) -> dict[UUID, LedgerRun]:
    """The runs' task, launcher and status, from the function BILLING_LEDGER_RUNS names (one
    query); {} when none is configured."""
    ids = list(run_ids)
    describer = _describer()
    if not ids or describer is None:
        return {}
    return describer(ids)


def _describer() -> Callable[[list[UUID]], dict[UUID, LedgerRun]] | None:
    path = getattr(settings, "BILLING_LEDGER_RUNS", None)
    return import_string(path) if path else None


# --- One run's entries (the group expanded) -------------------------------------------------------


@dataclass(frozen=True)
class RunEntries:
    rows: list[tuple[Transfer, dict[str, int]]]
    next_cursor: int | None  # pass as ?after= for the next entries


def run_entries(
    transfers: QuerySet[Transfer],
    run_id: UUID,
    *,
    after: int | None = None,
    size: int = RUN_ENTRIES_PAGE_SIZE,
) -> RunEntries:
    """A run's hold, step charges and release in `transfers` (a team's, filtered), oldest
    first, a page at a time (a 1,000-step run is ten pages): one query on billing_xfer_run_id."""
    entries = transfers.filter(RUN_ENTRY, run_id=run_id)
    if after is not None:
        entries = entries.filter(id__gt=after)
    rows = list(
        entries.select_related("debit_account", "credit_account").order_by("id")[: size + 1]
    )
    more = len(rows) > size
    rows = rows[:size]
    return RunEntries(
        rows=[(t, team_deltas(t)) for t in rows],
        next_cursor=rows[-1].pk if more and rows else None,
    )


# --- Words for people -----------------------------------------------------------------------------


def person(user) -> str:
    """A person as the ledger names them: their full name, else their username."""
    if user is None:
        return ""
    return person_named(user.get_username(), user.first_name, user.last_name)


def person_named(username: str | None, first_name: str | None, last_name: str | None) -> str:
    """`person` from a user's name fields as a query gave them (all None: no user): the one
    rule for both, as User.get_full_name words a full name."""
    if username is None:
        return ""
    return f"{first_name or ''} {last_name or ''}".strip() or username


def caused_by_words(transfer: Transfer) -> str:
    """Who or what caused a transfer, in words: "victor", "the reconcile_billing job"."""
    if transfer.caused_by_user_id is not None and transfer.caused_by_user is not None:
        return person(transfer.caused_by_user)
    source, _, name = transfer.caused_by.partition(":")
    if source == "user":
        return name
    if source == "job":
        return f"the {name} job"
    if source == "command":
        return f"the {name} command"
    if source == "run":
        return "its run"
    return transfer.caused_by
