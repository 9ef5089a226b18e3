"""The runs app's hand-written SQL, built once per process: the hot paths of ingest and the
webhook intake, where the ORM's per-call compilation was most of the time (`make bench`).

Only table and column names are formatted into statements (S608); every value is a parameter.
Lock order is the same as the ORM paths': the run row first (billing.locks documents the rest).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Field, JSONField, Model
from django.utils import timezone
from django_q.models import OrmQ

from portal.core.instances import instance
from portal.notifications.models import OutboxEvent
from runs.models import Run, RunEvent, WebhookDelivery


@contextmanager
def _bound_cursor() -> Iterator[Any]:
    """A cursor for the hot paths' statements. On PostgreSQL it binds values on the server (the
    statement travels apart from its values), so that psycopg prepares a statement it has run a
    few times on a connection (its prepare_threshold): from then on PostgreSQL neither parses
    nor plans it again, only binds and runs it. Django's own cursors bind on the client (the
    values are written into the statement's text), which no server can prepare. The cursor is
    wrapped as Django's are: same error classes, same query log."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    import psycopg

    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw = psycopg.Cursor(connection.connection)
    wrap = connection.make_debug_cursor if connection.queries_logged else connection.make_cursor
    with wrap(raw) as cursor:  # type: ignore[arg-type]  # the stubs name only Django's cursors
        yield cursor


def events_insert_runs(created_at: Any, rows_json: str) -> None:
    """PostgreSQL: insert a batch of events of one or more runs, given as one JSON array of
    {run, seq, type, data}, skipping any (run, seq) already stored. Bound on the server: the
    document (~100 KB for a batch of 1,000 events) is not escaped into the statement's text by
    psycopg, nor scanned as a literal by PostgreSQL."""
    with _bound_cursor() as cursor:
        cursor.execute(_events_insert_sql(), [created_at, rows_json])


@functools.cache
def _events_insert_sql() -> str:
    table = connection.ops.quote_name(RunEvent._meta.db_table)
    # Only the table name is formatted in (S608); the values are parameters.
    return (
        f"INSERT INTO {table} (run_id, seq, type, data, created_at) "  # noqa: S608
        "SELECT e.run, e.seq, e.type, COALESCE(e.data, '{}'::jsonb), %s "
        "FROM jsonb_to_recordset(%s::jsonb) "
        "AS e(run uuid, seq bigint, type varchar(32), data jsonb) "
        "ON CONFLICT (run_id, seq) DO NOTHING"
    )


def runs_save_fields(runs: list[Run], names: tuple[str, ...]) -> None:
    """PostgreSQL: write the fields `names` of several runs in ONE UPDATE (a JSON document of
    their values, unpacked by the database): what run.save(update_fields=names) does for each,
    without a statement per run. The caller holds the runs' locks."""
    if not runs:
        return
    fields = [_field(Run, name) for name in names]
    rows = [
        {
            "id": str(run.pk),
            **{field.column: _json_value(field, getattr(run, field.attname)) for field in fields},
        }
        for run in runs
    ]
    document = json.dumps(rows, separators=(",", ":"), allow_nan=False)
    with _bound_cursor() as cursor:  # the document as a value apart, as events_insert_runs
        cursor.execute(_runs_save_sql(tuple(names)), [document])


def _json_value(field: Field, value: Any) -> Any:
    if value is None or isinstance(field, JSONField):
        return value  # a JSON field's value is its JSON (None: SQL NULL, as the ORM writes it)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


@functools.cache
def _runs_save_sql(names: tuple[str, ...]) -> str:
    columns = [_column(Run, name) for name in names]
    types = [_field(Run, name).db_type(connection) for name in names]
    table = connection.ops.quote_name(Run._meta.db_table)
    sets = ", ".join(f"{column} = v.{column}" for column in columns)
    record = ", ".join(
        [f"id {_field(Run, 'id').db_type(connection)}"]
        + [f"{column} {kind}" for column, kind in zip(columns, types, strict=True)]
    )
    # Only table and column names and their types are formatted in (S608); values are a parameter.
    return (
        f"UPDATE {table} SET {sets} "  # noqa: S608
        f"FROM jsonb_to_recordset(%s::jsonb) AS v({record}) "
        f"WHERE {table}.{_column(Run, 'id')} = v.id"
    )


