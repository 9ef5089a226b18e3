"""The one retry policy for every call the portal makes to Coasty.

Which failures are retried (`RetryPolicy.should_retry`):

- GET (reads, the idempotency lookup, the event stream): transport errors and timeouts,
  5xx, 429, and odd responses (`CoastyBadResponse`). Reading twice is harmless.
- POST with an `Idempotency-Key` (create run): transport errors and timeouts, 5xx (also an
  odd 5xx such as a proxy's HTML 502), 429, and 409 IDEMPOTENCY_IN_FLIGHT. Always with the same
  key and the same bytes, so Coasty replays instead of starting a second run. One exception:
  an envelope that says `retryable: true` but `retry_with_same_idempotency_key: false` is
  Coasty telling us this key is spent (the original was refunded; a new key is needed), so
  retrying it cannot succeed and is not done.
- POST without a key (cancel, resume): never. A lost response may hide a cancel or resume that
  happened, and only the caller knows whether doing it again is right (both are safe to repeat
  on Coasty's side today, but the client does not assume so).
- Deterministic 4xx (400, 401, 402, 403, 404, 409 INVALID_STATE, 413, 422): never.

How long (`RetryPolicy.delay_before_retry`): exponential backoff with full jitter
(`uniform(0, min(max_delay, base_delay * 2**(n-1)))`); a `Retry-After` (header or envelope)
is a floor under that delay, clamped to `retry_after_cap`, so "Retry-After: 0" still backs
off. Bounded twice: at most
`max_attempts` attempts, and no retry that would end after `max_elapsed` seconds since the
first attempt began.

`call_with_retries` is the loop; the client runs every request through it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import (
    CoastyBadResponse,
    CoastyError,
    CoastyIdempotencyInFlight,
    CoastyRateLimited,
    CoastyServerError,
    CoastyTransportError,
)

__all__ = ["RetryPolicy", "call_with_retries"]

logger = logging.getLogger("runs.coasty")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry a failed call; see the module docstring for which."""

    max_attempts: int = 5  # attempts in all, the first included
    max_elapsed: float = 60.0  # seconds from the first attempt; no retry would end later
    base_delay: float = 0.5  # seconds; the backoff ceiling doubles from here
    max_delay: float = 8.0  # the backoff ceiling stops growing here
    retry_after_cap: float = 30.0  # a longer Retry-After is clamped to this

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.max_elapsed, self.base_delay, self.max_delay, self.retry_after_cap) < 0:
            raise ValueError("delays and bounds must not be negative")

    def should_retry(self, error: CoastyError, *, method: str, keyed: bool) -> bool:
        """Whether `error` from a `method` request (with an idempotency key if `keyed`) may
        be retried at all, regardless of attempts and time left."""
        method = method.upper()
        if method in ("GET", "HEAD"):
            return isinstance(
                error,
                CoastyTransportError | CoastyBadResponse | CoastyServerError | CoastyRateLimited,
            )
        if method != "POST" or not keyed:
            return False
        if _key_is_spent(error):
            return False
        if isinstance(error, CoastyBadResponse):
            # An odd 5xx (a gateway's page) is still a 5xx. An odd 2xx is not retried: the run
            # exists, and `create_run_or_recover` collects it through the idempotency lookup.
            return error.status is not None and (error.status >= 500 or error.status == 429)
        return isinstance(
            error,
            CoastyTransportError
            | CoastyServerError
            | CoastyRateLimited
            | CoastyIdempotencyInFlight,
        )

    def backoff(self, failures: int, *, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after the `failures`-th consecutive failure (1-based).

        A Retry-After is a floor, never a licence to hammer: "0" (or a tiny hint) still backs
        off, while a longer hint is honoured up to `retry_after_cap`.
        """
        ceiling = min(self.max_delay, self.base_delay * 2 ** max(0, failures - 1))
        jittered = rng.uniform(0.0, ceiling)
        if retry_after is not None:
            return max(min(max(0.0, retry_after), self.retry_after_cap), jittered)
        return jittered

    def delay_before_retry(
        self,
        error: CoastyError,
        *,
        method: str,
        keyed: bool,
        attempt: int,
        elapsed: float,
        rng: random.Random,
    ) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up and raise."""
        if not self.should_retry(error, method=method, keyed=keyed):
            return None
        if attempt >= self.max_attempts:
            return None
        delay = self.backoff(attempt, retry_after=error.retry_after, rng=rng)
        if elapsed + delay > self.max_elapsed:
            return None
        return delay


def _key_is_spent(error: CoastyError) -> bool:
    # The contract: "A confirmed refunded failure sets [retry_with_same_idempotency_key] false
    # even when retryable remains true: use a new key". Only that explicit combination counts;
    # an envelope that omits the hints does not veto a retry the status allows.
    envelope = error.envelope
    return (
        envelope is not None
        and envelope.get("retryable") is True
        and envelope.get("retry_with_same_idempotency_key") is False
    )


def call_with_retries(
    attempt: Callable[[], T],
    *,
    policy: RetryPolicy,
    method: str,
    path: str,
    idempotency_key: str | None,
    sleep: Callable[[float], object],
    clock: Callable[[], float],
    rng: random.Random,
) -> T:
    """Run `attempt` until it returns, retrying the `CoastyError`s the policy allows.

    The error that ends the loop is raised with `.attempts` set to how many were made.
    Nothing secret is logged: the method, the path, the idempotency key (an identifier, not a
    credential) and the error's summary, whose body snippet is already redacted.
    """
    started = clock()
    number = 1
    while True:
        try:
            return attempt()
        except CoastyError as error:
            error.attempts = number
            delay = policy.delay_before_retry(
                error,
                method=method,
                keyed=idempotency_key is not None,
                attempt=number,
                elapsed=clock() - started,
                rng=rng,
            )
            if delay is None:
                if number > 1:
                    logger.warning(
                        "coasty %s %s failed after %d attempts in %.1fs: %s",
                        method,
                        path,
                        number,
                        clock() - started,
                        error,
                    )
                raise
            logger.warning(
                "coasty %s %s attempt %d/%d failed, retrying in %.2fs%s: %s",
                method,
                path,
                number,
                policy.max_attempts,
                delay,
                f" with the same Idempotency-Key {idempotency_key}" if idempotency_key else "",
                error,
            )
        sleep(delay)
        number += 1


def key_is_spent(error: CoastyError) -> bool:
    """Coasty said this Idempotency-Key can never succeed again (a refunded failure: retryable,
    but not with the same key). Callers treat it as a permanent answer for the key."""
    return _key_is_spent(error)
