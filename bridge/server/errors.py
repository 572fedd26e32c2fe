"""ApiError and the JSON error handlers.

Every failure the bridge reports is `{"error": "...", ...}` with a 4xx/5xx status, so
Node-RED and NiFi flows can branch on one shape. Upstream (OSCAR) errors add
`cluster`, `service` and `upstream_status`. The mapping of OSCAR statuses is
deliberate: a 401/403 from the cluster means the *bridge's* stored credentials are
wrong, which is a gateway problem (502) for the caller, not an auth failure of the
caller's own bridge token (401 would make clients re-prompt for the wrong secret).
Nothing here ever puts a traceback or a credential in a response body.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from bridge.oscar.errors import OscarError, ScriptFailed, UpstreamUnavailable

log = logging.getLogger("bridge.server")

# Upstream statuses whose meaning is the same for the bridge's caller.
_PASS_THROUGH = {400, 404, 409}


class ApiError(Exception):
    """An error the bridge answers with: `{"error": message, **fields}` and `status`."""

    def __init__(self, status: int, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.message, **self.fields}


def json_error(status: int, message: str, **fields: Any):
    """A JSON error response (for code paths that return instead of raising)."""
    resp = jsonify({"error": message, **fields})
    resp.status_code = status
    return resp


def _count(kind: str) -> None:
    ctx = current_app.extensions.get("bridge")
    metrics = getattr(ctx, "metrics", None)
    if metrics is not None:
        metrics.count_error(kind)


def oscar_error_response(exc: OscarError) -> tuple[int, dict[str, Any]]:
    """Status and body for an OscarError (also used by code that reports partial work)."""
    fields: dict[str, Any] = {
        "cluster": exc.cluster,
        "service": exc.service,
        "upstream_status": exc.status,
    }
    where = f"cluster {exc.cluster!r}" if exc.cluster else "the cluster"
    if isinstance(exc, ScriptFailed):
        output = exc.body.decode("utf-8", "replace") if exc.body else exc.message
        fields["output"] = output
        return 502, {"error": f"service {exc.service!r} failed on {where}: {exc.message}", **fields}
    if exc.status in (401, 403):
        # The client already scrubbed its secrets from exc.message; say whose fault it is.
        return 502, {
            "error": f"{where} rejected the bridge's credentials (HTTP {exc.status}): {exc.message}",
            **fields,
        }
    if exc.status in _PASS_THROUGH:
        return exc.status, {"error": exc.message, **fields}
    if isinstance(exc, UpstreamUnavailable) or exc.status in (408, 502, 503, 504):
        timed_out = exc.status in (408, 504) or "timed out" in exc.message
        return (504 if timed_out else 503), {"error": f"{where} is unavailable: {exc.message}", **fields}
    return 502, {"error": f"{where} answered with an error: {exc.message}", **fields}


def _error_kind(exc: OscarError) -> str:
    if isinstance(exc, ScriptFailed):
        return "script_failed"
    if exc.status in (401, 403):
        return "upstream_auth"
    if exc.status == 404:
        return "upstream_not_found"
    if exc.status in (400, 409):
        return "upstream_rejected"
    if isinstance(exc, UpstreamUnavailable) or exc.status in (408, 502, 503, 504):
        return "upstream_unavailable"
    return "upstream_error"


def register_error_handlers(app: Flask) -> None:
    """Install JSON handlers for ApiError, OscarError, HTTPException and anything else."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        _count(f"http_{exc.status}")
        return json_error(exc.status, exc.message, **exc.fields)

    @app.errorhandler(OscarError)
    def _oscar_error(exc: OscarError):
        status, body = oscar_error_response(exc)
        _count(_error_kind(exc))
        log.info(
            "upstream error on %s %s: %s -> %s", request.method, request.path, type(exc).__name__, status
        )
        resp = jsonify(body)
        resp.status_code = status
        return resp

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        if status == 413:
            limit = current_app.config.get("MAX_CONTENT_LENGTH")
            message = f"request body too large: the limit is {limit} bytes (setting max_body_bytes)"
            fields: dict[str, Any] = {"limit_bytes": limit}
        elif status == 404:
            message, fields = f"no such endpoint: {request.method} {request.path}", {}
        elif status == 405:
            message, fields = f"method {request.method} not allowed on {request.path}", {}
        else:
            message, fields = exc.description or exc.name, {}
        _count(f"http_{status}")
        resp = json_error(status, message, **fields)
        for name, value in exc.get_headers():
            if name in ("Allow", "WWW-Authenticate", "Retry-After"):
                resp.headers[name] = value
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # Logged with its traceback here, never sent: a body only says where to look.
        log.exception("unhandled error on %s %s", request.method, request.path)
        _count("internal")
        return json_error(500, "internal error in the bridge (see its log)")
