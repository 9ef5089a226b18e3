"""The one place billing takes row locks, and the order it takes them in.

Every money-moving transaction locks what it needs in this global order:

1. the hold row (`lock_hold`, or the guarded UPDATE of `take_from_hold`);
2. the transfer's idempotency key (the INSERT of the new transfer takes its unique-index entry);
3. when a hold is placed or released: the month rows it counts against, the team's then the
   member's (`count_against_month`, `give_back_to_month`);
4. account rows, in ascending primary key, last (`change_balances`).

Two transactions that want overlapping rows therefore always queue in the same order and never
deadlock. Accounts come last on purpose: a team's `held` account is the hot row that every step
capture of every run of the team touches, so it stays locked for one statement and the commit.

The two statements on the capture hot path (`take_from_hold`, `change_balances`) are written as
SQL, built once from the models' metadata: through the ORM each cost ~0.5 ms of Python per call,
which under 50 concurrent runs capped captures far below what the database can do. Everything
else goes through the ORM.

On PostgreSQL a step capture is ONE statement (`capture_steps`): the hold UPDATE, the transfer
INSERT and the balance UPDATE are data-modifying CTEs of a single statement, which locks in the
same order (hold, key, accounts by pk). Sent in autocommit it is its own transaction, so the hot
`held` row is locked only while the server finishes that statement and flushes its commit: no
client round trip, no Python, no GIL wait between locking the hot row and committing. That
window is what bounds captures per second on one wallet (`make bench`, "ledger"), and why a
batch of several runs' steps is one statement too (`capture_steps_of_holds`): the hot row is
locked once per commit, not once per run.

On SQLite `FOR UPDATE` does not exist; the portal opens SQLite transactions IMMEDIATE, which
serialises writers, so the same reasoning holds trivially.
"""

import sqlite3
from dataclasses import dataclass
from functools import cache
from typing import TypeVar
from uuid import UUID

from django.db import connection
from django.db.models import Model, QuerySet

from billing.keys import capture_key
from billing.models import Account, Hold, MonthUsage, Transfer, TransferKind

M = TypeVar("M", bound=Model)


def in_lock_order(queryset: QuerySet[M]) -> QuerySet[M]:
    """Lock the rows of `queryset` in primary-key order (the one lock pattern billing uses)."""
    return queryset.order_by("pk").select_for_update()


def lock_hold(reference: str) -> Hold | None:
    """Lock one hold (1st in the order): its captures, release and settle serialise on it."""
    return in_lock_order(Hold.objects.filter(reference=reference)).first()


@dataclass(frozen=True)
class CaptureTarget:
    hold_id: int
    team_id: int
    run_id: UUID | None
    held_account_id: int
    spend_account_id: int


def take_from_hold(reference: str, amount_cents: int) -> CaptureTarget | None:
    """Count `amount_cents` as captured on an open hold if it fits; None when it does not (or
    there is no such open hold).

    One guarded UPDATE (1st in the order) locks the hold, checks there is room and returns the
    accounts the capture moves money between, so two captures of one run queue on the hold and
    can never overdraw it.
    """
    sql, returning = _take_sql()
    with connection.cursor() as cursor:
        cursor.execute(sql, [amount_cents, reference, amount_cents])
        row = cursor.fetchone() if returning else None
        if not returning and cursor.rowcount == 1:
            cursor.execute(_select_target_sql(), [reference])
            row = cursor.fetchone()
    if row is None:
        return None
    hold_id, team_id, run_id, held, spend = row
    if run_id is not None and not isinstance(run_id, UUID):
        run_id = UUID(str(run_id))  # SQLite stores a UUID as 32 hex characters
    return CaptureTarget(hold_id, team_id, run_id, held, spend)


