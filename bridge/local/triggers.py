"""StorageTriggers: an object created under a service's MinIO input starts a job.

Real OSCAR registers a MinIO bucket notification (webhook, prefix `folder/`) for every
`minio` input of a service; MinIO then POSTs an `event.Log` JSON to `/job/<svc>`
(reference §4). SeaweedFS has no webhooks, so this module polls instead: one background
thread lists each watched input folder every `interval_s` (one list call per path per
tick) and calls `fire(service, event)` with the event MinIO would have sent, once per new
object version (key + ETag, so a re-upload with other content fires again).

Bookkeeping lives in the Store so that restarts behave like a webhook that queued events:
- kind "trigger-path" (one per service input path): the path has a baseline. A path
  watched for the first time records the objects already there as seen, without firing.
- kind "trigger-seen" (one per object and service, parent = service): the ETag already
  handled. After a restart, objects missing from it (uploaded while down) fire.
An object counts as seen only once `fire` returned without raising; a failing callback
is logged and retried with a growing delay, and never stops the poller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote_plus

from bridge.storage import ObjectInfo, S3Store, StorageError
from bridge.store import Store

log = logging.getLogger(__name__)

PATH_KIND = "trigger-path"
SEEN_KIND = "trigger-seen"
#: Storage providers that are the runtime's own S3 server (OSCAR hooks only its MinIO).
_OWN_PROVIDERS = ("minio", "minio.default")
#: Longest delay between retries of an object whose fire() keeps failing.
_MAX_RETRY_DELAY_S = 60.0

FireCallback = Callable[[dict, dict], None]


def _minio_key(key: str) -> str:
    """Object key URL-encoded the way MinIO's events carry it (Go url.QueryEscape)."""
    return quote_plus(key, safe="")


def make_minio_event(
    bucket: str,
    key: str,
    *,
    size: int = 0,
    etag: str = "",
    access_key: str = "",
    content_type: str = "application/octet-stream",
    event_time: float | None = None,
    endpoint: str = "",
    source_ip: str = "127.0.0.1",
) -> dict:
    """The MinIO `event.Log` body for an object created in `bucket` under `key`.

    Keyword arguments after `access_key` are extensions of the documented contract.
    Keys follow MinIO's field order; `eventTime` is RFC 3339 with milliseconds and `Z`.
    """
    when = datetime.fromtimestamp(time.time() if event_time is None else event_time, tz=UTC)
    nanos = int(when.timestamp() * 1_000_000_000)
    encoded = _minio_key(key)
    record = {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "awsRegion": "",
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
        "eventName": "s3:ObjectCreated:Put",
        "userIdentity": {"principalId": access_key},
        "requestParameters": {"principalId": access_key, "region": "", "sourceIPAddress": source_ip},
        "responseElements": {
            "x-amz-id-2": "",
            "x-amz-request-id": f"{nanos:X}",
            "x-minio-deployment-id": "",
            "x-minio-origin-endpoint": endpoint,
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "Config",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": access_key},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": {
                "key": encoded,
                "size": int(size),
                "eTag": etag,
                "contentType": content_type,
                "userMetadata": {"content-type": content_type},
                "sequencer": f"{nanos:X}",
            },
        },
        "source": {"host": source_ip, "port": "", "userAgent": "oscar-bridge-local"},
    }
    return {"EventName": "s3:ObjectCreated:Put", "Key": f"{bucket}/{encoded}", "Records": [record]}


def input_paths(service: dict) -> list[tuple[str, str]]:
    """(bucket, folder) of each input on the runtime's own S3, in definition order."""
    found: list[tuple[str, str]] = []
    for entry in service.get("input") or []:
        if not isinstance(entry, dict):
            continue
        provider = str(entry.get("storage_provider") or "minio").strip().lower()
        if provider not in _OWN_PROVIDERS:
            continue
        path = str(entry.get("path") or "").strip().strip("/")
        if not path:
            continue
        bucket, _, folder = path.partition("/")
        pair = (bucket, folder.strip("/"))
        if pair not in found:
            found.append(pair)
    return found


