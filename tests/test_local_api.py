"""Contract tests of the local runtime's OSCAR REST API with raw HTTP (reference §1.2, §6).

These check what clients actually look at: status codes, empty bodies, headers, Go-style
JSON bytes and key order, redirects, tolerant decoding.
"""

from __future__ import annotations

import base64
import json
import re

import boto3
import pytest
import requests
from botocore.config import Config

from bridge.local.runtime import LocalRuntime
from tests.support.local_runtime import unique_name
from tests.support.ports import wait_until

ECHO_ORDER = [
    "name",
    "cluster_id",
    "memory",
    "cpu",
    "total_memory",
    "total_cpu",
    "enable_gpu",
    "enable_sgx",
    "image_prefetch",
    "synchronous",
    "log_level",
    "image",
    "alpine",
    "token",
    "file_stage_in",
    "input",
    "output",
    "script",
    "expose",
    "environment",
    "annotations",
    "labels",
    "vo",
    "storage_providers",
    "owner",
    "interlink_node_name",
    "visibility",
    "allowed_users",
    "isolation_level",
    "bucket_list",
    "mount",
    "volume_status",
]


def _service(name: str, script: str = "cat $INPUT_FILE_PATH\n", **extra) -> dict:
    svc = {
        "name": name,
        "image": "ghcr.io/grycap/cowsay",
        "script": script,
        "log_level": "CRITICAL",
        "input": [{"storage_provider": "minio.default", "path": f"{name}/in"}],
        "output": [{"storage_provider": "minio.default", "path": f"{name}/out"}],
    }
    svc.update(extra)
    return svc


@pytest.fixture
def service(local_runtime: LocalRuntime, local_admin: requests.Session):
    """A created service (CRITICAL log level: clean bodies); deleted afterwards."""
    name = unique_name("api")
    resp = local_admin.post(local_runtime.endpoint + "/system/services", json=_service(name))
    assert resp.status_code == 201, resp.text
    svc = local_admin.get(f"{local_runtime.endpoint}/system/services/{name}").json()
    yield svc
    local_admin.delete(f"{local_runtime.endpoint}/system/services/{name}")


def _s3(rt: LocalRuntime):
    p = rt.minio_provider
    return boto3.client(
        "s3",
        endpoint_url=p["endpoint"],
        aws_access_key_id=p["access_key"],
        aws_secret_access_key=p["secret_key"],
        region_name=p["region"],
        config=Config(s3={"addressing_style": "path"}),
    )


def _buckets(rt: LocalRuntime) -> set[str]:
    return {b["Name"] for b in _s3(rt).list_buckets().get("Buckets", [])}


# -- basics ----------------------------------------------------------------------------------------


def test_health_is_plain_ok(local_runtime: LocalRuntime) -> None:
    resp = requests.get(local_runtime.endpoint + "/health", timeout=10)
    assert resp.status_code == 200
    assert resp.text == "Ok"
    assert resp.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("auth", [None, ("oscar", "wrong"), ("nobody", "x")])
def test_system_routes_need_admin_basic(local_runtime: LocalRuntime, auth) -> None:
    for path in ("/system/info", "/system/config", "/system/services", "/system/buckets"):
        resp = requests.get(local_runtime.endpoint + path, auth=auth, timeout=10)
        assert resp.status_code == 401, path
        assert resp.content == b""
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="Authorization Required"'


def test_info_says_local_processes(local_runtime: LocalRuntime, local_admin: requests.Session) -> None:
    resp = local_admin.get(local_runtime.endpoint + "/system/info")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert resp.text.startswith('{"version":"v4.1.2-local",')
    backend = resp.json()["serverless_backend"]
    assert backend["name"] == "local-processes"
    assert "not used" in backend["note"]


def test_config_has_a_usable_minio_provider(
    local_runtime: LocalRuntime, local_admin: requests.Session
) -> None:
    resp = local_admin.get(local_runtime.endpoint + "/system/config")
    assert resp.status_code == 200
    assert resp.text.startswith('{"config":{"name":"oscar",')
    data = resp.json()
    assert list(data) == ["config", "minio_provider", "allowed_image_repositories"]
    provider = data["minio_provider"]
    assert list(provider) == ["endpoint", "verify", "access_key", "secret_key", "region"]
    s3 = boto3.client(
        "s3",
        endpoint_url=provider["endpoint"],
        aws_access_key_id=provider["access_key"],
        aws_secret_access_key=provider["secret_key"],
        region_name=provider["region"],
    )
    assert "Buckets" in s3.list_buckets()


