"""The local supervisor against real /bin/sh scripts: OSCAR's input/output conventions.

Storage is a small in-memory fake implementing the two S3Store methods the supervisor
calls (download_file, put_file); the real-S3 path is covered by the runtime's tests.
"""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import pytest

from bridge.local.supervisor import InvocationResult, Supervisor, parse_quantity
from bridge.oscar import codec

TOKEN = "ab" * 32


class FakeStore:
    """In-memory stand-in for S3Store: objects keyed by (bucket, key)."""

    def __init__(self, objects: dict[tuple[str, str], bytes] | None = None) -> None:
        self.objects = dict(objects or {})
        self.downloads: list[tuple[str, str]] = []

    def download_file(self, bucket: str, key: str, path: str) -> None:
        self.downloads.append((bucket, key))
        if (bucket, key) not in self.objects:
            raise FileNotFoundError(f"no such object {bucket}/{key}")
        Path(path).write_bytes(self.objects[(bucket, key)])

    def put_file(self, bucket: str, key: str, path: str) -> None:
        self.objects[(bucket, key)] = Path(path).read_bytes()


class Resolver:
    """resolve_storage: known providers map to stores; records every request."""

    def __init__(self, stores: dict[str, FakeStore]) -> None:
        self.stores = stores
        self.calls: list[str] = []

    def __call__(self, provider: str, service: dict) -> FakeStore | None:
        self.calls.append(provider)
        return self.stores.get(provider)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def resolver(store: FakeStore) -> Resolver:
    return Resolver({"minio": store, "minio.default": store})


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    return tmp_path / "work"


@pytest.fixture
def supervisor(work_dir: Path, resolver: Resolver) -> Supervisor:
    return Supervisor(work_dir, resolver, timeout_s=120, kill_grace_s=2)


def make_service(script: str, **extra) -> dict:
    service = {
        "name": "demo",
        "image": "ignored",
        "script": script,
        "log_level": "CRITICAL",
        "token": TOKEN,
        "environment": {"variables": {}, "secrets": {}},
        "input": [],
        "output": [],
    }
    service.update(extra)
    return service


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def minio_event(bucket: str, key: str) -> dict:
    return {
        "EventName": "s3:ObjectCreated:Put",
        "Key": f"{bucket}/{key}",
        "Records": [
            {
                "eventVersion": "2.0",
                "eventSource": "minio:s3",
                "eventTime": "2026-01-01T10:00:00.000Z",
                "eventName": "s3:ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 3}},
            }
        ],
    }


# -- environment and input -----------------------------------------------------------------


def test_environment_of_a_sync_invocation(supervisor: Supervisor, monkeypatch) -> None:
    monkeypatch.setenv("RUNTIME_PRIVATE", "must-not-leak")
    script = """
echo "name=$OSCAR_SERVICE_NAME"
echo "token=$OSCAR_SERVICE_TOKEN"
echo "base=[$OSCAR_SERVICE_BASE_PATH]"
echo "var=$GREETING"
echo "secret=$API_KEY"
echo "private=[$RUNTIME_PRIVATE]"
echo "event=[${EVENT-unset}]"
echo "job=[${JOB_UUID-unset}]"
case "$INPUT_FILE_PATH" in "$TMP_INPUT_DIR"/event-file-*) echo input-in-dir;; esac
test -d "$TMP_OUTPUT_DIR" && echo output-dir-exists
test -n "$PATH" && echo has-path
"""
    service = make_service(
        script, environment={"variables": {"GREETING": "hola", "N": 3}, "secrets": {"API_KEY": "s3cr3t"}}
    )
    result = supervisor.run(service, b64(b"x"), mode="sync")
    assert result.succeeded, result.logs
    lines = result.response.splitlines()
    assert "name=demo" in lines
    assert f"token={TOKEN}" in lines
    assert "base=[]" in lines
    assert "var=hola" in lines
    assert "secret=s3cr3t" in lines
    assert "private=[]" in lines
    assert "event=[unset]" in lines
    assert "job=[unset]" in lines
    assert {"input-in-dir", "output-dir-exists", "has-path"} <= set(lines)
    assert result.output_kind == "text"


def test_async_invocation_gets_event_and_job_uuid(supervisor: Supervisor) -> None:
    body = b'{"answer": 42}'
    script = 'printf "%s" "$EVENT" > /dev/null; echo "job=$JOB_UUID"; echo "event=$EVENT"'
    result = supervisor.run(make_service(script), body, mode="async", job_name="demo-1234")
    assert result.succeeded, result.logs
    assert "job=demo-1234" in result.response
    assert 'event={"answer": 42}' in result.response


