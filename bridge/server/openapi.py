"""Builds /openapi.json from the `OPENAPI_PATHS` of every API module.

Each blueprint module documents its own routes next to the code, and this module only
merges them and adds what is shared (info, security, the error schema). A test compares
the document with the app's URL map, so a route without documentation fails the build.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from types import ModuleType
from typing import Any

OPENAPI_VERSION = "3.1.0"
ERROR_REF = "#/components/schemas/Error"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What went wrong, for humans"},
        "cluster": {"type": "string"},
        "service": {"type": "string"},
        "upstream_status": {
            "type": ["integer", "null"],
            "description": "HTTP status the OSCAR cluster answered with (null: no answer)",
        },
        "field": {"type": "string", "description": "The request field at fault"},
    },
    "additionalProperties": True,
}

_ERROR_TEXTS = {
    400: "Bad request; the message names the field",
    401: "Missing or wrong bridge token",
    404: "Unknown cluster, service, job or route",
    409: "Already exists, or the cluster refused a conflicting change",
    413: "Request body over the configured limit (max_body_bytes)",
    502: "The cluster answered with an error (rejected credentials, script failure...)",
    503: "The cluster is unreachable",
    504: "The cluster did not answer in time",
}


def error_responses(*codes: int) -> dict[str, Any]:
    """`responses` entries for the given error statuses, all with the Error schema."""
    return {
        str(code): {
            "description": _ERROR_TEXTS.get(code, "Error"),
            "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
        }
        for code in codes
    }


# Errors any call reaching a cluster can give.
UPSTREAM_ERRORS = (401, 404, 502, 503, 504)


def path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def query_param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def json_body(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"content": {"application/json": {"schema": schema}}}
    if description:
        out["description"] = description
    return out


def build_document(modules: Iterable[ModuleType], *, version: str = "1") -> dict[str, Any]:
    """The OpenAPI document: every module's paths merged (method by method)."""
    paths: dict[str, dict[str, Any]] = {}
    for module in modules:
        for path, operations in getattr(module, "OPENAPI_PATHS", {}).items():
            merged = paths.setdefault(path, {})
            for method, operation in operations.items():
                if method in merged:
                    raise ValueError(f"{module.__name__}: {method.upper()} {path} is documented twice")
                merged[method] = copy.deepcopy(operation)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "oscar-bridge",
            "version": version,
            "description": (
                "One HTTP API to OSCAR serverless clusters for Node-RED, NiFi and scripts. Every call "
                "needs `Authorization: Bearer <bridge token>` except GET /healthz. Errors are JSON "
                "`{error, ...}`; upstream errors add `cluster`, `service` and `upstream_status`."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The bridge token (`oscar-bridge token` shows it)",
                }
            },
            "schemas": {"Error": ERROR_SCHEMA},
        },
    }
