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
from typing import Any

from django.db import connection
from django.db.models import Field, JSONField, Model
from django.utils import timezone

from runs.models import Run, RunEvent, WebhookDelivery


def events_insert_runs(created_at: Any, rows_json: str) -> None:
    """PostgreSQL: insert a batch of events of one or more runs, given as one JSON array of
    {run, seq, type, data}, skipping any (run, seq) already stored."""
    with connection.cursor() as cursor:
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
    with connection.cursor() as cursor:
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
    with connection.cursor() as cursor:
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


def delivery_insert(
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
) -> bool:
    """Store one delivery; False when its dedupe key was taken (a duplicate), and then nothing
    is stored. One INSERT ... ON CONFLICT DO NOTHING RETURNING: no savepoint, no second query."""
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
    params = [
        _field(WebhookDelivery, name).get_db_prep_save(value, connection)
        for name, value in zip(_DELIVERY_COLUMNS, values, strict=True)
    ]
    with connection.cursor() as cursor:
        cursor.execute(_delivery_insert_sql(), params)
        return cursor.fetchone() is not None


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
