"""Settings of one simulator instance.

Time rule: every ``*_seconds`` setting below is in *simulated* seconds, and the simulator waits
``sim_seconds / speed`` of real time. At ``speed=1`` a step takes about a second, as upstream;
tests use ``speed=50`` so a three-step run ends in well under a second. Four things stay in real
time because they face the outside world: the webhook HTTP timeout, the idempotency retention
(24 h of wall clock, moved forward with ``POST /_sim/clock``), the signature timestamps of
webhook deliveries, and shutdown.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

# Price per completed step in credits (1 credit = 1 cent). Must agree with billing's
# settings.COASTY_STEP_PRICES_CENTS; the simulator keeps its own copy so it needs no Django.
STEP_PRICES_CREDITS = {"v1": 8, "v3": 5, "v4": 5, "v5": 5}


@dataclass
class SimConfig:
    speed: float = 1.0
    seed: int | None = None  # seeds the fault RNG; None = a fixed default seed (0)
    # run pacing (simulated seconds)
    queue_seconds: float = 0.5  # queued -> running
    step_seconds: float = 1.0  # one agent step
    slow_step_seconds: float = 4.0  # one step of a "[slow]" task
    create_latency_seconds: float = 0.0  # how long POST /v1/runs works before answering
    # SSE (simulated seconds)
    sse_keepalive_seconds: float = 15.0
    sse_rotate_seconds: float = 300.0  # the edge closes a stream after this long
    sse_retry_ms: int = 1000  # the `retry:` hint, scaled by speed like everything else
    # webhooks
    webhook_max_attempts: int = 5
    webhook_retry_base_seconds: float = 2.0  # backoff: base * 2**(attempt-1), simulated
    webhook_timeout_seconds: float = 10.0  # REAL seconds: a receiver gets a fair chance
    webhook_late_seconds: float = 30.0  # default delay of a webhook_late delivery, simulated
    webhook_reorder_hold_seconds: float = 60.0  # a held delivery goes out after this at the latest
    # back-pressure and idempotency
    retry_after_seconds: float = 2.0  # simulated; Retry-After is this / speed, rounded
    in_flight_hold_seconds: float = 5.0  # simulated; how long an in_flight fault keeps a key busy
    idempotency_ttl_seconds: int = 86_400  # wall clock (fake-able)
    faults: dict[str, Any] = field(default_factory=dict)

    def real(self, sim_seconds: float) -> float:
        """Real seconds to wait for this many simulated seconds."""
        return max(0.0, sim_seconds) / self.speed

    def sim(self, real_seconds: float) -> float:
        return real_seconds * self.speed

    def retry_after(self, sim_seconds: float | None = None) -> int:
        """Retry-After in whole real seconds: small in fast mode, never negative."""
        seconds = self.retry_after_seconds if sim_seconds is None else sim_seconds
        value = self.real(seconds)
        return 0 if value < 0.5 else math.ceil(value)

    def replace(self, **changes: Any) -> SimConfig:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown simulator setting(s): {', '.join(sorted(unknown))}")
        new = dataclasses.replace(self, **changes)
        new.check()
        return new

    def check(self) -> None:
        if not (self.speed > 0):
            raise ValueError("speed must be > 0")
        if self.webhook_max_attempts < 1:
            raise ValueError("webhook_max_attempts must be >= 1")
        for f in dataclasses.fields(self):
            if f.name.endswith("_seconds") and getattr(self, f.name) < 0:
                raise ValueError(f"{f.name} must be >= 0")

    def public(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("faults")
        return data


# Settings that POST /_sim/config may change on a running simulator.
RUNTIME_SETTINGS = frozenset(f.name for f in dataclasses.fields(SimConfig)) - {"faults", "seed"}
