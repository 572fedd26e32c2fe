"""Watcher: turns OSCAR's pull-only API into pushed `job` and `output` events.

OSCAR has no notification API: job states are only visible by listing a service's
jobs, and output files only by listing its output buckets. Node-RED and NiFi want
"tell me when it is done", so one background thread polls what someone asked about
and publishes changes on the EventHub:

* `track_job` follows one job until it is Succeeded or Failed, publishing a `job`
  event on every status change.
* `watch_outputs` lists every MinIO output path of a service and publishes an
  `output` event for each object that appears after `since`, until nothing new has
  appeared for `quiet_s` seconds (or `until`, or `unwatch_outputs`). It also tracks
  the service's jobs created after `since`: an upload into an input path starts a job
  that nobody submitted through the bridge, and its `job` events matter just as much.

Upstream errors are logged and retried on the next tick; they never kill the thread.

The module also holds the small storage helpers the files API shares with it
(`minio_paths`, `storage_for`, `object_dict`), so "which objects belong to a service"
is decided in one place.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from bridge.oscar.errors import NotFound

from .events import EventHub

log = logging.getLogger(__name__)

FINAL_STATUSES = frozenset({"Succeeded", "Failed"})
# Heuristic window of job_outputs (see its docstring).
JOB_OUTPUT_BEFORE_S = 1.0
JOB_OUTPUT_AFTER_S = 5.0
# S3 servers may truncate LastModified to the second: accept objects this much older than `since`.
CLOCK_SLACK_S = 1.0


class Registry(Protocol):
    """What the watcher needs from ClusterRegistry."""

    def client(self, cluster_id: str) -> Any: ...
    def storage(self, cluster_id: str) -> Any: ...


# --------------------------------------------------------------------------- storage helpers


@dataclass(frozen=True)
class StoragePath:
    """One MinIO input/output entry of a service: `bucket` plus a folder `prefix` (no slashes at ends)."""

    provider: str
    bucket: str
    prefix: str

    @property
    def key_prefix(self) -> str:
        """Prefix to list with; the trailing slash keeps `out` from matching `out2/...`."""
        return f"{self.prefix}/" if self.prefix else ""

    @property
    def path(self) -> str:
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    def contains(self, bucket: str, key: str) -> bool:
        return bucket == self.bucket and key.startswith(self.key_prefix) and key != self.key_prefix


def minio_paths(service: dict[str, Any], kind: str) -> list[StoragePath]:
    """The service's `input` or `output` entries whose provider is MinIO (`minio` or `minio.<id>`)."""
    result: list[StoragePath] = []
    for entry in service.get(kind) or []:
        if not isinstance(entry, dict):
            continue
        path = minio_entry_path(entry)
        if path is not None and path not in result:
            result.append(path)
    return result


def minio_entry_path(entry: dict[str, Any]) -> StoragePath | None:
    """A StoragePath for one input/output entry, or None when it is not a usable MinIO entry."""
    provider = str(entry.get("storage_provider") or "")
    if provider.split(".", 1)[0] != "minio":
        return None
    raw = str(entry.get("path") or "").strip("/")
    if not raw:
        return None
    bucket, _, prefix = raw.partition("/")
    return StoragePath(provider, bucket, prefix.strip("/"))


def storage_for(registry: Registry, cluster: str, service: dict[str, Any], provider: str) -> Any:
    """The S3Store serving `provider` for this service.

    `minio` / `minio.default` is the cluster's own MinIO (from the registry). Another
    id uses the service's own `storage_providers.minio.<id>` entry when it carries
    usable credentials (OSCAR >= 3.5 hides them as "hidden"); otherwise the cluster's.
    """
    ident = provider.partition(".")[2] or "default"
    if ident != "default":
        conf = ((service.get("storage_providers") or {}).get("minio") or {}).get(ident) or {}
        if conf.get("endpoint") and conf.get("access_key") not in (None, "", "hidden"):
            from bridge.storage import S3Store

            return S3Store.from_provider(conf)
    return registry.storage(cluster)


def iso_time(ts: float) -> str:
    """Epoch seconds as RFC 3339 UTC with milliseconds (what Node-RED/NiFi parse easily)."""
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_time(value: Any) -> float | None:
    """OSCAR's job times (RFC 3339 strings, possibly empty/None) as epoch seconds."""
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if text.startswith("0001-01-01"):  # Go's zero time
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def object_dict(info: Any) -> dict[str, Any]:
    """An ObjectInfo as the bridge API shows it."""
    return {
        "bucket": info.bucket,
        "key": info.key,
        "size": info.size,
        "last_modified": iso_time(info.last_modified),
        "etag": info.etag,
        "path": f"{info.bucket}/{info.key}",
    }


