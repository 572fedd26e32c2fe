"""One invocation of an OSCAR service as a local process: OSCAR's supervisor, reimplemented.

In OSCAR every call goes through faas-supervisor inside the service's container: it
parses the event, stages the input file, runs `/bin/sh script.sh`, uploads what the
script wrote to `$TMP_OUTPUT_DIR` and builds the response. Services are written against
those conventions, so the local runtime must follow them closely (reference §3.2-§3.5):

* event kinds: MinIO/S3 storage events (`Records[0].eventSource` in minio:s3/aws:s3),
  dCache events (`{"event": {"name"}, "subscription"}`), delegated events
  (`{"event": "<json>", "storage_provider": "minio.<id>"}`), and everything else as an
  *UnknownEvent* whose body becomes `$TMP_INPUT_DIR/event-file-<uuid4>`
  (`codec.decode_event_body`);
* environment: a minimal host base, the user's variables and secrets, the OSCAR_*
  variables, INPUT_FILE_PATH / TMP_INPUT_DIR / TMP_OUTPUT_DIR, and for async jobs
  EVENT and JOB_UUID; for storage events STORAGE_OBJECT_KEY and EVENT_TIME;
* response: for UnknownEvents base64 of the one output file, base64 of a zip of several,
  else the script's merged stdout/stderr; storage events always get the script output;
  a trailing newline (the real supervisor `print()`s); supervisor log lines on top,
  filtered by the service's `log_level` (CRITICAL therefore gives a clean body);
* uploads: every output entry x every file under TMP_OUTPUT_DIR passing the entry's
  prefix/suffix filters goes to `<bucket>/<rest of path>/<relative path>`.

Deliberate deviations from OSCAR, all in the direction of telling the user the truth:

* a non-zero script exit makes the invocation fail (`succeeded` False; the runtime
  answers 500 / marks the job Failed) where OSCAR ignores the exit code;
* the script has a wall-clock limit: the whole process group gets SIGTERM, then SIGKILL
  after a grace period, and `timed_out` is set (OSCAR's watchdog kills only on its own
  timeouts); leftover background processes are killed when the script ends, as a
  finished container would take them down; a timed-out or cancelled run uploads nothing;
* an output entry whose provider cannot be resolved, or an upload that raises, is
  logged at ERROR and fails the invocation: OSCAR's supervisor would crash (exit 1)
  on an unusable provider, and silently losing results is the worst outcome. Providers
  are only resolved when a file actually needs uploading;
* outputs to `minio.default` are uploaded for sync calls too (OSCAR HEAD skips them in
  Knative pods for lack of mounted credentials, reference §3.4);
* an input the real supervisor would crash on (bad base64, JSON array/number, a storage
  event whose object cannot be downloaded) fails the invocation with a CRITICAL log
  line and exit code 1 without running the script; nothing ever escapes `run()`;
* when `memory_limit_bytes` is set, RLIMIT_AS is applied to the script (see
  `Supervisor`); containers limit resident memory instead, which a plain process cannot.
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote_plus

from bridge.oscar import codec

log = logging.getLogger(__name__)

#: Host variables passed through to scripts: enough for ordinary tools to work, without
#: leaking the runtime's own configuration (credentials, proxies) into user code.
BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME", "TMPDIR", "TERM")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Python logging levels, the names OSCAR accepts for `log_level`.
LOG_LEVELS = {"NOTSET": 0, "DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}

#: Linux refuses to exec with a single environment string longer than this
#: (MAX_ARG_STRLEN); a larger EVENT is left out rather than making the exec fail.
MAX_ENV_VALUE = 128 * 1024 - 64

STORAGE_EVENT_SOURCES = ("minio:s3", "aws:s3")
OUTPUT_KINDS = ("file", "files", "text")

_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?(?:[eE][0-9]+)?)\s*([KMGTPE]i?|k)?\s*$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


class StorageLike(Protocol):
    """The part of `bridge.storage.S3Store` the supervisor uses (tests pass fakes)."""

    def put_file(self, bucket: str, key: str, path: str) -> Any: ...

    def download_file(self, bucket: str, key: str, path: str) -> Any: ...


#: `resolve_storage(provider, service)`: provider is an input/output `storage_provider`
#: string as written in the service ("minio", "minio.default", "s3.aws", ...).
StorageResolver = Callable[[str, dict], "StorageLike | None"]


@dataclass
class InvocationResult:
    """What one invocation produced.

    `response` is the body OSCAR's watchdog would send (log lines + result + "\\n");
    `logs` is what `GET /system/logs/{svc}/{job}` shows (log lines + script output);
    `error` (an extension) names why the supervisor itself failed, "" otherwise.
    """

    exit_code: int
    response: str
    output_kind: str
    logs: str
    timed_out: bool
    duration_s: float
    error: str = ""

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.error


def parse_quantity(value: Any) -> int | None:
    """A Kubernetes memory quantity ("256Mi", "1G", "1.5Gi", "1000") in bytes, or None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value) if value > 0 else None
    match = _QUANTITY.match(str(value))
    if not match:
        return None
    number, suffix = float(match.group(1)), match.group(2) or ""
    factor = _BINARY.get(suffix) or _DECIMAL.get(suffix) or 1
    result = int(number * factor)
    return result if result > 0 else None