def test_oversized_event_is_left_out_of_the_environment(supervisor: Supervisor) -> None:
    """Linux refuses to exec with one environment string over 128 KiB; the job still runs."""
    body = b64(b"x" * 300_000)
    script = 'echo "event=${EVENT-unset}"; wc -c < "$INPUT_FILE_PATH"'
    result = supervisor.run(make_service(script, log_level="WARNING"), body, mode="async", job_name="j-1")
    assert result.succeeded, result.logs
    assert "event=unset" in result.response and "300000" in result.response
    assert "WARNING - EVENT not set" in result.logs


def test_json_object_input_is_reserialised(supervisor: Supervisor) -> None:
    obj = {"b": "ñ", "a": [1, 2]}
    result = supervisor.run(
        make_service('cat "$INPUT_FILE_PATH"'), json.dumps(obj, separators=(",", ":")).encode()
    )
    assert result.succeeded, result.logs
    assert result.response == json.dumps(obj) + "\n"


def test_base64_binary_input_roundtrips_through_one_output_file(supervisor: Supervisor) -> None:
    payload = bytes(range(256)) * 4
    script = 'cp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/copy.bin"'
    result = supervisor.run(make_service(script), b64(payload))
    assert result.succeeded, result.logs
    assert result.output_kind == "file"
    assert result.response.endswith("\n")
    assert base64.b64decode(result.response) == payload


def test_several_output_files_come_back_as_a_zip(supervisor: Supervisor) -> None:
    script = 'cd "$TMP_OUTPUT_DIR"; echo one > a.txt; mkdir sub; echo two > sub/b.txt'
    result = supervisor.run(make_service(script), b64(b"in"))
    assert result.succeeded, result.logs
    assert result.output_kind == "files"
    files = codec.unzip_files(base64.b64decode(result.response))
    assert {name: data.strip() for name, data in files.items()} == {"a.txt": b"one", "sub/b.txt": b"two"}


def test_no_output_file_returns_the_merged_script_output(supervisor: Supervisor) -> None:
    result = supervisor.run(make_service("echo to-stdout; echo to-stderr >&2"), b64(b"in"))
    assert result.succeeded
    assert result.output_kind == "text"
    assert result.response == "to-stdout\nto-stderr\n\n"  # the output plus print()'s newline
    assert result.logs == "to-stdout\nto-stderr\n"


def test_shebang_is_ignored(supervisor: Supervisor) -> None:
    result = supervisor.run(make_service("#!/bin/false\necho ran-with-sh"), b64(b"in"))
    assert result.succeeded and result.response == "ran-with-sh\n\n"


# -- log levels -------------------------------------------------------------------------------


def test_info_level_prepends_supervisor_lines(supervisor: Supervisor) -> None:
    result = supervisor.run(make_service("echo body-text", log_level="INFO"), b64(b"in"))
    assert result.succeeded
    lines = result.response.splitlines()
    assert lines[-2:] == ["body-text", ""]  # the output plus print()'s newline
    log_lines = lines[:-2]
    assert log_lines and all(" - supervisor - " in line for line in log_lines)
    assert any("INFO - Received input" in line for line in log_lines)
    assert any("INFO - Running script" in line for line in log_lines)
    assert not any(" - DEBUG - " in line for line in log_lines)
    rest, found = codec.strip_log_lines(result.response)
    assert len(found) == len(log_lines)  # the client side recognises every log line
    assert rest.strip() == "body-text"
    assert "Running script" in result.logs and "body-text" in result.logs


def test_debug_level_shows_debug_lines_and_warning_hides_info(supervisor: Supervisor) -> None:
    debug = supervisor.run(make_service("echo x", log_level="debug"), b64(b"in"))
    assert any(" - DEBUG - " in line for line in debug.response.splitlines())
    warning = supervisor.run(make_service("echo x", log_level="WARNING"), b64(b"in"))
    assert warning.response == "x\n\n"


def test_unknown_log_level_means_info(supervisor: Supervisor) -> None:
    result = supervisor.run(make_service("echo x", log_level="chatty"), b64(b"in"))
    assert "INFO - Running script" in result.response


# -- failures ---------------------------------------------------------------------------------


