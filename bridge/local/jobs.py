"""Asynchronous jobs of the embedded runtime: OSCAR's `POST /job` and `/system/logs`.

OSCAR turns each `/job` call into a Kubernetes Job named `<svc>-<uuid4>` and reports
pod phases (Pending, Running, Succeeded, Failed) with RFC3339 times; logs are the
container's output. Here a job is a record in the Store (kind "job", parent = service),
its input is a second record (kind "job-body") kept until the job finishes, so that
jobs still Pending when the runtime stops run after the next start, and its logs are a
file `logs_dir/<svc>/<job>.log`. Jobs found Running after a restart cannot be resumed
(their process died with the runtime) and are marked Failed with a log line saying so.

Jobs run on a small worker pool through the shared Limiter, under the global cap only:
OSCAR's Jobs are not bound by `synchronous.max_scale`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import queue
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bridge.local.limits import Limiter
from bridge.local.supervisor import InvocationResult, Supervisor
from bridge.oscar import codec
from bridge.store import Store

log = logging.getLogger(__name__)

JOB_KIND = "job"
BODY_KIND = "job-body"
PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
#: The keys of OSCAR's JobInfo, in its JSON order; `list()` returns only these.
JOB_INFO_KEYS = ("status", "creation_time", "start_time", "finish_time")

#: Names end up in file paths, so they are restricted to what OSCAR could produce
#: (Kubernetes names) plus upper case and dots; no slashes, no "..".
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")

OnChange = Callable[[str, str, dict], None]


class JobExists(ValueError):
    """A caller-chosen job name (X-Delegated-Job-ID) is already taken for the service."""


def now_rfc3339() -> str:
    """The current UTC time as OSCAR prints it: "2026-01-01T10:00:00Z"."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_job_name(service_name: str) -> str:
    """`<svc>-<uuid4>`; like OSCAR, a service name of 25+ characters is cut to 16 so
    the job name stays a valid Kubernetes name (clients may rely on the shape)."""
    prefix = service_name[:16] if len(service_name) >= 25 else service_name
    return f"{prefix}-{uuid.uuid4()}"


def _check_name(what: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value) or ".." in value:
        raise ValueError(f"invalid {what} name: {value!r}")
    return value


