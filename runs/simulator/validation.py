"""Request validation with the reference spec's limits (RunRequest, ResumeRunRequest, params).

Status codes follow the spec's response descriptions: a body that is not JSON, or a bad
parameter (query, header, Idempotency-Key), is 400 ("Invalid request body or parameters"); a
JSON body whose values break the contract, unknown fields included
(``additionalProperties: false``), is 422 VALIDATION_ERROR, with ``error.details`` listing each
offending field. An unsupported ``llm.provider`` alone is 422 LLM_PROVIDER_UNSUPPORTED, as the
LlmConfig schema says.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any
from urllib.parse import urlsplit

from .errors import ApiError

IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_\-:]{1,128}$")
RUN_STATUSES = (
    "queued",
    "running",
    "awaiting_human",
    "succeeded",
    "failed",
    "cancelled",
    "timed_out",
)
CUA_VERSIONS = ("v1", "v3", "v4", "v5")
ON_AWAITING_HUMAN = ("pause", "fail", "cancel")
LLM_PROVIDERS = ("managed", "anthropic", "openai")
MAX_BODY_BYTES = 1_048_576

_RUN_FIELDS = {
    "machine_id",
    "task",
    "cua_version",
    "instructions",
    "system_prompt",
    "model",
    "max_steps",
    "deadline_seconds",
    "on_awaiting_human",
    "awaiting_human_timeout_seconds",
    "webhook_url",
    "metadata",
    "llm",
}
_LLM_MODEL_FIELDS = ("model", "grounding_model", "compaction_model", "code_agent_model")


def parse_json_body(raw: bytes, *, optional: bool = False) -> Any:
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError("PAYLOAD_TOO_LARGE", f"The request body is over {MAX_BODY_BYTES} bytes.")
    if optional and not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError("INVALID_JSON", "The request body is not valid JSON.") from None


def canonical_json(value: Any) -> bytes:
    """Canonical bytes of a JSON value: sorted keys, compact, UTF-8 (the idempotency hash input)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.llm_provider = False

    def add(self, field: str, message: str) -> None:
        self.items.append({"field": field, "message": message})

    def raise_if_any(self) -> None:
        if not self.items:
            return
        if self.llm_provider and len(self.items) == 1:
            raise ApiError("LLM_PROVIDER_UNSUPPORTED", self.items[0]["message"], details=self.items)
        text = "; ".join(f"{p['field']}: {p['message']}" for p in self.items)
        raise ApiError("VALIDATION_ERROR", f"Request failed validation: {text}", details=self.items)


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and (
        isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    )


def _string(
    p: _Problems, body: dict, name: str, *, lo: int = 0, hi: int, nullable: bool, prefix: str = ""
) -> None:
    if name not in body:
        return
    value = body[name]
    if value is None and nullable:
        return
    field = prefix + name
    if not isinstance(value, str):
        p.add(field, "must be a string" + (" or null" if nullable else ""))
    elif len(value) < lo:
        p.add(field, f"must be at least {lo} character(s)")
    elif len(value) > hi:
        p.add(field, f"must be at most {hi} characters")


def _integer(p: _Problems, body: dict, name: str, *, lo: int, hi: int, nullable: bool) -> None:
    if name not in body:
        return
    value = body[name]
    if value is None and nullable:
        return
    if not _is_int(value):
        p.add(name, "must be an integer" + (" or null" if nullable else ""))
    elif not lo <= value <= hi:
        p.add(name, f"must be from {lo} to {hi}")


def _enum(p: _Problems, body: dict, name: str, choices: tuple[str, ...]) -> None:
    if name in body and body[name] not in choices:
        p.add(name, f"must be one of {', '.join(choices)}")


