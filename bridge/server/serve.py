"""BridgeServer: the bridge app under waitress, with the embedded local runtime.

waitress rather than Flask's development server: it is a production WSGI server with a
bounded thread pool, request-body spooling to disk and no debug surface, and it is pure
Python (nothing to compile on a Raspberry Pi). When no cluster is configured, the
bridge starts the local OSCAR-compatible runtime and registers it as cluster `local`,
so a fresh install answers invocations with nothing else to set up.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.oscar.cluster import ClusterSpec
from bridge.settings import Settings
from bridge.store import Store
from bridge.wsgi import BackgroundServer, wait_for_stop_signal

from .app import create_app
from .registry import EMBEDDED_MARKER, LOCAL_ID, SETTING_KIND, ClusterRegistry
from .tokens import load_or_create_token

if TYPE_CHECKING:
    from flask import Flask

    from bridge.local.runtime import LocalRuntime

    from .context import BridgeContext

log = logging.getLogger("bridge.server")

LOG_FILE = "bridge.log"
# Headroom over max_body_bytes for waitress's own limit, so the app (not waitress) sees
# moderately oversize bodies and answers with its JSON 413.
_BODY_SLACK = 1024 * 1024


class BridgeServer:
    """`start()` the bridge (and, if needed, the local runtime); `stop()` both.

    `log_file` (extension): also write the bridge's log to data_dir/bridge.log.
    """

    def __init__(self, settings: Settings, *, log_file: bool = True) -> None:
        self.settings = settings
        self.log_file = log_file
        self.local: LocalRuntime | None = None
        self.app: Flask | None = None
        self.token = ""
        self.token_created = False
        self.port = settings.port
        self._store: Store | None = None
        self._server: Any = None
        self._log_handler: logging.Handler | None = None
        self._saved_level: int | None = None

    # ------------------------------------------------------------------ properties
    @property
    def url(self) -> str:
        host = self.settings.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def context(self) -> BridgeContext:
        assert self.app is not None, "not started"
        return self.app.extensions["bridge"]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> BridgeServer:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        data_dir = Path(self.settings.data_dir).expanduser()
        data_dir.mkdir(parents=True, exist_ok=True)
        self._setup_logging(data_dir)
        self.token, self.token_created = load_or_create_token(data_dir)
        self._store = Store(data_dir / "bridge.db")
        (data_dir / "bridge.db").chmod(0o600)
        registry = ClusterRegistry(self._store)
        if self._wants_embedded(registry):
            self._start_local(data_dir, registry)
        self.app = create_app(self.settings, store=self._store, registry=registry)
        self._start_http()
        log.info("oscar-bridge listening on %s", self.url)

    def _wants_embedded(self, registry: ClusterRegistry) -> bool:
        """True with no cluster at all, or while the embedded `local` registered by an
        earlier start is still registered (even next to other clusters: its endpoint
        changes on every start, so leaving it registered but not running would leave a
        dead cluster behind). A user's own cluster named `local` is left alone."""
        ids = [spec.id for spec in registry.list()]
        if not ids:
            return True
        marker = self._store.get(SETTING_KIND, EMBEDDED_MARKER) if self._store else None
        return LOCAL_ID in ids and marker is not None

    def _start_local(self, data_dir: Path, registry: ClusterRegistry) -> None:
        from bridge.local.runtime import LocalRuntime

        s = self.settings
        self.local = LocalRuntime(
            data_dir / "local",
            host=s.local_host,
            port=s.local_port,
            user=s.local_user,
            password=s.local_password or None,
            s3_port=s.local_s3_port,
            max_concurrency=s.local_max_concurrency,
            timeout_s=s.local_timeout_s,
        ).start()
        spec = ClusterSpec(
            id=LOCAL_ID,
            endpoint=self.local.endpoint,
            auth_kind="basic",
            user=self.local.user,
            password=self.local.password,
        )
        assert self._store is not None
        with self._store.transaction():
            registry.add(spec, replace=True)
            self._store.put(SETTING_KIND, EMBEDDED_MARKER, {"cluster": LOCAL_ID})
        log.info("embedded local runtime registered as cluster %r at %s", LOCAL_ID, self.local.endpoint)

    def _start_http(self) -> None:
        s = self.settings
        self._server = BackgroundServer(
            self.app,
            host=s.host,
            port=s.port,
            ident="oscar-bridge",
            threads=max(1, s.threads),
            # Flush every write at once: Server-Sent Events are small and must not wait
            # for a buffer to fill (waitress otherwise holds up to send_bytes).
            send_bytes=1,
            max_request_body_size=s.max_body_bytes + _BODY_SLACK,
            # Sync invocations and long-polls may take as long as the script timeout.
            channel_timeout=max(120, int(s.local_timeout_s) + 30),
        )
        self.port = self._server.start()

    def stop(self) -> None:
        """Stop the HTTP server, the app's background work, then the local runtime. Idempotent."""
        self._stop_http()
        if self.app is not None:
            try:
                self.context.close()
            except Exception:
                log.exception("error closing the bridge context")
            self.app = None
        if self.local is not None:
            try:
                self.local.stop()
            except Exception:
                log.exception("error stopping the local runtime")
            self.local = None
        if self._store is not None:
            self._store.close()
            self._store = None
        self._teardown_logging()

    def _stop_http(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> BridgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ logging
    def _setup_logging(self, data_dir: Path) -> None:
        logger = logging.getLogger("bridge")
        level = logging.getLevelName(str(self.settings.log_level).upper())
        if isinstance(level, int):
            self._saved_level = logger.level
            logger.setLevel(level)
        if self.log_file:
            handler = logging.FileHandler(data_dir / LOG_FILE, encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)
            logging.getLogger("waitress").addHandler(handler)
            self._log_handler = handler

    def _teardown_logging(self) -> None:
        if self._log_handler is not None:
            logging.getLogger("bridge").removeHandler(self._log_handler)
            logging.getLogger("waitress").removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None
        if self._saved_level is not None:
            logging.getLogger("bridge").setLevel(self._saved_level)
            self._saved_level = None


def serve(settings: Settings) -> int:
    """`oscar-bridge serve`: run in the foreground until SIGINT/SIGTERM; the exit status."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = BridgeServer(settings)
    try:
        server.start()
    except Exception as exc:
        print(f"oscar-bridge serve: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"oscar-bridge listening on {server.url}  (API: {server.url}/openapi.json)")
        if server.local is not None:
            print(f"  cluster {LOCAL_ID!r}: embedded local runtime at {server.local.endpoint}")
        print(f"  data: {settings.data_dir}")
        if server.token_created:
            print("  bridge token (shown once; `oscar-bridge token` shows it again):")
            print(f"  {server.token}")
        print("Press Ctrl+C to stop.", flush=True)
        wait_for_stop_signal()
    finally:
        print("Stopping...", flush=True)
        server.stop()
    return 0
