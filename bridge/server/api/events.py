"""GET /api/v1/events: the EventHub as a Server-Sent Events stream.

SSE rather than WebSockets because Node-RED, NiFi and curl can all read it with a
plain HTTP client, it goes through proxies, and it has reconnection built in: each
message carries `id:`, and a client that reconnects sends `Last-Event-ID`, from which
the hub replays what it missed (within its ring buffer).

The body is a generator, so waitress sends each event as it is produced. A comment
line every `heartbeat` seconds keeps idle connections (and proxies) alive and is how
a vanished client is noticed: the write fails, waitress closes the generator, and the
`finally` drops the subscription.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, request

from bridge.server.errors import ApiError
from bridge.server.events import OVERFLOW, Event, Subscription

bp = Blueprint("events", __name__)

HEARTBEAT_S = 15.0
EVENT_TYPES = ("job", "output")
RETRY_MS = 3000
MAX_DURATION_S = 86400.0


def _filter(cluster: str | None, service: str | None, types: set[str]):
    def matches(event: Event) -> bool:
        if event.type not in types:
            return False
        if cluster and event.data.get("cluster") != cluster:
            return False
        return not service or event.data.get("service") == service

    return matches


def _last_event_id() -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "Last-Event-ID must be an integer event id", field="Last-Event-ID") from None
    if value < 0:
        raise ApiError(400, "Last-Event-ID must not be negative", field="Last-Event-ID")
    return value


def _duration() -> float | None:
    raw = request.args.get("timeout")
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_DURATION_S:
        raise ApiError(
            400, f"timeout must be a number of seconds in (0, {MAX_DURATION_S:g}]", field="timeout"
        )
    return value


def _stream(sub: Subscription, heartbeat: float, duration: float | None) -> Iterator[bytes]:
    deadline = None if duration is None else time.monotonic() + duration
    try:
        # Sent at once so clients know the subscription is live (and learn the retry delay).
        yield f"retry: {RETRY_MS}\n: connected\n\n".encode()
        while True:
            wait = heartbeat
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return
            event = sub.get(timeout=wait)
            if event is None:
                if sub.closed:
                    return
                if deadline is None or time.monotonic() < deadline:
                    yield b": heartbeat\n\n"
                continue
            yield event.to_sse().encode()
            if event.type == OVERFLOW:
                return  # the client reconnects with Last-Event-ID and replays from the buffer
    finally:
        sub.close()


@bp.get("/api/v1/events")
def events() -> Any:
    """Stream `job` and `output` events, optionally filtered by cluster, service and type."""
    raw_types = request.args.get("types") or ",".join(EVENT_TYPES)
    types = {t.strip() for t in raw_types.split(",") if t.strip()}
    unknown = sorted(types - set(EVENT_TYPES))
    if unknown or not types:
        raise ApiError(
            400, f"types must be a comma-separated subset of {', '.join(EVENT_TYPES)}", field="types"
        )
    last_id = _last_event_id()
    predicate = _filter(request.args.get("cluster"), request.args.get("service"), types)
    duration = _duration()
    hub = current_app.extensions["bridge"].hub
    # Subscribe before answering: once the client sees the headers, no event is missed.
    sub = hub.subscribe(predicate, last_event_id=last_id)
    heartbeat = float(current_app.config.get("SSE_HEARTBEAT_S", HEARTBEAT_S))
    response = Response(_stream(sub, heartbeat, duration), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # tell nginx-style proxies not to buffer
    response.call_on_close(sub.close)
    return response


_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
    "additionalProperties": True,
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/events": {
        "get": {
            "tags": ["events"],
            "summary": "Server-Sent Events: job status changes and output objects appearing",
            "description": (
                "Each message has `id:` (monotonic), `event:` (`job` or `output`) and `data:` (JSON). "
                "`job` data: {cluster, service, job, status, creation_time, start_time, finish_time}; "
                "`output` data: {cluster, service, bucket, key, size, etag, path, last_modified}. "
                "A comment line is sent every ~15 s. Reconnect with `Last-Event-ID` to receive missed "
                "events still in the buffer. Without `timeout` the stream does not end by itself. "
                "A client too slow to keep up receives an `overflow` event and the stream ends."
            ),
            "parameters": [
                {"name": "cluster", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "service", "in": "query", "required": False, "schema": {"type": "string"}},
                {
                    "name": "types",
                    "in": "query",
                    "required": False,
                    "description": "Comma-separated subset of job,output (default both)",
                    "schema": {"type": "string", "pattern": "^(job|output)(,(job|output))*$"},
                },
                {
                    "name": "timeout",
                    "in": "query",
                    "required": False,
                    "description": "End the stream after this many seconds (long-polling clients, tests)",
                    "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION_S},
                },
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "description": "Resume after this event id",
                    "schema": {"type": "integer", "minimum": 0},
                },
            ],
            "responses": {
                "200": {
                    "description": "An endless text/event-stream",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "400": {
                    "description": "Bad filter, timeout or Last-Event-ID",
                    "content": {"application/json": {"schema": _ERROR}},
                },
                "401": {
                    "description": "Missing or wrong bridge token",
                    "content": {"application/json": {"schema": _ERROR}},
                },
            },
        }
    }
}