@dataclass
class _Path:
    """One watched input folder of one service."""

    bucket: str
    folder: str
    baselined: bool

    @property
    def prefix(self) -> str:
        return f"{self.folder}/" if self.folder else ""

    @property
    def store_key(self) -> str:
        return f"{self.bucket}/{self.folder}"


@dataclass
class _Watch:
    service: dict
    paths: list[_Path]
    seen: dict[tuple[str, str], str] = field(default_factory=dict)  # (bucket, key) -> etag
    #: (bucket, key, etag) -> (failures, monotonic time of next try)
    retry: dict[tuple[str, str, str], tuple[int, float]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.service.get("name") or "")


class StorageTriggers:
    """Polls the minio inputs of watched services and fires once per new object."""

    def __init__(
        self,
        store: Store,
        s3: S3Store,
        fire: FireCallback,
        *,
        interval_s: float = 0.5,
    ) -> None:
        self.store = store
        self.s3 = s3
        self.fire = fire
        self.interval_s = max(0.05, float(interval_s))
        self._watches: dict[str, _Watch] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- watching ------------------------------------------------------------------------------------
    def watch(self, service: dict) -> None:
        """Start (or update) watching the service's minio inputs.

        Objects already under a path the service never watched before count as seen;
        for paths watched in a previous run, objects uploaded since are fired.
        Watching an already-watched service updates it in place, keeping its state.
        """
        name = str(service.get("name") or "")
        if not name:
            raise ValueError("cannot watch a service without a name")
        with self._lock:
            current = self._watches.get(name)
            old_paths = {p.store_key: p for p in current.paths} if current else {}
            paths: list[_Path] = []
            for bucket, folder in input_paths(service):
                key = f"{bucket}/{folder}"
                path = old_paths.get(key) or self._load_path(name, bucket, folder)
                paths.append(path)
            for key in set(old_paths) - {p.store_key for p in paths}:
                self.store.delete(PATH_KIND, f"{name}/{key}")
            watch = _Watch(service=dict(service), paths=paths)
            if current is not None:
                watch.seen = current.seen
                watch.retry = current.retry
            else:
                watch.seen = self._load_seen(name)
            self._watches[name] = watch
            for path in paths:
                if not path.baselined:
                    self._baseline(watch, path)

    def unwatch(self, name: str) -> None:
        """Stop watching the service and forget its bookkeeping (the service is gone)."""
        with self._lock:
            self._watches.pop(name, None)
            with self.store.transaction():
                self.store.delete_children(PATH_KIND, name)
                self.store.delete_children(SEEN_KIND, name)

    def watched(self) -> list[str]:
        """Names of the watched services (extension, for diagnostics)."""
        with self._lock:
            return sorted(self._watches)

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="storage-triggers", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)

    def poll_once(self) -> None:
        """One pass over every watched path (the poller's tick; tests may call it directly)."""
        self._poll(abortable=False)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self._poll(abortable=True)
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def _poll(self, *, abortable: bool) -> None:
        with self._lock:
            watches = list(self._watches.values())
        for watch in watches:
            for path in list(watch.paths):
                if abortable and self._stop.is_set():
                    return
                try:
                    self._poll_path(watch, path, abortable)
                except Exception:  # one bad path must not starve the others
                    log.exception("storage trigger of %s on %s failed", watch.name, path.store_key)

    # -- internals ------------------------------------------------------------------------------------
    def _load_path(self, name: str, bucket: str, folder: str) -> _Path:
        doc = self.store.get(PATH_KIND, f"{name}/{bucket}/{folder}")
        return _Path(bucket=bucket, folder=folder, baselined=bool(doc and doc.get("baselined")))

    def _load_seen(self, name: str) -> dict[tuple[str, str], str]:
        seen: dict[tuple[str, str], str] = {}
        for _, doc in self.store.items(SEEN_KIND, parent=name):
            if isinstance(doc, dict) and doc.get("bucket") and doc.get("key") is not None:
                seen[(doc["bucket"], doc["key"])] = str(doc.get("etag") or "")
        return seen

    def _list(self, path: _Path) -> list[ObjectInfo] | None:
        """Objects under the path (placeholders excluded); [] if the bucket is gone; None on errors."""
        try:
            return [
                o
                for o in self.s3.list_objects(path.bucket, path.prefix)
                if not o.key.endswith("/") and o.key.startswith(path.prefix)
            ]
        except StorageError as exc:
            if exc.code == "NoSuchBucket":
                return []
            log.warning("cannot list %s/%s for triggers: %s", path.bucket, path.prefix, exc)
            return None

    def _baseline(self, watch: _Watch, path: _Path) -> None:
        """Record what is there now as seen, without firing (done once per service path)."""
        objects = self._list(path)
        if objects is None:
            return  # S3 unreachable: the poller baselines at its first successful listing
        with self._lock, self.store.transaction():
            if self._watches.get(watch.name) is not watch:
                return
            for obj in objects:
                self._mark_seen(watch, obj)
            self.store.put(
                PATH_KIND,
                f"{watch.name}/{path.store_key}",
                {"bucket": path.bucket, "folder": path.folder, "baselined": True, "since": time.time()},
                parent=watch.name,
            )
            path.baselined = True

    def _mark_seen(self, watch: _Watch, obj: ObjectInfo) -> None:
        watch.seen[(obj.bucket, obj.key)] = obj.etag
        self.store.put(
            SEEN_KIND,
            f"{watch.name}/{obj.bucket}/{obj.key}",
            {"bucket": obj.bucket, "key": obj.key, "etag": obj.etag},
            parent=watch.name,
        )

    def _poll_path(self, watch: _Watch, path: _Path, abortable: bool = False) -> None:
        if not path.baselined:
            self._baseline(watch, path)
            return
        objects = self._list(path)
        if objects is None:
            return
        present = {(o.bucket, o.key) for o in objects}
        self._prune(watch, path, present)
        now = time.monotonic()
        for obj in sorted(objects, key=lambda o: (o.last_modified, o.key)):
            if abortable and self._stop.is_set():
                return
            if watch.seen.get((obj.bucket, obj.key)) == obj.etag:
                continue
            attempt_key = (obj.bucket, obj.key, obj.etag)
            failures, next_try = watch.retry.get(attempt_key, (0, 0.0))
            if now < next_try:
                continue
            if self._watches.get(watch.name) is not watch:
                return  # unwatched or replaced meanwhile
            try:
                self.fire(watch.service, self._event(obj))
            except Exception:
                failures += 1
                delay = min(_MAX_RETRY_DELAY_S, self.interval_s * 2**failures)
                watch.retry[attempt_key] = (failures, time.monotonic() + delay)
                log.exception(
                    "trigger of service %s for %s/%s failed (attempt %d); retrying in %.1fs",
                    watch.name,
                    obj.bucket,
                    obj.key,
                    failures,
                    delay,
                )
                continue
            watch.retry.pop(attempt_key, None)
            with self._lock:
                if self._watches.get(watch.name) is watch:
                    self._mark_seen(watch, obj)

    def _prune(self, watch: _Watch, path: _Path, present: set[tuple[str, str]]) -> None:
        """Forget objects deleted from the path: uploading them again is a new event."""
        with self._lock:
            gone = [
                k
                for k in watch.seen
                if k[0] == path.bucket and k[1].startswith(path.prefix) and k not in present
            ]
        if not gone:
            return
        with self._lock, self.store.transaction():
            if self._watches.get(watch.name) is not watch:
                return
            for bucket, key in gone:
                watch.seen.pop((bucket, key), None)
                self.store.delete(SEEN_KIND, f"{watch.name}/{bucket}/{key}")
        for attempt in [a for a in watch.retry if (a[0], a[1]) in gone]:
            watch.retry.pop(attempt, None)

    def _event(self, obj: ObjectInfo) -> dict:
        content_type = "application/octet-stream"
        try:
            info = self.s3.stat(obj.bucket, obj.key)
            if info is not None and info.content_type:
                content_type = info.content_type
        except StorageError:
            pass
        return make_minio_event(
            obj.bucket,
            obj.key,
            size=obj.size,
            etag=obj.etag,
            access_key=self.s3.access_key,
            content_type=content_type,
            endpoint=self.s3.endpoint,
        )
