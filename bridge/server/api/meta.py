"""Service endpoints: liveness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from bridge.server import metrics as metrics_mod
from bridge.server.openapi import build_document, error_responses

bp = Blueprint("meta", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    """Liveness only: no auth, no upstream calls, so probes never depend on a cluster."""
    return jsonify({"status": "ok"})


@bp.get("/metrics")
def metrics() -> Response:
    body = current_app.extensions["bridge"].metrics.render()
    return Response(body, content_type=metrics_mod.CONTENT_TYPE)


@bp.get("/openapi.json")
def openapi() -> Any:
    from bridge.server import api

    doc = current_app.extensions.get("bridge_openapi")
    if doc is None:
        doc = current_app.extensions["bridge_openapi"] = build_document(api.modules())
    return jsonify(doc)


_TEXT = {"text/plain": {"schema": {"type": "string"}}}

OPENAPI_PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "tags": ["meta"],
            "summary": "Liveness probe (no token needed)",
            "security": [],
            "responses": {
                "200": {
                    "description": "The bridge is up",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["status"],
                                "properties": {"status": {"type": "string", "enum": ["ok"]}},
                            }
                        }
                    },
                }
            },
        }
    },
    "/metrics": {
        "get": {
            "tags": ["meta"],
            "summary": "Prometheus text exposition (0.0.4)",
            "description": "oscar_bridge_invocations_total{cluster,service,mode,outcome}, "
            "oscar_bridge_invocation_duration_seconds (histogram), oscar_bridge_errors_total{kind}, "
            "oscar_bridge_jobs_total{cluster,service,status}.",
            "responses": {"200": {"description": "Metrics", "content": _TEXT}, **error_responses(401)},
        }
    },
    "/openapi.json": {
        "get": {
            "tags": ["meta"],
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1 document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **error_responses(401),
            },
        }
    },
}