def iter_service_objects(
    registry: Registry,
    cluster: str,
    service: dict[str, Any],
    paths: Iterable[StoragePath],
    prefix: str = "",
) -> Iterator[Any]:
    """ObjectInfos under the given paths (folder placeholders skipped, each object once).

    `prefix` narrows the listing relative to each path's folder.
    """
    seen: set[tuple[str, str]] = set()
    for sp in paths:
        store = storage_for(registry, cluster, service, sp.provider)
        for info in store.list_objects(sp.bucket, sp.key_prefix + prefix):
            if info.key.endswith("/") or (info.bucket, info.key) in seen:
                continue
            seen.add((info.bucket, info.key))
            yield info


# --------------------------------------------------------------------------- watcher state


@dataclass
class _JobWatch:
    cluster: str
    service: str
    job: str
    added: float = field(default_factory=time.monotonic)
    status: str | None = None
    missing_since: float | None = None


@dataclass
class _OutputWatch:
    cluster: str
    service: str
    since: float
    until: float | None
    deadline: float  # monotonic: stop when nothing new appeared before it
    jobs: bool = True
    seen: set[tuple[str, str, str]] = field(default_factory=set)
    jobs_seen: set[str] = field(default_factory=set)
    definition: dict[str, Any] | None = None
    fetched_at: float = -math.inf


