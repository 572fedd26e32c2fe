"""A restart of the local runtime on the same data dir keeps services, tokens and jobs."""

from __future__ import annotations

import base64
import os
import stat
import uuid

import requests

from tests.support.ports import wait_until


def test_restart_keeps_services_tokens_and_finished_jobs(tmp_path, runtime_factory) -> None:
    name = f"keep-{uuid.uuid4().hex[:8]}"
    svc = {
        "name": name,
        "image": "alpine",
        "script": "cat $INPUT_FILE_PATH\n",
        "log_level": "CRITICAL",
        "input": [{"storage_provider": "minio", "path": f"{name}/in"}],
    }
    first = runtime_factory(tmp_path)
    admin = (first.user, first.password)
    assert stat.S_IMODE(os.stat(tmp_path / "admin-password").st_mode) == 0o600
    assert requests.post(first.endpoint + "/system/services", json=svc, auth=admin).status_code == 201
    token = requests.get(f"{first.endpoint}/system/services/{name}", auth=admin).json()["token"]
    resp = requests.post(
        f"{first.endpoint}/job/{name}",
        data=base64.b64encode(b"before restart"),
        headers={"Authorization": "Bearer " + token},
    )
    assert resp.status_code == 201
    logs_url = f"{first.endpoint}/system/logs/{name}"

    def statuses() -> list[str]:
        return [j["status"] for j in requests.get(logs_url, auth=admin).json()["jobs"].values()]

    assert wait_until(lambda: statuses() == ["Succeeded"], timeout=60)
    (job,) = requests.get(logs_url, auth=admin).json()["jobs"]
    first.stop()

    second = runtime_factory(tmp_path)
    assert second.password == first.password  # the generated password was kept
    admin = (second.user, second.password)
    got = requests.get(f"{second.endpoint}/system/services/{name}", auth=admin)
    assert got.status_code == 200
    assert got.json()["token"] == token
    jobs = requests.get(f"{second.endpoint}/system/logs/{name}", auth=admin).json()["jobs"]
    assert jobs[job]["status"] == "Succeeded"
    logs = requests.get(f"{second.endpoint}/system/logs/{name}/{job}", auth=admin)
    assert "before restart" in logs.text
    resp = requests.post(
        f"{second.endpoint}/run/{name}",
        data=base64.b64encode(b"after restart"),
        headers={"Authorization": "Bearer " + token},
    )
    assert resp.status_code == 200
    assert resp.text == "after restart\n"
    # The service's bucket survived too (same S3 keys, same data dir).
    buckets = requests.get(f"{second.endpoint}/system/buckets", auth=admin).json()
    assert name in [b["bucket_name"] for b in buckets]
