"""Services of a cluster: list, get, apply an FDL (YAML or JSON), delete.

Definitions returned by OSCAR contain the service's invocation token, the values of
`environment.secrets` and any storage provider credentials; the bridge keeps those
to itself (the point of the bridge is that callers need none of them).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, jsonify, request

from bridge.oscar.errors import OscarError
from bridge.oscar.fdl import Fdl, FdlError, parse_fdl
from bridge.server.context import ctx
from bridge.server.errors import ApiError, oscar_error_response
from bridge.server.openapi import UPSTREAM_ERRORS, error_responses, path_param

bp = Blueprint("services", __name__)

REDACTED = "***"
# Keys whose values are credentials wherever they appear in a service definition.
SECRET_KEYS = frozenset(
    {
        "token",
        "password",
        "secret_key",
        "auth_password",
        "refresh_token",
        "client_secret",
        "oneprovider_token",
    }
)
_BASE = "/api/v1/clusters/<cluster>/services"


def redact_service(value: Any, *, _key: str = "") -> Any:
    """A copy of a service definition with every credential value replaced by `***`."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in SECRET_KEYS and isinstance(item, str) and item and item != "hidden":
                out[key] = REDACTED
            elif key == "secrets" and _key == "environment" and isinstance(item, dict):
                out[key] = {k: REDACTED for k in item}
            else:
                out[key] = redact_service(item, _key=key)
        return out
    if isinstance(value, list):
        return [redact_service(item, _key=_key) for item in value]
    return value


def parse_definition(raw: bytes, mimetype: str) -> Fdl:
    """FDL YAML, FDL JSON or OSCAR service JSON -> Fdl; ApiError 400 listing every problem."""
    if not raw.strip():
        raise ApiError(400, "body: an FDL (YAML or JSON) or a service definition is required", field="body")
    data: Any = raw
    if mimetype == "application/json" or mimetype.endswith("+json"):
        try:
            data = json.loads(raw)
        except UnicodeDecodeError:
            raise ApiError(400, "body: not UTF-8 text", field="body") from None
        except ValueError as exc:
            raise ApiError(400, f"body: malformed JSON: {exc}", field="body") from None
    try:
        # No base_dir: a definition sent over the network must carry its script text;
        # the bridge never reads files of its own host on a caller's behalf.
        return parse_fdl(data, source="body")
    except FdlError as exc:
        errors = [{"location": loc, "message": msg} for loc, msg in exc.errors]
        first = f"{errors[0]['location']}: {errors[0]['message']}" if errors else "invalid definition"
        extra = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ApiError(400, f"invalid service definition: {first}{extra}", errors=errors) from None


@bp.get(_BASE)
def list_services(cluster: str) -> Any:
    services = ctx().registry.client(cluster).list_services()
    return jsonify({"cluster": cluster, "services": [redact_service(s) for s in services]})


@bp.post(_BASE)
def apply_services(cluster: str) -> Any:
    """Create or update every service of the definition on this cluster.

    FDL entries name their cluster; those naming this cluster are applied, and when
    none does (or the body is a plain service JSON) all of them are. Everything is
    validated before anything is sent, so an invalid file changes nothing.
    """
    client = ctx().registry.client(cluster)
    fdl = parse_definition(request.get_data(cache=True), request.mimetype)
    matching = [e for e in fdl.services if e.cluster_id == cluster]
    entries = matching or fdl.services
    if not entries:
        raise ApiError(400, "body: the definition contains no service", field="body")
    applied: list[dict[str, str]] = []
    for entry in entries:
        name = entry.service.get("name", "")
        try:
            action = client.apply_service(entry.service)
        except OscarError as exc:
            status, body = oscar_error_response(exc)
            body["applied"] = applied
            raise ApiError(status, body.pop("error"), **body) from None
        applied.append({"name": name, "action": action})
    return jsonify({"cluster": cluster, "applied": applied})


@bp.get(f"{_BASE}/<service>")
def get_service(cluster: str, service: str) -> Any:
    return jsonify(redact_service(ctx().registry.client(cluster).get_service(service)))


@bp.delete(f"{_BASE}/<service>")
def delete_service(cluster: str, service: str) -> Any:
    context = ctx()
    context.registry.client(cluster).delete_service(service)
    context.watcher.unwatch_outputs(cluster, service)
    return "", 204


_SERVICE = {
    "type": "object",
    "description": "OSCAR's service definition; token and secret values shown as ***",
    "additionalProperties": True,
}
_PARAMS = [path_param("cluster", "Cluster id")]
_SVC_PARAMS = [*_PARAMS, path_param("service", "Service name")]
_JSON = "application/json"

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/clusters/{cluster}/services": {
        "get": {
            "tags": ["services"],
            "summary": "List the cluster's services",
            "parameters": _PARAMS,
            "responses": {
                "200": {
                    "description": "Services",
                    "content": {
                        _JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["services"],
                                "properties": {
                                    "cluster": {"type": "string"},
                                    "services": {"type": "array", "items": _SERVICE},
                                },
                            }
                        }
                    },
                },
                **error_responses(*UPSTREAM_ERRORS),
            },
        },
        "post": {
            "tags": ["services"],
            "summary": "Apply an FDL (YAML or JSON) or OSCAR service JSON: create or update",
            "description": "Scripts must be inline text. Entries naming this cluster are applied; when none "
            "does, all are. Invalid definitions give 400 with `errors: [{location, message}]` and "
            "change nothing.",
            "parameters": _PARAMS,
            "requestBody": {
                "required": True,
                "content": {
                    "application/yaml": {"schema": {"type": "string"}},
                    _JSON: {"schema": {"type": "object"}},
                },
            },
            "responses": {
                "200": {
                    "description": "Applied",
                    "content": {
                        _JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["applied"],
                                "properties": {
                                    "cluster": {"type": "string"},
                                    "applied": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "name": {"type": "string"},
                                                "action": {"type": "string", "enum": ["created", "updated"]},
                                            },
                                        },
                                    },
                                },
                            }
                        }
                    },
                },
                **error_responses(400, 409, 413, *UPSTREAM_ERRORS),
            },
        },
    },
    "/api/v1/clusters/{cluster}/services/{service}": {
        "get": {
            "tags": ["services"],
            "summary": "One service's definition (secrets redacted)",
            "parameters": _SVC_PARAMS,
            "responses": {
                "200": {"description": "The service", "content": {_JSON: {"schema": _SERVICE}}},
                **error_responses(*UPSTREAM_ERRORS),
            },
        },
        "delete": {
            "tags": ["services"],
            "summary": "Delete the service (OSCAR >= 3.4 also deletes its buckets)",
            "parameters": _SVC_PARAMS,
            "responses": {"204": {"description": "Deleted"}, **error_responses(*UPSTREAM_ERRORS)},
        },
    },
}
