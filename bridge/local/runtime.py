"""LocalRuntime: the embedded OSCAR-compatible runtime, composed from its parts.

One object owns the lot, so that starting and stopping is one call and the order is
right: the Store (data_dir/local.db), the S3 server (SeaweedFS, data_dir/s3), the
Supervisor and Limiter, the JobManager, the StorageTriggers and, last, the HTTP server
(waitress, in a background thread) that serves OSCAR's API (`bridge.local.api`).
`stop()` undoes it in reverse order. Everything that must survive a restart lives in
data_dir: services and their tokens, jobs and their logs, bucket metadata, the
generated admin password and S3 keys (both files mode 0600).

Service changes have side effects outside the Store (buckets and folder placeholders,
trigger registrations, jobs), so they go through `create_service`, `update_service` and
`delete_service` here rather than through the API module, and a lock keeps two
concurrent changes of the same runtime from interleaving.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import threading
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.local import gojson, services
from bridge.local.limits import Limiter
from bridge.local.services import ServiceExists
from bridge.store import Store
from bridge.wsgi import BackgroundServer, wait_for_stop_signal

if TYPE_CHECKING:
    from bridge.local.jobs import JobManager
    from bridge.local.s3server import SeaweedS3
    from bridge.local.supervisor import Supervisor
    from bridge.local.triggers import StorageTriggers
    from bridge.oscar.client import OscarClient
    from bridge.settings import Settings
    from bridge.storage import S3Store

log = logging.getLogger(__name__)

__all__ = ["OSCAR_VERSION", "LocalRuntime", "run_local"]

#: The OSCAR release whose API this runtime reproduces, marked as local.
OSCAR_VERSION = "v4.1.2-local"
SERVICE_KIND = "service"
BUCKET_KIND = "bucket"
PASSWORD_FILE = "admin-password"
S3_KEYS_FILE = "s3-credentials.json"


def _bridge_version() -> str:
    try:
        return metadata.version("oscar-bridge")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _write_secret(path: Path, text: str) -> None:
    """Create a file only its owner can read (mode 0600 from the start, no window)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


