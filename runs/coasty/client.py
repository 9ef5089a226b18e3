"""The portal's HTTP client for the Coasty runs API.

One `CoastyClient` per process is enough: it holds an `httpx.Client` (a connection pool) and
is safe to share between threads. Every request goes through the retry loop in
`runs.coasty.retry`; every failure comes out as a `runs.coasty.errors.CoastyError` subclass.

It knows nothing of Django: `runs.upstream.client_from_settings()` configures one from settings.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx

from .errors import (
    CoastyBadResponse,
    CoastyError,
    CoastyIdempotencyInFlight,
    CoastyNotFound,
    CoastyServerError,
    CoastyTransportError,
    bad_response,
    error_from_response,
    parse_json_object,
    transport_error,
)
from .retry import RetryPolicy, call_with_retries

__all__ = [
    "CoastyClient",
    "CreateRunResult",
    "IdempotencyLookup",
    "canonical_json",
    "validate_idempotency_key",
]

USER_AGENT = f"coasty-portal/0.1 (runs.coasty) httpx/{httpx.__version__}"

# Coasty's rule for Idempotency-Key: 1 to 128 characters of [A-Za-z0-9_-:].
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_\-:]{1,128}")

# Streams stay open for minutes; between events Coasty sends keep-alive comments. A stream
# read timeout must be longer than that interval, or every quiet minute costs a reconnect.
STREAM_READ_TIMEOUT = 60.0
# One worker follows hundreds of runs at once, one HTTP/1.1 connection per stream.
STREAM_MAX_CONNECTIONS = 1000


def validate_idempotency_key(key: str) -> str:
    """`key` if Coasty will accept it as an Idempotency-Key; otherwise ValueError."""
    if not isinstance(key, str) or not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ValueError(
            "an Idempotency-Key is 1 to 128 characters of letters, digits, '_', '-' and ':', "
            f"got {key!r}"
        )
    return key


def canonical_json(body: Mapping[str, Any]) -> bytes:
    """`body` as canonical JSON bytes: sorted keys, compact separators, UTF-8.

    Coasty hashes the canonical form to tell "same request" from "key reused"; sending these
    exact bytes on every attempt keeps a retry a replay. Raises TypeError or ValueError (NaN,
    infinity, objects JSON cannot hold) before anything is sent.
    """
    if not isinstance(body, Mapping):
        raise TypeError(f"a request body is a JSON object, got {type(body).__name__}")
    text = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


@dataclass(frozen=True, slots=True)
class CreateRunResult:
    """What `POST /v1/runs` answered. `run["webhook_secret"]` is only here, only once."""

    run: dict[str, Any]
    replayed: bool  # Coasty replayed a stored response for this key (X-Coasty-Idempotent-Replay)
    test_mode: bool  # a sandbox key: nothing is billed (X-Coasty-Test-Mode)
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class IdempotencyLookup:
    """What Coasty holds for an Idempotency-Key (`GET /v1/idempotency/{key}`)."""

    status: Literal["completed", "processing"]
    result: dict[str, Any] | None  # the original response body, when completed
    original_status: int | None  # the original response's HTTP status, when completed
    test_mode: bool = False
    request_id: str | None = None


def _flag(headers: httpx.Headers, name: str) -> bool:
    return headers.get(name, "").strip().lower() in ("true", "1", "yes")


def _test_mode(headers: httpx.Headers) -> bool:
    return _flag(headers, "x-coasty-test-mode") or headers.get("x-coasty-key-kind") == "test"


# Shape checks: None when the object is what the endpoint documents, else what is wrong.
Shape = Callable[[dict[str, Any]], str | None]


def _run_shape(body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("id"), str) or not isinstance(body.get("status"), str):
        return "a run object without a string id and status"
    return None


def _list_shape(body: dict[str, Any]) -> str | None:
    data = body.get("data")
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        return "a list without a data array of objects"
    return None


def _lookup_shape(body: dict[str, Any]) -> str | None:
    status = body.get("status")
    if status not in ("completed", "processing"):
        return f"an idempotency lookup with status {status!r}"
    original = body.get("original_status")
    if original is not None and (not isinstance(original, int) or isinstance(original, bool)):
        return "an idempotency lookup with a non-integer original_status"
    if status == "completed" and not isinstance(body.get("result"), dict):
        return "a completed idempotency lookup without a result object"
    return None


def _health_shape(body: dict[str, Any]) -> str | None:
    return None if isinstance(body.get("status"), str) else "a health answer without a status"


def _segment(value: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return quote(value, safe="")


class CoastyClient:
    """Calls Coasty's runs API with retries, timeouts and typed errors.

    `sleep`, `clock` and `rng` are the retry loop's; tests inject them to run instantly and
    deterministically. `transport` replaces the network (e.g. `httpx.MockTransport`).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - immutable, shared on purpose
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry = retry
        self._api_key = api_key
        self._user_agent = user_agent
        self._sleep = sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=self._headers(),
            timeout=httpx.Timeout(
                connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
            ),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"CoastyClient({self.base_url!r})"  # never the key

    def __enter__(self) -> CoastyClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _headers(self) -> dict[str, str]:
        return {
            "X-API-Key": self._api_key,
            "User-Agent": self._user_agent,
            "Accept": "application/json",
        }

    # --- the runs API ----------------------------------------------------------------------

    def create_run(self, body: Mapping[str, Any], *, idempotency_key: str) -> CreateRunResult:
        """`POST /v1/runs`. The body is serialised once; every retry sends the same bytes with
        the same key, so a retry after a lost response is replayed, not run twice."""
        key = validate_idempotency_key(idempotency_key)
        content = canonical_json(body)
        response, run = self._call("POST", "/v1/runs", _run_shape, content=content, key=key)
        return CreateRunResult(
            run=run,
            replayed=_flag(response.headers, "x-coasty-idempotent-replay")
            or _flag(response.headers, "idempotency-replayed"),
            test_mode=_test_mode(response.headers),
            request_id=response.headers.get("x-coasty-request-id"),
        )

    def create_run_or_recover(
        self, body: Mapping[str, Any], *, idempotency_key: str
    ) -> CreateRunResult:
        """`create_run`, and when its retries end without an answer (no response, an odd
        response, or 5xx) ask `GET /v1/idempotency/{key}` whether the run exists after all.

        - completed: the stored response, as a replay (`replayed=True`); a stored error
          response is raised as its typed error;
        - processing: `CoastyIdempotencyInFlight` (retry later with the same key);
        - unknown key (404), or the lookup fails too: the original error is raised, with a note.
        """
        try:
            return self.create_run(body, idempotency_key=idempotency_key)
        except (CoastyTransportError, CoastyBadResponse, CoastyServerError) as error:
            original = error
        lookup: IdempotencyLookup | None = None
        lookup_error: CoastyError | None = None
        try:
            lookup = self.idempotency_lookup(idempotency_key)
        except CoastyError as exc:
            lookup_error = exc
        if lookup is None:
            if isinstance(lookup_error, CoastyNotFound):
                original.add_note("Coasty does not know this Idempotency-Key: no run was created.")
            else:
                original.add_note(f"The idempotency lookup failed too: {lookup_error}")
            raise original
        if lookup.status == "processing":
            raise CoastyIdempotencyInFlight(
                "the run for this Idempotency-Key is still being created; retry with the same key",
                status=409,
                code="IDEMPOTENCY_IN_FLIGHT",
                request_id=lookup.request_id,
                retryable=True,
                retry_with_same_idempotency_key=True,
            )
        return _result_from_lookup(lookup)

    def list_runs(self, status: str | None = None, limit: int = 20) -> dict[str, Any]:
        """`GET /v1/runs`: `{"object": "list", "data": [run, ...], "has_more": bool}`."""
        params: dict[str, str | int] = {"limit": limit}
        if status is not None:
            params["status"] = status
        return self._call("GET", "/v1/runs", _list_shape, params=params)[1]

    def get_run(self, run_id: str) -> dict[str, Any]:
        """`GET /v1/runs/{id}`."""
        return self._call("GET", f"/v1/runs/{_segment(run_id, 'run_id')}", _run_shape)[1]

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        """`POST /v1/runs/{id}/cancel`. Not retried: on a transport error or 5xx the caller
        decides (e.g. `get_run` to see whether it took, then cancel again)."""
        path = f"/v1/runs/{_segment(run_id, 'run_id')}/cancel"
        return self._call("POST", path, _run_shape)[1]

    def resume_run(self, run_id: str, note: str | None = None) -> dict[str, Any]:
        """`POST /v1/runs/{id}/resume` with an optional note. Not retried, like cancel."""
        path = f"/v1/runs/{_segment(run_id, 'run_id')}/resume"
        content = canonical_json({} if note is None else {"note": note})
        return self._call("POST", path, _run_shape, content=content)[1]

    def idempotency_lookup(self, key: str) -> IdempotencyLookup:
        """`GET /v1/idempotency/{key}`: what became of a keyed request whose answer was lost.
        An unknown or expired key raises `CoastyNotFound`."""
        path = f"/v1/idempotency/{validate_idempotency_key(key)}"
        response, body = self._call("GET", path, _lookup_shape)
        original = body.get("original_status")
        return IdempotencyLookup(
            status=body["status"],
            result=body.get("result") if body["status"] == "completed" else None,
            original_status=original if isinstance(original, int) else None,
            test_mode=_test_mode(response.headers),
            request_id=body.get("request_id") or response.headers.get("x-coasty-request-id"),
        )

    def list_machines(self, limit: int = 50) -> list[dict[str, Any]]:
        """`GET /v1/machines`: the machines a run can target."""
        body = self._call("GET", "/v1/machines", _list_shape, params={"limit": limit})[1]
        machines: list[dict[str, Any]] = body["data"]
        return machines

    def health(self) -> dict[str, Any]:
        """`GET /v1/health`."""
        return self._call("GET", "/v1/health", _health_shape)[1]

    # --- streaming ---------------------------------------------------------------------------

    def async_http(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        read_timeout: float = STREAM_READ_TIMEOUT,
        max_connections: int = STREAM_MAX_CONNECTIONS,
    ) -> httpx.AsyncClient:
        """A new `httpx.AsyncClient` for `runs.coasty.sse.follow_events`: same base URL, key
        and user agent; a read timeout longer than the keep-alive interval; a pool big enough
        for hundreds of concurrent streams. The caller closes it (`async with` or `aclose()`).
        """
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers=self._headers(),
            timeout=httpx.Timeout(
                connect=self.connect_timeout,
                read=read_timeout,
                write=self.connect_timeout,
                pool=self.connect_timeout,
            ),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max(20, max_connections // 5),
            ),
            transport=transport,
        )

    # --- one request, with retries ------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        shape: Shape,
        *,
        params: Mapping[str, str | int] | None = None,
        content: bytes | None = None,
        key: str | None = None,
    ) -> tuple[httpx.Response, dict[str, Any]]:
        headers: dict[str, str] = {}
        if content is not None:
            headers["Content-Type"] = "application/json"
        if key is not None:
            headers["Idempotency-Key"] = key

        def attempt() -> tuple[httpx.Response, dict[str, Any]]:
            try:
                response = self._http.request(
                    method, path, params=params, content=content, headers=headers
                )
            except httpx.TransportError as exc:
                raise transport_error(exc, method=method, path=path, keyed=key is not None) from exc
            except httpx.DecodingError as exc:
                raise CoastyBadResponse(
                    f"{method} {path}: the response body could not be decoded: {exc}",
                    code="BAD_RESPONSE",
                ) from exc
            if not 200 <= response.status_code < 300:
                raise error_from_response(response)
            body = parse_json_object(response)
            if isinstance(body, CoastyBadResponse):
                raise body
            problem = shape(body)
            if problem is not None:
                raise bad_response(response, problem)
            return response, body

        return call_with_retries(
            attempt,
            policy=self.retry,
            method=method,
            path=path,
            idempotency_key=key,
            sleep=self._sleep,
            clock=self._clock,
            rng=self._rng,
        )


def _result_from_lookup(lookup: IdempotencyLookup) -> CreateRunResult:
    result = lookup.result or {}
    status = lookup.original_status if lookup.original_status is not None else 200
    stored = httpx.Response(
        status,
        json=result,
        headers={"x-coasty-request-id": lookup.request_id} if lookup.request_id else None,
    )
    if not 200 <= status < 300:
        # The original answer was an error (say 402): that is the answer.
        raise error_from_response(stored)
    problem = _run_shape(result)
    if problem is not None:
        raise bad_response(stored, f"the idempotency lookup returned {problem}")
    return CreateRunResult(
        run=result, replayed=True, test_mode=lookup.test_mode, request_id=lookup.request_id
    )
