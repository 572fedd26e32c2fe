"""OSCAR's REST API, served by the local runtime (reference §1.2 and §6).

The aim is byte-level compatibility where clients look at bytes (status codes, empty
bodies, Go-style JSON in OSCAR's key order, gin's 404 text, trailing-slash redirects)
so that oscar_python, oscar-cli, oscar-tests and our own bridge work unchanged. Each
resource is a small blueprint; `create_app(runtime)` puts them together. The blueprints
reach the runtime through `current_app.extensions["oscar_local"]`.

Choices and documented deviations from OSCAR:

* a duplicate service name answers **409** (OSCAR <= 4.0; 4.1 answers 400). oscar-tests
  accept 409 and oscar_python checks for the service before creating it;
* `/run` and `/job` also accept the admin's Basic credentials (an extension so that
  oscar-cli master's `service run` works); a missing service is 404 with Basic and 401
  with a service token, as OSCAR does;
* a script that exits non-zero makes `/run` answer 500 `exit status N\\n<output>` (OSCAR
  ignores exit codes); a timeout answers 408 `Killed process.` like OSCAR's watchdog;
* `/run` responses carry `X-Oscar-Bridge-Output: file|files|text` so our client knows
  how to decode the body without guessing;
* `HEAD /job/{svc}` (MinIO's webhook liveness probe) answers 200 with no body;
* `X-Delegated-Job-ID` names the job (OSCAR 4.1), a duplicate name answers 409.
"""

from __future__ import annotations

import hmac
import logging
import platform
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, current_app, redirect, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from bridge.local import gojson
from bridge.local.jobs import JobExists
from bridge.local.services import ServiceError, ServiceExists, echo
from bridge.oscar.codec import OUTPUT_HINT_HEADER

if TYPE_CHECKING:
    from bridge.local.runtime import LocalRuntime

log = logging.getLogger(__name__)

EXTENSION = "oscar_local"
TEXT = "text/plain; charset=utf-8"
REALM = 'Basic realm="Authorization Required"'
BUCKET_KIND = "bucket"
PAGE_SIZE = 70
MAX_PRESIGN_S = 604800
SYSTEM_LOG_SIZE = 1000

health_bp = Blueprint("oscar_health", __name__)
system_bp = Blueprint("oscar_system", __name__, url_prefix="/system")
services_bp = Blueprint("oscar_services", __name__, url_prefix="/system/services")
logs_bp = Blueprint("oscar_logs", __name__, url_prefix="/system/logs")
buckets_bp = Blueprint("oscar_buckets", __name__, url_prefix="/system/buckets")
invoke_bp = Blueprint("oscar_invoke", __name__)

ADMIN_BLUEPRINTS = (system_bp, services_bp, logs_bp, buckets_bp)


# -- helpers ---------------------------------------------------------------------------------


def _rt() -> LocalRuntime:
    return current_app.extensions[EXTENSION]


def json_response(value: Any, status: int = 200) -> Response:
    """gin's c.JSON: compact Go-style JSON, application/json; charset=utf-8."""
    return Response(gojson.dumpb(value), status=status, content_type=gojson.CONTENT_TYPE)


def text_response(text: str, status: int = 200) -> Response:
    """gin's c.String."""
    return Response(text, status=status, content_type=TEXT)


def empty(status: int) -> Response:
    """gin's c.Status: no body at all."""
    response = Response(b"", status=status)
    response.headers.remove("Content-Type")
    return response


def _unauthorized() -> Response:
    response = empty(401)
    response.headers["WWW-Authenticate"] = REALM
    return response


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _is_admin() -> bool:
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    rt = _rt()
    return _same(auth.username or "", rt.user) and _same(auth.password or "", rt.password)


def _bearer() -> str | None:
    """The Bearer value, found the way OSCAR finds it (split on the word "Bearer")."""
    header = request.headers.get("Authorization", "")
    if "Bearer" not in header:
        return None
    return header.split("Bearer", 1)[1].strip()


def _require_admin() -> Response | None:
    if not _is_admin():
        return _unauthorized()
    return None


for _bp in ADMIN_BLUEPRINTS:
    _bp.before_request(_require_admin)


def _lenient_json() -> Any:
    """The body as JSON whatever the Content-Type (OSCAR never checks it); None if invalid."""
    import json

    data = request.get_data(cache=True)
    if not data.strip():
        return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None