_WEBHOOK_RUN_FIELDS = (
    "id",
    "upstream_id",
    "webhook_secret_encrypted",
    "status",
    "status_seq",
    "status_at",
    "awaiting_human_reason",
    "pending_action",
    "finished_at",
    "error",
    "settled_at",
    # What a pause or an end records in the notification outbox (runs.services.notify).
    "team_id",
    "task",
    "created_by_id",
    "orphan_upstream_id",
)
WEBHOOK_STATUS_FIELDS = [
    "status",
    "status_seq",
    "status_at",
    "awaiting_human_reason",
    "pending_action",
    "finished_at",
    "error",
]


def run_webhook_secret(run_id) -> tuple[str, str] | None:
    """(encrypted webhook secret, upstream id) of a run, read WITHOUT a lock; None if unknown.

    The intake verifies a delivery with these before it takes any lock or writes anything, so
    a forged delivery costs one indexed read. Both are set once, when Coasty accepts the run.
    """
    try:
        pk = Run._meta.pk.get_db_prep_value(run_id, connection)
    except (ValueError, TypeError, AttributeError):
        return None
    with _bound_cursor() as cursor:
        cursor.execute(_webhook_secret_sql(), [pk])
        row = cursor.fetchone()
    return (row[0] or "", row[1] or "") if row else None


@functools.cache
def _webhook_secret_sql() -> str:
    table = connection.ops.quote_name(Run._meta.db_table)
    secret, upstream = _column(Run, "webhook_secret_encrypted"), _column(Run, "upstream_id")
    return f"SELECT {secret}, {upstream} FROM {table} WHERE {_column(Run, 'id')} = %s"  # noqa: S608


def run_locked_for_webhook(run_id) -> Run | None:
    """The run with the fields the webhook path needs, locked FOR UPDATE; None if unknown.

    Raw SQL, built once: through the ORM (select_for_update().only().first()) this one lookup
    cost ~0.5 ms of Python per delivery, a quarter of the whole request.
    """
    try:
        pk = Run._meta.pk.get_db_prep_value(run_id, connection)
    except (ValueError, TypeError, AttributeError):
        return None
    rows = list(Run.objects.raw(_webhook_lock_sql(), [pk]))
    return rows[0] if rows else None


@functools.cache
def _webhook_lock_sql() -> str:
    columns = ", ".join(_column(Run, name) for name in _WEBHOOK_RUN_FIELDS)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    table = connection.ops.quote_name(Run._meta.db_table)
    pk = _column(Run, "id")
    return f"SELECT {columns} FROM {table} WHERE {pk} = %s{lock}"  # noqa: S608 - names only


@functools.cache
def _field(model: type[Model], name: str) -> Field:
    field = model._meta.get_field(name)
    assert isinstance(field, Field)
    return field


def _column(model: type[Model], name: str) -> str:
    return connection.ops.quote_name(str(_field(model, name).column))


_DELIVERY_COLUMNS = (
    "run_id",
    "received_at",
    "headers",
    "body",
    "body_sha256",
    "verdict",
    "event",
    "dedupe_key",
    "result",
    "body_size",
    "client_address",
)


def delivery_insert(run_id, headers: dict[str, str], body: bytes, digest: str, **fields) -> bool:
    """Store one delivery (`fields` as `_delivery_params` takes them); False when its dedupe key
    was taken (a duplicate), and then nothing is stored. One INSERT ... ON CONFLICT DO NOTHING
    RETURNING: no savepoint, no second query."""
    params = _delivery_params(run_id, headers, body, digest, **fields)
    with _bound_cursor() as cursor:
        cursor.execute(_delivery_insert_sql(), params)
        return cursor.fetchone() is not None


def _delivery_params(
    run_id,
    headers: dict[str, str],
    body: bytes,
    digest: str,
    *,
    verdict: str,
    result: str,
    event: str = "",
    dedupe_key: str | None = None,
    body_size: int | None = None,
    client_address: str | None = None,
) -> list[Any]:
    """A delivery's values in _DELIVERY_COLUMNS order, ready for the database."""
    values = (
        run_id,
        timezone.now(),
        headers,
        body,
        digest,
        verdict,
        event,
        dedupe_key,
        result[:2000],
        len(body) if body_size is None else body_size,
        client_address or None,
    )
    prep = _preparer()
    return [
        prep(WebhookDelivery, name, value)
        for name, value in zip(_DELIVERY_COLUMNS, values, strict=True)
    ]


