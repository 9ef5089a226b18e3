"""The simulator's state and the life of a simulated run.

Everything here lives on one asyncio event loop (uvicorn's). A state change never awaits in
the middle, so a request, a run's own task and an SSE stream always see a run whose
``steps_completed`` and ``credits_charged`` agree with its events. No locks are needed for that
reason, and no thread other than the loop's touches this state (the test helper talks HTTP).

A run's story (see script.py for the markers)::

    queued -> running -> step 1..n -> succeeded | failed | cancelled | timed_out
                  \\-> awaiting_human -> (resume) -> running ...

Each step emits, in order: reasoning, tool_call, tool_result, step, billing. A status change
emits ``status``; the end emits (text | error), status, done.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .config import STEP_PRICES_CREDITS, SimConfig
from .data_faults import shape_event, shape_result
from .faults import FaultBoard
from .script import RunScript, without_markers
from .validation import canonical_json
from .webhooks import WebhookDispatcher

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out"})
ACTIVE = frozenset({"queued", "running", "awaiting_human"})

MACHINES = (
    ("vm-linux-1", "Linux desktop 1", "linux", 2, 4.0, 20),
    ("vm-linux-2", "Linux desktop 2", "linux", 2, 4.0, 20),
    ("vm-windows-1", "Windows desktop 1", "windows", 4, 8.0, 64),
)

_TOOLS: tuple[tuple[str, Callable[[int], dict[str, Any]], Callable[[int], str]], ...] = (
    ("screenshot", lambda n: {}, lambda n: "captured 1280x800 screenshot"),
    ("click", lambda n: {"x": 200 + 37 * n % 900, "y": 120 + 53 * n % 600}, lambda n: "clicked"),
    ("type", lambda n: {"text": f"search term {n}"}, lambda n: "typed 13 characters"),
    ("key", lambda n: {"keys": "Return"}, lambda n: "pressed Return"),
    ("scroll", lambda n: {"direction": "down", "amount": 3}, lambda n: "scrolled down 3"),
)


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RunOver(Exception):
    """Raised inside a run's task once the run has reached a terminal state."""


@dataclass
class Event:
    seq: int
    type: str
    data: dict[str, Any]


@dataclass
class Run:
    id: str
    kind: str  # "test" or "live": runs of one kind are invisible to keys of the other
    request: dict[str, Any]
    script: RunScript
    webhook_secret: str
    idempotency_key: str | None
    created_at: str
    created_loop_time: float
    status: str = "queued"
    steps_completed: int = 0
    credits_charged: int = 0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    awaiting_human_reason: str | None = None
    started_at: str | None = None
    awaiting_human_since: str | None = None
    finished_at: str | None = None
    deadline_at: float | None = None  # loop time
    events: list[Event] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    resumed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    gone: bool = False  # removed by /_sim/reset: open streams close
    shape_data: Callable[[int, str, dict[str, Any]], dict[str, Any]] | None = None
    forgotten: bool = False  # fault forget_run: the public API answers 404 for it

    @property
    def step_price(self) -> int:
        return 0 if self.kind == "test" else STEP_PRICES_CREDITS[self.request["cua_version"]]

    def emit(self, type_: str, data: dict[str, Any]) -> Event:
        seq = len(self.events) + 1
        if self.shape_data is not None:  # the data faults (data_faults.py)
            data = self.shape_data(seq, type_, data)
        event = Event(seq, type_, data)
        self.events.append(event)
        self.wake()
        return event

    def wake(self) -> None:
        """Wake every stream waiting on this run (each waits on the Event it saw last)."""
        old, self.changed = self.changed, asyncio.Event()
        old.set()

    def to_json(self, *, request_id: str, with_secret: bool = False) -> dict[str, Any]:
        """The RunResponse. ``webhook_secret`` only in the create response (and its replays)."""
        req = self.request
        llm = req.get("llm") or {}
        provider = llm.get("provider", "managed")
        return {
            "id": self.id,
            "object": "agent.run",
            "status": self.status,
            "machine_id": req["machine_id"],
            "task": req["task"],
            "cua_version": req["cua_version"],
            "instructions": req["instructions"],
            "max_steps": req["max_steps"],
            "on_awaiting_human": req["on_awaiting_human"],
            "steps_completed": self.steps_completed,
            "credits_charged": self.credits_charged,
            "cost_cents": self.credits_charged,  # 1 credit = 1 cent
            "result": self.result,
            "error": self.error,
            "awaiting_human_reason": self.awaiting_human_reason,
            "metadata": req["metadata"],
            "llm": None
            if provider == "managed"
            else {"provider": provider, "model": llm.get("model")},
            "webhook_url": req["webhook_url"],
            "webhook_secret": self.webhook_secret if with_secret else None,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "awaiting_human_since": self.awaiting_human_since,
            "finished_at": self.finished_at,
            "request_id": request_id,
        }


