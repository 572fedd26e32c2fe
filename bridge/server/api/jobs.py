"""Asynchronous jobs: submit, list, status, wait, logs, delete.

Submitting answers at once with the job's name (see OscarClient.submit_job for how it
is known on every OSCAR version); the bridge records the job in its store and asks the
watcher to publish its state changes on the event stream. `wait` long-polls so simple
clients (NiFi's InvokeHTTP, curl) get a finished job without an event stream.
"""

from __future__ import annotations

import math
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from bridge.server.api.invoke import request_body
from bridge.server.context import BridgeContext, ctx
from bridge.server.errors import ApiError
from bridge.server.openapi import UPSTREAM_ERRORS, error_responses, path_param, query_param

bp = Blueprint("jobs", __name__)

JOB_KIND = "bridge-job"
FINAL_STATUSES = frozenset({"Succeeded", "Failed"})
DEFAULT_WAIT_S = 30.0
MAX_WAIT_S = 300.0
# A job the bridge submitted may take a moment to appear in OSCAR's job list.
LISTING_GRACE_S = 60.0
_BASE = "/api/v1/clusters/<cluster>/services/<service>/jobs"
_TIME_KEYS = ("creation_time", "start_time", "finish_time")


def _key(cluster: str, service: str, job: str) -> str:
    return f"{cluster}/{service}/{job}"


def record_status(context: BridgeContext, cluster: str, service: str, job: str, status: str) -> None:
    """Keep the bridge's record of a job it submitted current; count each final state once."""
    key = _key(cluster, service, job)
    with context.store.transaction():
        record = context.store.get(JOB_KIND, key)
        if record is None or record.get("status") == status:
            return
        newly_final = status in FINAL_STATUSES and not record.get("counted")
        record.update(
            status=status, updated_at=time.time(), counted=bool(record.get("counted") or newly_final)
        )
        context.store.put(JOB_KIND, key, record, parent=f"{cluster}/{service}")
    if newly_final:
        context.metrics.count_job(cluster, service, status)