def test_nonzero_exit_fails_the_invocation(supervisor: Supervisor) -> None:
    result = supervisor.run(make_service("echo partial; exit 3", log_level="INFO"), b64(b"in"))
    assert isinstance(result, InvocationResult)
    assert result.exit_code == 3 and not result.succeeded and not result.timed_out
    assert "partial" in result.response
    assert "ERROR - Script exited with code 3" in result.logs


@pytest.mark.parametrize("body", [b"%%%not base64%%%", b"[1, 2, 3]", b"abc", b"\xff\xfe raw binary"])
def test_undecodable_input_fails_without_running_the_script(
    supervisor: Supervisor, tmp_path: Path, body: bytes
) -> None:
    marker = tmp_path / "ran"
    result = supervisor.run(make_service(f'touch "{marker}"'), body)
    assert result.exit_code != 0 and not result.succeeded
    assert " - CRITICAL - " in result.response  # shown even at log_level CRITICAL
    assert "Invalid input" in result.logs
    assert not marker.exists()


def test_temp_dirs_are_removed(supervisor: Supervisor, work_dir: Path) -> None:
    for body in (b64(b"ok"), b"[1]"):
        supervisor.run(make_service('echo x > "$TMP_OUTPUT_DIR/f"; echo "$TMP_INPUT_DIR"'), body)
    assert list(work_dir.iterdir()) == []


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _read_pids(pid_dir: Path) -> list[int]:
    return [int(p.read_text()) for p in sorted(pid_dir.iterdir())]