def test_trailing_slash_redirects(local_runtime: LocalRuntime, local_admin: requests.Session) -> None:
    resp = local_admin.get(local_runtime.endpoint + "/system/config/?x=1", allow_redirects=False)
    assert resp.status_code == 301
    assert resp.headers["Location"].endswith("/system/config?x=1")
    assert local_admin.get(local_runtime.endpoint + "/system/config/").json()["config"]["name"] == "oscar"
    resp = local_admin.post(local_runtime.endpoint + "/system/services/", data=b"{}", allow_redirects=False)
    assert resp.status_code == 307
    assert resp.headers["Location"].endswith("/system/services")


def test_unknown_routes_are_gin_404(local_runtime: LocalRuntime, local_admin: requests.Session) -> None:
    for method, path in (("GET", "/nope"), ("GET", "/system/nope"), ("PATCH", "/system/services")):
        resp = local_admin.request(method, local_runtime.endpoint + path)
        assert resp.status_code == 404, path
        assert resp.text == "404 page not found"


# -- services ----------------------------------------------------------------------------------------


def test_service_lifecycle_with_tolerant_decoding(
    local_runtime: LocalRuntime, local_admin: requests.Session
) -> None:
    name = unique_name("tol")
    # oscar-cli v3.3 shapes: capital Variables, scalar nodePort, nulls; plus an unknown key,
    # a numeric cpu, odd key case and an odd Content-Type, sent chunked.
    raw = {
        "Name": name,
        "image": "alpine",
        "Script": "echo '<&>'\n",
        "cpu": 1,
        "environment": {"Variables": {"MODE": "fast"}, "secrets": {"API_KEY": "s3cr3t"}},
        "expose": {"nodePort": 0, "api_port": 0},
        "input": [{"storage_provider": "minio", "path": "in"}],
        "output": None,
        "annotations": None,
        "image_pull_secrets": None,
        "replicas": None,
        "something_new": {"x": 1},
        "token": "ignored",
    }
    body = json.dumps(raw).encode()
    resp = local_admin.post(
        local_runtime.endpoint + "/system/services",
        data=iter([body[:10], body[10:]]),
        headers={"Content-Type": "text/json"},
    )
    assert resp.status_code == 201, resp.text
    assert resp.content == b""

    resp = local_admin.get(f"{local_runtime.endpoint}/system/services/{name}")
    assert resp.status_code == 200
    text = resp.text
    assert text.startswith(f'{{"name":"{name}","cluster_id":"",')
    assert "\\u003c\\u0026\\u003e" in text  # Go's HTML escaping
    svc = resp.json()
    assert [k for k in svc if k in ECHO_ORDER] == ECHO_ORDER
    assert re.fullmatch(r"[0-9a-f]{64}", svc["token"])
    assert svc["cpu"] == "1" and svc["memory"] == "256Mi" and svc["log_level"] == "INFO"
    assert svc["visibility"] == "private" and svc["owner"] == "cluster_admin"
    assert svc["labels"]["oscar_service"] == name
    assert svc["environment"] == {"variables": {"MODE": "fast"}, "secrets": {"API_KEY": ""}}
    assert svc["input"] == [{"storage_provider": "minio", "path": f"{name}/in"}]
    assert svc["volume_status"] == {"enabled": False}
    default = svc["storage_providers"]["minio"]["default"]
    assert default["access_key"] == default["secret_key"] == "hidden"
    assert default["endpoint"] == local_runtime.minio_provider["endpoint"]
    assert name in _buckets(local_runtime)

    listed = local_admin.get(local_runtime.endpoint + "/system/services")
    assert listed.status_code == 200
    assert f'"oscar_service":"{name}"' in listed.text

    dup = local_admin.post(local_runtime.endpoint + "/system/services", json=raw)
    assert dup.status_code == 409

    update = dict(raw, memory="1Gi")
    resp = local_admin.put(local_runtime.endpoint + "/system/services", data=json.dumps(update))
    assert resp.status_code == 204, resp.text
    after = local_admin.get(f"{local_runtime.endpoint}/system/services/{name}").json()
    assert after["memory"] == "1Gi"
    assert after["token"] == svc["token"]  # kept on update (OSCAR >= 4.0)

    missing = dict(raw, Name=unique_name("missing"))
    assert local_admin.put(local_runtime.endpoint + "/system/services", json=missing).status_code == 404

    resp = local_admin.delete(f"{local_runtime.endpoint}/system/services/{name}")
    assert resp.status_code == 204
    assert local_admin.get(f"{local_runtime.endpoint}/system/services/{name}").status_code == 404
    assert name not in _buckets(local_runtime)
    assert local_admin.delete(f"{local_runtime.endpoint}/system/services/{name}").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        json.dumps({"name": "x-only"}).encode(),
        json.dumps({"name": "Bad_Name", "image": "i", "script": "s"}).encode(),
        json.dumps({"name": "okname", "image": "i", "script": "s", "enable_gpu": "yes"}).encode(),
    ],
)
def test_invalid_services_are_400(local_runtime: LocalRuntime, local_admin: requests.Session, body) -> None:
    resp = local_admin.post(local_runtime.endpoint + "/system/services", data=body)
    assert resp.status_code == 400
    assert resp.text.startswith("The service specification is not valid: ")


