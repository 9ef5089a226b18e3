"""Task markers: how a simulated run's story is scripted from the words of its task.

Markers are bracketed words anywhere in ``task``; case does not matter; they combine.

==============  ============================================================================
(none)          succeeds after 3 steps
``[steps=N]``   succeeds after N steps (N >= 1)
``[pause]``     needs a human after step 1 (``[pause=K]``: after step K). What follows
                depends on ``on_awaiting_human``: ``pause`` -> status awaiting_human until
                POST /resume (then it carries on), ``fail`` -> failed, ``cancel`` -> cancelled
``[fail]``      fails after step 1 (``[fail=K]``: after step K) with an ``error`` event,
                code TASK_FAILED
``[forever]``   never finishes by itself: steps until max_steps (-> failed,
                MAX_STEPS_REACHED) or deadline_seconds (-> timed_out, DEADLINE_EXCEEDED)
``[slow]``      each step takes slow_step_seconds (4 s simulated) instead of 1 s
==============  ============================================================================

Step limits: reaching ``max_steps`` before the script's last step ends the run ``failed`` with
MAX_STEPS_REACHED; when the script's last step *is* step ``max_steps`` the run succeeds. At a
step where several markers meet, ``fail`` wins over ``pause``, and ``pause`` comes before the
success, so ``[steps=1][pause]`` pauses once and succeeds straight after the resume.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_STEPS = 3
_MARKER = re.compile(r"\[\s*(steps|pause|fail|forever|slow)\s*(?:=\s*(\d+)\s*)?\]", re.IGNORECASE)


@dataclass(frozen=True)
class RunScript:
    steps: int | None = DEFAULT_STEPS  # None: forever
    pause_at: int | None = None
    fail_at: int | None = None
    slow: bool = False

    @classmethod
    def from_task(cls, task: str) -> RunScript:
        steps: int | None = DEFAULT_STEPS
        pause_at = fail_at = None
        slow = forever = False
        for match in _MARKER.finditer(task):
            word, number = match.group(1).lower(), match.group(2)
            value = max(1, int(number)) if number is not None else None
            if word == "steps" and value is not None:
                steps = value
            elif word == "pause":
                pause_at = value or 1
            elif word == "fail":
                fail_at = value or 1
            elif word == "forever":
                forever = True
            elif word == "slow":
                slow = True
        return cls(steps=None if forever else steps, pause_at=pause_at, fail_at=fail_at, slow=slow)


def without_markers(task: str) -> str:
    """The task as a person wrote it: the test markers removed (for the agent's narration)."""
    return " ".join(_MARKER.sub(" ", task).split())