class _Log:
    """Collects the supervisor's own log lines, already filtered by the service's level."""

    def __init__(self, level_name: str) -> None:
        self.threshold = LOG_LEVELS.get(str(level_name or "INFO").upper(), LOG_LEVELS["INFO"])
        self.lines: list[str] = []

    def __call__(self, level: str, message: str) -> None:
        if LOG_LEVELS[level] >= self.threshold:
            self.lines.append(codec.format_log_line(level, message).rstrip("\n"))

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)


class _Failure(Exception):
    """Aborts an invocation the way the real supervisor's crash would (exit 1)."""


@dataclass
class _Event:
    kind: str  # "unknown" | "storage" | "dcache"
    raw: str
    parsed: dict | None = None
    provider: str | None = None  # provider of a delegated event
    env: dict[str, str] = field(default_factory=dict)


class Supervisor:
    """Runs one invocation of a service; safe to share between threads.

    `resolve_storage(provider, service)` maps a `storage_provider` string to a store
    (None = unknown). `timeout_s` bounds the script's wall-clock time; `kill_grace_s`
    is the time between SIGTERM and SIGKILL. `memory_limit_bytes`: None disables
    memory enforcement; otherwise RLIMIT_AS is set to the service's `memory` quantity,
    capped by `memory_limit_bytes` when that is positive (0 = the service's quantity
    alone). Off by default because an address-space limit is much stricter than a
    container's resident-memory limit (JVMs, Go and numpy reserve far more than they use).
    """

    def __init__(
        self,
        work_dir: Path | str,
        resolve_storage: StorageResolver,
        *,
        timeout_s: float = 300.0,
        memory_limit_bytes: int | None = None,
        kill_grace_s: float = 3.0,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.resolve_storage = resolve_storage
        self.timeout_s = float(timeout_s)
        self.memory_limit_bytes = memory_limit_bytes
        self.kill_grace_s = float(kill_grace_s)

    # -- public ------------------------------------------------------------------------
    def run(
        self,
        service: dict,
        body: bytes,
        *,
        mode: str = "sync",
        job_name: str | None = None,
        cancel: threading.Event | None = None,
    ) -> InvocationResult:
        """Run one invocation; never raises. `cancel` (an extension) aborts it early:
        the JobManager sets it when a running job is deleted or the runtime stops."""
        started = time.monotonic()
        logger = _Log(service.get("log_level") or "INFO")
        root: Path | None = None
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            root = Path(tempfile.mkdtemp(prefix="invocation-", dir=self.work_dir))
            return self._run(service, body, mode, job_name, cancel, root, logger, started)
        except _Failure as exc:
            return self._failed(logger, str(exc), started)
        except Exception as exc:  # a bug or an OS error: report it, never propagate
            log.exception("supervisor failure for service %r", service.get("name"))
            logger("CRITICAL", f"Supervisor error: {type(exc).__name__}: {exc}")
            return self._failed(logger, f"{type(exc).__name__}: {exc}", started, logged=True)
        finally:
            if root is not None:
                shutil.rmtree(root, ignore_errors=True)

    # -- the algorithm -----------------------------------------------------------------
    def _run(
        self,
        service: dict,
        body: bytes,
        mode: str,
        job_name: str | None,
        cancel: threading.Event | None,
        root: Path,
        logger: _Log,
        started: float,
    ) -> InvocationResult:
        input_dir, output_dir = root / "input", root / "output"
        input_dir.mkdir()
        output_dir.mkdir()
        logger("INFO", "Received input")
        event = self._parse_event(body, logger)
        env = self._environment(service, mode, job_name, event, input_dir, output_dir, logger)
        if service.get("file_stage_in"):
            logger("INFO", "Input staging skipped: file_stage_in is set")
        else:
            input_file = self._stage_input(service, body, event, input_dir, logger)
            if input_file is not None:
                env["INPUT_FILE_PATH"] = str(input_file)

        script = root / "script.sh"
        script.write_text(str(service.get("script") or ""), encoding="utf-8")
        logger("INFO", "Running script")
        exit_code, output, timed_out, cancelled = self._execute(service, script, root, env, cancel)
        if timed_out:
            logger("ERROR", f"Script timed out after {self.timeout_s:g} s: process group killed")
        elif cancelled:
            logger("ERROR", "Invocation cancelled: process group killed")
        elif exit_code != 0:
            logger("ERROR", f"Script exited with code {exit_code}")
        else:
            logger("DEBUG", "Script finished successfully")

        files = self._output_files(output_dir)
        error = ""
        if not timed_out and not cancelled:
            error = self._upload_outputs(service, files, output_dir, logger)

        if event.kind == "unknown" and files:
            contents = {rel: (output_dir / rel).read_bytes() for rel in files}
            text, kind = codec.encode_output(contents)
        else:
            text, kind = output, "text"
        if cancelled and exit_code == 0:
            exit_code = -signal.SIGTERM
        if error and exit_code == 0:
            exit_code = 1
        return InvocationResult(
            exit_code=exit_code,
            response=logger.text() + text + "\n",
            output_kind=kind,
            logs=logger.text() + output + ("" if not output or output.endswith("\n") else "\n"),
            timed_out=timed_out,
            duration_s=time.monotonic() - started,
            error=error or ("cancelled" if cancelled else ""),
        )

    def _failed(self, logger: _Log, error: str, started: float, *, logged: bool = False) -> InvocationResult:
        if not logged:
            logger("CRITICAL", error)
        text = logger.text()
        return InvocationResult(
            exit_code=1,
            response=text,
            output_kind="text",
            logs=text,
            timed_out=False,
            duration_s=time.monotonic() - started,
            error=error,
        )

    # -- event parsing (faas-supervisor 3.3 events/__init__.py) ------------------------
    def _parse_event(self, body: bytes, logger: _Log, provider: str | None = None) -> _Event:
        raw = body.decode("utf-8", errors="replace")
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            if "event" in parsed and "subscription" in parsed and isinstance(parsed["event"], dict):
                logger("INFO", "dCache event received")
                return _Event("dcache", raw, parsed, provider)
            inner = parsed.get("event")
            if isinstance(inner, str) and "storage_provider" in parsed and provider is None:
                try:
                    inner_obj = json.loads(inner)
                except ValueError:
                    inner_obj = None
                if isinstance(inner_obj, dict):
                    logger("INFO", f"Delegated event received from '{parsed['storage_provider']}'")
                    event = self._parse_event(inner.encode(), logger, str(parsed["storage_provider"]))
                    event.raw = raw
                    return event
            records = parsed.get("Records")
            if isinstance(records, list) and records and isinstance(records[0], dict):
                if records[0].get("eventSource") in STORAGE_EVENT_SOURCES:
                    logger("INFO", f"Storage event received ({records[0]['eventSource']})")
                    return _Event("storage", raw, parsed, provider)
        logger("DEBUG", "Event type: UnknownEvent")
        return _Event("unknown", raw, None, provider)

    # -- environment -------------------------------------------------------------------
    def _environment(
        self,
        service: dict,
        mode: str,
        job_name: str | None,
        event: _Event,
        input_dir: Path,
        output_dir: Path,
        logger: _Log,
    ) -> dict[str, str]:
        env = {key: os.environ[key] for key in BASE_ENV_KEYS if key in os.environ}
        env.setdefault("PATH", DEFAULT_PATH)
        environment = _get_ci(service, "environment") or {}
        for section in ("variables", "secrets"):
            for key, value in (_get_ci(environment, section) or {}).items():
                env[str(key)] = _env_str(value)
        env.update(
            OSCAR_SERVICE_NAME=str(service.get("name") or ""),
            OSCAR_SERVICE_TOKEN=str(service.get("token") or ""),
            OSCAR_SERVICE_BASE_PATH="",
            TMP_INPUT_DIR=str(input_dir),
            TMP_OUTPUT_DIR=str(output_dir),
        )
        event_value: str | None = event.raw if mode == "async" else None
        if event.kind in ("storage", "dcache") and event.parsed is not None:
            event_value = json.dumps(event.parsed)
        if event_value is not None:
            event_value = event_value.replace("\x00", "")
            if len(event_value.encode("utf-8")) <= MAX_ENV_VALUE:
                env["EVENT"] = event_value
            else:
                logger("WARNING", "EVENT not set: the event is too large for an environment variable")
        if mode == "async" and job_name:
            env["JOB_UUID"] = job_name
        if event.kind == "storage" and event.parsed is not None:
            record = event.parsed["Records"][0]
            key = _dig(record, "s3", "object", "key")
            if key is not None:
                env["STORAGE_OBJECT_KEY"] = unquote_plus(str(key))
            env["EVENT_TIME"] = str(record.get("eventTime") or "")
        if event.kind == "dcache":
            env["STORAGE_OBJECT_KEY"] = self._dcache_key(service, event)[1]
        return env

    # -- input staging -----------------------------------------------------------------
    def _stage_input(
        self, service: dict, body: bytes, event: _Event, input_dir: Path, logger: _Log
    ) -> Path | None:
        if event.kind == "unknown":
            try:
                data = codec.decode_event_body(body)
            except codec.CodecError as exc:
                raise _Failure(f"Invalid input: {exc}") from exc
            path = input_dir / f"event-file-{uuid.uuid4()}"
            path.write_bytes(data)
            logger("INFO", f"Event input saved as file '{path}'")
            return path
        if event.kind == "storage":
            return self._download_storage_object(service, event, input_dir, logger)
        return self._download_dcache_object(service, event, input_dir, logger)

    def _download_storage_object(self, service: dict, event: _Event, input_dir: Path, logger: _Log) -> Path:
        assert event.parsed is not None
        record = event.parsed["Records"][0]
        bucket = _dig(record, "s3", "bucket", "name")
        key = _dig(record, "s3", "object", "key")
        if not bucket or not key:
            raise _Failure("Invalid storage event: Records[0].s3.bucket.name or s3.object.key missing")
        key = unquote_plus(str(key))
        wanted = "s3" if record.get("eventSource") == "aws:s3" else "minio"
        provider = event.provider or _input_provider(service, wanted) or "minio.default"
        store = self._resolve(provider, service)
        if store is None:
            raise _Failure(f"Unknown storage provider '{provider}': cannot download the input object")
        path = input_dir / os.path.basename(key)
        logger("INFO", f"Downloading item from bucket '{bucket}' with key '{key}'")
        try:
            store.download_file(str(bucket), key, str(path))
        except Exception as exc:
            raise _Failure(f"Error downloading '{bucket}/{key}' from '{provider}': {exc}") from exc
        logger("INFO", f"Successful download of file '{key}' from bucket '{bucket}' in path '{path}'")
        return path

    def _dcache_key(self, service: dict, event: _Event) -> tuple[str | None, str]:
        assert event.parsed is not None
        name = str(event.parsed["event"].get("name") or "")
        provider = _input_provider(service, "webdav")
        base = _input_path(service, provider) if provider else ""
        return provider, f"{base.strip('/')}/{name}" if base else name

    def _download_dcache_object(
        self, service: dict, event: _Event, input_dir: Path, logger: _Log
    ) -> Path | None:
        provider, key = self._dcache_key(service, event)
        store = self._resolve(provider, service) if provider else None
        if store is None:
            logger("WARNING", f"No dCache storage available to download '{key}': input not staged")
            return None
        bucket, _, object_key = key.partition("/")
        path = input_dir / os.path.basename(key)
        logger("INFO", f"Downloading dCache item '{key}'")
        try:
            store.download_file(bucket, object_key, str(path))
        except Exception as exc:
            raise _Failure(f"Error downloading dCache item '{key}': {exc}") from exc
        return path

    def _resolve(self, provider: str, service: dict) -> StorageLike | None:
        try:
            return self.resolve_storage(provider, service)
        except Exception as exc:
            raise _Failure(f"Cannot use storage provider '{provider}': {exc}") from exc

    # -- the process ---------------------------------------------------------------------
    def _memory_limit(self, service: dict) -> int | None:
        if self.memory_limit_bytes is None:
            return None
        wanted = parse_quantity(service.get("memory"))
        cap = self.memory_limit_bytes if self.memory_limit_bytes > 0 else None
        candidates = [value for value in (wanted, cap) if value]
        return min(candidates) if candidates else None

    def _execute(
        self,
        service: dict,
        script: Path,
        root: Path,
        env: dict[str, str],
        cancel: threading.Event | None,
    ) -> tuple[int, str, bool, bool]:
        """Run the script; returns (exit code, merged output, timed out, cancelled)."""
        import subprocess  # local: keeps the module import cheap for API-only users

        limit = self._memory_limit(service)
        preexec = _rlimit_as(limit) if limit else None
        out_path = root / "output.log"
        # A file rather than a pipe: background children inheriting a pipe would keep
        # it open and make reading block until they exit.
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                ["/bin/sh", script.name],
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,  # only setrlimit: see _rlimit_as
            )
        timed_out = cancelled = False
        try:
            deadline = time.monotonic() + self.timeout_s
            # Back off from 1 ms to 50 ms: most scripts finish in a few milliseconds and
            # a fixed 50 ms poll dominated sync latency (bench/local_invoke.py).
            delay = 0.001
            while not _exited(proc):
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                if time.monotonic() >= deadline:
                    timed_out = True
                    break
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        finally:
            # The shell is exited-but-unreaped (or still running) here, so its pid and
            # process group id cannot have been reused: killing the group is safe.
            self._kill_group(proc)
        code = proc.wait()
        output = out_path.read_bytes().decode("utf-8", errors="replace")
        return code, output, timed_out, cancelled

    def _kill_group(self, proc: Any) -> None:
        pgid = proc.pid
        if not _signal_group(pgid, signal.SIGTERM):
            return
        deadline = time.monotonic() + self.kill_grace_s
        delay = 0.001
        while time.monotonic() < deadline:
            if not _group_alive(pgid, proc):
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        _signal_group(pgid, signal.SIGKILL)

    # -- outputs -----------------------------------------------------------------------
    @staticmethod
    def _output_files(output_dir: Path) -> list[str]:
        """Regular files under TMP_OUTPUT_DIR as sorted POSIX relative paths."""
        found = []
        for dirpath, _dirs, names in os.walk(output_dir):
            for name in names:
                path = Path(dirpath) / name
                if path.is_file():
                    found.append(path.relative_to(output_dir).as_posix())
        return sorted(found)

    def _upload_outputs(self, service: dict, files: list[str], output_dir: Path, logger: _Log) -> str:
        """Upload per reference §3.5; returns an error description or ""."""
        errors: list[str] = []
        for entry in service.get("output") or []:
            if not isinstance(entry, dict):
                continue
            selected = [rel for rel in files if _selected(rel, entry)]
            if not selected:
                continue
            provider = str(entry.get("storage_provider") or "minio")
            bucket, _, folder = str(entry.get("path") or "").strip("/").partition("/")
            try:
                store = self.resolve_storage(provider, service)
            except Exception as exc:
                store, reason = None, f": {exc}"
            else:
                reason = ""
            if store is None or not bucket:
                message = (
                    f"Output path '{entry.get('path')}' has no bucket"
                    if store is not None
                    else f"Unknown storage provider '{provider}'{reason}: outputs not uploaded"
                )
                logger("ERROR", message)
                errors.append(message)
                continue
            for rel in selected:
                key = f"{folder.strip('/')}/{rel}" if folder.strip("/") else rel
                logger("INFO", f"Uploading file '{rel}' to bucket '{bucket}' with key '{key}'")
                try:
                    store.put_file(bucket, key, str(output_dir / rel))
                except Exception as exc:
                    message = f"Error uploading '{rel}' to '{provider}' {bucket}/{key}: {exc}"
                    logger("ERROR", message)
                    errors.append(message)
                    continue
                logger("INFO", f"Successful upload of file '{rel}' to bucket '{bucket}'")
        return "; ".join(errors)