def test_missing_service_is_empty_404(local_runtime: LocalRuntime, local_admin: requests.Session) -> None:
    resp = local_admin.get(local_runtime.endpoint + "/system/services/does-not-exist")
    assert resp.status_code == 404
    assert resp.content == b""


# -- /run ----------------------------------------------------------------------------------------------


def test_run_auth_rules(local_runtime: LocalRuntime, service: dict) -> None:
    url = f"{local_runtime.endpoint}/run/{service['name']}"
    body = base64.b64encode(b"hello")
    assert requests.post(url, data=body, timeout=30).status_code == 401
    assert requests.post(url, data=body, headers={"Authorization": "Bearer " + "0" * 64}).status_code == 401
    missing = f"{local_runtime.endpoint}/run/no-such-service"
    assert (
        requests.post(missing, data=body, headers={"Authorization": "Bearer " + "0" * 64}).status_code == 401
    )
    admin = (local_runtime.user, local_runtime.password)
    assert requests.post(missing, data=body, auth=admin, timeout=30).status_code == 404
    resp = requests.post(url, data=body, auth=admin, timeout=30)  # documented extension
    assert resp.status_code == 200
    assert resp.text == "hello\n"


def test_run_sync_round_trip(local_runtime: LocalRuntime, service: dict) -> None:
    url = f"{local_runtime.endpoint}/run/{service['name']}"
    headers = {"Authorization": "Bearer " + service["token"], "Content-Type": "application/x-test"}
    resp = requests.post(url, data=base64.b64encode(b"hi there"), headers=headers, timeout=60)
    assert resp.status_code == 200
    assert resp.text == "hi there\n"
    assert resp.headers["Content-Type"] == "application/x-test"
    assert float(resp.headers["X-Duration-Seconds"]) >= 0
    assert resp.headers["X-Oscar-Bridge-Output"] == "text"

    # A JSON object body becomes the input file, re-serialised; sent chunked here.
    payload = json.dumps({"message": "Hello"}).encode()
    resp = requests.post(url, data=iter([payload]), headers={"Authorization": "Bearer " + service["token"]})
    assert resp.status_code == 200
    assert json.loads(resp.text) == {"message": "Hello"}