@dataclass
class IdempotencyRecord:
    """One Idempotency-Key of one key kind: the request it was first used with and its answer."""

    kind: str
    key: str
    fingerprint: str
    stored_at: float  # retention clock
    status: str = "processing"  # processing | completed
    response_status: int | None = None
    response_body: dict[str, Any] | None = None
    ttl_seconds: float | None = None  # fault key_expiry: kept this long instead of the config's


def fingerprint(body: Any) -> str:
    """SHA-256 of the canonical (sorted-key, compact) JSON of the body."""
    return hashlib.sha256(canonical_json(body)).hexdigest()


class Simulator:
    def __init__(self, config: SimConfig) -> None:
        config.check()
        self.initial_config = config
        self.config = config
        self.faults = FaultBoard(config.seed)
        self.faults.set(config.faults)
        self.webhooks = WebhookDispatcher(self)
        self.clock_offset = 0.0
        self.runs: dict[str, Run] = {}
        self.idempotency: dict[tuple[str, str], IdempotencyRecord] = {}
        self.runs_per_key: dict[str, int] = {}
        self.open_streams = 0
        self.requests = itertools.count(1)

    # -- clocks -------------------------------------------------------------------------------

    def now(self) -> float:
        """Wall clock for idempotency retention; POST /_sim/clock moves it forward."""
        return time.time() + self.clock_offset

    @staticmethod
    def loop_time() -> float:
        return asyncio.get_running_loop().time()

    # -- admin --------------------------------------------------------------------------------

    def reset(self) -> None:
        for run in self.runs.values():
            if run.task is not None:
                run.task.cancel()
            run.gone = True
            run.wake()
        self.runs.clear()
        self.idempotency.clear()
        self.runs_per_key.clear()
        self.webhooks.reset()
        self.config = self.initial_config
        self.faults = FaultBoard(self.initial_config.seed)
        self.clock_offset = 0.0

    def describe(self) -> dict[str, Any]:
        by_status = dict.fromkeys(("queued", "running", "awaiting_human", *sorted(TERMINAL)), 0)
        for run in self.runs.values():
            by_status[run.status] += 1
        return {
            "runs_total": len(self.runs),
            "runs_by_status": by_status,
            "runs_per_idempotency_key": dict(self.runs_per_key),
            "idempotency_keys_with_more_than_one_run": sorted(
                key for key, count in self.runs_per_key.items() if count > 1
            ),
            "open_streams": self.open_streams,
            "faults": self.faults.describe(),
            "clock_offset_seconds": self.clock_offset,
            "config": self.config.public(),
            **self.webhooks.describe(),
        }

    # -- idempotency --------------------------------------------------------------------------

    def idempotency_record(self, kind: str, key: str) -> IdempotencyRecord | None:
        record = self.idempotency.get((kind, key))
        ttl: float = self.config.idempotency_ttl_seconds
        if record is not None and record.ttl_seconds is not None:
            ttl = record.ttl_seconds
        if record is not None and self.now() - record.stored_at >= ttl:
            del self.idempotency[(kind, key)]  # expired: as if never seen
            return None
        return record

    def reserve_key(self, kind: str, key: str, body_fingerprint: str) -> IdempotencyRecord:
        record = IdempotencyRecord(kind, key, body_fingerprint, stored_at=self.now())
        if spec := self.faults.fire("key_expiry", "create_run"):
            record.ttl_seconds = spec.options.get("after_seconds", 10.0)
        self.idempotency[(kind, key)] = record
        return record

    # -- runs ---------------------------------------------------------------------------------

    def visible_run(self, kind: str, run_id: str) -> Run | None:
        run = self.runs.get(run_id)
        return run if run is not None and run.kind == kind and not run.forgotten else None

    def create_run(self, *, kind: str, request: dict[str, Any], idempotency_key: str | None) -> Run:
        """Create and start a run. Synchronous: no await, so a key can never create two."""
        loop_now = self.loop_time()
        run = Run(
            id=str(uuid.uuid4()),
            kind=kind,
            request=request,
            script=RunScript.from_task(request["task"]),
            webhook_secret="whsec_" + secrets.token_hex(24),
            idempotency_key=idempotency_key,
            created_at=iso_now(),
            created_loop_time=loop_now,
            shape_data=lambda seq, type_, data: shape_event(self.faults, seq, type_, data),
        )
        if request["deadline_seconds"] is not None:
            # The deadline counts from acceptance, in simulated seconds.
            run.deadline_at = loop_now + self.config.real(request["deadline_seconds"])
        self.runs[run.id] = run
        if idempotency_key is not None:
            self.runs_per_key[idempotency_key] = self.runs_per_key.get(idempotency_key, 0) + 1
        run.emit("status", {"status": "queued", "at": run.created_at})
        run.task = asyncio.get_running_loop().create_task(self._drive(run), name=f"run-{run.id}")
        return run

    def cancel(self, run: Run) -> None:
        self._finish(run, "cancelled")

    def resume(self, run: Run, note: str | None) -> None:
        at = iso_now()
        run.status = "running"
        run.awaiting_human_reason = None
        run.awaiting_human_since = None
        run.emit("resumed", {"note": note, "at": at})
        run.emit("status", {"status": "running", "at": at})
        run.resumed.set()

    # -- a run's task -------------------------------------------------------------------------

    async def _drive(self, run: Run) -> None:
        try:
            await self._pace(run, self.config.queue_seconds)
            run.status = "running"
            run.started_at = iso_now()
            run.emit("status", {"status": "running", "at": run.started_at})
            script = run.script
            step = 0
            while True:
                step += 1
                if await self._play_step(run, step, script):
                    return
        except RunOver:
            return

    def _step_seconds(self, run: Run) -> float:
        return self.config.slow_step_seconds if run.script.slow else self.config.step_seconds

    async def _play_step(self, run: Run, step: int, script: RunScript) -> bool:
        """Play step `step`; True when the run is over."""
        half = self._step_seconds(run) / 2
        tool, make_input, make_output = _TOOLS[(step - 1) % len(_TOOLS)]
        await self._pace(run, half)
        run.emit("reasoning", {"step": step, "text": _reasoning(run.request["task"], step, tool)})
        run.emit("tool_call", {"step": step, "tool": tool, "input": make_input(step)})
        await self._pace(run, half)
        failing = script.fail_at == step
        output = (
            "the page shows an error: the task cannot be completed"
            if failing
            else make_output(step)
        )
        # One synchronous block: a reader never sees the step without its charge.
        run.emit("tool_result", {"step": step, "tool": tool, "ok": not failing, "output": output})
        run.steps_completed = step
        run.emit("step", {"step": step, "steps_completed": step})
        if self.faults.fire("stray_step", "step"):
            stray = step + self.faults.rng.randint(10, 40)
            run.emit("step", {"step": stray, "steps_completed": stray})
        price = run.step_price
        run.credits_charged += price
        run.emit(
            "billing",
            {
                "step": step,
                "credits_charged": price,
                "total_credits_charged": run.credits_charged,
                "cost_cents": price,
            },
        )
        if failing:
            self._finish(
                run,
                "failed",
                error={
                    "code": "TASK_FAILED",
                    "message": f"The agent could not complete the task at step {step}.",
                },
            )
            return True
        if script.pause_at == step:
            await self._needs_human(run, step)
        if script.steps is not None and step >= script.steps:
            answer = f"Done: {run.request['task'][:200]}"
            self._finish(run, "succeeded", result={"text": answer, "steps": step})
            return True
        if step >= run.request["max_steps"]:
            self._finish(
                run,
                "failed",
                error={
                    "code": "MAX_STEPS_REACHED",
                    "message": f"The run used all {step} of its max_steps without finishing.",
                },
            )
            return True
        return False

    async def _pace(self, run: Run, sim_seconds: float) -> None:
        """Wait this many simulated seconds, or end the run timed_out at its deadline."""
        delay = self.config.real(sim_seconds)
        if run.deadline_at is not None:
            remaining = run.deadline_at - self.loop_time()
            if remaining <= delay:
                await asyncio.sleep(max(0.0, remaining))
                self._time_out(run, "DEADLINE_EXCEEDED")
        await asyncio.sleep(delay)

    def _time_out(self, run: Run, code: str) -> None:
        if code == "DEADLINE_EXCEEDED":
            message = f"The run passed its deadline of {run.request['deadline_seconds']} s."
        else:
            message = (
                f"No one resumed the run within {run.request['awaiting_human_timeout_seconds']} s."
            )
        self._finish(run, "timed_out", error={"code": code, "message": message})
        raise RunOver

    async def _needs_human(self, run: Run, step: int) -> None:
        reason = f"The agent reached a CAPTCHA at step {step} and needs a person to solve it."
        mode = run.request["on_awaiting_human"]
        run.awaiting_human_reason = reason
        if mode in ("fail", "cancel"):
            error = {
                "code": "AWAITING_HUMAN",
                "message": f"{reason} on_awaiting_human is {mode!r}, so the run ended.",
            }
            self._finish(
                run,
                "failed" if mode == "fail" else "cancelled",
                error=error,
                emit_error=mode == "fail",
            )
            raise RunOver
        at = iso_now()
        run.status = "awaiting_human"
        run.awaiting_human_since = at
        run.resumed = asyncio.Event()
        run.emit("awaiting_human", {"reason": reason, "step": step, "at": at})
        run.emit("status", {"status": "awaiting_human", "at": at})
        self._send_webhook(run, "awaiting_human")

        waits: list[tuple[float, str]] = []
        if run.deadline_at is not None:
            waits.append((run.deadline_at - self.loop_time(), "DEADLINE_EXCEEDED"))
        human_timeout = run.request["awaiting_human_timeout_seconds"]
        if human_timeout is not None:
            waits.append((self.config.real(human_timeout), "AWAITING_HUMAN_TIMEOUT"))
        timeout, code = min(waits) if waits else (None, "")
        try:
            await asyncio.wait_for(
                run.resumed.wait(), None if timeout is None else max(0.0, timeout)
            )
        except TimeoutError:
            self._time_out(run, code)

    def _finish(
        self,
        run: Run,
        status: str,
        *,
        error: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        emit_error: bool = True,
    ) -> bool:
        if run.status in TERMINAL:
            return False
        at = iso_now()
        if error is not None and emit_error:
            run.emit("error", {"code": error["code"], "message": error["message"]})
        if result is not None:
            run.emit("text", {"text": result["text"]})
        run.status = status
        run.finished_at = at
        run.awaiting_human_since = None
        run.result = shape_result(self.faults, result)
        run.error = error
        run.emit("status", {"status": status, "at": at})
        run.emit(
            "done",
            {
                "status": status,
                "steps_completed": run.steps_completed,
                "credits_charged": run.credits_charged,
                "at": at,
            },
        )
        self._send_webhook(run, status)
        if spec := self.faults.fire("forget_run", "run_end"):
            delay = self.config.real(spec.options.get("after_seconds", 0.0))
            asyncio.get_running_loop().call_later(delay, setattr, run, "forgotten", True)
        task = run.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        return True

    def _send_webhook(self, run: Run, status: str) -> None:
        url = run.request["webhook_url"]
        if not url:
            return
        body = {
            "event": f"run.{status}",
            "run_id": run.id,
            "status": status,
            "result": run.result,
            "error": run.error,
            "awaiting_human_reason": run.awaiting_human_reason,
            "created_at": iso_now(),
        }
        raw = canonical_json(body)
        self.webhooks.enqueue(
            run_id=run.id, url=url, secret=run.webhook_secret, event=f"run.{status}", body=raw
        )

    # -- machines -----------------------------------------------------------------------------

    def machines(self, kind: str) -> list[dict[str, Any]]:
        rows = []
        for machine_id, name, os_type, cpu, memory, storage in MACHINES:
            rate = 9 if os_type == "windows" else 5
            rows.append(
                {
                    "id": machine_id,
                    "display_name": name,
                    "status": "running",
                    "os_type": os_type,
                    "desktop_enabled": True,
                    "cpu_cores": cpu,
                    "memory_gb": memory,
                    "storage_gb": storage,
                    "public_ip": None,
                    "is_test": kind == "test",
                    "created_at": "2026-01-05T09:00:00Z",
                    "started_at": "2026-01-05T09:01:00Z",
                    "auto_destroy_at": None,
                    "ttl_minutes": None,
                    "metadata": {"pool": "simulator"},
                    "billing": {
                        "billed_to": "api_wallet",
                        "running_credits_per_hour": rate,
                        "stopped_credits_per_hour": 1,
                        "accrued_cents": 0,
                        "projected_daily_cents": rate * 24,
                        "since": "2026-01-05T09:01:00Z",
                        "total_credits_billed": 0,
                        "suspended_for_billing": False,
                        "auto_destroy_at": None,
                        "ttl_minutes": None,
                    },
                }
            )
        return rows

    def machine_exists(self, machine_id: str) -> bool:
        return any(m[0] == machine_id for m in MACHINES)


def _reasoning(task: str, step: int, tool: str) -> str:
    return f"Step {step}: working on '{without_markers(task)[:80]}'. Next I use {tool}."