@functools.cache
def _delivery_insert_sql() -> str:
    columns = ", ".join(_column(WebhookDelivery, name) for name in _DELIVERY_COLUMNS)
    table = connection.ops.quote_name(WebhookDelivery._meta.db_table)
    marks = ", ".join(["%s"] * len(_DELIVERY_COLUMNS))
    # Only column and table names are formatted in (S608); every value is a parameter.
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({marks}) "  # noqa: S608
        "ON CONFLICT DO NOTHING RETURNING id"
    )


def run_status_save(run: Run) -> None:
    """Write the status fields a webhook moves (one UPDATE, its SQL built once): what
    run.save(update_fields=...) does, without compiling the statement on every delivery."""
    params = [
        _field(Run, name).get_db_prep_save(getattr(run, name), connection)
        for name in WEBHOOK_STATUS_FIELDS
    ]
    params.append(_field(Run, "id").get_db_prep_save(run.pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(_run_status_sql(), params)


@functools.cache
def _run_status_sql() -> str:
    columns = ", ".join(f"{_column(Run, name)} = %s" for name in WEBHOOK_STATUS_FIELDS)
    table = connection.ops.quote_name(Run._meta.db_table)
    # Only column and table names are formatted in (S608); every value is a parameter.
    return f"UPDATE {table} SET {columns} WHERE {_column(Run, 'id')} = %s"  # noqa: S608


# --- The webhook intake in one statement (PostgreSQL) ----------------------------------------


def run_for_webhook(run_id) -> Run | None:
    """PostgreSQL: the run as the webhook intake needs it (its secret, its status fields, what a
    pause or an end records), read WITHOUT a lock in one indexed SELECT; None if unknown."""
    try:
        pk = Run._meta.pk.get_db_prep_value(run_id, connection)
    except (ValueError, TypeError, AttributeError):
        return None
    with _bound_cursor() as cursor:
        cursor.execute(_webhook_read_sql(), [pk])
        row = cursor.fetchone()
    if row is None:
        return None
    # What Run.from_db makes of these values, without its walk over all ~50 fields: the 15
    # read are set, and any other is deferred, loaded on access.
    return instance(Run, zip(_webhook_read_fields(), row, strict=True), db=connection.alias)


@functools.cache
def _webhook_read_fields() -> tuple[str, ...]:
    return tuple(f.attname for f in Run._meta.concrete_fields if f.attname in _WEBHOOK_RUN_FIELDS)


@functools.cache
def _webhook_read_sql() -> str:
    columns = ", ".join(_column(Run, name) for name in _webhook_read_fields())
    table = connection.ops.quote_name(Run._meta.db_table)
    return f"SELECT {columns} FROM {table} WHERE {_column(Run, 'id')} = %s"  # noqa: S608


def webhook_intake(
    run: Run,
    *,
    seen: list[Any],
    delivery: dict[str, Any],  # delivery_insert's arguments but the run's id
    moved: bool,
    events: list[OutboxEvent],
    task_rows: list[tuple[str, str, Any]],
) -> tuple[bool, bool]:
    """PostgreSQL: store a verified delivery and apply it in ONE statement (one round trip, one
    commit in autocommit): (the run was as read, the delivery was stored).

    The run's row is locked only if its status fields are still `seen` (the values its change
    was worked out from); then the delivery is inserted unless its dedupe key is taken; only
    then the run's status fields are written (`moved`), its outbox events recorded (once per
    key) and its tasks queued (`task_rows`, ORM broker). Nothing is written when the run
    changed since it was read (the caller then takes the locked path) or when the delivery is
    a duplicate.
    """
    prep = _preparer()
    params: list[Any] = [prep(Run, "id", run.pk)]
    params += [
        prep(Run, name, value) for name, value in zip(WEBHOOK_STATUS_FIELDS, seen, strict=True)
    ]
    # The run's id comes from the locked row: a run changed since it was read stores nothing.
    params += _delivery_params(run.pk, **delivery)[1:]
    if moved:
        params += [prep(Run, name, getattr(run, name)) for name in WEBHOOK_STATUS_FIELDS]
        params.append(prep(Run, "id", run.pk))
    for event in events:
        params += [
            prep(OutboxEvent, f.attname, getattr(event, f.attname)) for f in _outbox_fields()
        ]
    for row in task_rows:
        params += [prep(OrmQ, name, value) for name, value in zip(_TASK_COLUMNS, row, strict=True)]
    with _bound_cursor() as cursor:
        cursor.execute(_webhook_intake_sql(moved, len(events), len(task_rows)), params)
        locked, stored = cursor.fetchone()
    return bool(locked), bool(stored)


_TASK_COLUMNS = ("key", "payload", "lock")


# What psycopg takes as it is for a column of any type, and what Django's PostgreSQL backend
# would hand it unchanged: the field's own preparation is skipped for these (a third of the
# intake's Python time went to preparing values that need none).
_AS_IS = frozenset({str, int, bool, type(None), dt.datetime, uuid.UUID})


def _preparer() -> Callable[[type[Model], str, Any], Any]:
    """A function that prepares a value for a model's column, as the field's get_db_prep_save
    would, on this thread's connection. The connection is looked up once here, not once per
    value: Django's `connection` is a proxy that resolves it on every attribute access."""
    conn = connections[DEFAULT_DB_ALIAS]
    as_is = _AS_IS if conn.vendor == "postgresql" else frozenset()

    def prep(model: type[Model], name: str, value: Any) -> Any:
        if type(value) in as_is:
            return value
        return _field(model, name).get_db_prep_save(value, conn)

    return prep


@functools.cache
def _outbox_fields() -> tuple[Field, ...]:
    return tuple(f for f in OutboxEvent._meta.concrete_fields if not f.primary_key)


def _typed_marks(model: type[Model], names) -> str:
    return ", ".join(f"CAST(%s AS {_field(model, name).db_type(connection)})" for name in names)


@functools.cache
def _webhook_intake_sql(moved: bool, events: int, tasks: int) -> str:
    q = connection.ops.quote_name
    runs, pk = q(Run._meta.db_table), _column(Run, "id")
    guard = " AND ".join(
        f"{_column(Run, name)} IS NOT DISTINCT FROM %s" for name in WEBHOOK_STATUS_FIELDS
    )
    delivery_columns = ", ".join(_column(WebhookDelivery, name) for name in _DELIVERY_COLUMNS)
    # Values in a SELECT list have no column to take their type from: each is cast to its
    # column's (a server-bound NULL or string would otherwise be text).
    marks = _typed_marks(WebhookDelivery, _DELIVERY_COLUMNS[1:])
    parts = [
        f"run AS (SELECT {pk} FROM {runs} WHERE {pk} = %s AND {guard} FOR UPDATE)",  # noqa: S608
        f"stored AS (INSERT INTO {q(WebhookDelivery._meta.db_table)} ({delivery_columns}) "  # noqa: S608
        f"SELECT run.{pk}, {marks} FROM run ON CONFLICT DO NOTHING RETURNING 1)",
    ]
    if moved:
        sets = ", ".join(f"{_column(Run, name)} = %s" for name in WEBHOOK_STATUS_FIELDS)
        parts.append(
            f"moved AS (UPDATE {runs} SET {sets} WHERE {pk} = %s AND EXISTS (SELECT 1 FROM stored))"  # noqa: S608
        )
    outbox_columns = ", ".join(q(str(f.column)) for f in _outbox_fields())
    outbox_marks = _typed_marks(OutboxEvent, [f.attname for f in _outbox_fields()])
    for n in range(events):
        parts.append(
            f"event{n} AS (INSERT INTO {q(OutboxEvent._meta.db_table)} ({outbox_columns}) "  # noqa: S608
            f"SELECT {outbox_marks} WHERE EXISTS (SELECT 1 FROM stored) ON CONFLICT DO NOTHING)"
        )
    task_columns = ", ".join(_column(OrmQ, name) for name in _TASK_COLUMNS)
    task_marks = _typed_marks(OrmQ, _TASK_COLUMNS)
    for n in range(tasks):
        parts.append(
            f"task{n} AS (INSERT INTO {q(OrmQ._meta.db_table)} ({task_columns}) "  # noqa: S608
            f"SELECT {task_marks} WHERE EXISTS (SELECT 1 FROM stored))"
        )
    # Only table and column names are formatted in (S608); every value is a parameter.
    return (
        "WITH " + ", ".join(parts) + " "  # noqa: S608
        "SELECT EXISTS (SELECT 1 FROM run), EXISTS (SELECT 1 FROM stored)"
    )