def _ci_get(mapping: dict, key: str, default: Any = None) -> Any:
    """Go-style case-insensitive struct field lookup (exact match wins)."""
    if key in mapping:
        return mapping[key]
    for k, v in mapping.items():
        if isinstance(k, str) and k.lower() == key.lower():
            return v
    return default


# -- /health ---------------------------------------------------------------------------------


@health_bp.get("/health")
def health() -> Response:
    return text_response("Ok")


# -- /system/info, /system/config, /system/status ----------------------------------------------


_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm"}


@system_bp.get("/info")
def info() -> Response:
    rt = _rt()
    return json_response(
        {
            "version": rt.version,
            "git_commit": "",
            "architecture": _GOARCH.get(platform.machine().lower(), platform.machine().lower()),
            "kubernetes_version": "",
            "serverless_backend": {
                "name": "local-processes",
                "version": rt.bridge_version,
                "note": "service images are not used: scripts run as local processes with the host's /bin/sh",
            },
        }
    )


@system_bp.get("/config")
def config() -> Response:
    rt = _rt()
    provider = rt.minio_provider
    return json_response(
        {
            "config": {
                "name": "oscar",
                "namespace": "oscar",
                "services_namespace": "oscar-svc",
                "controller_service_account": "",
                "gpu_available": False,
                "interLink_available": False,
                "serverless_backend": "local-processes",
                "yunikorn_enable": False,
                "kueue_enable": False,
                "volume_enable": False,
                "oidc_groups": None,
                "minio_quota_enabled": False,
            },
            "minio_provider": {
                "endpoint": provider.get("endpoint", ""),
                "verify": bool(provider.get("verify", False)),
                "access_key": provider.get("access_key", ""),
                "secret_key": provider.get("secret_key", ""),
                "region": provider.get("region", ""),
            },
            "allowed_image_repositories": [],
        }
    )