def _job_view(cluster: str, service: str, job: str, info: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {"job": job, "cluster": cluster, "service": service, "status": info.get("status")}
    for key in _TIME_KEYS:
        if info.get(key):
            view[key] = info[key]
    return view


def find_job(context: BridgeContext, cluster: str, service: str, job: str) -> dict[str, Any]:
    """The job's view from OSCAR's job list; ApiError 404 when it is not there.

    A job the bridge submitted less than LISTING_GRACE_S ago but not listed yet reads
    as Pending: older OSCARs list a job only once Kubernetes has created it.
    """
    client = context.registry.client(cluster)
    for name, info in client.iter_jobs(service):
        if name == job:
            if info.get("status"):
                record_status(context, cluster, service, job, str(info["status"]))
            return _job_view(cluster, service, job, info)
    record = context.store.get(JOB_KIND, _key(cluster, service, job))
    if record is not None and time.time() - record.get("submitted_at", 0) < LISTING_GRACE_S:
        return _job_view(cluster, service, job, {"status": "Pending"})
    raise ApiError(404, f"job {job!r} not found", cluster=cluster, service=service, job=job)


@bp.post(_BASE)
def submit(cluster: str, service: str) -> Any:
    context = ctx()
    client = context.registry.client(cluster)
    body, content_type = request_body()
    with context.metrics.timed_invocation(cluster, service, "async"):
        job = client.submit_job(service, body, content_type)
    context.metrics.count_job(cluster, service, "submitted")
    record = {
        "job": job,
        "cluster": cluster,
        "service": service,
        "status": "Pending",
        "submitted_at": time.time(),
    }
    context.store.put(JOB_KIND, _key(cluster, service, job), record, parent=f"{cluster}/{service}")
    context.watcher.track_job(cluster, service, job)
    resp = jsonify({"job": job, "cluster": cluster, "service": service, "status": "Pending"})
    resp.status_code = 202
    resp.headers["Location"] = f"/api/v1/clusters/{cluster}/services/{service}/jobs/{job}"
    return resp


@bp.get(_BASE)
def list_jobs(cluster: str, service: str) -> Any:
    client = ctx().registry.client(cluster)
    jobs = [_job_view(cluster, service, name, info) for name, info in client.iter_jobs(service)]
    jobs.sort(key=lambda j: (str(j.get("creation_time") or ""), j["job"]))
    return jsonify({"cluster": cluster, "service": service, "jobs": jobs})


@bp.get(f"{_BASE}/<job>")
def job_status(cluster: str, service: str, job: str) -> Any:
    return jsonify(find_job(ctx(), cluster, service, job))


def _wait_timeout() -> float:
    raw = request.args.get("timeout")
    if raw is None or raw == "":
        return DEFAULT_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or value > MAX_WAIT_S:
        raise ApiError(400, f"timeout: must be a number of seconds from 0 to {MAX_WAIT_S:g}", field="timeout")
    return value


@bp.get(f"{_BASE}/<job>/wait")
def wait(cluster: str, service: str, job: str) -> Any:
    """Long-poll until the job succeeds or fails, or `timeout` passes (then `done` is false).

    Woken early by the watcher's events for this job; re-checks OSCAR itself at least
    every couple of seconds so it does not depend on the watcher.
    """
    context = ctx()
    timeout = _wait_timeout()
    deadline = time.monotonic() + timeout

    def for_this_job(event: Any) -> bool:
        data = event.data
        return event.type == "job" and data.get("job") == job and data.get("cluster") == cluster

    sub = context.hub.subscribe(for_this_job)
    try:
        poll = max(0.2, min(context.settings.poll_interval_s, 2.0))
        tracked = False
        while True:
            view = find_job(context, cluster, service, job)
            if not tracked:  # only once the job is known to exist
                context.watcher.track_job(cluster, service, job)
                tracked = True
            remaining = deadline - time.monotonic()
            if view.get("status") in FINAL_STATUSES or remaining <= 0:
                view["done"] = view.get("status") in FINAL_STATUSES
                return jsonify(view)
            sub.get(timeout=min(remaining, poll))
            poll = min(poll * 1.5, 2.0)
    finally:
        sub.close()


@bp.get(f"{_BASE}/<job>/logs")
def logs(cluster: str, service: str, job: str) -> Response:
    timestamps = request.args.get("timestamps", "").lower() in ("1", "true", "yes")
    text = ctx().registry.client(cluster).job_logs(service, job, timestamps=timestamps)
    return Response(text, content_type="text/plain; charset=utf-8")


@bp.delete(f"{_BASE}/<job>")
def delete(cluster: str, service: str, job: str) -> Any:
    context = ctx()
    context.registry.client(cluster).delete_job(service, job)
    context.store.delete(JOB_KIND, _key(cluster, service, job))
    context.watcher.untrack_job(cluster, service, job)
    return "", 204


_JOB = {
    "type": "object",
    "required": ["job", "cluster", "service", "status"],
    "properties": {
        "job": {"type": "string"},
        "cluster": {"type": "string"},
        "service": {"type": "string"},
        "status": {
            "type": ["string", "null"],
            "description": "OSCAR's: Pending, Running, Succeeded, Failed, Unknown or Suspended",
        },
        "creation_time": {"type": "string"},
        "start_time": {"type": "string"},
        "finish_time": {"type": "string"},
    },
}
_CS = [path_param("cluster", "Cluster id"), path_param("service", "Service name")]
_CSJ = [*_CS, path_param("job", "Job name")]
_JSON = "application/json"
_P = "/api/v1/clusters/{cluster}/services/{service}/jobs"


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


OPENAPI_PATHS: dict[str, Any] = {
    _P: {
        "post": {
            "tags": ["jobs"],
            "summary": "Submit an async job; answers at once with the job's name",
            "description": "Body as for invoke. Job state changes are published as `job` events.",
            "parameters": _CS,
            "requestBody": {
                "required": False,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "text/plain": {"schema": {"type": "string"}},
                    _JSON: {"schema": {"type": "object"}},
                },
            },
            "responses": {"202": _json("Submitted", _JOB), **error_responses(400, 413, *UPSTREAM_ERRORS)},
        },
        "get": {
            "tags": ["jobs"],
            "summary": "The service's jobs (every page of OSCAR's list)",
            "parameters": _CS,
            "responses": {
                "200": _json(
                    "Jobs, oldest first",
                    {
                        "type": "object",
                        "required": ["jobs"],
                        "properties": {
                            "cluster": {"type": "string"},
                            "service": {"type": "string"},
                            "jobs": {"type": "array", "items": _JOB},
                        },
                    },
                ),
                **error_responses(*UPSTREAM_ERRORS),
            },
        },
    },
    f"{_P}/{{job}}": {
        "get": {
            "tags": ["jobs"],
            "summary": "A job's status",
            "parameters": _CSJ,
            "responses": {"200": _json("The job", _JOB), **error_responses(*UPSTREAM_ERRORS)},
        },
        "delete": {
            "tags": ["jobs"],
            "summary": "Delete the job",
            "parameters": _CSJ,
            "responses": {"204": {"description": "Deleted"}, **error_responses(*UPSTREAM_ERRORS)},
        },
    },
    f"{_P}/{{job}}/wait": {
        "get": {
            "tags": ["jobs"],
            "summary": "Wait until the job succeeds or fails, or the timeout passes",
            "parameters": [
                *_CSJ,
                query_param(
                    "timeout",
                    f"Seconds to wait (default {DEFAULT_WAIT_S:g}, at most {MAX_WAIT_S:g})",
                    {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S},
                ),
            ],
            "responses": {
                "200": _json(
                    "The job; done is false when the timeout passed first",
                    {
                        **_JOB,
                        "required": [*_JOB["required"], "done"],
                        "properties": {**_JOB["properties"], "done": {"type": "boolean"}},
                    },
                ),
                **error_responses(400, *UPSTREAM_ERRORS),
            },
        }
    },
    f"{_P}/{{job}}/logs": {
        "get": {
            "tags": ["jobs"],
            "summary": "The job's logs (supervisor log lines and script output)",
            "parameters": [
                *_CSJ,
                query_param("timestamps", "true: prefix lines with timestamps", {"type": "boolean"}),
            ],
            "responses": {
                "200": {"description": "Logs", "content": {"text/plain": {"schema": {"type": "string"}}}},
                **error_responses(*UPSTREAM_ERRORS),
            },
        }
    },
}