class LocalRuntime:
    """An OSCAR-compatible runtime on local processes; see the module docstring.

    `password` None or "" means: use the one generated on first start (kept in
    data_dir). `port`/`s3_port` 0 pick free ports. `memory_limit_bytes` (an extension)
    is passed to the Supervisor: None leaves scripts' memory unlimited.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        user: str = "oscar",
        password: str | None = None,
        s3_port: int = 0,
        max_concurrency: int = 4,
        timeout_s: float = 300.0,
        memory_limit_bytes: int | None = None,
        trigger_interval_s: float = 0.5,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser()
        self.host = host
        self.port = int(port)
        self.user = user
        self._password = password or ""
        self.s3_port = int(s3_port)
        self.max_concurrency = int(max_concurrency)
        self.timeout_s = float(timeout_s)
        self.memory_limit_bytes = memory_limit_bytes
        self.trigger_interval_s = float(trigger_interval_s)
        self.version = OSCAR_VERSION
        self.bridge_version = _bridge_version()
        self._lock = threading.RLock()
        self._started = False
        self.store: Store | None = None  # type: ignore[assignment]
        self.s3: S3Store = None  # type: ignore[assignment]
        self.limiter: Limiter = None  # type: ignore[assignment]
        self.supervisor: Supervisor = None  # type: ignore[assignment]
        self.jobs: JobManager = None  # type: ignore[assignment]
        self.triggers: StorageTriggers | None = None
        self._s3server: SeaweedS3 | None = None
        self._server: Any = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> LocalRuntime:
        """Start every part; on a failure, stop what was started and re-raise."""
        with self._lock:
            if self._started:
                return self
            try:
                self._start()
            except BaseException:
                self._stop()
                raise
            self._started = True
        return self

    def _start(self) -> None:
        from bridge.local.jobs import JobManager
        from bridge.local.s3server import SeaweedS3
        from bridge.local.supervisor import Supervisor
        from bridge.local.triggers import StorageTriggers
        from bridge.storage import S3Store

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._password = self._password or self._load_password()
        self.store = Store(self.data_dir / "local.db")
        access_key, secret_key = self._load_s3_keys()
        self._s3server = SeaweedS3(
            self.data_dir / "s3", access_key, secret_key, host=self.host, port=self.s3_port
        )
        self._s3server.start()
        self.s3 = S3Store.from_provider(self.minio_provider)
        self.limiter = Limiter(self.max_concurrency)
        self.supervisor = Supervisor(
            self.data_dir / "work",
            self._resolve_storage,
            timeout_s=self.timeout_s,
            memory_limit_bytes=self.memory_limit_bytes,
        )
        self.jobs = JobManager(self.store, self.supervisor, self.limiter, self.data_dir / "logs")
        self.jobs.start()
        self.triggers = StorageTriggers(self.store, self.s3, self._fire, interval_s=self.trigger_interval_s)
        for svc in self.list_services():
            self.triggers.watch(svc)
        self.triggers.start()
        self._start_http()

    def _start_http(self) -> None:
        from bridge.local.api import create_app

        self._server = BackgroundServer(
            create_app(self),
            host=self.host,
            port=self.port,
            ident="oscar-local",
            threads=max(8, 2 * self.max_concurrency + 4),
            # Sync calls may legitimately take as long as the script timeout.
            channel_timeout=max(120, int(self.timeout_s) + 30),
        )
        self.port = self._server.start()

    def stop(self) -> None:
        """Stop everything, in reverse order of `start()`; safe to call twice."""
        with self._lock:
            self._stop()
            self._started = False

    def _stop(self) -> None:
        steps = (
            ("HTTP server", self._stop_http),
            ("storage triggers", lambda: self.triggers.stop() if self.triggers else None),
            ("job manager", lambda: self.jobs.stop() if self.jobs else None),
            ("S3 server", lambda: self._s3server.stop() if self._s3server else None),
            ("store", lambda: self.store.close() if self.store else None),
        )
        for what, step in steps:
            try:
                step()
            except Exception:  # keep stopping the rest; a half-stopped runtime is worse
                log.exception("error stopping the %s", what)
        self.triggers = None
        self.jobs = None  # type: ignore[assignment]
        self._s3server = None
        self.store = None

    def _stop_http(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what callers need -----------------------------------------------------------------
    @property
    def password(self) -> str:
        return self._password

    @property
    def endpoint(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def s3_endpoint(self) -> str:
        return self._s3server.endpoint if self._s3server is not None else ""

    @property
    def minio_provider(self) -> dict:
        """OSCAR's minio_provider for the runtime's S3 server, with its real keys."""
        provider = dict(self._s3server.provider) if self._s3server is not None else {}
        provider.setdefault("verify", False)
        provider.setdefault("region", "us-east-1")
        return {
            "endpoint": provider.get("endpoint", ""),
            "verify": bool(provider["verify"]),
            "access_key": provider.get("access_key", ""),
            "secret_key": provider.get("secret_key", ""),
            "region": provider["region"],
        }

    def client(self) -> OscarClient:
        """An OscarClient for this runtime, with the admin's Basic credentials."""
        from bridge.oscar.auth import BasicAuth
        from bridge.oscar.client import OscarClient

        return OscarClient(self.endpoint, BasicAuth(self.user, self.password), cluster_id="local")

    # -- services --------------------------------------------------------------------------
    def list_services(self) -> list[dict]:
        """Stored services (real secrets included), by name as Kubernetes lists them."""
        return sorted(self.store.values(SERVICE_KIND), key=lambda svc: svc.get("name", ""))

    def get_service(self, name: str) -> dict | None:
        return self.store.get(SERVICE_KIND, name)

    def create_service(self, body: bytes | str | dict) -> dict:
        """Decode, store and wire a new service; raises ServiceError / ServiceExists."""
        decoded = services.decode_service(body)
        with self._lock:
            name = decoded["name"]
            if self.get_service(name) is not None:
                raise ServiceExists(f"A service with name '{name}' already exists")
            svc = services.apply_defaults(decoded, token=services.new_token())
            self.store.put(SERVICE_KIND, name, svc)
            try:
                self._wire(svc)
            except BaseException:
                self.store.delete(SERVICE_KIND, name)
                if self.triggers is not None:
                    self.triggers.unwatch(name)
                raise
        return svc

    def update_service(self, body: bytes | str | dict) -> bool:
        """Replace a service's definition, keeping its token (OSCAR >= 4.0); False if missing."""
        decoded = services.decode_service(body)
        with self._lock:
            old = self.get_service(decoded["name"])
            if old is None:
                return False
            _keep_blank_secrets(decoded, old)
            svc = services.apply_defaults(
                decoded, token=old["token"], owner=old.get("owner") or "cluster_admin"
            )
            self.store.put(SERVICE_KIND, svc["name"], svc)
            # No unwatch first: re-watching updates the trigger in place and keeps its
            # bookkeeping, so an object uploaded just before the update still fires.
            self._wire(svc)
        return True

    def delete_service(self, name: str) -> bool:
        """Delete a service, its jobs, its trigger and (as OSCAR >= 3.4) its buckets."""
        with self._lock:
            svc = self.get_service(name)
            if svc is None:
                return False
            if self.triggers is not None:
                self.triggers.unwatch(name)
            self.jobs.forget_service(name)
            for bucket in dict.fromkeys(b for b, _ in services.minio_buckets(svc)):
                try:
                    if self.s3.bucket_exists(bucket):
                        self.s3.delete_bucket(bucket)
                    self.store.delete(BUCKET_KIND, bucket)
                except Exception:
                    log.exception("could not delete bucket %r of service %r", bucket, name)
            self.store.delete(SERVICE_KIND, name)
        return True

    def _wire(self, svc: dict) -> None:
        """Buckets and folder placeholders for minio inputs/outputs, then the trigger."""
        for bucket, folder in services.minio_buckets(svc):
            self.s3.ensure_bucket(bucket)
            if folder:
                self.s3.ensure_folder(bucket, folder)
            if self.store.get(BUCKET_KIND, bucket) is None:
                meta = {"service": "true", "oscar_service": svc["name"]}
                self.store.put(
                    BUCKET_KIND,
                    bucket,
                    {
                        "visibility": svc.get("visibility") or "private",
                        "allowed_users": svc.get("allowed_users") or [],
                        "owner": svc.get("owner") or "cluster_admin",
                        "metadata": meta,
                    },
                )
        if self.triggers is not None:
            self.triggers.watch(svc)

    # -- callbacks of the parts ----------------------------------------------------------------
    def _fire(self, service: dict, event: dict) -> None:
        """A new object under a service's input: submit a job with the MinIO event."""
        current = self.get_service(str(service.get("name") or ""))
        if current is None:
            return
        self.jobs.submit(current, gojson.dumpb(event))

    def _resolve_storage(self, provider: str, service: dict) -> S3Store | None:
        """A storage_provider string of `service` -> a store (None when unknown)."""
        from bridge.storage import S3Store

        ptype, _, pid = str(provider).partition(".")
        pid = pid or "default"
        if ptype == "minio" and pid == "default":
            return self.s3
        conf = ((service.get("storage_providers") or {}).get(ptype) or {}).get(pid)
        if not isinstance(conf, dict):
            return None
        if ptype == "minio":
            return S3Store.from_provider(conf)
        if ptype == "s3":
            region = conf.get("region") or "us-east-1"
            return S3Store(
                f"https://s3.{region}.amazonaws.com",
                conf.get("access_key", ""),
                conf.get("secret_key", ""),
                region=region,
            )
        return None

    # -- persisted secrets -----------------------------------------------------------------------
    def _load_password(self) -> str:
        path = self.data_dir / PASSWORD_FILE
        try:
            existing = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            existing = ""
        if existing:
            return existing
        password = secrets.token_urlsafe(18)
        _write_secret(path, password + "\n")
        return password

    def _load_s3_keys(self) -> tuple[str, str]:
        path = self.data_dir / S3_KEYS_FILE
        try:
            keys = json.loads(path.read_text(encoding="utf-8"))
            if keys.get("access_key") and keys.get("secret_key"):
                return str(keys["access_key"]), str(keys["secret_key"])
        except (FileNotFoundError, ValueError, AttributeError):
            pass
        access_key = "oscar" + secrets.token_hex(6)
        secret_key = secrets.token_urlsafe(30)
        _write_secret(path, json.dumps({"access_key": access_key, "secret_key": secret_key}) + "\n")
        return access_key, secret_key