class JobManager:
    """Queues, runs, lists and deletes async jobs; see the module docstring.

    `on_change(svc, job, doc)` is called after every status change (and never with the
    manager's lock held, so it may call back into the manager). `workers` (an
    extension) sizes the pool; by default it follows the limiter's global cap.
    """

    def __init__(
        self,
        store: Store,
        supervisor: Supervisor,
        limiter: Limiter,
        logs_dir: Path | str,
        *,
        on_change: OnChange | None = None,
        page_size: int = 70,
        workers: int | None = None,
    ) -> None:
        self.store = store
        self.supervisor = supervisor
        self.limiter = limiter
        self.logs_dir = Path(logs_dir)
        self.on_change = on_change
        self.page_size = max(1, int(page_size))
        cap = workers if workers is not None else limiter.global_cap
        self.workers = max(1, int(cap) if cap and cap > 0 else 4)
        self._lock = threading.RLock()
        self._gen = _Generation()
        self._running: dict[tuple[str, str], threading.Event] = {}
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Recover jobs left by a previous run, then start the workers.

        Every Pending job in the Store is (re)queued, oldest first: the ones a previous
        process left and the ones submitted before this call alike.
        """
        changed: list[tuple[str, str, dict]] = []
        with self._lock:
            if self._threads:
                return
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            self._gen = _Generation()
            for key, doc in self.store.items(JOB_KIND):
                svc, job = _split_key(key)
                if doc.get("status") == RUNNING and (svc, job) not in self._running:
                    self._append_log(svc, job, "ERROR", "The runtime restarted while the job was running")
                    done = self._finish_locked(svc, job, FAILED, exit_code=None)
                    if done is not None:
                        changed.append((svc, job, done))
                elif doc.get("status") == PENDING:
                    self._gen.queue.put((svc, job))
            for index in range(self.workers):
                thread = threading.Thread(
                    target=self._work, args=(self._gen,), name=f"oscar-job-worker-{index}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        for svc, job, doc in changed:
            self._notify(svc, job, doc)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the workers. Running jobs are cancelled and marked Failed; Pending
        ones stay Pending (with their input) and run after the next `start()`."""
        with self._lock:
            threads, self._threads = self._threads, []
            gen = self._gen
            gen.stopping.set()
            for cancel in self._running.values():
                cancel.set()
        for _ in threads:
            gen.queue.put(None)
        # One deadline for all: a worker still waiting for a limiter slot (held by long
        # sync calls) must not multiply the wait. Workers are daemons and, once they get
        # their slot, see the stop flag and leave the job Pending.
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- submit / query ----------------------------------------------------------------
    def submit(self, service: dict, body: bytes, job_name: str | None = None) -> str:
        """Record a Pending job and queue it; returns its name at once."""
        svc = _check_name("service", str(service.get("name") or ""))
        job = _check_name("job", job_name) if job_name else new_job_name(svc)
        key = _key(svc, job)
        doc = {
            "status": PENDING,
            "creation_time": now_rfc3339(),
            "start_time": None,
            "finish_time": None,
            "exit_code": None,
            # Sub-second creation stamp: orders jobs and anchors page tokens (an extension;
            # OSCAR's creation_time has one-second resolution).
            "created_at": time.time(),
        }
        with self._lock, self.store.transaction():
            if self.store.get(JOB_KIND, key) is not None:
                raise JobExists(f"job {job!r} already exists for service {svc!r}")
            payload = {"service": service, "body": base64.b64encode(bytes(body)).decode("ascii")}
            self.store.put(BODY_KIND, key, payload, parent=svc)
            self.store.put(JOB_KIND, key, doc, parent=svc)
        self._notify(svc, job, doc)
        with self._lock:
            self._gen.queue.put((svc, job))
        return job

    def get(self, svc: str, job: str) -> dict | None:
        """The full job record (OSCAR's keys plus `exit_code`), or None."""
        return self.store.get(JOB_KIND, _key(svc, job))

    def list(self, svc: str, page: str | None = None) -> tuple[dict[str, dict], str | None, int | None]:
        """One page of the service's jobs, newest first: (jobs, next_page, remaining_jobs).

        The jobs map holds OSCAR's JobInfo (times omitted while unset). Like OSCAR,
        `next_page` and `remaining_jobs` are None on the last page. The page token is
        the position of the last job shown, so jobs submitted or deleted meanwhile
        never shift or break later pages. Raises ValueError for a malformed token.
        """
        entries = sorted(
            (
                (float(doc.get("created_at") or 0.0), _split_key(key)[1], doc)
                for key, doc in self.store.items(JOB_KIND, parent=svc)
            ),
            key=lambda entry: (entry[0], entry[1]),
            reverse=True,
        )
        if page:
            anchor = _decode_token(page)
            entries = [entry for entry in entries if (entry[0], entry[1]) < anchor]
        chunk = entries[: self.page_size]
        jobs = {job: job_info(doc) for _, job, doc in chunk}
        remaining = len(entries) - len(chunk)
        if remaining <= 0:
            return jobs, None, None
        created_at, job, _ = chunk[-1]
        return jobs, _encode_token(created_at, job), remaining

    def logs(self, svc: str, job: str) -> str | None:
        """The job's log text ("" until it has run), or None for an unknown job."""
        if self.get(svc, job) is None:
            return None
        try:
            return self._log_path(svc, job).read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, ValueError):
            return ""

    # -- deletion ----------------------------------------------------------------------
    def delete(self, svc: str, job: str) -> bool:
        """Delete one job (a running one is killed); False when it does not exist."""
        key = _key(svc, job)
        with self._lock, self.store.transaction():
            if not self.store.delete(JOB_KIND, key):
                return False
            self.store.delete(BODY_KIND, key)
            cancel = self._running.get((svc, job))
            if cancel is not None:
                cancel.set()
        self._remove_log(svc, job)
        return True

    def delete_all(self, svc: str, all: bool = False) -> int:
        """Delete the service's Succeeded jobs, or every job with `all`; returns how many."""
        count = 0
        for key, doc in self.store.items(JOB_KIND, parent=svc):
            if all or doc.get("status") == SUCCEEDED:
                count += self.delete(svc, _split_key(key)[1])
        return count

    def forget_service(self, svc: str) -> None:
        """Drop every job, input and log of a deleted service (running ones are killed)."""
        self.delete_all(svc, all=True)
        with self._lock, self.store.transaction():
            self.store.delete_children(JOB_KIND, svc)
            self.store.delete_children(BODY_KIND, svc)
        try:
            shutil.rmtree(self.logs_dir / _check_name("service", svc), ignore_errors=True)
        except ValueError:
            pass

    # -- the workers -------------------------------------------------------------------
    def _work(self, gen: _Generation) -> None:
        while True:
            item = gen.queue.get()
            if item is None:
                return
            try:
                self._run_one(gen, *item)
            except Exception:  # keep the worker alive whatever happens
                log.exception("job %s/%s crashed the worker", *item)
                with self._lock:
                    doc = self._finish_locked(item[0], item[1], FAILED, exit_code=None)
                if doc is not None:
                    self._notify(item[0], item[1], doc)

    def _run_one(self, gen: _Generation, svc: str, job: str) -> None:
        key = _key(svc, job)
        with self.limiter.slot(svc, 0):
            with self._lock:
                if gen.stopping.is_set():
                    return  # stays Pending; requeued by the next start()
                with self.store.transaction():
                    doc = self.store.get(JOB_KIND, key)
                    payload = self.store.get(BODY_KIND, key)
                    if doc is None or doc.get("status") != PENDING:
                        return  # deleted while queued, or already taken
                    doc.update(status=RUNNING, start_time=now_rfc3339())
                    self.store.put(JOB_KIND, key, doc, parent=svc)
                cancel = threading.Event()
                self._running[(svc, job)] = cancel
            self._notify(svc, job, doc)
            try:
                result = self._invoke(svc, job, payload, cancel)
            finally:
                with self._lock:
                    self._running.pop((svc, job), None)
        with self._lock:
            # Under the lock so a concurrent delete() cannot leave an orphan log file.
            if self.get(svc, job) is None:
                return  # deleted while running: leave no trace
            self._write_log(svc, job, result.logs)
            if gen.stopping.is_set() and result.error == "cancelled":
                self._append_log(svc, job, "ERROR", "The runtime stopped while the job was running")
            status = SUCCEEDED if result.succeeded else FAILED
            done = self._finish_locked(svc, job, status, exit_code=result.exit_code)
        if done is not None:
            self._notify(svc, job, done)

    def _invoke(self, svc: str, job: str, payload: dict | None, cancel: threading.Event) -> InvocationResult:
        try:
            if not payload:
                raise ValueError("the job's input was lost")
            body = base64.b64decode(payload["body"], validate=True)
            service = payload["service"]
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            line = codec.format_log_line("CRITICAL", f"Cannot run job: {exc}").rstrip("\n")
            return InvocationResult(1, line + "\n", "text", line + "\n", False, 0.0, str(exc))
        return self.supervisor.run(service, body, mode="async", job_name=job, cancel=cancel)

    def _finish_locked(self, svc: str, job: str, status: str, *, exit_code: int | None) -> dict | None:
        """Record a final status (call with the lock held; notify after releasing it)."""
        key = _key(svc, job)
        with self.store.transaction():
            doc = self.store.get(JOB_KIND, key)
            if doc is None:
                return None
            doc.update(status=status, finish_time=now_rfc3339(), exit_code=exit_code)
            if not doc.get("start_time"):
                doc["start_time"] = doc["finish_time"]
            self.store.put(JOB_KIND, key, doc, parent=svc)
            self.store.delete(BODY_KIND, key)
        return doc

    def _notify(self, svc: str, job: str, doc: dict) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(svc, job, dict(doc))
        except Exception:
            log.exception("on_change callback failed for job %s/%s", svc, job)

    # -- log files ---------------------------------------------------------------------
    def _log_path(self, svc: str, job: str) -> Path:
        return self.logs_dir / _check_name("service", svc) / f"{_check_name('job', job)}.log"

    def _write_log(self, svc: str, job: str, text: str) -> None:
        path = self._log_path(svc, job)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def _append_log(self, svc: str, job: str, level: str, message: str) -> None:
        path = self._log_path(svc, job)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(codec.format_log_line(level, message).rstrip("\n") + "\n")

    def _remove_log(self, svc: str, job: str) -> None:
        try:
            self._log_path(svc, job).unlink(missing_ok=True)
        except ValueError:
            pass


class _Generation:
    """One start()..stop() span: its own queue and stop flag, so workers of a previous
    span that are still finishing can never eat a later span's work or sentinels."""

    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.stopping = threading.Event()


def job_info(doc: dict) -> dict:
    """OSCAR's JobInfo view of a record: its keys in order, unset times omitted."""
    return {key: doc[key] for key in JOB_INFO_KEYS if doc.get(key) is not None}


def _key(svc: str, job: str) -> str:
    # Keys are global per kind in the Store; a delegated job name may repeat across services.
    return f"{svc}/{job}"


def _split_key(key: str) -> tuple[str, str]:
    svc, _, job = key.partition("/")
    return svc, job


def _encode_token(created_at: float, job: str) -> str:
    raw = json.dumps([created_at, job], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_token(token: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created_at, job = json.loads(raw)
        if not isinstance(created_at, int | float) or not isinstance(job, str):
            raise TypeError
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValueError(f"invalid page token: {token!r}") from exc
    return float(created_at), job
