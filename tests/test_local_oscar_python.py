"""The official oscar-python 2.2.0 client, unmodified, against the local runtime.

This is the issue's "Done when": the runtime must look like OSCAR to OSCAR's own client,
from an FDL file to a storage-triggered job whose output is downloaded.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
import requests
from oscar_python.client import Client

from bridge.local.runtime import LocalRuntime
from tests.support.local_runtime import unique_name
from tests.support.ports import wait_until

SCRIPT = """#!/bin/sh
# Copy the input to an output file named after it: sync calls answer its base64,
# storage-triggered jobs upload it to the output path.
FILE_NAME=$(basename "$INPUT_FILE_PATH")
cp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/$FILE_NAME.out"
echo "processed $FILE_NAME"
"""


@pytest.fixture(scope="module")
def client(local_runtime: LocalRuntime) -> Client:
    return Client(
        {
            "cluster_id": "local",
            "endpoint": local_runtime.endpoint,
            "user": local_runtime.user,
            "password": local_runtime.password,
            "ssl": False,
        }
    )


@pytest.fixture(scope="module")
def service_name(client: Client, tmp_path_factory: pytest.TempPathFactory):
    """A service created from an FDL file (script path relative to it, numeric cpu)."""
    name = unique_name("py")
    folder = tmp_path_factory.mktemp("fdl")
    (folder / "script.sh").write_text(SCRIPT)
    (folder / "fdl.yaml").write_text(
        f"""functions:
  oscar:
  - local:
      name: {name}
      image: ghcr.io/grycap/alpine
      script: script.sh
      cpu: 0.5
      memory: 128Mi
      log_level: CRITICAL
      environment:
        variables:
          MODE: test
      input:
      - storage_provider: minio.default
        path: {name}/in
      output:
      - storage_provider: minio.default
        path: {name}/out
"""
    )
    resp = client.create_service(str(folder / "fdl.yaml"))
    assert resp.status_code == 201
    yield name
    # Normally removed by test_remove_service_deletes_buckets; clean up if it failed early.
    requests.delete(
        f"{client.endpoint}/system/services/{name}", auth=(client.user, client.password), timeout=30
    )


def test_health_info_config(client: Client) -> None:
    assert client.health_check().text == "Ok"
    assert client.get_cluster_info().json()["version"].endswith("-local")
    assert client.get_cluster_config().json()["config"]["name"] == "oscar"


def test_list_and_get(client: Client, service_name: str) -> None:
    names = [svc["name"] for svc in client.list_services().json()]
    assert service_name in names
    svc = client.get_service(service_name).json()
    assert svc["cpu"] == "0.5"
    assert svc["script"] == SCRIPT
    assert svc["environment"]["variables"] == {"MODE": "test"}
    assert len(svc["token"]) == 64
    with pytest.raises(ValueError, match="already present"):
        client.create_service({"name": service_name, "image": "x", "script": "x"})


def test_run_sync_text(client: Client, service_name: str, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    resp = client.run_service(service_name, input="hello from oscar-python", output=str(out))
    assert resp.status_code == 200
    assert out.read_text() == "hello from oscar-python"


def test_run_sync_binary_file_round_trip(client: Client, service_name: str, tmp_path: Path) -> None:
    data = os.urandom(4096) + bytes(range(256))
    src = tmp_path / "input.bin"
    src.write_bytes(data)
    out = tmp_path / "output.bin"
    resp = client.run_service(service_name, input=str(src), output=str(out))
    assert resp.status_code == 200
    assert out.read_bytes() == data


def test_run_sync_json(client: Client, service_name: str) -> None:
    # oscar-python base64-encodes strings, JSON included; the script sees the JSON text.
    payload = json.dumps({"message": "Hello there"})
    resp = client.run_service(service_name, input=payload)
    assert resp.status_code == 200
    assert json.loads(base64.b64decode(resp.text)) == {"message": "Hello there"}


def test_run_async_list_jobs_and_logs(client: Client, service_name: str) -> None:
    before = set(client.list_jobs(service_name).json()["jobs"])
    resp = client.run_service(service_name, input="async input", async_call=True)
    assert resp.status_code == 201

    def new_jobs() -> dict:
        jobs = client.list_jobs(service_name).json()["jobs"]
        return {k: v for k, v in jobs.items() if k not in before}

    assert wait_until(lambda: any(v["status"] == "Succeeded" for v in new_jobs().values()), timeout=60)
    (job,) = new_jobs()
    assert job.startswith(service_name + "-")
    logs = client.get_job_logs(service_name, job).text
    assert "processed event-file-" in logs


def test_storage_trigger_and_download(client: Client, service_name: str, tmp_path: Path) -> None:
    storage = client.create_storage_client(service_name)
    src = tmp_path / "photo.dat"
    data = os.urandom(2048)
    src.write_bytes(data)
    storage.upload_file("minio.default", str(src), f"{service_name}/in")

    down = tmp_path / "down"
    down.mkdir()

    def downloaded() -> bool:
        try:
            storage.download_file("minio.default", str(down), f"{service_name}/out/photo.dat.out")
        except Exception:
            return False
        return (down / "photo.dat.out").read_bytes() == data

    assert wait_until(downloaded, timeout=60, interval=0.5)
    jobs = client.list_jobs(service_name).json()["jobs"]
    triggered = [job for job in jobs if "processed photo.dat" in client.get_job_logs(service_name, job).text]
    assert len(triggered) == 1  # the output in the same bucket did not re-trigger


def test_remove_service_deletes_buckets(
    client: Client, service_name: str, local_runtime: LocalRuntime
) -> None:
    assert client.remove_service(service_name).status_code == 204
    assert service_name not in [svc["name"] for svc in client.list_services().json()]
    buckets = client.list_buckets().json() or []
    assert service_name not in [b["bucket_name"] for b in buckets]