def test_run_returns_output_file_as_base64(
    local_runtime: LocalRuntime, local_admin: requests.Session
) -> None:
    name = unique_name("file")
    script = 'cp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/result.bin"\n'
    resp = local_admin.post(local_runtime.endpoint + "/system/services", json=_service(name, script))
    assert resp.status_code == 201
    try:
        data = bytes(range(256)) * 4
        resp = local_admin.post(f"{local_runtime.endpoint}/run/{name}", data=base64.b64encode(data))
        assert resp.status_code == 200
        assert resp.headers["X-Oscar-Bridge-Output"] == "file"
        assert base64.b64decode(resp.text) == data
        # The sync call also uploaded the output to the service's output path.
        got = _s3(local_runtime).get_object(Bucket=name, Key="out/result.bin")["Body"].read()
        assert got == data
    finally:
        local_admin.delete(f"{local_runtime.endpoint}/system/services/{name}")


def test_failing_script_is_500_with_exit_status(
    local_runtime: LocalRuntime, local_admin: requests.Session
) -> None:
    name = unique_name("fail")
    resp = local_admin.post(
        local_runtime.endpoint + "/system/services", json=_service(name, "echo broken\nexit 3\n")
    )
    assert resp.status_code == 201
    try:
        resp = local_admin.post(f"{local_runtime.endpoint}/run/{name}", data=base64.b64encode(b"x"))
        assert resp.status_code == 500
        assert resp.text.startswith("exit status 3\n")
        assert "broken" in resp.text
    finally:
        local_admin.delete(f"{local_runtime.endpoint}/system/services/{name}")


def test_timeout_is_408(runtime_factory) -> None:
    rt = runtime_factory(timeout_s=1.0)
    client = requests.Session()
    client.auth = (rt.user, rt.password)
    name = unique_name("slow")
    svc = {"name": name, "image": "x", "script": "sleep 30\n"}
    assert client.post(rt.endpoint + "/system/services", json=svc).status_code == 201
    resp = client.post(f"{rt.endpoint}/run/{name}", data=base64.b64encode(b"x"), timeout=60)
    assert resp.status_code == 408
    assert resp.text == "Killed process."


# -- /job and /system/logs -------------------------------------------------------------------------------


def test_async_job_list_logs_delete(
    local_runtime: LocalRuntime, local_admin: requests.Session, service: dict
) -> None:
    name = service["name"]
    url = f"{local_runtime.endpoint}/job/{name}"
    assert requests.head(url, timeout=10).status_code == 200  # MinIO's webhook probe
    job = f"{name}-my-job-1"
    resp = requests.post(
        url,
        data=base64.b64encode(b"async hello"),
        headers={"Authorization": "Bearer " + service["token"], "X-Delegated-Job-ID": job},
        timeout=30,
    )
    assert resp.status_code == 201
    assert resp.content == b""
    logs_url = f"{local_runtime.endpoint}/system/logs/{name}"

    def finished() -> bool:
        info = local_admin.get(logs_url).json()["jobs"].get(job, {})
        return info.get("status") == "Succeeded"

    assert wait_until(finished, timeout=60)
    listing = local_admin.get(logs_url)
    assert listing.status_code == 200
    info = listing.json()["jobs"][job]
    assert list(info) == ["status", "creation_time", "start_time", "finish_time"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["finish_time"])

    resp = local_admin.get(f"{logs_url}/{job}")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert "async hello" in resp.text

    dup = requests.post(
        url,
        data=b"",
        headers={"Authorization": "Bearer " + service["token"], "X-Delegated-Job-ID": job},
        timeout=30,
    )
    assert dup.status_code == 409

    assert local_admin.delete(f"{logs_url}/{job}").status_code == 204
    assert local_admin.get(f"{logs_url}/{job}").status_code == 404
    assert local_admin.delete(f"{logs_url}/{job}").status_code == 404

    # Without a delegated id the job is named <svc>-<uuid4>; DELETE ?all=true removes it.
    resp = requests.post(
        url, data=base64.b64encode(b"x"), headers={"Authorization": "Bearer " + service["token"]}
    )
    assert resp.status_code == 201
    jobs = local_admin.get(logs_url).json()["jobs"]
    assert len(jobs) == 1
    assert re.fullmatch(re.escape(name) + r"-[0-9a-f-]{36}", next(iter(jobs)))
    assert local_admin.delete(logs_url, params={"all": "true"}).status_code == 204
    assert wait_until(lambda: local_admin.get(logs_url).json()["jobs"] == {}, timeout=30)
    assert local_admin.get(local_runtime.endpoint + "/system/logs/no-such-service").status_code == 404


