"""Files of a service: upload into its MinIO input, list/download its outputs, presign.

Uploading into an input path is how storage-triggered OSCAR services are fed, so
`PUT inputs/<name>` also asks the watcher to report the outputs the triggered job
produces on the event stream. Bodies are streamed both ways: a multi-GB file goes
from the request stream to S3 (and back) in chunks, never whole in memory.

Security: the bridge holds the cluster's MinIO credentials, so only objects under the
service's own MinIO input/output paths can be read or presigned through it; anything
else is a 400, never a proxy to the whole object store.
"""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, current_app, jsonify, request

from bridge.server.errors import ApiError
from bridge.server.watcher import (
    StoragePath,
    iter_service_objects,
    minio_entry_path,
    minio_paths,
    object_dict,
    storage_for,
)

bp = Blueprint("files", __name__)

_BASE = "/api/v1/clusters/<cluster>/services/<service>"
MAX_PRESIGN_S = 7 * 24 * 3600  # S3's own limit for presigned URLs
_OPERATIONS = {"download": "GET", "upload": "PUT"}


def _ctx() -> Any:
    return current_app.extensions["bridge"]


def _definition(cluster: str, service: str) -> dict[str, Any]:
    return _ctx().registry.client(cluster).get_service(service)


def _check_relative(value: str, field: str) -> None:
    """Reject names that could escape the folder or mean something else than a file."""
    if not value or value.startswith("/") or value.endswith("/"):
        raise ApiError(400, f"{field} must be a relative file name (no leading or trailing '/')", field=field)
    parts = value.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ApiError(400, f"{field} must not contain '..', '.' or empty segments", field=field)
    if "\\" in value or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ApiError(400, f"{field} must not contain backslashes or control characters", field=field)


def _choose_input(definition: dict[str, Any], service: str) -> StoragePath:
    """The MinIO input to upload into.

    `?input=<index>` indexes the service's whole `input` list (so indexes match the
    FDL); without it, the first MinIO input is used.
    """
    raw = request.args.get("input")
    if raw is None or raw == "":
        paths = minio_paths(definition, "input")
        if not paths:
            raise ApiError(400, f"service {service!r} has no MinIO input to upload to", field="input")
        return paths[0]
    try:
        index = int(raw)
    except ValueError:
        raise ApiError(
            400, "input must be an integer index into the service's inputs", field="input"
        ) from None
    entries = definition.get("input") or []
    if not 0 <= index < len(entries):
        raise ApiError(
            400, f"input {index} out of range: service {service!r} has {len(entries)}", field="input"
        )
    path = minio_entry_path(entries[index]) if isinstance(entries[index], dict) else None
    if path is None:
        raise ApiError(400, f"input {index} of service {service!r} is not a MinIO input", field="input")
    return path


def _allowed_path(definition: dict[str, Any], service: str, bucket: str, key: str) -> StoragePath:
    """The service path (input or output) that contains bucket/key, else 400."""
    _check_relative(key, "key")
    for sp in minio_paths(definition, "output") + minio_paths(definition, "input"):
        if sp.contains(bucket, key):
            return sp
    raise ApiError(
        400,
        f"{bucket}/{key} is outside the MinIO inputs and outputs of service {service!r}",
        field="path",
    )


def _content_type(name: str) -> str:
    sent = request.mimetype
    if sent and sent not in ("application/octet-stream", "application/x-www-form-urlencoded"):
        return sent
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


@bp.put(f"{_BASE}/inputs/<path:name>")
def upload_input(cluster: str, service: str, name: str) -> Any:
    """Stream the body into the service's input folder (this triggers the service)."""
    _check_relative(name, "name")
    ctx = _ctx()
    definition = _definition(cluster, service)
    target = _choose_input(definition, service)
    store = storage_for(ctx.registry, cluster, definition, target.provider)
    length = request.content_length if request.content_length is not None else -1
    since = time.time()
    info = store.put_object(
        target.bucket,
        target.key_prefix + name,
        request.stream,
        length=length,
        content_type=_content_type(name),
    )
    ctx.watcher.watch_outputs(cluster, service, since=since)
    body = {"bucket": info.bucket, "key": info.key, "size": info.size, "path": f"{info.bucket}/{info.key}"}
    return jsonify(body), 201