def webhook_url_problem(url: str) -> str | None:
    """Why a webhook URL is refused, or None. https anywhere; plain http only to loopback."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "is not a valid URL"
    if not host:
        return "is not an absolute URL"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http":
        if host == "localhost":
            return None
        try:
            if ipaddress.ip_address(host).is_loopback:
                return None
        except ValueError:
            pass
        return "must use https:// (plain http:// is accepted only for loopback hosts)"
    return "must be an https:// URL"


def validate_run_request(body: Any) -> dict[str, Any]:
    """A RunRequest with its defaults filled in, or ApiError 422."""
    p = _Problems()
    if not isinstance(body, dict):
        p.add("body", "must be a JSON object")
        p.raise_if_any()
    for name in sorted(set(body) - _RUN_FIELDS):
        p.add(name, "is not a field of RunRequest (unknown fields are refused)")
    for name in ("machine_id", "task"):
        if name not in body:
            p.add(name, "is required")
    _string(p, body, "machine_id", lo=1, hi=128, nullable=False)
    _string(p, body, "task", lo=1, hi=16000, nullable=False)
    _enum(p, body, "cua_version", CUA_VERSIONS)
    _string(p, body, "instructions", hi=16000, nullable=True)
    _string(p, body, "system_prompt", hi=32000, nullable=True)
    _string(p, body, "model", hi=512, nullable=True)
    _integer(p, body, "max_steps", lo=1, hi=1000, nullable=False)
    _integer(p, body, "deadline_seconds", lo=1, hi=86400, nullable=True)
    _enum(p, body, "on_awaiting_human", ON_AWAITING_HUMAN)
    _integer(p, body, "awaiting_human_timeout_seconds", lo=1, hi=86400, nullable=True)
    _string(p, body, "webhook_url", hi=2048, nullable=True)
    url = body.get("webhook_url")
    if isinstance(url, str) and len(url) <= 2048:
        problem = webhook_url_problem(url)
        if problem:
            p.add("webhook_url", problem)
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            p.add("metadata", "must be an object or null")
        elif len(metadata) > 50:
            p.add("metadata", "must have at most 50 keys")
    if "llm" in body:
        _validate_llm(p, body["llm"])
    p.raise_if_any()

    run = {
        "machine_id": body["machine_id"],
        "task": body["task"],
        "cua_version": body.get("cua_version", "v5"),
        "instructions": body.get("instructions"),
        "system_prompt": body.get("system_prompt"),
        "model": body.get("model"),
        "max_steps": int(body.get("max_steps", 50)),
        "deadline_seconds": body.get("deadline_seconds"),
        "on_awaiting_human": body.get("on_awaiting_human", "pause"),
        "awaiting_human_timeout_seconds": body.get("awaiting_human_timeout_seconds"),
        "webhook_url": body.get("webhook_url"),
        "metadata": body.get("metadata"),
        "llm": body.get("llm"),
    }
    for name in ("deadline_seconds", "awaiting_human_timeout_seconds"):
        if run[name] is not None:
            run[name] = int(run[name])
    return run


def _validate_llm(p: _Problems, llm: Any) -> None:
    if not isinstance(llm, dict):
        p.add("llm", "must be an object")
        return
    for name in sorted(set(llm) - {"provider", *_LLM_MODEL_FIELDS}):
        hint = " (keys ride the X-LLM-Api-Key header)" if name == "api_key" else ""
        p.add(f"llm.{name}", f"is not a field of LlmConfig{hint}")
    if "provider" in llm and llm["provider"] not in LLM_PROVIDERS:
        p.add("llm.provider", f"must be one of {', '.join(LLM_PROVIDERS)}")
        p.llm_provider = True
    for name in _LLM_MODEL_FIELDS:
        _string(p, llm, name, lo=1, hi=512, nullable=True, prefix="llm.")


def validate_resume(body: Any) -> str | None:
    """The resume note (None when there is no body), or ApiError 422."""
    if body is None:
        return None
    p = _Problems()
    if not isinstance(body, dict):
        p.add("body", "must be a JSON object")
        p.raise_if_any()
    for name in sorted(set(body) - {"note"}):
        p.add(name, "is not a field of ResumeRunRequest (unknown fields are refused)")
    _string(p, body, "note", hi=2000, nullable=True)
    p.raise_if_any()
    return body.get("note")


def idempotency_key_param(value: str | None) -> str | None:
    if value is None:
        return None
    if not IDEMPOTENCY_KEY.match(value):
        raise ApiError(
            "VALIDATION_ERROR",
            "Idempotency-Key must be 1-128 characters of A-Z a-z 0-9 _ - :",
            status=400,
            details=[{"field": "Idempotency-Key", "message": "bad format"}],
        )
    return value


def int_param(name: str, raw: str | None, *, lo: int, hi: int | None, default: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or value < lo or (hi is not None and value > hi):
        bound = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
        raise ApiError(
            "VALIDATION_ERROR",
            f"{name} must be an integer {bound}",
            status=400,
            details=[{"field": name, "message": f"must be an integer {bound}"}],
        )
    return value


def status_param(raw: str | None) -> str | None:
    if raw is None:
        return None
    if raw not in RUN_STATUSES:
        raise ApiError(
            "VALIDATION_ERROR",
            f"status must be one of {', '.join(RUN_STATUSES)}",
            status=400,
            details=[{"field": "status", "message": "unknown status"}],
        )
    return raw