def change_balances(deltas: dict[int, int], *, guard: tuple[int, int] | None = None) -> int:
    """Add `deltas` ({account id: cents}) to the accounts' balances, locking them first (3rd and
    last in the order), in ONE statement. Returns how many accounts were changed.

    The subquery `SELECT id ... ORDER BY id FOR UPDATE` locks the rows in ascending pk
    (PostgreSQL plans it as LockRows above Sort) before the UPDATE writes any of them; a second
    round trip for a separate SELECT FOR UPDATE would keep the hot row locked longer.
    `guard=(account id, cents)` changes nothing in that account unless its balance is at least
    `cents`: the caller sees fewer rows changed and rolls back.
    """
    ids = sorted(deltas)
    table = Account._meta.db_table
    marks = ", ".join(["%s"] * len(ids))
    cases = " ".join(["WHEN %s THEN CAST(%s AS bigint)"] * len(ids))
    for_update = " FOR UPDATE" if connection.features.has_select_for_update else ""
    # Only table names and placeholders are formatted in (S608); every value is a parameter.
    sql = (
        f"UPDATE {table} SET balance_cents = balance_cents + CASE id {cases} ELSE 0 END "  # noqa: S608
        f"WHERE id IN (SELECT id FROM {table} WHERE id IN ({marks}) ORDER BY id{for_update})"
    )
    params: list[int] = [value for pk in ids for value in (pk, deltas[pk])] + ids
    if guard is not None:
        sql += " AND (id <> %s OR balance_cents >= %s)"
        params += list(guard)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


@dataclass(frozen=True)
class Captured:
    """What `capture_steps` wrote: the transfers' ids by step, and the hold's totals after."""

    transfer_ids: dict[int, int]
    hold_id: int
    team_id: int
    run_id: UUID | None
    held_account_id: int
    spend_account_id: int
    captured_cents: int


def capture_steps(
    reference: str,
    steps: list[int],
    amount_cents: int,
    *,
    caused_by_user_id: int | None,
    caused_by: str,
    created_at,
) -> Captured | None:
    """PostgreSQL only: capture `steps` of one hold (one transfer of `amount_cents` each) in ONE
    statement: `capture_steps_of_holds` with a batch of one.

    All or nothing, like any statement: None when the open hold has no room for all of them (or
    there is no such open hold), and nothing is written; IntegrityError when one of the steps was
    captured already (its idempotency key exists), and nothing is written. The caller decides
    what a refusal means (see services.hold_capture).
    """
    if not steps:
        raise ValueError("capture_steps needs at least one step")
    part = HoldSteps(reference, tuple(steps), amount_cents, caused_by_user_id, caused_by)
    return capture_steps_of_holds([part], created_at=created_at).get(reference)


@dataclass(frozen=True)
class HoldSteps:
    """One hold's part of a batch capture: its steps, each at `amount_cents`, and who caused it."""

    reference: str
    steps: tuple[int, ...]
    amount_cents: int
    caused_by_user_id: int | None
    caused_by: str