@bp.get(f"{_BASE}/outputs")
def list_outputs(cluster: str, service: str) -> Any:
    """Every object under the service's MinIO outputs (optionally under `prefix` inside each)."""
    prefix = request.args.get("prefix", "")
    if prefix.startswith("/") or ".." in prefix.split("/"):
        raise ApiError(400, "prefix must be relative to the output folder, without '..'", field="prefix")
    definition = _definition(cluster, service)
    paths = minio_paths(definition, "output")
    objects = iter_service_objects(_ctx().registry, cluster, definition, paths, prefix)
    return jsonify({"outputs": [object_dict(o) for o in objects]})


def _is_missing(exc: BaseException) -> bool:
    """True for 'no such object/bucket', whichever layer (minio lib or S3Store) raised it."""
    if isinstance(exc, FileNotFoundError | KeyError):
        return True
    code = getattr(exc, "code", None)
    return code in ("NoSuchKey", "NoSuchBucket", "NotFound", 404) or getattr(exc, "status", None) == 404


@bp.get(f"{_BASE}/outputs/<bucket>/<path:key>")
def download_output(cluster: str, service: str, bucket: str, key: str) -> Any:
    """Stream one object of the service's inputs/outputs back to the caller."""
    ctx = _ctx()
    definition = _definition(cluster, service)
    sp = _allowed_path(definition, service, bucket, key)
    store = storage_for(ctx.registry, cluster, definition, sp.provider)
    try:
        chunks, info = store.open_object(bucket, key)
    except Exception as exc:
        if _is_missing(exc):
            raise ApiError(404, f"object {bucket}/{key} not found", bucket=bucket, key=key) from None
        raise

    def stream() -> Iterator[bytes]:
        # Close the upstream connection even when the client goes away mid-download.
        try:
            yield from chunks
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    filename = key.rsplit("/", 1)[-1]
    headers = {
        "Content-Length": str(info.size),
        "ETag": f'"{info.etag}"' if info.etag else "",
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(filename, safe='')}",
    }
    mimetype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return Response(stream(), mimetype=mimetype, headers={k: v for k, v in headers.items() if v})