class Watcher:
    """One background thread polling job lists and output prefixes for the EventHub.

    The thread starts on `start()`, or on the first track/watch call when
    `autostart` is true, so callers need not care about ordering. `tick()` runs one
    polling pass synchronously (tests use it with autostart=False).
    """

    def __init__(
        self,
        registry: Registry,
        hub: EventHub,
        *,
        interval_s: float = 0.5,
        quiet_s: float = 600.0,
        missing_grace_s: float = 120.0,
        job_max_age_s: float = 7 * 86400.0,
        service_refresh_s: float = 30.0,
        autostart: bool = True,
    ) -> None:
        self.registry = registry
        self.hub = hub
        self.interval_s = interval_s
        self.quiet_s = quiet_s
        self.missing_grace_s = missing_grace_s
        self.job_max_age_s = job_max_age_s
        self.service_refresh_s = service_refresh_s
        self.autostart = autostart
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, str, str], _JobWatch] = {}
        self._outputs: dict[tuple[str, str], _OutputWatch] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: set[str] = set()  # keys whose last poll failed: log once, not every tick

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Watcher:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="bridge-watcher", daemon=True)
                self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _kick(self) -> None:
        """Poll soon: a new watch should not wait a whole interval for its first look."""
        if self.autostart and not self._stop.is_set() and not self.running:
            self.start()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.tick()
            except Exception:  # the thread must survive anything
                log.exception("watcher tick failed")
            self._wake.wait(self.interval_s)

    # ------------------------------------------------------------------ public API

    def track_job(self, cluster: str, service: str, job: str) -> None:
        """Publish `job` events for this job's status changes until it finishes."""
        with self._lock:
            self._jobs.setdefault((cluster, service, job), _JobWatch(cluster, service, job))
        self._kick()

    def untrack_job(self, cluster: str, service: str, job: str) -> None:
        with self._lock:
            self._jobs.pop((cluster, service, job), None)

    def watch_outputs(
        self,
        cluster: str,
        service: str,
        since: float | None = None,
        until: float | None = None,
        *,
        jobs: bool = True,
    ) -> None:
        """Publish `output` events for objects appearing in the service's outputs after `since`.

        With `jobs` (a keyword extension of the documented signature), jobs of the
        service created after `since` are tracked as by `track_job`. Calling again for
        the same service widens the existing watch (earliest `since`, latest `until`)
        and restarts its quiet period.
        """
        since = time.time() if since is None else since
        deadline = time.monotonic() + self.quiet_s
        with self._lock:
            current = self._outputs.get((cluster, service))
            if current is None:
                self._outputs[(cluster, service)] = _OutputWatch(
                    cluster, service, since, until, deadline, jobs=jobs
                )
            else:
                current.jobs = current.jobs or jobs
                current.since = min(current.since, since)
                current.until = None if until is None or current.until is None else max(current.until, until)
                current.deadline = max(current.deadline, deadline)
        self._kick()

    def unwatch_outputs(self, cluster: str, service: str) -> None:
        with self._lock:
            self._outputs.pop((cluster, service), None)

    def tracked_jobs(self) -> list[tuple[str, str, str]]:
        with self._lock:
            return list(self._jobs)

    def watched_outputs(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._outputs)

    def job_outputs(self, cluster: str, service: str, job_info: dict[str, Any]) -> list[dict[str, Any]]:
        """Objects in the service's MinIO outputs that this job probably wrote.

        OSCAR does not link output objects to the job that wrote them, so this is a
        time-window heuristic: objects whose last_modified lies within
        [start_time - 1 s, finish_time + 5 s] (creation_time when there is no
        start_time; open-ended while the job has not finished). The slack absorbs
        S3 timestamps truncated to the second and the upload that follows the
        script. Concurrent jobs of the same service can therefore share outputs.
        """
        start = parse_time(job_info.get("start_time")) or parse_time(job_info.get("creation_time"))
        if start is None:
            return []
        finish = parse_time(job_info.get("finish_time"))
        low = start - JOB_OUTPUT_BEFORE_S
        high = math.inf if finish is None else finish + JOB_OUTPUT_AFTER_S
        definition = self.registry.client(cluster).get_service(service)
        paths = minio_paths(definition, "output")
        found = [
            info
            for info in iter_service_objects(self.registry, cluster, definition, paths)
            if low <= info.last_modified <= high
        ]
        found.sort(key=lambda i: (i.last_modified, i.bucket, i.key))
        return [object_dict(i) for i in found]

    # ------------------------------------------------------------------ polling

    def tick(self) -> None:
        """One polling pass over every tracked job and output watch."""
        with self._lock:
            outputs = list(self._outputs.values())
        # Outputs first: they may discover new jobs, which are then polled in this same pass.
        for ow in outputs:
            self._guarded(f"outputs {ow.cluster}/{ow.service}", self._poll_outputs, ow)
        with self._lock:
            jobs = list(self._jobs.values())
        by_service: dict[tuple[str, str], list[_JobWatch]] = {}
        for jw in jobs:
            by_service.setdefault((jw.cluster, jw.service), []).append(jw)
        for (cluster, service), watches in by_service.items():
            self._guarded(f"jobs {cluster}/{service}", self._poll_jobs, cluster, service, watches)

    def _guarded(self, what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # retried next tick
            if what not in self._failing:
                self._failing.add(what)
                log.warning("watcher: polling %s failed (will retry): %s", what, exc)
        else:
            if what in self._failing:
                self._failing.discard(what)
                log.info("watcher: polling %s works again", what)

    def _poll_jobs(self, cluster: str, service: str, watches: list[_JobWatch]) -> None:
        wanted = {w.job: w for w in watches}
        found: dict[str, dict[str, Any]] = {}
        try:
            for name, info in self.registry.client(cluster).iter_jobs(service):
                if name in wanted:
                    found[name] = info or {}
                    if len(found) == len(wanted):
                        break
        except NotFound:
            pass  # service gone: every job counts as missing below
        now = time.monotonic()
        for name, jw in wanted.items():
            info = found.get(name)
            if info is None:
                jw.missing_since = jw.missing_since or now
                if now - jw.missing_since >= self.missing_grace_s or now - jw.added >= self.job_max_age_s:
                    self._finish_job(jw, {"status": "Unknown"}, reason="job is no longer listed by OSCAR")
                continue
            jw.missing_since = None
            status = str(info.get("status") or "Unknown")
            if status != jw.status:
                jw.status = status
                self.hub.publish("job", self._job_data(jw, info))
            if status in FINAL_STATUSES or now - jw.added >= self.job_max_age_s:
                self.untrack_job(jw.cluster, jw.service, jw.job)

    def _finish_job(self, jw: _JobWatch, info: dict[str, Any], reason: str) -> None:
        self.untrack_job(jw.cluster, jw.service, jw.job)
        data = self._job_data(jw, info)
        data["reason"] = reason
        self.hub.publish("job", data)

    @staticmethod
    def _job_data(jw: _JobWatch, info: dict[str, Any]) -> dict[str, Any]:
        return {
            "cluster": jw.cluster,
            "service": jw.service,
            "job": jw.job,
            "status": info.get("status") or "Unknown",
            "creation_time": info.get("creation_time"),
            "start_time": info.get("start_time"),
            "finish_time": info.get("finish_time"),
        }

    def _poll_outputs(self, ow: _OutputWatch) -> None:
        if time.monotonic() > ow.deadline or (ow.until is not None and time.time() > ow.until):
            with self._lock:
                if self._outputs.get((ow.cluster, ow.service)) is ow:
                    del self._outputs[(ow.cluster, ow.service)]
            return
        if ow.definition is None or time.monotonic() - ow.fetched_at >= self.service_refresh_s:
            ow.definition = self.registry.client(ow.cluster).get_service(ow.service)
            ow.fetched_at = time.monotonic()
        if ow.jobs:
            self._discover_jobs(ow)
        paths = minio_paths(ow.definition, "output")
        for info in iter_service_objects(self.registry, ow.cluster, ow.definition, paths):
            if info.last_modified < ow.since - CLOCK_SLACK_S:
                continue
            ident = (info.bucket, info.key, info.etag)
            if ident in ow.seen:
                continue
            ow.seen.add(ident)
            ow.deadline = max(ow.deadline, time.monotonic() + self.quiet_s)
            data = {"cluster": ow.cluster, "service": ow.service, **object_dict(info)}
            self.hub.publish("output", data)

    def _discover_jobs(self, ow: _OutputWatch) -> None:
        """Track jobs of the watched service created after `since` (e.g. started by an upload)."""
        for name, info in self.registry.client(ow.cluster).iter_jobs(ow.service):
            if name in ow.jobs_seen:
                continue
            created = parse_time((info or {}).get("creation_time"))
            if created is None or created < ow.since - CLOCK_SLACK_S:
                continue
            ow.jobs_seen.add(name)
            with self._lock:
                self._jobs.setdefault((ow.cluster, ow.service, name), _JobWatch(ow.cluster, ow.service, name))