def capture_steps_of_holds(batch: list[HoldSteps], *, created_at) -> dict[str, Captured]:
    """PostgreSQL only: capture the steps of SEVERAL holds (on one wallet or many) in ONE
    statement; what was written, by hold reference.

    All or nothing per hold: a hold that is not open or has no room for all of its steps is left
    out (absent from the answer) and the others are captured. IntegrityError when any step was
    captured already (its key exists): then nothing at all is written, and the caller decides
    hold by hold. References must be distinct.

    Lock order as everywhere (module docstring), over the whole batch: every open hold of the
    batch in ascending reference, byte by byte (the FOR UPDATE subquery `l`, sorted before it
    locks; the order in which the service's hold-by-hold fallback takes them too), then the keys
    (INSERT t), then every account the batch moves, once each, in ascending id (`a`): one lock
    of the team's hot `held` row per statement whatever the number of holds, so a storing loop
    that brings several runs' steps pays for that row once per commit instead of once per run.
    """
    if not batch or any(not part.steps for part in batch):
        raise ValueError("capture_steps_of_holds needs holds with at least one step each")
    flat = [(part, step) for part in batch for step in part.steps]
    params = {
        "refs": [part.reference for part in batch],
        "totals": [part.amount_cents * len(part.steps) for part in batch],
        "counts": [len(part.steps) for part in batch],
        "step_refs": [part.reference for part, _ in flat],
        "keys": [capture_key(part.reference, step) for part, step in flat],
        "steps": [step for _, step in flat],
        "amounts": [part.amount_cents for part, _ in flat],
        "user_ids": [part.caused_by_user_id for part, _ in flat],
        "caused_bys": [part.caused_by for part, _ in flat],
        "created_at": created_at,
    }
    with connection.cursor() as cursor:
        cursor.execute(_capture_holds_sql(), params)
        rows = cursor.fetchall()
    if not rows:
        return {}
    accounts_moved, accounts_wanted = rows[0][-2:]
    if accounts_moved != accounts_wanted:
        # Unreachable while the holds' foreign keys stand: every account exists.
        raise Account.DoesNotExist(f"batch capture: {accounts_moved} of {accounts_wanted} moved")
    transfer_ids: dict[str, dict[int, int]] = {}
    holds: dict[str, tuple] = {}
    for transfer_id, step, reference, *hold in rows:
        transfer_ids.setdefault(reference, {})[step] = transfer_id
        holds[reference] = hold
    return {
        reference: Captured(
            transfer_ids=transfer_ids[reference],
            hold_id=hold_id,
            team_id=team_id,
            run_id=run_id,
            held_account_id=held,
            spend_account_id=spend,
            captured_cents=captured_cents,
        )
        for reference, (hold_id, run_id, team_id, held, spend, captured_cents, *_) in holds.items()
    }


@cache
def _capture_holds_sql() -> str:
    hold, transfer, account = (
        Hold._meta.db_table,
        Transfer._meta.db_table,
        Account._meta.db_table,
    )
    # Only table names are formatted in (S608); every value is a parameter.
    #
    # The CTEs run "concurrently" in PostgreSQL's words, so the lock order is fixed by data
    # dependencies, not by the order they are written in: h updates only holds that
    # `l` locked (all of them, sorted by reference, before h writes any), t reads h, d reads t and `a`
    # locks the accounts only once every transfer (so every key) is in. `l` is MATERIALIZED so
    # that it is never folded into h, whose own scan order is not that order.
    return f"""
        WITH r AS (
            SELECT * FROM unnest(%(refs)s::varchar[], %(totals)s::bigint[], %(counts)s::integer[])
                       AS r(reference, total, count)
        ), l AS MATERIALIZED (
            SELECT id FROM {hold}
             WHERE reference = ANY(%(refs)s::varchar[]) AND status = '{Hold.Status.OPEN.value}'
             ORDER BY reference COLLATE "C" FOR UPDATE
        ), h AS (
            UPDATE {hold}
               SET captured_cents = {hold}.captured_cents + r.total,
                   captured_steps = {hold}.captured_steps + r.count
              FROM r
             WHERE {hold}.reference = r.reference AND {hold}.id IN (SELECT id FROM l)
               AND {hold}.status = '{Hold.Status.OPEN.value}'
               AND {hold}.captured_cents + {hold}.released_cents + r.total <= {hold}.amount_cents
            RETURNING {hold}.id, {hold}.reference, {hold}.team_id, {hold}.run_id,
                      {hold}.held_account_id, {hold}.spend_account_id, {hold}.captured_cents
        ), t AS (
            INSERT INTO {transfer} (
                idempotency_key, kind, debit_account_id, credit_account_id, amount_cents,
                team_id, hold_id, run_id, step, reference, memo, caused_by_user_id, caused_by,
                created_at
            )
            SELECT s.key, '{TransferKind.CAPTURE.value}', h.held_account_id, h.spend_account_id,
                   s.amount, h.team_id, h.id, h.run_id, s.step, s.reference, '',
                   s.user_id, s.caused_by, %(created_at)s
              FROM unnest(%(step_refs)s::varchar[], %(keys)s::varchar[], %(steps)s::integer[],
                          %(amounts)s::bigint[], %(user_ids)s::bigint[], %(caused_bys)s::varchar[])
                   AS s(reference, key, step, amount, user_id, caused_by)
              JOIN h ON h.reference = s.reference
            RETURNING id, hold_id, step, debit_account_id, credit_account_id, amount_cents
        ), d AS (
            SELECT id, CAST(sum(delta) AS bigint) AS delta FROM (
                SELECT debit_account_id AS id, -amount_cents AS delta FROM t
                UNION ALL
                SELECT credit_account_id, amount_cents FROM t
            ) AS m GROUP BY id
        ), a AS (
            UPDATE {account} SET balance_cents = {account}.balance_cents + d.delta
              FROM d
             WHERE {account}.id = d.id AND {account}.id IN (
                SELECT id FROM {account} WHERE id IN (SELECT id FROM d) ORDER BY id FOR UPDATE
             )
            RETURNING {account}.id
        )
        SELECT t.id, t.step, h.reference, h.id, h.run_id, h.team_id, h.held_account_id,
               h.spend_account_id, h.captured_cents, (SELECT count(*) FROM a),
               (SELECT count(*) FROM d)
          FROM t JOIN h ON h.id = t.hold_id
    """  # noqa: S608