def _memory_bytes() -> tuple[int, int]:
    """(total, available) bytes of this host from /proc/meminfo; zeros where unknown."""
    values: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                values[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return values.get("MemTotal", 0), values.get("MemAvailable", 0)


@system_bp.get("/status")
def status() -> Response:
    """OSCAR v3.7+'s status shape for the one local "node" (oscar-tests look for nodes_count)."""
    import os

    rt = _rt()
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    free_cores = max(0.0, cores - load)
    total_mem, free_mem = _memory_bytes()
    cpu = {
        "total_free_cores": round(free_cores, 2),
        "max_free_on_node_cores": round(free_cores, 2),
        "total_schedulable_cores": cores,
        "total_schedulable_on_node_cores": cores,
    }
    memory = {
        "total_free_bytes": free_mem,
        "max_free_on_node_bytes": free_mem,
        "total_schedulable_bytes": total_mem,
        "max_schedulable_on_node_bytes": total_mem,
    }
    node = {
        "name": platform.node() or "localhost",
        "cpu": {"capacity_cores": cores, "usage_cores": round(load, 2), "request_cores": 0},
        "memory": {
            "capacity_bytes": total_mem,
            "usage_bytes": max(0, total_mem - free_mem),
            "request_bytes": 0,
        },
        "gpu": 0,
        "is_interlink": False,
        "status": "Ready",
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    return json_response(
        {
            "cluster": {
                "nodes_count": 1,
                "metrics": {"cpu": cpu, "memory": memory, "gpu": {"total_gpu": 0}},
                "nodes": [node],
            },
            "oscar": {
                "deployment_name": "oscar-local",
                "ready": True,
                "jobs_count": sum(len(rt.store.values("job", svc["name"])) for svc in rt.list_services()),
                "oidc": {"enabled": False, "issuers": None, "groups": None},
            },
            "minio": {"buckets_count": len(rt.s3.list_buckets())},
        }
    )


# -- /system/services ------------------------------------------------------------------------


@services_bp.get("")
def list_services() -> Response:
    rt = _rt()
    return json_response([echo(svc, rt.minio_provider) for svc in rt.list_services()])


@services_bp.get("/<name>")
def get_service(name: str) -> Response:
    rt = _rt()
    svc = rt.get_service(name)
    if svc is None:
        return empty(404)
    return json_response(echo(svc, rt.minio_provider))


@services_bp.post("")
def create_service() -> Response:
    rt = _rt()
    try:
        rt.create_service(request.get_data())
    except ServiceError as exc:
        return text_response(str(exc), 400)
    except ServiceExists as exc:
        return text_response(str(exc), 409)
    return empty(201)


@services_bp.put("")
def update_service() -> Response:
    rt = _rt()
    try:
        found = rt.update_service(request.get_data())
    except ServiceError as exc:
        return text_response(str(exc), 400)
    return empty(204) if found else empty(404)


@services_bp.delete("/<name>")
def delete_service(name: str) -> Response:
    return empty(204) if _rt().delete_service(name) else empty(404)


# -- /run and /job ---------------------------------------------------------------------------


def _invocation_service(name: str) -> tuple[dict | None, Response | None]:
    """The service for /run or /job, or the response refusing the caller."""
    rt = _rt()
    token = _bearer()
    if token is not None:
        svc = rt.get_service(name)
        if svc is None or not _same(token, str(svc.get("token") or "")):
            return None, empty(401)
        return svc, None
    if _is_admin():
        svc = rt.get_service(name)
        return (svc, None) if svc is not None else (None, empty(404))
    return None, empty(401)


@invoke_bp.post("/run/<name>")
def run(name: str) -> Response:
    svc, refusal = _invocation_service(name)
    if refusal is not None:
        return refusal
    assert svc is not None
    rt = _rt()
    body = request.get_data(cache=False)
    max_scale = int((svc.get("synchronous") or {}).get("max_scale") or 0)
    with rt.limiter.slot(name, max_scale):
        result = rt.supervisor.run(svc, body, mode="sync")
    if result.timed_out:
        response = text_response("Killed process.", 408)
    elif not result.succeeded:
        code = result.exit_code
        status_line = f"exit status {code}" if code > 0 else "signal: killed"
        response = text_response(f"{status_line}\n{result.response}", 500)
    else:
        response = Response(result.response, status=200)
        response.headers["Content-Type"] = request.headers.get("Content-Type") or TEXT
    response.headers["X-Duration-Seconds"] = f"{result.duration_s:f}"
    response.headers[OUTPUT_HINT_HEADER] = result.output_kind
    return response


@invoke_bp.post("/job/<name>")
def job(name: str) -> Response:
    svc, refusal = _invocation_service(name)
    if refusal is not None:
        return refusal
    assert svc is not None
    job_name = request.headers.get("X-Delegated-Job-ID") or None
    try:
        _rt().jobs.submit(svc, request.get_data(cache=False), job_name=job_name)
    except JobExists as exc:
        return text_response(str(exc), 409)
    except ValueError as exc:
        return text_response(str(exc), 400)
    return empty(201)


@invoke_bp.route("/job/<name>", methods=["HEAD"])
def job_probe(name: str) -> Response:
    # MinIO probes webhook targets with HEAD and treats any answer as "up".
    return empty(200)


# -- /system/logs ----------------------------------------------------------------------------


class _ExecutionLog:
    """The recent /run and /job requests, for GET /system/logs (OSCAR's GIN log lines)."""

    def __init__(self, size: int = SYSTEM_LOG_SIZE) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict] = deque(maxlen=size)

    def add(self, entry: dict) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[dict]:
        with self._lock:
            return list(self._entries)


@logs_bp.get("")
def system_logs() -> Response:
    return json_response({"logs": current_app.extensions[EXTENSION + ".executions"].entries()})


@logs_bp.get("/<svc>")
def list_jobs(svc: str) -> Response:
    rt = _rt()
    if rt.get_service(svc) is None:
        return empty(404)
    try:
        jobs, next_page, remaining = rt.jobs.list(svc, request.args.get("page") or None)
    except ValueError as exc:
        return text_response(str(exc), 400)
    return json_response(
        gojson.struct(
            [
                ("jobs", gojson.gomap(jobs), False),
                ("next_page", next_page, True),
                ("remaining_jobs", remaining, True),
            ]
        )
    )


@logs_bp.delete("/<svc>")
def delete_jobs(svc: str) -> Response:
    rt = _rt()
    if rt.get_service(svc) is None:
        return empty(404)
    rt.jobs.delete_all(svc, all=request.args.get("all", "").lower() == "true")
    return empty(204)


@logs_bp.get("/<svc>/<job_name>")
def job_logs(svc: str, job_name: str) -> Response:
    rt = _rt()
    text = rt.jobs.logs(svc, job_name) if rt.get_service(svc) is not None else None
    if text is None:
        return empty(404)
    return text_response(text)


@logs_bp.delete("/<svc>/<job_name>")
def delete_job(svc: str, job_name: str) -> Response:
    rt = _rt()
    if rt.get_service(svc) is None or not rt.jobs.delete(svc, job_name):
        return empty(404)
    return empty(204)


# -- /system/buckets ----------------------------------------------------------------------------


def _bucket_view(rt: LocalRuntime, name: str) -> dict:
    meta = rt.store.get(BUCKET_KIND, name) or {}
    return {
        "bucket_name": name,
        "visibility": meta.get("visibility", "private"),
        "allowed_users": meta.get("allowed_users") or [],
        "owner": meta.get("owner", "cluster_admin"),
        "metadata": gojson.gomap(meta.get("metadata") or {}),
    }


def _bucket_request() -> tuple[dict | None, Response | None]:
    data = _lenient_json()
    if not isinstance(data, dict):
        return None, text_response("Invalid request body: a JSON object is required", 400)
    name = _ci_get(data, "bucket_name")
    if not isinstance(name, str) or not name.strip("/"):
        return None, text_response("Invalid request body: bucket_name is required", 400)
    visibility = _ci_get(data, "visibility") or "private"
    if visibility not in ("private", "public", "restricted"):
        return None, text_response(f"Invalid visibility {visibility!r}", 400)
    users = _ci_get(data, "allowed_users") or []
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        return None, text_response("Invalid request body: allowed_users must be a list of strings", 400)
    return {
        "bucket_name": name.strip("/"),
        "visibility": visibility,
        "allowed_users": [u.strip() for u in users if u.strip()],
    }, None


@buckets_bp.get("")
def list_buckets() -> Response:
    rt = _rt()
    names = sorted(rt.s3.list_buckets())
    # OSCAR returns a nil slice, i.e. JSON null, when there are no buckets.
    return json_response([_bucket_view(rt, n) for n in names] or None)


@buckets_bp.post("")
def create_bucket() -> Response:
    rt = _rt()
    req, error = _bucket_request()
    if error is not None:
        return error
    assert req is not None
    bucket, _, folder = req["bucket_name"].partition("/")
    exists = rt.s3.bucket_exists(bucket)
    if exists and not folder:
        return text_response(f"Error creating bucket with name '{bucket}'", 400)
    if not exists:
        rt.s3.ensure_bucket(bucket)
        meta = {
            "visibility": req["visibility"],
            "allowed_users": req["allowed_users"],
            "owner": "cluster_admin",
        }
        rt.store.put(BUCKET_KIND, bucket, {**meta, "metadata": {}})
    if folder:
        rt.s3.ensure_folder(bucket, folder)
    return empty(201)


@buckets_bp.put("")
def update_bucket() -> Response:
    rt = _rt()
    req, error = _bucket_request()
    if error is not None:
        return error
    assert req is not None
    bucket = req["bucket_name"].partition("/")[0]
    if not rt.s3.bucket_exists(bucket):
        return text_response(f"Bucket '{bucket}' not found", 404)
    meta = rt.store.get(BUCKET_KIND, bucket) or {"owner": "cluster_admin", "metadata": {}}
    if (meta.get("metadata") or {}).get("service") == "true":
        return text_response(f"Bucket '{bucket}' belongs to a service: change the service instead", 403)
    meta.update(visibility=req["visibility"], allowed_users=req["allowed_users"])
    rt.store.put(BUCKET_KIND, bucket, meta)
    return empty(204)


@buckets_bp.get("/<bucket>")
def get_bucket(bucket: str) -> Response:
    rt = _rt()
    if not rt.s3.bucket_exists(bucket):
        return text_response(f"Bucket '{bucket}' not found", 404)
    after = request.args.get("page") or ""
    objects: list[dict] = []
    truncated = False
    for obj in rt.s3.list_objects(bucket):
        if after and obj.key <= after:
            continue
        if len(objects) == PAGE_SIZE:
            truncated = True
            break
        objects.append(
            {
                "object_name": obj.key,
                "size_bytes": obj.size,
                "last_modified": _rfc3339(obj.last_modified),
            }
        )
    view = _bucket_view(rt, bucket)
    view.update(
        objects=objects,
        next_page=objects[-1]["object_name"] if truncated else "",
        is_truncated=truncated,
        returned_items=len(objects),
    )
    return json_response(view)


@buckets_bp.delete("/<bucket>")
def delete_bucket(bucket: str) -> Response:
    rt = _rt()
    if not rt.s3.bucket_exists(bucket):
        return text_response(f"Bucket '{bucket}' not found", 404)
    rt.s3.delete_bucket(bucket)
    rt.store.delete(BUCKET_KIND, bucket)
    return empty(204)


@buckets_bp.post("/<bucket>/presign")
def presign(bucket: str) -> Response:
    rt = _rt()
    data = _lenient_json()
    if not isinstance(data, dict):
        return text_response("Invalid request body: a JSON object is required", 400)
    key = _ci_get(data, "object_key")
    operation = str(_ci_get(data, "operation") or "").lower()
    expires = _ci_get(data, "expires_in") or 900
    content_type = _ci_get(data, "content_type") or None
    if not isinstance(key, str) or not key:
        return text_response("object_key is required", 400)
    if operation not in ("upload", "download"):
        return text_response("operation must be 'upload' or 'download'", 400)
    if isinstance(expires, bool) or not isinstance(expires, int) or not 1 <= expires <= MAX_PRESIGN_S:
        return text_response(f"expires_in must be a whole number of seconds from 1 to {MAX_PRESIGN_S}", 400)
    if not rt.s3.bucket_exists(bucket):
        return text_response(f"Bucket '{bucket}' not found", 404)
    url = rt.s3.presign(bucket, key, operation=operation, expires_s=expires, content_type=content_type)
    expires_at = datetime.now(UTC) + timedelta(seconds=expires)
    return json_response(
        gojson.struct(
            [
                ("object_key", key, False),
                ("operation", operation, False),
                ("method", "PUT" if operation == "upload" else "GET", False),
                ("url", url, False),
                ("expires_at", expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"), False),
                ("headers", {"Content-Type": content_type} if content_type else None, True),
            ]
        )
    )


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(float(timestamp or 0), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the app -----------------------------------------------------------------------------------


def _redirect_trailing_slash() -> Response | None:
    """gin's RedirectTrailingSlash: /system/config/ -> 301 (GET) or 307 to /system/config."""
    if request.url_rule is not None or not request.path.endswith("/") or request.path == "/":
        return None
    target = request.path.rstrip("/") or "/"
    adapter = current_app.url_map.bind("localhost")
    try:
        adapter.match(target, method=request.method)
    except HTTPException:
        return None
    if request.query_string:
        target += "?" + request.query_string.decode("latin-1")
    return redirect(target, code=301 if request.method in ("GET", "HEAD") else 307)


def _record_execution(response: Response) -> Response:
    path = request.path
    if request.method == "POST" and path.startswith(("/run/", "/job/")):
        started = getattr(request, "_oscar_started", None)
        latency = time.monotonic() - started if started is not None else 0.0
        auth = request.authorization
        entry = {
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "status": response.status_code,
            "latency": f"{latency:.6f}s",
            "client_ip": request.remote_addr or "",
            "method": request.method,
            "path": path,
            "user": (auth.username if auth is not None and auth.type == "basic" else "") or "",
            "raw": f"{request.method} {path} {response.status_code}",
        }
        current_app.extensions[EXTENSION + ".executions"].add(entry)
    return response


def _mark_start() -> None:
    request._oscar_started = time.monotonic()  # type: ignore[attr-defined]


def _not_found(_exc: Exception) -> Response:
    return text_response("404 page not found", 404)


def _http_error(exc: HTTPException) -> Response:
    return text_response(exc.description or exc.name, exc.code or 500)


def _internal_error(exc: Exception) -> Response:
    # Never a traceback to the client: log it here, answer with a short reason.
    log.exception("unhandled error in %s %s", request.method, request.path)
    return text_response(f"internal error: {type(exc).__name__}", 500)


def create_app(runtime: LocalRuntime) -> Flask:
    """The Flask app serving OSCAR's API for `runtime`."""
    app = Flask("bridge.local")
    app.extensions[EXTENSION] = runtime
    app.extensions[EXTENSION + ".executions"] = _ExecutionLog()
    app.before_request(_mark_start)
    app.before_request(_redirect_trailing_slash)
    app.after_request(_record_execution)
    for bp in (health_bp, *ADMIN_BLUEPRINTS, invoke_bp):
        app.register_blueprint(bp)
    # gin answers unknown routes and wrong methods alike with 404 "404 page not found".
    app.register_error_handler(NotFound, _not_found)
    app.register_error_handler(MethodNotAllowed, _not_found)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _internal_error)
    return app
