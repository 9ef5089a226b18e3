"""The Starlette app: Coasty's runs API as the reference OpenAPI describes it, plus /_sim admin.

Choices where the spec leaves room (also in README.md):

- An unknown ``machine_id`` on create is 404 NOT_FOUND: the spec's 404 is "Resource not found
  in this key's namespace" and a run targets a machine the key's user owns.
- A malformed run id in a path is 404 NOT_FOUND, like any unknown run.
- Idempotency: a request that fails validation (400/422/404) does not use up its key; the key is
  reserved only once the run is about to be created (as Stripe does). A replay returns the
  original status and body verbatim -- ``webhook_secret`` included, since it is part of the
  original response and ``GET /v1/idempotency/{key}`` is how a client that lost the response
  gets the secret at all -- with ``X-Coasty-Idempotent-Replay: true`` and
  ``X-Credits-Charged: 0``. A retry while the original is still processing gets 409
  IDEMPOTENCY_IN_FLIGHT at once (upstream waits up to ~25 s first).
- Idempotency records are namespaced per key kind, like runs.
- ``server_error`` fires before anything else, auth included; ``rate_limit`` after auth.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from .config import RUNTIME_SETTINGS, SimConfig
from .engine import ACTIVE, Simulator, fingerprint
from .errors import ApiError
from .faults import LOST_RESPONSE_MODES, parse_fault
from .streams import EventStream, LostResponse, quiet_intentional_cuts
from .validation import (
    idempotency_key_param,
    int_param,
    parse_json_body,
    status_param,
    validate_resume,
    validate_run_request,
)

logger = logging.getLogger("coasty_sim")

Handler = Callable[[Request, str], Awaitable[Any]]
MUTATING = ("create_run", "cancel_run", "resume_run")


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _request_id(request: Request) -> str:
    return request.scope.setdefault("state", {}).setdefault(
        "request_id", "req_" + secrets.token_hex(8)
    )


def _error_response(
    error: ApiError, request: Request, extra: dict[str, str] | None = None
) -> Response:
    headers = {**(extra or {}), **error.response_headers()}
    return _json(error.body(_request_id(request)), error.status, headers)


def key_kind(request: Request) -> str:
    """'test' or 'live' for a usable key; ApiError 401 otherwise."""
    key = request.headers.get("x-api-key")
    if key is None:
        auth = request.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        key = value.strip() if scheme.lower() == "bearer" else None
    if not key:
        raise ApiError(
            "INVALID_API_KEY",
            "Missing API key: send X-API-Key: sk-coasty-... (or Authorization: Bearer).",
        )
    if (
        not key.startswith("sk-coasty-")
        or len(key) <= len("sk-coasty-")
        or any(c.isspace() for c in key)
    ):
        raise ApiError("INVALID_API_KEY", "API key is invalid or has been revoked.")
    return "test" if key.startswith("sk-coasty-test-") else "live"


def kind_headers(kind: str) -> dict[str, str]:
    return {
        "X-Coasty-Key-Kind": kind,
        "X-Coasty-Test-Mode": "true" if kind == "test" else "false",
        "X-Credits-Charged": "0",  # runs bill per step as they go, never in a response
    }


class RequestIdMiddleware:
    """Gives every request an id and every response the X-Coasty-Request-Id header."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = "req_" + secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-coasty-request-id" for k, _ in headers):
                    headers.append((b"x-coasty-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(config: SimConfig | None = None) -> Starlette:
    sim = Simulator(config or SimConfig())
    quiet_intentional_cuts()

    def api(operation: str, handler: Handler) -> Callable[[Request], Awaitable[Any]]:
        """Auth, faults, error envelope and key-kind headers around one API operation."""

        async def endpoint(request: Request) -> Any:
            kind: str | None = None
            carried_key = operation == "create_run" and "idempotency-key" in request.headers
            try:
                if spec := sim.faults.fire("server_error", operation):
                    status = spec.options.get("status", 500)
                    code = "INTERNAL_ERROR" if status == 500 else "SERVICE_UNAVAILABLE"
                    raise ApiError(
                        code,
                        "Simulated server error (fault server_error). Retry with backoff.",
                        retry_with_same_idempotency_key=carried_key,
                        retry_after=sim.config.retry_after() if status == 503 else None,
                    )
                kind = key_kind(request)
                if spec := sim.faults.fire("rate_limit", operation):
                    retry_after = spec.options.get("retry_after", sim.config.retry_after())
                    raise ApiError(
                        "RATE_LIMITED",
                        "Too many requests (fault rate_limit). Honour Retry-After.",
                        retry_with_same_idempotency_key=carried_key,
                        retry_after=retry_after,
                    )
                response = await handler(request, kind)
            except ApiError as error:
                return _error_response(error, request, kind_headers(kind) if kind else None)
            except ClientDisconnect:
                # The caller went away before its body arrived whole (a worker killed in the
                # middle of a request): nothing was done, and nobody waits for an answer.
                logger.info("%s: the client went away before its body arrived", operation)
                return Response(status_code=499)
            except Exception:
                logger.exception("simulator bug in %s", operation)
                bug = ApiError(
                    "INTERNAL_ERROR",
                    "Unexpected simulator error.",
                    retry_with_same_idempotency_key=carried_key,
                )
                return _error_response(bug, request)
            if (
                operation in MUTATING
                and isinstance(response, Response)
                and response.status_code == 200
                and (spec := sim.faults.fire("lost_response", operation))
            ):
                return _lost(
                    spec.options.get("mode", "random"), response, request, kind, carried_key
                )
            return response

        return endpoint

    def _lost(
        mode: str, response: Response, request: Request, kind: str, carried_key: bool
    ) -> LostResponse:
        if mode == "random":
            mode = sim.faults.rng.choice(LOST_RESPONSE_MODES)
        code = {"502": "UPSTREAM_ERROR", "504": "UPSTREAM_TIMEOUT"}.get(mode, "UPSTREAM_ERROR")
        error = ApiError(
            code,
            "Simulated gateway failure after the work was done (fault lost_response).",
            retry_with_same_idempotency_key=carried_key,
        )
        error_body = json.dumps(error.body(_request_id(request))).encode()
        return LostResponse(
            mode, response.status_code, bytes(response.body), kind_headers(kind), error_body
        )

    # -- runs ---------------------------------------------------------------------------------

    async def create_run(request: Request, kind: str) -> Response:
        request_id = _request_id(request)
        key = idempotency_key_param(request.headers.get("idempotency-key"))
        body = parse_json_body(await request.body())
        if "x-llm-api-key" in request.headers and "x-llm-provider" not in request.headers:
            raise ApiError(
                "LLM_PROVIDER_UNSUPPORTED",
                "X-LLM-Api-Key needs X-LLM-Provider (anthropic | openai).",
            )
        body_fingerprint = fingerprint(body)
        headers = kind_headers(kind)
        if key is not None:
            record = sim.idempotency_record(kind, key)
            if record is not None:
                if record.fingerprint != body_fingerprint:
                    raise ApiError(
                        "IDEMPOTENCY_KEY_REUSED",
                        "This Idempotency-Key was used with a different request body. Use a new key for a new request.",
                    )
                if record.status == "processing" or sim.faults.fire("in_flight", "create_run"):
                    raise _in_flight()
                return _json(
                    record.response_body,
                    record.response_status or 200,
                    {
                        **headers,
                        "X-Coasty-Idempotent-Replay": "true",
                        "Idempotency-Status": "completed",
                    },
                )
        run_request = validate_run_request(body)
        if not sim.machine_exists(run_request["machine_id"]):
            raise ApiError(
                "NOT_FOUND",
                f"Machine {run_request['machine_id']!r} not found for this key. GET /v1/machines lists them.",
            )
        if key is not None and sim.faults.fire("spent_key", "create_run"):
            # The start failed and was refunded: the key is spent; its answer is stored.
            spent = ApiError(
                "INTERNAL_ERROR",
                "The run failed to start and was refunded (fault spent_key). Use a new key.",
                retry_with_same_idempotency_key=False,
            )
            record = sim.reserve_key(kind, key, body_fingerprint)
            record.status, record.response_status = "completed", spent.status
            record.response_body = spent.body(request_id)
            raise spent
        hold = sim.faults.fire("in_flight", "create_run") if key is not None else None
        record = sim.reserve_key(kind, key, body_fingerprint) if key is not None else None
        if sim.config.create_latency_seconds:
            await asyncio.sleep(sim.config.real(sim.config.create_latency_seconds))
        run = sim.create_run(kind=kind, request=run_request, idempotency_key=key)
        data = run.to_json(request_id=request_id, with_secret=True)
        if record is not None:

            def complete() -> None:
                record.status, record.response_status, record.response_body = "completed", 200, data

            if hold is not None:
                # The in_flight fault on a new key: the run exists, the key stays busy a while.
                seconds = hold.options.get("hold_seconds", sim.config.in_flight_hold_seconds)
                asyncio.get_running_loop().call_later(sim.config.real(seconds), complete)
                raise _in_flight()
            complete()
            headers |= {"X-Coasty-Idempotent-Replay": "false", "Idempotency-Status": "completed"}
        return _json(data, 200, headers)

    def _in_flight() -> ApiError:
        return ApiError(
            "IDEMPOTENCY_IN_FLIGHT",
            "A request with this Idempotency-Key is still in flight. Retry with the SAME key, or GET /v1/idempotency/{key}.",
            retry_with_same_idempotency_key=True,
            retry_after=sim.config.retry_after(),
            headers={"Idempotency-Status": "processing"},
        )

    def _run_or_404(request: Request, kind: str):
        run = sim.visible_run(kind, request.path_params["run_id"])
        if run is None:
            raise ApiError(
                "NOT_FOUND",
                "Run not found (unknown, or it belongs to the other key kind: test and live are isolated).",
            )
        return run

    async def list_runs(request: Request, kind: str) -> Response:
        status = status_param(request.query_params.get("status"))
        limit = int_param("limit", request.query_params.get("limit"), lo=1, hi=200, default=20)
        runs = [
            r
            for r in reversed(sim.runs.values())
            if r.kind == kind and (status is None or r.status == status)
        ]
        request_id = _request_id(request)
        return _json(
            {
                "object": "list",
                "data": [r.to_json(request_id=request_id) for r in runs[:limit]],
                "has_more": len(runs) > limit,
                "request_id": request_id,
            },
            headers=kind_headers(kind),
        )

    async def get_run(request: Request, kind: str) -> Response:
        run = _run_or_404(request, kind)
        return _json(run.to_json(request_id=_request_id(request)), headers=kind_headers(kind))

    async def cancel_run(request: Request, kind: str) -> Response:
        run = _run_or_404(request, kind)
        if run.status not in ACTIVE:
            raise ApiError(
                "INVALID_STATE",
                f"Run is {run.status}; only queued, running or awaiting_human runs can be cancelled.",
            )
        sim.cancel(run)
        return _json(run.to_json(request_id=_request_id(request)), headers=kind_headers(kind))

    async def resume_run(request: Request, kind: str) -> Response:
        run = _run_or_404(request, kind)
        note = validate_resume(parse_json_body(await request.body(), optional=True))
        if run.status != "awaiting_human":
            raise ApiError(
                "INVALID_STATE",
                f"Run is {run.status}; only a run in awaiting_human can be resumed.",
            )
        sim.resume(run, note)
        return _json(run.to_json(request_id=_request_id(request)), headers=kind_headers(kind))

    async def stream_events(request: Request, kind: str) -> EventStream:
        run = _run_or_404(request, kind)
        after = int_param("after", request.query_params.get("after"), lo=0, hi=None, default=0)
        last = int_param(
            "Last-Event-ID", request.headers.get("last-event-id"), lo=0, hi=None, default=0
        )
        cut_after = None
        if spec := sim.faults.fire("cut_stream", "stream_events"):
            cut_after = spec.options.get("after_events") or sim.faults.rng.randint(1, 3)
        return EventStream(
            sim, run, after=max(after, last), cut_after=cut_after, headers=kind_headers(kind)
        )

    async def idempotency_lookup(request: Request, kind: str) -> Response:
        key = request.path_params["key"]
        idempotency_key_param(key)
        record = sim.idempotency_record(kind, key)
        if record is None:
            raise ApiError(
                "NOT_FOUND",
                "No result for this Idempotency-Key (unknown, expired after 24 h, or the other key kind).",
            )
        completed = record.status == "completed"
        return _json(
            {
                "status": record.status,
                "request_id": _request_id(request),
                "result": record.response_body if completed else None,
                "original_status": record.response_status if completed else None,
            },
            headers=kind_headers(kind),
        )

    async def list_machines(request: Request, kind: str) -> Response:
        limit = int_param("limit", request.query_params.get("limit"), lo=1, hi=200, default=50)
        rows = sim.machines(kind)
        return _json(
            {
                "data": rows[:limit],
                "has_more": len(rows) > limit,
                "request_id": _request_id(request),
            },
            headers=kind_headers(kind),
        )

    async def health(request: Request) -> Response:
        return _json({"status": "ok", "api_version": "v1", "service": "coasty-simulator"})

    # -- admin --------------------------------------------------------------------------------

    async def admin_body(request: Request) -> dict[str, Any]:
        try:
            body = parse_json_body(await request.body(), optional=True) or {}
        except ApiError:
            raise _admin_error("body must be JSON") from None
        if not isinstance(body, dict):
            raise _admin_error("body must be a JSON object")
        return body

    def _admin_error(message: str) -> ApiError:
        return ApiError("VALIDATION_ERROR", message, status=400)

    async def admin(request: Request, work: Callable[[Request], Awaitable[Any]]) -> Response:
        try:
            return _json(await work(request))
        except ApiError as error:
            return _error_response(error, request)

    async def faults_get(request: Request) -> Response:
        return _json(sim.faults.describe())

    async def faults_post(request: Request) -> Response:
        async def work(request: Request) -> Any:
            body = await admin_body(request)
            seed = body.pop("seed", None)
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
                raise _admin_error("seed must be an integer")
            faults = body.pop("faults", None)
            if faults is None:
                faults = body
            elif body:
                raise _admin_error(f"unexpected keys beside 'faults': {sorted(body)}")
            if not isinstance(faults, dict):
                raise _admin_error("faults must be an object: {fault name: spec}")
            try:
                specs = {name: parse_fault(name, value) for name, value in faults.items()}
            except ValueError as exc:
                raise _admin_error(str(exc)) from None
            sim.faults.set(specs, seed=seed)
            return sim.faults.describe()

        return await admin(request, work)

    async def state_get(request: Request) -> Response:
        return _json(sim.describe())

    async def reset_post(request: Request) -> Response:
        sim.reset()
        return _json({"reset": True})

    async def clock_get(request: Request) -> Response:
        return _json({"now": sim.now(), "offset_seconds": sim.clock_offset})

    async def clock_post(request: Request) -> Response:
        async def work(request: Request) -> Any:
            body = await admin_body(request)
            seconds = body.get("advance_seconds")
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                raise _admin_error("advance_seconds must be a number >= 0")
            sim.clock_offset += seconds
            return {"now": sim.now(), "offset_seconds": sim.clock_offset}

        return await admin(request, work)

    async def config_get(request: Request) -> Response:
        return _json(sim.config.public())

    async def config_post(request: Request) -> Response:
        async def work(request: Request) -> Any:
            body = await admin_body(request)
            unknown = set(body) - RUNTIME_SETTINGS
            if unknown:
                raise _admin_error(f"not settable at run time: {sorted(unknown)}")
            try:
                sim.config = sim.config.replace(**body)
            except (TypeError, ValueError) as exc:
                raise _admin_error(str(exc)) from None
            return sim.config.public()

        return await admin(request, work)

    async def admin_run(request: Request) -> Response:
        run = sim.runs.get(request.path_params["run_id"])
        if run is None:
            return _error_response(ApiError("NOT_FOUND", "no such run"), request)
        data = run.to_json(request_id=_request_id(request))
        data |= {
            "kind": run.kind,
            "idempotency_key": run.idempotency_key,
            "events": [{"seq": e.seq, "type": e.type, "data": e.data} for e in run.events],
        }
        return _json(data)

    # -- a demo receiver for the portal's team endpoints ---------------------------------------
    # `make run`'s demo team has an endpoint pointed here: what arrives is kept (the last 50,
    # bodies cut to 2 kB) and listed by GET, so the demo shows deliveries with nothing set up.
    received: deque[dict[str, Any]] = deque(maxlen=50)

    async def receiver_post(request: Request) -> Response:
        body = await request.body()
        received.appendleft(
            {
                "received_at": time.time(),
                "headers": {
                    k: v
                    for k, v in request.headers.items()
                    if k.startswith("webhook-") or k == "content-type"
                },
                "body": body[:2048].decode("utf-8", "replace"),
            }
        )
        logger.info("demo receiver: %s", request.headers.get("webhook-id", "(no webhook-id)"))
        return _json({"ok": True})

    async def receiver_get(request: Request) -> Response:
        return _json({"received": list(received)})

    # -- errors Starlette raises itself (unknown path, wrong method) ---------------------------

    async def http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            error = ApiError("METHOD_NOT_ALLOWED", "Method not allowed on this path.")
        else:
            error = ApiError(
                "NOT_FOUND",
                "No such endpoint.",
                status=404 if exc.status_code == 404 else exc.status_code,
            )
        return _error_response(error, request, dict(exc.headers or {}))

    async def unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("simulator bug", exc_info=exc)
        response = _error_response(
            ApiError("INTERNAL_ERROR", "Unexpected simulator error."), request
        )
        response.headers["X-Coasty-Request-Id"] = _request_id(request)
        return response

    async def on_shutdown() -> None:
        sim.reset()
        await sim.webhooks.close()

    routes = [
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/runs", api("create_run", create_run), methods=["POST"]),
        Route("/v1/runs", api("list_runs", list_runs), methods=["GET"]),
        Route("/v1/runs/{run_id}", api("get_run", get_run), methods=["GET"]),
        Route("/v1/runs/{run_id}/events", api("stream_events", stream_events), methods=["GET"]),
        Route("/v1/runs/{run_id}/cancel", api("cancel_run", cancel_run), methods=["POST"]),
        Route("/v1/runs/{run_id}/resume", api("resume_run", resume_run), methods=["POST"]),
        Route(
            "/v1/idempotency/{key}", api("idempotency_lookup", idempotency_lookup), methods=["GET"]
        ),
        Route("/v1/machines", api("list_machines", list_machines), methods=["GET"]),
        Route("/_sim/faults", faults_get, methods=["GET"]),
        Route("/_sim/faults", faults_post, methods=["POST"]),
        Route("/_sim/state", state_get, methods=["GET"]),
        Route("/_sim/reset", reset_post, methods=["POST"]),
        Route("/_sim/clock", clock_get, methods=["GET"]),
        Route("/_sim/clock", clock_post, methods=["POST"]),
        Route("/_sim/config", config_get, methods=["GET"]),
        Route("/_sim/config", config_post, methods=["POST"]),
        Route("/_sim/runs/{run_id}", admin_run, methods=["GET"]),
        Route("/_sim/webhook-receiver", receiver_post, methods=["POST"]),
        Route("/_sim/webhook-receiver", receiver_get, methods=["GET"]),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        await on_shutdown()

    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_exception, Exception: unexpected},
        lifespan=lifespan,
    )
    app.add_middleware(RequestIdMiddleware)
    app.state.sim = sim
    return app
