"""The bridge's files API over real HTTP, with the embedded local runtime as cluster `local`.

A storage-triggered word-count service is applied through the bridge; files are
streamed into its input folder (which runs it), outputs are listed, downloaded and
presigned, and every path that would leave the service's own folders is refused.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bridge.server.serve import BridgeServer
from bridge.settings import Settings
from tests.support.ports import free_port, wait_until

SERVICE = "files-wc"
BUCKET = "files-wc"
SCRIPT = """#!/bin/sh
name=$(basename "$INPUT_FILE_PATH")
wc -w < "$INPUT_FILE_PATH" | tr -d ' ' > "$TMP_OUTPUT_DIR/$name.count"
"""
DEFINITION = {
    "name": SERVICE,
    "image": "local",
    "cpu": "0.5",
    "memory": "256Mi",
    "script": SCRIPT,
    "input": [{"storage_provider": "minio.default", "path": f"{BUCKET}/in"}],
    "output": [{"storage_provider": "minio.default", "path": f"{BUCKET}/out"}],
}
NO_INPUT = {**DEFINITION, "name": "files-noinput", "input": [], "output": []}


class Api:
    """requests.Session bound to the bridge's base URL and bearer token."""

    def __init__(self, server: BridgeServer) -> None:
        self.server = server
        self.base = server.url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {server.token}"

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 120)
        return self.session.request(method, self.base + path, **kwargs)

    def svc(self, method: str, path: str, service: str = SERVICE, **kwargs: Any) -> requests.Response:
        return self(method, f"/api/v1/clusters/local/services/{service}{path}", **kwargs)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data = tmp_path_factory.mktemp("bridge-files")
    settings = Settings(data_dir=data, port=free_port(), poll_interval_s=0.2)
    server = BridgeServer(settings)
    server.start()
    try:
        client = Api(server)
        for definition in (DEFINITION, NO_INPUT):
            resp = client("POST", "/api/v1/clusters/local/services", json=definition)
            assert resp.status_code in (200, 201), resp.text
        yield client
    finally:
        server.stop()