# -- helpers -------------------------------------------------------------------------------
def _selected(rel: str, entry: dict) -> bool:
    prefixes = [str(p) for p in entry.get("prefix") or [] if str(p)]
    suffixes = [str(s) for s in entry.get("suffix") or [] if str(s)]
    if prefixes and not any(rel.startswith(p) for p in prefixes):
        return False
    return not suffixes or any(rel.endswith(s) for s in suffixes)


def _get_ci(mapping: Any, key: str) -> Any:
    """Case-insensitive lookup: OSCAR spelled `Variables` with a capital until v3.5."""
    if not isinstance(mapping, dict):
        return None
    if key in mapping:
        return mapping[key]
    for candidate, value in mapping.items():
        if str(candidate).lower() == key:
            return value
    return None


def _env_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value).replace("\x00", "")


def _dig(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def _input_provider(service: dict, kind: str) -> str | None:
    """The first input's storage_provider of type `kind` ("minio", "s3", "webdav")."""
    for entry in service.get("input") or []:
        if isinstance(entry, dict):
            provider = str(entry.get("storage_provider") or "")
            if provider.split(".", 1)[0] == kind:
                return provider
    return None


def _input_path(service: dict, provider: str) -> str:
    for entry in service.get("input") or []:
        if isinstance(entry, dict) and entry.get("storage_provider") == provider:
            return str(entry.get("path") or "")
    return ""


def _rlimit_as(limit: int) -> Callable[[], None]:
    """A preexec_fn setting RLIMIT_AS. It only calls setrlimit (no locks, no allocation
    of note), which keeps preexec_fn's fork-with-threads hazard out of reach."""

    def apply() -> None:
        try:
            _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            value = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (value, hard))
        except (ValueError, OSError):
            pass  # not allowed here: run without the limit rather than not at all

    return apply


def _exited(proc: Any) -> bool:
    """True once the process has exited, *without reaping it* where the OS allows."""
    if hasattr(os, "waitid"):
        try:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None
    return proc.poll() is not None


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _group_alive(pgid: int, proc: Any) -> bool:
    """Whether the group still has a live (non-zombie) member besides our exited shell."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # The shell itself may be an unreaped zombie keeping the group "alive": only other
    # members count. /proc tells us on Linux; elsewhere assume alive until the grace ends.
    if not os.path.isdir("/proc"):
        return True
    # Raw os calls rather than pathlib: this scan runs once per invocation and was the
    # largest part of a trivial sync call's latency.
    wanted = str(pgid).encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/stat", os.O_RDONLY)
            try:
                stat = os.read(fd, 1024)
            finally:
                os.close(fd)
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[-1].split()
        # fields: state ppid pgrp ...
        if len(fields) > 2 and fields[2] == wanted and fields[0] != b"Z":
            return True
    return False