def test_job_needs_a_token(local_runtime: LocalRuntime, service: dict) -> None:
    resp = requests.post(f"{local_runtime.endpoint}/job/{service['name']}", data=b"x", timeout=10)
    assert resp.status_code == 401


# -- buckets ------------------------------------------------------------------------------------------


def test_buckets_create_list_presign_delete(
    local_runtime: LocalRuntime, local_admin: requests.Session
) -> None:
    name = unique_name("bkt")
    base = local_runtime.endpoint + "/system/buckets"
    assert local_admin.post(base, data=json.dumps({"bucket_name": name})).status_code == 201
    assert local_admin.post(base, json={"bucket_name": name}).status_code == 400
    assert local_admin.post(base, json={"bucket_name": f"{name}/folder"}).status_code == 201
    listing = local_admin.get(base)
    assert listing.status_code == 200
    assert f'"bucket_name":"{name}","visibility":"private"' in listing.text

    up = local_admin.post(f"{base}/{name}/presign", json={"object_key": "a/b.txt", "operation": "upload"})
    assert up.status_code == 200
    signed = up.json()
    assert list(signed)[:5] == ["object_key", "operation", "method", "url", "expires_at"]
    assert signed["method"] == "PUT"
    assert requests.put(signed["url"], data=b"payload", timeout=30).status_code == 200
    down = local_admin.post(
        f"{base}/{name}/presign", json={"object_key": "a/b.txt", "operation": "download", "expires_in": 60}
    ).json()
    assert requests.get(down["url"], timeout=30).content == b"payload"
    bad = local_admin.post(f"{base}/{name}/presign", json={"object_key": "k", "operation": "steal"})
    assert bad.status_code == 400

    detail = local_admin.get(f"{base}/{name}").json()
    keys = {o["object_name"] for o in detail["objects"]}
    assert "a/b.txt" in keys
    assert detail["is_truncated"] is False

    assert local_admin.delete(f"{base}/{name}").status_code == 204
    assert local_admin.delete(f"{base}/{name}").status_code == 404
    assert name not in _buckets(local_runtime)


def test_go_json_escaping_is_byte_exact() -> None:
    from bridge.local import gojson

    assert (
        gojson.dumps({"b": "<a&b>", "a": "ñ", "n": None})
        == '{"b":"\\u003ca\\u0026b\\u003e","a":"ñ","n":null}'
    )
    assert gojson.gomap({"b": 1, "a": 2}) == {"a": 2, "b": 1}
    assert list(gojson.gomap({"b": 1, "a": 2})) == ["a", "b"]


def test_status_has_one_node(local_runtime: LocalRuntime, local_admin: requests.Session) -> None:
    resp = local_admin.get(local_runtime.endpoint + "/system/status")
    assert resp.status_code == 200
    assert '"nodes_count":1' in resp.text
    assert resp.json()["cluster"]["metrics"]["cpu"]["total_schedulable_cores"] >= 1


def test_update_with_blank_secrets_keeps_their_values(
    local_runtime: LocalRuntime, local_admin: requests.Session
) -> None:
    """get -> edit -> apply must not wipe secrets, which every echo blanks."""
    name = unique_name("sec")
    svc = _service(name, script='printf "%s" "$API_KEY"\n', environment={"secrets": {"API_KEY": "s3cr3t"}})
    base = local_runtime.endpoint + "/system/services"
    assert local_admin.post(base, json=svc).status_code == 201
    try:
        echoed = local_admin.get(f"{base}/{name}").json()
        assert echoed["environment"]["secrets"] == {"API_KEY": ""}
        echoed["environment"]["variables"] = {"MODE": "edited"}
        assert local_admin.put(base, json=echoed).status_code == 204

        headers = {"Authorization": "Bearer " + echoed["token"]}
        resp = requests.post(
            f"{local_runtime.endpoint}/run/{name}", data=base64.b64encode(b"x"), headers=headers
        )
        assert resp.status_code == 200
        assert resp.text == "s3cr3t\n"
    finally:
        local_admin.delete(f"{base}/{name}")