def wait_for_output(api: Api, key: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def present() -> bool:
        resp = api.svc("GET", "/outputs")
        for obj in resp.json()["outputs"]:
            if obj["key"] == key:
                found.update(obj)
                return True
        return False

    assert wait_until(present, timeout=180, interval=0.5), f"output {key} never appeared"
    return found


def test_streamed_upload_and_download_round_trip(api: Api) -> None:
    payload = os.urandom(6 * 1024 * 1024 + 123)

    def chunks() -> Iterator[bytes]:  # a generator body: chunked transfer, no Content-Length
        for i in range(0, len(payload), 256 * 1024):
            yield payload[i : i + 256 * 1024]

    resp = api.svc("PUT", "/inputs/blobs/big.bin", data=chunks())
    assert resp.status_code == 201, resp.text
    assert resp.json() == {
        "bucket": BUCKET,
        "key": "in/blobs/big.bin",
        "size": len(payload),
        "path": f"{BUCKET}/in/blobs/big.bin",
    }
    with api.svc("GET", f"/outputs/{BUCKET}/in/blobs/big.bin", stream=True) as down:
        assert down.status_code == 200
        assert int(down.headers["Content-Length"]) == len(payload)
        digest = hashlib.sha256()
        for chunk in down.iter_content(64 * 1024):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(payload).hexdigest()


def test_upload_triggers_service_and_outputs_are_listed_and_downloaded(api: Api) -> None:
    resp = api.svc(
        "PUT", "/inputs/words.txt", data=b"one two three four", headers={"Content-Type": "text/plain"}
    )
    assert resp.status_code == 201, resp.text
    obj = wait_for_output(api, "out/words.txt.count")
    assert obj["bucket"] == BUCKET and obj["path"] == f"{BUCKET}/out/words.txt.count" and obj["size"] > 0
    assert obj["etag"] and obj["last_modified"].endswith("Z")
    down = api.svc("GET", f"/outputs/{BUCKET}/out/words.txt.count")
    assert down.status_code == 200 and down.content.strip() == b"4"
    only = api.svc("GET", "/outputs", params={"prefix": "words"}).json()["outputs"]
    assert [o["key"] for o in only] == ["out/words.txt.count"]
    assert api.svc("GET", "/outputs", params={"prefix": "nothing-like-this"}).json() == {"outputs": []}

    # The job that produced it, and its outputs by the time-window heuristic.
    jobs = dict(api.server.local.client().iter_jobs(SERVICE))
    assert wait_until(
        lambda: any(
            info.get("status") == "Succeeded"
            for info in dict(api.server.local.client().iter_jobs(SERVICE)).values()
        ),
        timeout=180,
    )
    jobs = dict(api.server.local.client().iter_jobs(SERVICE))
    keys_per_job = {
        name: [o["key"] for o in api.svc("GET", f"/jobs/{name}/outputs").json()["outputs"]]
        for name, info in jobs.items()
        if info.get("status") == "Succeeded"
    }
    assert any("out/words.txt.count" in keys for keys in keys_per_job.values()), keys_per_job
    missing = api.svc("GET", "/jobs/files-wc-no-such-job/outputs")
    assert missing.status_code == 404 and "job" in missing.json()["error"]


def test_presigned_download_and_upload(api: Api) -> None:
    assert api.svc("PUT", "/inputs/presign-src.txt", data=b"alpha beta").status_code == 201
    resp = api.svc("POST", "/presign", json={"path": f"{BUCKET}/in/presign-src.txt", "expires_in": 60})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["method"] == "GET" and body["expires_in"] == 60
    assert requests.get(body["url"], timeout=60).content == b"alpha beta"

    up = api.svc(
        "POST", "/presign", json={"path": f"{BUCKET}/in/presigned.txt", "operation": "upload"}
    ).json()
    assert up["method"] == "PUT" and up["expires_in"] == 900
    assert requests.put(up["url"], data=b"via presigned url", timeout=60).status_code == 200
    back = api.svc("GET", f"/outputs/{BUCKET}/in/presigned.txt")
    assert back.status_code == 200 and back.content == b"via presigned url"


def _error(resp: requests.Response, status: int) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"].startswith("application/json")
    return resp.json()["error"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/outputs/other-bucket/out/x", "outside"),  # another bucket
        (f"/outputs/{BUCKET}/outside/x", "outside"),  # same bucket, not a service folder
        (f"/outputs/{BUCKET}/out2/x", "outside"),  # sibling prefix of out/
        (f"/outputs/{BUCKET}/out/a/%2E%2E/%2E%2E/secret", ".."),  # traversal
    ],
)
def test_downloads_outside_service_paths_are_refused(api: Api, path: str, field: str) -> None:
    assert field in _error(api.svc("GET", path), 400)


def test_missing_object_and_unknown_service(api: Api) -> None:
    assert "not found" in _error(api.svc("GET", f"/outputs/{BUCKET}/out/never-written"), 404)
    assert api.svc("GET", "/outputs", service="no-such-service").status_code == 404
    assert api.svc("PUT", "/inputs/x.txt", service="no-such-service", data=b"x").status_code == 404


def test_bad_uploads(api: Api) -> None:
    assert "input" in _error(api.svc("PUT", "/inputs/x.txt", service="files-noinput", data=b"x"), 400)
    assert "input" in _error(api.svc("PUT", "/inputs/x.txt", params={"input": "7"}, data=b"x"), 400)
    assert "input" in _error(api.svc("PUT", "/inputs/x.txt", params={"input": "first"}, data=b"x"), 400)
    assert ".." in _error(api.svc("PUT", "/inputs/a/%2E%2E/b.txt", data=b"x"), 400)
    assert "'/'" in _error(api.svc("PUT", "/inputs/dir/", data=b"x"), 400)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("not json", "JSON"),
        ({"path": 5}, "path"),
        ({"path": f"{BUCKET}/in/x", "operation": "delete"}, "operation"),
        ({"path": f"{BUCKET}/in/x", "expires_in": 0}, "expires_in"),
        ({"path": f"{BUCKET}/in/x", "expires_in": "60"}, "expires_in"),
        ({"path": "elsewhere/in/x"}, "outside"),
    ],
)
def test_bad_presign_requests(api: Api, body: Any, field: str) -> None:
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    assert field in _error(api.svc("POST", "/presign", **kwargs), 400)