@cache
def _take_sql() -> tuple[str, bool]:
    returning = connection.vendor == "postgresql" or (
        connection.vendor == "sqlite" and sqlite3.sqlite_version_info >= (3, 35)
    )
    sql = (
        f"UPDATE {Hold._meta.db_table} "  # noqa: S608 — a table name, no values
        "SET captured_cents = captured_cents + %s, captured_steps = captured_steps + 1 "
        f"WHERE reference = %s AND status = '{Hold.Status.OPEN.value}' "
        "AND captured_cents + released_cents + %s <= amount_cents"
    )
    if returning:
        sql += " RETURNING id, team_id, run_id, held_account_id, spend_account_id"
    return sql, returning


def _select_target_sql() -> str:
    return (
        "SELECT id, team_id, run_id, held_account_id, spend_account_id "  # noqa: S608 — a table name
        f"FROM {Hold._meta.db_table} WHERE reference = %s"
    )


def count_against_month(usage_id: int, cents: int, *, limit_cents: int | None) -> int | None:
    """Add `cents` to a month's usage row if it stays within `limit_cents` (None: no limit), in
    one guarded UPDATE that locks the row; the row's new total, or None when it would not fit
    (nothing changed).

    Between the keys and the accounts in the lock order: a hold's placement and its release
    take the team's month row, then the member's, then the accounts. The guard is evaluated
    on the locked row (on PostgreSQL a waiting UPDATE re-checks it against the row the first
    one committed), so concurrent launches cannot both fit in the same remaining cents.
    """
    table = MonthUsage._meta.db_table
    sql = f"UPDATE {table} SET used_cents = used_cents + %s WHERE id = %s"  # noqa: S608
    params: list[int] = [cents, usage_id]
    if limit_cents is not None:
        sql += " AND used_cents + %s <= %s"
        params += [cents, limit_cents]
    returning = _take_sql()[1]  # RETURNING: PostgreSQL, and SQLite from 3.35
    if returning:
        sql += " RETURNING used_cents"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if returning:
            row = cursor.fetchone()
            return None if row is None else int(row[0])
        if cursor.rowcount != 1:
            return None
        cursor.execute(f"SELECT used_cents FROM {table} WHERE id = %s", [usage_id])  # noqa: S608
        return int(cursor.fetchone()[0])


def give_back_to_month(usage_ids: list[int], cents: int) -> None:
    """Return `cents` to the month rows a released hold counted against (team's first)."""
    table = MonthUsage._meta.db_table
    with connection.cursor() as cursor:
        for usage_id in usage_ids:
            cursor.execute(
                f"UPDATE {table} SET used_cents = used_cents - %s WHERE id = %s",  # noqa: S608
                [cents, usage_id],
            )