def run_local(settings: Settings) -> int:
    """`oscar-bridge local`: run the runtime in the foreground until SIGINT/SIGTERM."""
    runtime = LocalRuntime(
        settings.data_dir,
        host=settings.local_host,
        port=settings.local_port,
        user=settings.local_user,
        password=settings.local_password or None,
        s3_port=settings.local_s3_port,
        max_concurrency=settings.local_max_concurrency,
        timeout_s=settings.local_timeout_s,
    )
    try:
        runtime.start()
    except Exception as exc:
        print(f"oscar-bridge local: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        provider = runtime.minio_provider
        print("OSCAR-compatible local runtime (scripts run as local processes; images are not used)")
        print(f"  endpoint:  {runtime.endpoint}")
        print(f"  user:      {runtime.user}")
        print(f"  password:  {runtime.password}")
        print(f"  S3:        {runtime.s3_endpoint}  (access key {provider['access_key']})")
        print(f"  data:      {runtime.data_dir}")
        print("Press Ctrl+C to stop.", flush=True)
        wait_for_stop_signal()
    finally:
        print("Stopping...", flush=True)
        runtime.stop()
    return 0


def _keep_blank_secrets(new: dict, old: dict) -> None:
    """Keep a secret's stored value when an update sends it blank.

    Every echo blanks secret values (as OSCAR does), so `get -> edit -> apply` sends
    `""` for each one; replacing the real value with that would silently break the
    service. A user who means to clear a secret removes its key instead.
    """
    new_secrets = (new.get("environment") or {}).get("secrets")
    old_secrets = (old.get("environment") or {}).get("secrets") or {}
    if not isinstance(new_secrets, dict):
        return
    for key, value in new_secrets.items():
        if value == "" and old_secrets.get(key):
            new_secrets[key] = old_secrets[key]
