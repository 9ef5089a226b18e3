"""What the run page shows of each stream event: one presenter for every event type.

An event's data is whatever Coasty (or something between) sent, so nothing here assumes a field
exists or has a type. The presenter knows the field names in use for each type — the
simulator's and the common variants (`step` or `steps_completed`; a tool named by `tool`,
`name`, `action_type` or `action`; its input in `input`, `args`, `arguments` or `params`; its
outcome in `ok` or `success`; its output in `output` or `result`) — and falls back to the
event's JSON for anything else, so a row is never blank and no event can break the page.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from portal.core.money import format_cents
from runs.coasty.strict_json import PORTAL_KEY
from runs.services.upstream_data import details_text

# The types the page styles; anything else is shown as "other" with its own name as the label.
KNOWN_TYPES = frozenset(
    {
        "status",
        "text",
        "reasoning",
        "tool_call",
        "tool_result",
        "awaiting_human",
        "resumed",
        "step",
        "billing",
        "error",
        "done",
    }
)

TEXT_MAX = 2000  # characters of one text shown in a row
JSON_MAX = 4000  # characters of JSON shown in a row

_TEXT_KEYS = ("text", "content", "message", "reasoning", "thought", "summary")
_TOOL_KEYS = ("tool", "name", "action_type", "action", "tool_name", "function", "type")
_INPUT_KEYS = ("input", "args", "arguments", "params", "parameters", "action_input")
_OUTPUT_KEYS = ("output", "result", "content", "message", "observation", "text", "error")
_STEP_KEYS = ("step", "steps_completed", "step_number", "number", "index")


@dataclass(frozen=True)
class EventRow:
    """One row of the timeline. Every text is plain (the template escapes it)."""

    seq: int
    created_at: dt.datetime | None
    type: str
    label: str  # the type in words
    css: str  # a known type, or "other"
    title: str = ""  # bold, first (a tool's name)
    text: str = ""
    badge: str = ""  # a short red label ("failed", an error code)
    detail: str = ""  # JSON shown preformatted
    notes: list[str] = field(default_factory=list)  # what the portal did to the data
    actor: str = ""  # who did it, for what a person caused (a resume, the portal's records)
    source: str = "coasty"  # "portal": a person's record; "ledger": the portal's money
    step: int | None = None  # the agent step the event belongs to (its heading groups it)

    is_group = False

    @property
    def billing(self) -> bool:
        """A row about money (Coasty's bill for a step, a hold, a capture, a release): the
        "Hide billing rows" control leaves these out."""
        return self.css == "billing" or self.source == "ledger"


def present_events(events: Iterable[Any]) -> list[EventRow]:
    return [present_event(event) for event in events]


def present_event(event: Any) -> EventRow:
    """The row for one stored event (anything with seq, type, data and created_at)."""
    raw_type = getattr(event, "type", "")
    kind = raw_type if isinstance(raw_type, str) else str(raw_type)
    data = getattr(event, "data", None)
    seq = getattr(event, "seq", 0)
    created_at = getattr(event, "created_at", None)
    notes: list[str] = []
    if isinstance(data, dict):
        notes = _portal_notes(data.get(PORTAL_KEY))
        data = {k: v for k, v in data.items() if k != PORTAL_KEY}
    parts: dict[str, str] = {}
    if isinstance(data, dict):
        present = _PRESENTERS.get(kind)
        if present is not None:
            try:
                parts = present(data)
            except Exception:  # a presenter's own bug must not break the page: show the JSON
                parts = {}
    source = "portal" if getattr(event, "source", "") == "portal" else "coasty"
    if source == "portal":
        # The portal's own record (cancel requested, approved, rejected): the person's words.
        note = data.get("note") or data.get("reason") if isinstance(data, dict) else None
        parts = {"text": f"“{note}”" if isinstance(note, str) and note else " "}
    elif not any(value.strip() for value in parts.values()):
        oversize = bool(notes) and data == {}
        parts = {"text": "(no data)"} if data in ({}, None) or oversize else {"detail": _json(data)}
    return EventRow(
        actor=_actor_name(event),
        source=source,
        step=_step_of(kind, data) if source == "coasty" else None,
        seq=seq if isinstance(seq, int) else 0,
        created_at=created_at if isinstance(created_at, dt.datetime) else None,
        type=kind,
        label=_printable(kind.replace("_", " ").capitalize() or "Event")[:40],
        css=kind if kind in KNOWN_TYPES else "other",
        notes=[_printable(note) for note in notes],
        **{name: _printable(value) for name, value in parts.items()},
    )


# The events an agent step is made of; each names its step (`step`, or the variants). Anything
# else (a status, a pause, an error, the end) stands alone on the timeline.
STEP_TYPES = frozenset({"reasoning", "text", "tool_call", "tool_result", "step", "billing"})


def _step_of(kind: str, data: Any) -> int | None:
    if kind not in STEP_TYPES or not isinstance(data, dict):
        return None
    keys = (
        ("step", "step_number", "steps_completed")
        if kind in ("step", "billing")
        else ("step", "step_number")
    )
    number = _first_count(data, keys)
    return number if number else None  # step 0 is no step


def _actor_name(event: Any) -> str:
    try:
        actor = getattr(event, "actor", None)
    except Exception:  # an unsaved or odd object: no actor
        return ""
    return actor.get_username() if actor is not None else ""


# A lone surrogate (stored before the strict decoder replaced them) cannot be written as UTF-8.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _printable(text: str) -> str:
    return _LONE_SURROGATE.sub("\ufffd", text)


@dataclass
class StepGroup:
    """One agent step on the timeline: its events (and the ledger's capture of it) under a
    heading that says what the step cost."""

    step: int
    rows: list[EventRow] = field(default_factory=list)
    cost: str = ""  # "$0.05", "not charged", or "" (the step has not ended yet)
    continued: bool = False  # the step's events go on after other rows came between

    is_group = True

    @property
    def ended(self) -> bool:
        return any(row.type == "step" and row.source == "coasty" for row in self.rows)


def entries_so_far(entries: list[EventRow | StepGroup]) -> bool:
    """Whether the page shows anything of Coasty's before this point (the hold row aside)."""
    return any(not getattr(entry, "billing", False) for entry in entries)


def present_timeline(
    rows: list[EventRow],
    money: Iterable[Any] = (),
    *,
    first_page: bool = True,
    latest_page: bool = True,
    hide_billing: bool = False,
    step_before: int | None = None,
) -> list[EventRow | StepGroup]:
    """The timeline as the run page shows it: the events of one agent step together under a
    "Step N" heading with the step's cost, every other event (a status, a pause, a person's
    action, the end) alone, in the order they happened.

    `money` is the run's ledger rows for the page (billing.selectors.run_money_rows): each
    step's capture joins its step and gives its cost; the hold opens the first page and the
    release closes the latest one. With `hide_billing`, rows about money are left out, while
    the costs stay in the headings. `step_before` is the step of the event just before the
    page: a step that began there and goes on here is headed "(continued)".
    """
    captures: dict[int, Any] = {}
    hold = release = None
    for transfer in money:
        kind = getattr(transfer, "kind", "")
        step = getattr(transfer, "step", None)
        if kind == "capture" and isinstance(step, int):
            captures.setdefault(step, transfer)
        elif kind == "hold":
            hold = transfer
        elif kind == "release":
            release = transfer

    entries: list[EventRow | StepGroup] = []
    if first_page and hold is not None:
        entries.append(_ledger_row(hold, "Hold", "held from the team's wallet for the run"))
    blocks: dict[int, list[StepGroup]] = {}
    current: StepGroup | None = None
    for row in rows:
        if row.step is None:
            entries.append(row)
            current = None
            continue
        if current is None or current.step != row.step:
            began_before = not entries_so_far(entries) and row.step == step_before
            current = StepGroup(step=row.step, continued=row.step in blocks or began_before)
            blocks.setdefault(row.step, []).append(current)
            entries.append(current)
        current.rows.append(row)

    for step, groups in blocks.items():
        # The cost goes on the block where the step ended (its `step` event), else its last.
        owner = next((group for group in groups if group.ended), groups[-1])
        capture = captures.get(step)
        if capture is not None:
            amount = _count(getattr(capture, "amount_cents", None)) or 0
            owner.cost = format_cents(amount)
            owner.rows.append(_ledger_row(capture, "Charge", f"charged for step {step}"))
        elif owner.ended:
            owner.cost = "not charged"

    if latest_page and release is not None:
        entries.append(_ledger_row(release, "Release", "returned to the team's wallet"))
    if hide_billing:
        for group in (entry for entry in entries if isinstance(entry, StepGroup)):
            group.rows = [row for row in group.rows if not row.billing]
        entries = [e for e in entries if isinstance(e, StepGroup) or not e.billing]
    return entries


def _ledger_row(transfer: Any, label: str, said: str) -> EventRow:
    amount = _count(getattr(transfer, "amount_cents", None)) or 0
    created_at = getattr(transfer, "created_at", None)
    memo = getattr(transfer, "memo", "")  # why it moved, when the ledger says more
    return EventRow(
        seq=0,
        created_at=created_at if isinstance(created_at, dt.datetime) else None,
        type=str(getattr(transfer, "kind", "")),
        label=label,
        css="ledger",
        text=f"{format_cents(amount)} {said}",
        notes=[_printable(_clip(memo, 400))] if isinstance(memo, str) and memo else [],
        source="ledger",
    )


# --- one presenter per type: data (a dict) -> the row's parts; empty parts mean "fall back" ---


def _reasoning(data: dict[str, Any]) -> dict[str, str]:
    return {"text": _first_text(data, _TEXT_KEYS)}


def _tool_call(data: dict[str, Any]) -> dict[str, str]:
    tool = _first_text(data, _TOOL_KEYS)
    arguments = _first(data, _INPUT_KEYS)
    detail = "" if arguments in (None, {}, [], "") else _json(arguments)
    return {"title": tool, "detail": detail}


def _tool_result(data: dict[str, Any]) -> dict[str, str]:
    failed = (
        data.get("ok") is False
        or data.get("success") is False
        or data.get("status") in ("error", "failed", "failure")
        or data.get("is_error") is True
    )
    output = _first(data, _OUTPUT_KEYS)
    text = output if isinstance(output, str) else ("" if output is None else _json(output))
    parts = {"title": _first_text(data, _TOOL_KEYS), "text": _clip(text, 600)}
    if failed:
        parts["badge"] = "failed"
    elif not parts["text"] and not parts["title"] and ("ok" in data or "success" in data):
        parts["text"] = "Succeeded"
    return parts


def _step(data: dict[str, Any]) -> dict[str, str]:
    number = _first_count(data, _STEP_KEYS)
    return {"text": f"Step {number} completed"} if number is not None else {}


def _billing(data: dict[str, Any]) -> dict[str, str]:
    step = _count(data.get("credits_charged"))
    if step is None:
        step = _count(data.get("cost_cents"))
    total = _count(data.get("total_credits_charged"))
    if step is None and total is None:
        return {}
    said = f"Coasty billed {format_cents(step)} for the step" if step is not None else ""
    if total is not None:
        said = (
            f"{said} (run total {format_cents(total)})"
            if said
            else (f"Coasty's run total: {format_cents(total)}")
        )
    return {"text": said}


def _status(data: dict[str, Any]) -> dict[str, str]:
    status = _first_text(data, ("status", "state"))
    return {"text": f"Status: {_words(status)}"} if status else {}


def _awaiting_human(data: dict[str, Any]) -> dict[str, str]:
    reason = _first_text(data, ("reason", "message", "text"))
    return {"text": f"Needs a human: {reason or 'no reason given'}"}


def _resumed(data: dict[str, Any]) -> dict[str, str]:
    note = _first_text(data, ("note", "message", "text"))
    actor = _first_text(data, ("actor",))
    text = "Resumed" + (f" by {actor}" if actor else "") + (f": “{note}”" if note else "")
    return {"text": text}


def _error(data: dict[str, Any]) -> dict[str, str]:
    nested = data.get("error")
    inner: dict[str, Any] = nested if isinstance(nested, dict) else data
    code = _first_text(inner, ("code", "type"))
    message = _first_text(inner, ("message", "detail", "text"))
    details = details_text(inner.get("details"))
    text = f"{message} ({details})" if message and details else message or details
    return {"badge": _clip(code or "error", 60), "text": _clip(text, TEXT_MAX)}


def _done(data: dict[str, Any]) -> dict[str, str]:
    status = _first_text(data, ("status", "state"))
    return {"text": f"Finished: {_words(status)}" if status else "Finished"}


_PRESENTERS = {
    "reasoning": _reasoning,
    "text": _reasoning,
    "tool_call": _tool_call,
    "tool_result": _tool_result,
    "step": _step,
    "billing": _billing,
    "status": _status,
    "awaiting_human": _awaiting_human,
    "resumed": _resumed,
    "error": _error,
    "done": _done,
}


# --- small readers that never assume a type ----------------------------------------------------


def _first(data: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = data.get(key)
        if value not in (None, ""):
            return value
    return None


def _first_text(data: dict[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return _clip(value, TEXT_MAX)
    return ""


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _first_count(data: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        number = _count(data.get(key))
        if number is not None:
            return number
    return None


def _words(value: str) -> str:
    return value.replace("_", " ").capitalize()


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json(value: Any) -> str:
    try:
        text = json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return _clip(text, JSON_MAX)


def _portal_notes(note: Any) -> list[str]:
    if not isinstance(note, dict):
        return []
    notes = []
    size = _count(note.get("oversize_bytes"))
    if size is not None:
        notes.append(f"Too large to keep here ({size:,} bytes); only its size was stored.")
    refused = note.get("refused")
    if isinstance(refused, list) and refused:
        shown = "; ".join(str(item) for item in refused[:5])
        more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
        notes.append(f"Values no JSON store accepts were refused: {_clip(shown, 400)}{more}.")
    return notes