@bp.post(f"{_BASE}/presign")
def presign(cluster: str, service: str) -> Any:
    """A presigned S3 URL for one object under the service's paths (download or upload)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object with path, operation and expires_in")
    path = body.get("path")
    if not isinstance(path, str) or "/" not in path.strip("/"):
        raise ApiError(400, "path must be a string 'bucket/key'", field="path")
    operation = body.get("operation", "download")
    if operation not in _OPERATIONS:
        raise ApiError(400, "operation must be 'download' or 'upload'", field="operation")
    expires_in = body.get("expires_in", 900)
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or not 1 <= expires_in <= MAX_PRESIGN_S
    ):
        raise ApiError(400, f"expires_in must be an integer from 1 to {MAX_PRESIGN_S}", field="expires_in")
    bucket, _, key = path.lstrip("/").partition("/")
    definition = _definition(cluster, service)
    sp = _allowed_path(definition, service, bucket, key)
    store = storage_for(_ctx().registry, cluster, definition, sp.provider)
    content_type = body.get("content_type") if operation == "upload" else None
    url = store.presign(bucket, key, operation=operation, expires_s=expires_in, content_type=content_type)
    return jsonify({"url": url, "method": _OPERATIONS[operation], "expires_in": expires_in})


@bp.get(f"{_BASE}/jobs/<job>/outputs")
def job_outputs(cluster: str, service: str, job: str) -> Any:
    """Outputs the job probably wrote (time-window heuristic, see Watcher.job_outputs)."""
    ctx = _ctx()
    info = None
    for name, job_info in ctx.registry.client(cluster).iter_jobs(service):
        if name == job:
            info = job_info or {}
            break
    if info is None:
        raise ApiError(404, f"job {job!r} not found", cluster=cluster, service=service, job=job)
    outputs = ctx.watcher.job_outputs(cluster, service, info)
    return jsonify({"job": job, "status": info.get("status"), "outputs": outputs})


# --------------------------------------------------------------------------- OpenAPI

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
    "additionalProperties": True,
}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "Bad request (the message names the field)",
        401: "Missing or wrong bridge token",
        404: "Unknown cluster, service, job or object",
        413: "Body larger than the configured limit",
        502: "Upstream OSCAR or storage error",
    }
    return {
        str(c): {"description": texts[c], "content": {"application/json": {"schema": _ERROR}}} for c in codes
    }


_OBJECT = {
    "type": "object",
    "properties": {
        "bucket": {"type": "string"},
        "key": {"type": "string"},
        "size": {"type": "integer"},
        "last_modified": {"type": "string", "format": "date-time"},
        "etag": {"type": "string"},
        "path": {"type": "string", "description": "bucket/key"},
    },
}
_OUTPUTS = {"type": "object", "properties": {"outputs": {"type": "array", "items": _OBJECT}}}


def _param(name: str, description: str, where: str = "path", **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": {"type": "string", **schema},
    }


_CS = [_param("cluster", "Cluster id"), _param("service", "Service name")]
_P = "/api/v1/clusters/{cluster}/services/{service}"

OPENAPI_PATHS: dict[str, Any] = {
    f"{_P}/inputs/{{name}}": {
        "put": {
            "tags": ["files"],
            "summary": "Stream a file into the service's MinIO input folder (triggers the service)",
            "description": "The object key is `<input folder>/<name>`; `name` may contain '/' but no '..'. "
            "Outputs produced afterwards are published as `output` events on /api/v1/events.",
            "parameters": [
                *_CS,
                _param("name", "File name inside the input folder"),
                _param(
                    "input",
                    "Index into the service's `input` list (default: the first MinIO input)",
                    "query",
                    type="integer",
                    minimum=0,
                ),
            ],
            "requestBody": {
                "required": True,
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
            },
            "responses": {
                "201": {
                    "description": "Stored",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "bucket": {"type": "string"},
                                    "key": {"type": "string"},
                                    "size": {"type": "integer"},
                                    "path": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                **_errors(400, 401, 404, 413, 502),
            },
        }
    },
    f"{_P}/outputs": {
        "get": {
            "tags": ["files"],
            "summary": "List objects under every MinIO output path of the service",
            "parameters": [*_CS, _param("prefix", "Key prefix relative to each output folder", "query")],
            "responses": {
                "200": {"description": "Objects", "content": {"application/json": {"schema": _OUTPUTS}}},
                **_errors(400, 401, 404, 502),
            },
        }
    },
    f"{_P}/outputs/{{bucket}}/{{key}}": {
        "get": {
            "tags": ["files"],
            "summary": "Download one object under the service's MinIO inputs or outputs (streamed)",
            "parameters": [*_CS, _param("bucket", "Bucket"), _param("key", "Object key (may contain '/')")],
            "responses": {
                "200": {
                    "description": "The object's bytes",
                    "content": {
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                    },
                },
                **_errors(400, 401, 404, 502),
            },
        }
    },
    f"{_P}/presign": {
        "post": {
            "tags": ["files"],
            "summary": "Presigned S3 URL for an object under the service's MinIO inputs or outputs",
            "parameters": _CS,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["path"],
                            "properties": {
                                "path": {"type": "string", "description": "bucket/key"},
                                "operation": {"type": "string", "enum": ["download", "upload"]},
                                "expires_in": {"type": "integer", "minimum": 1, "maximum": MAX_PRESIGN_S},
                                "content_type": {"type": "string"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "The URL; use it with `method`",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "url": {"type": "string"},
                                    "method": {"type": "string", "enum": ["GET", "PUT"]},
                                    "expires_in": {"type": "integer"},
                                },
                            }
                        }
                    },
                },
                **_errors(400, 401, 404, 502),
            },
        }
    },
    f"{_P}/jobs/{{job}}/outputs": {
        "get": {
            "tags": ["jobs", "files"],
            "summary": "Objects the job probably wrote",
            "description": "OSCAR does not link outputs to jobs: this lists objects under the service's "
            "MinIO outputs whose last_modified lies within [start_time - 1 s, finish_time + 5 s].",
            "parameters": [*_CS, _param("job", "Job name")],
            "responses": {
                "200": {
                    "description": "Objects",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "job": {"type": "string"},
                                    "status": {"type": "string"},
                                    "outputs": _OUTPUTS["properties"]["outputs"],
                                },
                            }
                        }
                    },
                },
                **_errors(401, 404, 502),
            },
        }
    },
}