def test_timeout_kills_the_whole_process_tree(work_dir: Path, resolver: Resolver, tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    script = f"""
sh -c 'sleep 1000 & echo $! > "{pid_dir}/grandchild"; wait' &
echo $! > "{pid_dir}/child"
sleep 1000 &
echo $! > "{pid_dir}/sleeper"
echo started
wait
"""
    supervisor = Supervisor(work_dir, resolver, timeout_s=5, kill_grace_s=2)
    result = supervisor.run(make_service(script), b64(b"in"))
    assert result.timed_out and not result.succeeded and result.exit_code != 0
    assert "started" in result.response
    pids = _read_pids(pid_dir)
    assert len(pids) == 3
    assert not [pid for pid in pids if _alive(pid)]


def test_term_resistant_processes_get_killed(work_dir: Path, resolver: Resolver, tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    script = f"""
sh -c 'trap "" TERM; while :; do sleep 1; done' &
echo $! > "{pid_dir}/stubborn"
wait
"""
    supervisor = Supervisor(work_dir, resolver, timeout_s=3, kill_grace_s=1)
    result = supervisor.run(make_service(script), b64(b"in"))
    assert result.timed_out
    assert not [pid for pid in _read_pids(pid_dir) if _alive(pid)]


def test_background_leftovers_are_killed_after_a_normal_exit(supervisor: Supervisor, tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    script = f'sleep 1000 & echo $! > "{pid_dir}/bg"; echo done'
    result = supervisor.run(make_service(script), b64(b"in"))
    assert result.succeeded and result.response == "done\n\n"
    assert not [pid for pid in _read_pids(pid_dir) if _alive(pid)]


def test_cancel_stops_a_running_invocation(supervisor: Supervisor, tmp_path: Path) -> None:
    started = tmp_path / "started"
    cancel = threading.Event()
    watcher = threading.Thread(target=lambda: _set_when_exists(started, cancel), daemon=True)
    watcher.start()
    result = supervisor.run(make_service(f'touch "{started}"; sleep 1000'), b64(b"in"), cancel=cancel)
    assert not result.succeeded and not result.timed_out
    assert result.error == "cancelled"


def _set_when_exists(path: Path, event: threading.Event) -> None:
    waiter = threading.Event()
    for _ in range(6000):
        if path.exists():
            event.set()
            return
        waiter.wait(0.02)


def test_memory_limit_from_the_service_quantity(work_dir: Path, resolver: Resolver) -> None:
    supervisor = Supervisor(work_dir, resolver, timeout_s=60, memory_limit_bytes=0)
    result = supervisor.run(make_service("ulimit -v", memory="64Mi"), b64(b"in"))
    assert result.response.strip() == str(64 * 1024)  # ulimit -v reports KiB
    capped = Supervisor(work_dir, resolver, timeout_s=60, memory_limit_bytes=32 * 2**20)
    assert capped.run(make_service("ulimit -v", memory="1Gi"), b64(b"x")).response.strip() == str(32 * 1024)
    unlimited = Supervisor(work_dir, resolver, timeout_s=60)
    assert unlimited.run(make_service("ulimit -v", memory="64Mi"), b64(b"x")).response.strip() == "unlimited"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("256Mi", 256 * 2**20),
        ("1Gi", 2**30),
        ("1G", 10**9),
        ("512M", 512 * 10**6),
        ("100Ki", 102400),
        ("2k", 2000),
        ("1000", 1000),
        ("1.5Gi", 3 * 2**29),
        (None, None),
        ("lots", None),
        ("0", None),
    ],
)
def test_parse_quantity(text, expected) -> None:
    assert parse_quantity(text) == expected


# -- uploads ----------------------------------------------------------------------------------

OUTPUTS_SCRIPT = """
cd "$TMP_OUTPUT_DIR"
echo a > a.txt
echo 1 > img1.png
echo 2 > img2.jpg
mkdir sub && echo 3 > sub/img3.png
"""


def test_uploads_follow_oscar_naming_with_prefix_and_suffix(supervisor: Supervisor, store: FakeStore) -> None:
    service = make_service(
        OUTPUTS_SCRIPT,
        output=[
            {"storage_provider": "minio.default", "path": "bucket/out/dir"},
            {"storage_provider": "minio", "path": "b2", "prefix": ["img"], "suffix": [".png"]},
            {"storage_provider": "minio", "path": "b3/x/", "suffix": [".jpg", ".txt"]},
        ],
        log_level="INFO",
    )
    result = supervisor.run(service, b64(b"in"))
    assert result.succeeded, result.logs
    assert sorted(store.objects) == [
        ("b2", "img1.png"),
        ("b3", "x/a.txt"),
        ("b3", "x/img2.jpg"),
        ("bucket", "out/dir/a.txt"),
        ("bucket", "out/dir/img1.png"),
        ("bucket", "out/dir/img2.jpg"),
        ("bucket", "out/dir/sub/img3.png"),
    ]
    assert store.objects[("bucket", "out/dir/sub/img3.png")] == b"3\n"
    assert "Uploading file 'sub/img3.png' to bucket 'bucket' with key 'out/dir/sub/img3.png'" in result.logs


def test_unknown_output_provider_fails_but_uploads_the_rest(supervisor: Supervisor, store: FakeStore) -> None:
    service = make_service(
        OUTPUTS_SCRIPT,
        output=[
            {"storage_provider": "s3.nowhere", "path": "lost"},
            {"storage_provider": "minio", "path": "kept", "suffix": [".txt"]},
        ],
        log_level="ERROR",
    )
    result = supervisor.run(service, b64(b"in"))
    assert not result.succeeded and result.exit_code != 0
    assert "s3.nowhere" in result.error
    assert sorted(store.objects) == [("kept", "a.txt")]
    assert " - ERROR - Unknown storage provider 's3.nowhere'" in result.logs


def test_providers_are_resolved_only_when_a_file_needs_them(
    supervisor: Supervisor, resolver: Resolver
) -> None:
    service = make_service("echo no files", output=[{"storage_provider": "s3.nowhere", "path": "lost"}])
    result = supervisor.run(service, b64(b"in"))
    assert result.succeeded
    assert resolver.calls == []


def test_failing_upload_fails_the_invocation(work_dir: Path) -> None:
    class Broken(FakeStore):
        def put_file(self, bucket: str, key: str, path: str) -> None:
            raise ConnectionError("S3 is down")

    supervisor = Supervisor(work_dir, Resolver({"minio": Broken()}), timeout_s=60)
    service = make_service(OUTPUTS_SCRIPT, output=[{"storage_provider": "minio", "path": "b"}])
    result = supervisor.run(service, b64(b"in"))
    assert not result.succeeded and "S3 is down" in result.error


# -- storage events ---------------------------------------------------------------------------


def test_minio_event_downloads_the_object_and_returns_script_output(
    supervisor: Supervisor, store: FakeStore, resolver: Resolver, tmp_path: Path
) -> None:
    store.objects[("bucket", "in/photo 1.jpg")] = b"JPEG"
    event = minio_event("bucket", "in%2Fphoto+1.jpg")
    event_copy = tmp_path / "event.json"
    script = f"""
printf '%s' "$EVENT" > "{event_copy}"
echo "key=$STORAGE_OBJECT_KEY"
echo "time=$EVENT_TIME"
echo "file=$(basename "$INPUT_FILE_PATH")"
echo "content=$(cat "$INPUT_FILE_PATH")"
cp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/"
"""
    service = make_service(
        script,
        input=[{"storage_provider": "minio.default", "path": "bucket/in"}],
        output=[{"storage_provider": "minio.default", "path": "bucket/out"}],
    )
    result = supervisor.run(service, json.dumps(event).encode(), mode="async", job_name="demo-1")
    assert result.succeeded, result.logs
    assert result.output_kind == "text"  # storage events never return the files
    lines = result.response.splitlines()
    expected = {"key=in/photo 1.jpg", "time=2026-01-01T10:00:00.000Z", "file=photo 1.jpg", "content=JPEG"}
    assert expected <= set(lines)
    assert json.loads(event_copy.read_text()) == event
    assert store.objects[("bucket", "out/photo 1.jpg")] == b"JPEG"
    assert resolver.calls[0] == "minio.default"


def test_storage_event_with_missing_object_fails_cleanly(supervisor: Supervisor, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    service = make_service(f'touch "{marker}"', input=[{"storage_provider": "minio", "path": "bucket/in"}])
    result = supervisor.run(service, json.dumps(minio_event("bucket", "in/nothing")).encode())
    assert not result.succeeded and " - CRITICAL - " in result.logs
    assert not marker.exists()


def test_file_stage_in_skips_the_download(supervisor: Supervisor, store: FakeStore) -> None:
    service = make_service(
        'echo "input=[${INPUT_FILE_PATH-unset}] key=$STORAGE_OBJECT_KEY"',
        file_stage_in=True,
        input=[{"storage_provider": "minio", "path": "bucket/in"}],
    )
    result = supervisor.run(service, json.dumps(minio_event("bucket", "in/absent.txt")).encode())
    assert result.succeeded, result.logs
    assert result.response == "input=[unset] key=in/absent.txt\n\n"
    assert store.downloads == []


def test_delegated_event_uses_its_storage_provider(work_dir: Path) -> None:
    remote = FakeStore({("bkt", "in/f.txt"): b"remote data"})
    resolver = Resolver({"minio.origin": remote})
    supervisor = Supervisor(work_dir, resolver, timeout_s=60)
    body = json.dumps(
        {"storage_provider": "minio.origin", "event": json.dumps(minio_event("bkt", "in/f.txt"))}
    )
    result = supervisor.run(make_service('cat "$INPUT_FILE_PATH"'), body.encode())
    assert result.succeeded, result.logs
    assert result.response == "remote data\n"
    assert resolver.calls == ["minio.origin"]


def test_dcache_event_without_a_store_runs_with_the_key(supervisor: Supervisor) -> None:
    event = {"event": {"name": "file.dat", "mask": ["IN_CREATE"]}, "subscription": "https://dcache/sub/1"}
    service = make_service(
        'echo "key=$STORAGE_OBJECT_KEY input=[${INPUT_FILE_PATH-unset}]"',
        input=[{"storage_provider": "webdav.dcache", "path": "/data/in"}],
        log_level="WARNING",
    )
    result = supervisor.run(service, json.dumps(event).encode())
    assert result.succeeded, result.logs
    assert "key=data/in/file.dat input=[unset]" in result.response
    assert "No dCache storage available" in result.logs


def test_run_never_raises_even_when_the_resolver_does(work_dir: Path) -> None:
    def explode(provider: str, service: dict):
        raise RuntimeError("resolver bug")

    supervisor = Supervisor(work_dir, explode, timeout_s=60)
    service = make_service("echo x", input=[{"storage_provider": "minio", "path": "b/in"}])
    result = supervisor.run(service, json.dumps(minio_event("b", "in/k")).encode())
    assert not result.succeeded and "resolver bug" in result.logs


def test_unwritable_work_dir_is_reported_not_raised(tmp_path: Path, resolver: Resolver) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = Supervisor(blocker / "work", resolver, timeout_s=60).run(make_service("echo x"), b64(b"x"))
    assert not result.succeeded and "Supervisor error" in result.logs


def test_concurrent_invocations_are_isolated(supervisor: Supervisor) -> None:
    results: dict[int, InvocationResult] = {}

    def call(index: int) -> None:
        script = 'cd "$TMP_OUTPUT_DIR"; { cat "$INPUT_FILE_PATH"; echo; ls "$TMP_INPUT_DIR" | wc -l; } > out'
        results[index] = supervisor.run(make_service(script), b64(str(index).encode()))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for index, result in results.items():
        first, count = base64.b64decode(result.response).split()
        assert first == str(index).encode() and count == b"1"
    assert len(results) == 4
