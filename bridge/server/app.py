"""create_app: the bridge's Flask app factory.

Everything stateful (store, cluster registry, event hub, watcher, metrics, token) is
built here once and hung on `app.extensions["bridge"]`, so tests can build an app
around their own pieces and several apps can coexist in one process.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from typing import Any

from flask import Flask, Response, g, request

from bridge.settings import Settings
from bridge.store import Store

from . import api
from .context import BridgeContext
from .errors import json_error, register_error_handlers
from .events import EventHub
from .metrics import Metrics
from .registry import ClusterRegistry
from .tokens import load_or_create_token
from .watcher import Watcher

log = logging.getLogger("bridge.server")
access_log = logging.getLogger("bridge.server.access")

# Routes anyone may call: liveness probes must not need a secret.
PUBLIC_ENDPOINTS = frozenset({("GET", "/healthz"), ("HEAD", "/healthz")})


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    registry: ClusterRegistry | None = None,
    hub: EventHub | None = None,
) -> Flask:
    """The bridge app. Pieces not given are created (and closed by `ctx.close()`)."""
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    owned: list[Any] = []
    if store is None:
        store = Store(data_dir / "bridge.db")
        owned.append(store)
        # The database holds cluster credentials: owner-only, like the token file.
        (data_dir / "bridge.db").chmod(0o600)
    if registry is None:
        registry = ClusterRegistry(store)
    if hub is None:
        hub = EventHub()
    watcher = Watcher(registry, hub, interval_s=settings.poll_interval_s)
    token, _ = load_or_create_token(data_dir)
    context = BridgeContext(
        settings=settings,
        store=store,
        registry=registry,
        hub=hub,
        watcher=watcher,
        metrics=Metrics(),
        token=token,
        owned=owned,
    )
    recorder = _JobRecorder(context)
    owned.append(recorder)  # closed in reverse order: the recorder before the store

    app = Flask("bridge.server")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False
    app.extensions["bridge"] = context
    register_error_handlers(app)
    app.before_request(_check_token)
    app.after_request(_log_access)
    for module in api.modules():
        app.register_blueprint(module.bp)
    return app


def _check_token() -> Response | None:
    g.started = time.perf_counter()
    if (request.method, request.path) in PUBLIC_ENDPOINTS:
        return None
    expected = request_context_token()
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if (
        scheme.lower() == "bearer"
        and presented
        and hmac.compare_digest(presented.strip().encode(), expected.encode())
    ):
        return None
    resp = json_error(401, "missing or invalid bridge token")
    resp.headers["WWW-Authenticate"] = 'Bearer realm="oscar-bridge"'
    _count_error("http_401")
    return resp


def request_context_token() -> str:
    from flask import current_app

    return current_app.extensions["bridge"].token


def _count_error(kind: str) -> None:
    from flask import current_app

    current_app.extensions["bridge"].metrics.count_error(kind)


def _log_access(resp: Response) -> Response:
    # Path only: query strings and headers may carry things that do not belong in logs.
    started = g.get("started")
    ms = (time.perf_counter() - started) * 1000 if started else 0.0
    access_log.info("%s %s %s %.1fms", request.method, request.path, resp.status_code, ms)
    return resp


class _JobRecorder:
    """Keeps the store's job records and the jobs metric current from the watcher's
    `job` events, so they are right even when nobody asks the API about a job."""

    def __init__(self, context: BridgeContext) -> None:
        self.context = context
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bridge-job-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from .api.jobs import JOB_KIND, record_status

        while not self._stop.is_set():
            sub = self.context.hub.subscribe(lambda e: e.type == "job")
            try:
                while not self._stop.is_set() and not sub.closed:
                    event = sub.get(timeout=0.5)
                    if event is None:
                        continue
                    data = event.data
                    cluster, service, job = data.get("cluster"), data.get("service"), data.get("job")
                    status = data.get("status")
                    if not (cluster and service and job and status):
                        continue
                    if self.context.store.get(JOB_KIND, f"{cluster}/{service}/{job}") is None:
                        continue
                    try:
                        record_status(self.context, cluster, service, job, str(status))
                    except Exception:  # a store hiccup must not end the recorder
                        log.exception("could not record the status of job %s", job)
            finally:
                sub.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
