"""Cluster registry endpoints: register, list, get, delete, check.

The request shape groups the credentials under `auth` (`{kind, ...secrets}`) so a
client can see at a glance which fields are secret; responses use the same shape with
every secret replaced by `***`. Secrets go in, never out.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from bridge.oscar.cluster import AUTH_KINDS, REDACTED, SECRET_FIELDS, ClusterSpec
from bridge.oscar.errors import OscarError
from bridge.server.api import read_json_object
from bridge.server.context import ctx
from bridge.server.errors import ApiError, oscar_error_response
from bridge.server.openapi import error_responses, json_body, path_param, query_param
from bridge.server.registry import LOCAL_ID

bp = Blueprint("clusters", __name__)

# Fields of `auth` per kind (besides `kind`); everything else is rejected by name.
AUTH_FIELDS = {
    "basic": ("user", "password"),
    "oidc": ("token", "refresh_token", "token_endpoint", "client_id", "client_secret"),
    "token": ("token",),
}
_TOP_FIELDS = ("id", "endpoint", "auth", "verify")


def spec_from_request(body: dict[str, Any]) -> ClusterSpec:
    """A validated ClusterSpec from the API shape; ApiError 400 naming the field."""
    unknown = sorted(str(k) for k in body if k not in _TOP_FIELDS)
    if unknown:
        raise ApiError(
            400, f"{unknown[0]}: unknown field (known: {', '.join(_TOP_FIELDS)})", field=unknown[0]
        )
    auth = body.get("auth")
    if not isinstance(auth, dict):
        raise ApiError(400, "auth: required, an object with 'kind' and its credentials", field="auth")
    kind = auth.get("kind")
    if kind not in AUTH_KINDS:
        raise ApiError(400, f"auth.kind: must be one of {', '.join(AUTH_KINDS)}", field="auth.kind")
    allowed = AUTH_FIELDS[kind]
    for key, value in auth.items():
        if key == "kind":
            continue
        if key not in allowed:
            raise ApiError(
                400,
                f"auth.{key}: not a field of auth kind {kind} (known: {', '.join(allowed)})",
                field=f"auth.{key}",
            )
        if value is not None and not isinstance(value, str):
            raise ApiError(400, f"auth.{key}: must be a string", field=f"auth.{key}")
    flat: dict[str, Any] = {
        "id": body.get("id"),
        "endpoint": body.get("endpoint"),
        "auth_kind": kind,
        **{k: v for k, v in auth.items() if k != "kind" and v is not None},
    }
    if "verify" in body and body["verify"] is not None:
        flat["verify"] = body["verify"]
    for name in ("id", "endpoint"):
        if flat[name] is not None and not isinstance(flat[name], str):
            raise ApiError(400, f"{name}: must be a string", field=name)
    try:
        return ClusterSpec.from_dict(flat)
    except ValueError as exc:
        field = str(exc).split(":", 1)[0]
        name = f"auth.{field}" if field in sum(AUTH_FIELDS.values(), ()) else field
        message = str(exc).replace(f"{field}:", f"{name}:", 1)
        raise ApiError(400, message, field=name) from None


def cluster_view(spec: ClusterSpec) -> dict[str, Any]:
    """The API shape of a spec, secrets replaced by `***` (empty ones left out)."""
    data = spec.to_dict(secrets=True)
    auth: dict[str, Any] = {"kind": spec.auth_kind}
    for key in AUTH_FIELDS[spec.auth_kind]:
        value = data.get(key)
        if value:
            auth[key] = REDACTED if key in SECRET_FIELDS else value
    return {"id": spec.id, "endpoint": spec.endpoint, "auth": auth, "verify": spec.verify}


@bp.get("/api/v1/clusters")
def list_clusters() -> Any:
    return jsonify({"clusters": [cluster_view(s) for s in ctx().registry.list()]})


@bp.post("/api/v1/clusters")
def register_cluster() -> Any:
    spec = spec_from_request(read_json_object())
    replace = request.args.get("replace", "").lower() in ("1", "true", "yes")
    registry = ctx().registry
    registry.add(spec, replace=replace)
    if spec.id == LOCAL_ID:
        registry.disown_local()
    resp = jsonify(cluster_view(spec))
    resp.status_code = 201
    resp.headers["Location"] = f"/api/v1/clusters/{spec.id}"
    return resp


@bp.get("/api/v1/clusters/<cluster>")
def get_cluster(cluster: str) -> Any:
    return jsonify(cluster_view(ctx().registry.get(cluster)))


@bp.delete("/api/v1/clusters/<cluster>")
def delete_cluster(cluster: str) -> Any:
    registry = ctx().registry
    registry.remove(cluster)
    if cluster == LOCAL_ID:
        registry.disown_local()
    return "", 204


@bp.post("/api/v1/clusters/<cluster>/check")
def check_cluster(cluster: str) -> Any:
    """Reachability (/health) and credentials (/system/info), reported rather than raised:
    a failing check is a normal answer to "is this cluster usable?"."""
    client = ctx().registry.client(cluster)
    health = client.health()
    result: dict[str, Any] = {"ok": False, "health": health, "info": None}
    try:
        result["info"] = client.info()
    except OscarError as exc:
        status, body = oscar_error_response(exc)
        result["error"] = body["error"]
        result["upstream_status"] = exc.status
    else:
        result["ok"] = health
    return jsonify(result)


_AUTH_SCHEMA = {
    "type": "object",
    "required": ["kind"],
    "properties": {
        "kind": {"type": "string", "enum": list(AUTH_KINDS)},
        "user": {"type": "string"},
        "password": {"type": "string"},
        "token": {"type": "string"},
        "refresh_token": {"type": "string"},
        "token_endpoint": {"type": "string"},
        "client_id": {"type": "string"},
        "client_secret": {"type": "string"},
    },
    "additionalProperties": False,
}
_CLUSTER_IN = {
    "type": "object",
    "required": ["id", "endpoint", "auth"],
    "properties": {
        "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"},
        "endpoint": {"type": "string", "description": "http(s) URL of the OSCAR Manager"},
        "auth": _AUTH_SCHEMA,
        "verify": {"type": ["boolean", "string"], "description": "TLS verification, or a CA bundle path"},
    },
    "additionalProperties": False,
}
_CLUSTER_OUT = {
    "type": "object",
    "required": ["id", "endpoint", "auth", "verify"],
    "properties": {
        "id": {"type": "string"},
        "endpoint": {"type": "string"},
        "auth": {**_AUTH_SCHEMA, "description": "Secret values are shown as ***"},
        "verify": {"type": ["boolean", "string"]},
    },
}
_ID = path_param("cluster", "Cluster id")


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/clusters": {
        "get": {
            "tags": ["clusters"],
            "summary": "List registered clusters (secrets redacted)",
            "responses": {
                "200": _ok(
                    "Clusters",
                    {
                        "type": "object",
                        "required": ["clusters"],
                        "properties": {"clusters": {"type": "array", "items": _CLUSTER_OUT}},
                    },
                ),
                **error_responses(401),
            },
        },
        "post": {
            "tags": ["clusters"],
            "summary": "Register a cluster: endpoint, auth kind and its secrets, TLS verification",
            "parameters": [
                query_param(
                    "replace", "true: overwrite an existing cluster with this id", {"type": "boolean"}
                )
            ],
            "requestBody": {"required": True, **json_body(_CLUSTER_IN)},
            "responses": {
                "201": _ok("Registered (secrets redacted)", _CLUSTER_OUT),
                **error_responses(400, 401, 409, 413),
            },
        },
    },
    "/api/v1/clusters/{cluster}": {
        "get": {
            "tags": ["clusters"],
            "summary": "One cluster (secrets redacted)",
            "parameters": [_ID],
            "responses": {"200": _ok("The cluster", _CLUSTER_OUT), **error_responses(401, 404)},
        },
        "delete": {
            "tags": ["clusters"],
            "summary": "Forget a cluster (nothing is changed on the cluster itself)",
            "parameters": [_ID],
            "responses": {"204": {"description": "Deleted"}, **error_responses(401, 404)},
        },
    },
    "/api/v1/clusters/{cluster}/check": {
        "post": {
            "tags": ["clusters"],
            "summary": "Call the cluster's /health and /system/info",
            "parameters": [_ID],
            "responses": {
                "200": _ok(
                    "Check result; ok is false when either call failed",
                    {
                        "type": "object",
                        "required": ["ok", "health", "info"],
                        "properties": {
                            "ok": {"type": "boolean"},
                            "health": {"type": "boolean"},
                            "info": {"type": ["object", "null"]},
                            "error": {"type": "string"},
                            "upstream_status": {"type": ["integer", "null"]},
                        },
                    },
                ),
                **error_responses(401, 404),
            },
        }
    },
}
