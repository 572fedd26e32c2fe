"""The bridge over real HTTP, with the embedded local runtime as cluster `local`:
clusters, services (FDL YAML and JSON), sync invoke of text / binary / JSON with
byte-exact round trips, async jobs, logs, metrics, and every documented error."""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile
from typing import Any

import pytest
import yaml

from tests.support.bridge import TEST_MAX_BODY_BYTES, BridgeApi, api_for

ECHO = "br-echo"
COPY = "br-copy"
MULTI = "br-multi"
FAIL = "br-fail"

FDL = {
    "functions": {
        "oscar": [
            {
                "local": {
                    "name": ECHO,
                    "image": "local/echo",
                    "cpu": "0.5",
                    "memory": "256Mi",
                    "script": '#!/bin/sh\nprintf "got:"\ncat "$INPUT_FILE_PATH"\n',
                    "environment": {"secrets": {"ECHO_SECRET": "env-secret-value-42"}},
                }
            },
            {
                "local": {
                    "name": COPY,
                    "image": "local/copy",
                    "script": '#!/bin/sh\ncp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/out.bin"\n',
                }
            },
            {
                "elsewhere": {
                    "name": "not-for-local",
                    "image": "x",
                    "script": "#!/bin/sh\necho never\n",
                }
            },
        ]
    }
}
MULTI_JSON = {
    "name": MULTI,
    "image": "local/multi",
    "script": '#!/bin/sh\ncp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/a.txt"\n'
    'echo two > "$TMP_OUTPUT_DIR/b.txt"\n',
}
FAIL_JSON = {
    "name": FAIL,
    "image": "local/fail",
    "script": '#!/bin/sh\necho "the script says no" >&2\nexit 3\n',
}


@pytest.fixture(scope="module")
def api(bridge_api: BridgeApi) -> BridgeApi:
    """The shared bridge with this module's services applied."""
    resp = bridge_api.post(
        "/api/v1/clusters/local/services",
        data=yaml.safe_dump(FDL),
        headers={"Content-Type": "application/yaml"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["applied"] == [
        {"name": ECHO, "action": "created"},
        {"name": COPY, "action": "created"},
    ]
    for definition in (MULTI_JSON, FAIL_JSON):
        resp = bridge_api.post("/api/v1/clusters/local/services", json=definition)
        assert resp.status_code == 200, resp.text
    return bridge_api


def invoke(api: BridgeApi, service: str, **kwargs: Any):
    return api.post(api.service_path(service, "/invoke"), **kwargs)


def assert_error(resp, status: int, **fields: Any) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert isinstance(body.get("error"), str) and body["error"]
    assert "Traceback" not in resp.text
    for key, value in fields.items():
        assert body.get(key) == value, (key, body)
    return body


# ------------------------------------------------------------------------------ access control


def test_healthz_needs_no_token(bridge_server) -> None:
    with api_for(bridge_server, token=None) as anon:
        resp = anon.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


@pytest.mark.parametrize("token", [None, "wrong-token", ""])
@pytest.mark.parametrize("path", ["/api/v1/clusters", "/metrics", "/openapi.json", "/nowhere"])
def test_every_other_call_needs_the_token(bridge_server, token: str | None, path: str) -> None:
    with api_for(bridge_server, token=token or None) as anon:
        if token == "":
            anon.headers["Authorization"] = "Basic dXNlcjpwYXNz"
        resp = anon.get(path)
    assert_error(resp, 401, error="missing or invalid bridge token")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


# ------------------------------------------------------------------------------ clusters


def test_local_cluster_is_registered_with_redacted_credentials(api: BridgeApi, bridge_server) -> None:
    listed = api.get("/api/v1/clusters").json()["clusters"]
    local = next(c for c in listed if c["id"] == "local")
    assert local["auth"] == {"kind": "basic", "user": bridge_server.local.user, "password": "***"}
    assert api.get("/api/v1/clusters/local").json() == local
    check = api.post("/api/v1/clusters/local/check").json()
    assert check["ok"] is True and check["health"] is True
    assert isinstance(check["info"], dict) and "version" in check["info"]


def test_register_get_replace_delete_cluster(api: BridgeApi) -> None:
    body = {
        "id": "other",
        "endpoint": "https://oscar.example.org/",
        "auth": {
            "kind": "oidc",
            "refresh_token": "rt-123456",
            "token_endpoint": "https://idp.example.org/token",
        },
        "verify": False,
    }
    resp = api.post("/api/v1/clusters", json=body)
    assert resp.status_code == 201, resp.text
    assert resp.json() == {
        "id": "other",
        "endpoint": "https://oscar.example.org",
        "auth": {"kind": "oidc", "refresh_token": "***", "token_endpoint": "https://idp.example.org/token"},
        "verify": False,
    }
    assert_error(api.post("/api/v1/clusters", json=body), 409, cluster="other")
    body["auth"] = {"kind": "token", "token": "t" * 64}
    assert api.post("/api/v1/clusters?replace=true", json=body).json()["auth"] == {
        "kind": "token",
        "token": "***",
    }
    assert api.delete("/api/v1/clusters/other").status_code == 204
    assert_error(api.get("/api/v1/clusters/other"), 404, error="unknown cluster 'other'", cluster="other")
    assert_error(api.delete("/api/v1/clusters/other"), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"endpoint": "http://h", "auth": {"kind": "basic", "user": "u", "password": "p"}}, "id"),
        ({"id": "x", "auth": {"kind": "basic", "user": "u", "password": "p"}}, "endpoint"),
        (
            {"id": "x", "endpoint": "ftp://h", "auth": {"kind": "basic", "user": "u", "password": "p"}},
            "endpoint",
        ),
        ({"id": "x", "endpoint": "http://h"}, "auth"),
        ({"id": "x", "endpoint": "http://h", "auth": {"kind": "magic"}}, "auth.kind"),
        ({"id": "x", "endpoint": "http://h", "auth": {"kind": "basic", "user": "u"}}, "auth.password"),
        ({"id": "x", "endpoint": "http://h", "auth": {"kind": "token", "user": "u"}}, "auth.user"),
        (
            {"id": "x", "endpoint": "http://h", "auth": {"kind": "basic", "user": "u", "password": 5}},
            "auth.password",
        ),
        ({"id": "bad id!", "endpoint": "http://h", "auth": {"kind": "token", "token": "t"}}, "id"),
        ({"id": "x", "endpoint": "http://h", "auth": {"kind": "token", "token": "t"}, "colour": 1}, "colour"),
        ({"id": "x", "endpoint": "http://h", "auth": {"kind": "token", "token": "t"}, "verify": 3}, "verify"),
    ],
)
def test_register_cluster_validation_names_the_field(api: BridgeApi, body: dict, field: str) -> None:
    body = assert_error(api.post("/api/v1/clusters", json=body), 400, field=field)
    assert body["error"].startswith(field)
    assert api.get("/api/v1/clusters/x").status_code == 404  # nothing half-written


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"", b"\xff\xfe"])
def test_malformed_json_bodies(api: BridgeApi, raw: bytes) -> None:
    resp = api.post("/api/v1/clusters", data=raw, headers={"Content-Type": "application/json"})
    assert_error(resp, 400, field="body")


# ------------------------------------------------------------------------------ services


def test_services_list_get_and_redaction(api: BridgeApi) -> None:
    names = {s["name"] for s in api.get("/api/v1/clusters/local/services").json()["services"]}
    assert {ECHO, COPY, MULTI, FAIL} <= names and "not-for-local" not in names
    svc = api.get(api.service_path(ECHO)).json()
    assert svc["name"] == ECHO and svc["token"] == "***"
    assert svc["environment"]["secrets"] == {"ECHO_SECRET": "***"}
    assert "env-secret-value-42" not in api.get("/api/v1/clusters/local/services").text


def test_apply_again_updates(api: BridgeApi) -> None:
    resp = api.post("/api/v1/clusters/local/services", json=MULTI_JSON)
    assert resp.json()["applied"] == [{"name": MULTI, "action": "updated"}]


def test_apply_invalid_definitions(api: BridgeApi) -> None:
    resp = api.post(
        "/api/v1/clusters/local/services",
        data=b"functions: [unclosed",
        headers={"Content-Type": "application/yaml"},
    )
    body = assert_error(resp, 400)
    assert "invalid YAML" in body["errors"][0]["message"]
    resp = api.post(
        "/api/v1/clusters/local/services",
        json={"functions": {"oscar": [{"local": {"name": "Bad_Name", "script": "x\n"}}]}},
    )
    body = assert_error(resp, 400)
    locations = {e["location"] for e in body["errors"]}
    assert len(locations) >= 2 and all(loc.startswith("functions.oscar[0]") for loc in locations)
    assert_error(
        api.post(
            "/api/v1/clusters/local/services", data=b'{"name": ', headers={"Content-Type": "application/json"}
        ),
        400,
        field="body",
    )
    assert_error(api.post("/api/v1/clusters/local/services", data=b""), 400, field="body")
    names = {s["name"] for s in api.get("/api/v1/clusters/local/services").json()["services"]}
    assert "Bad_Name" not in names


def test_unknown_cluster_and_service(api: BridgeApi) -> None:
    assert_error(api.get("/api/v1/clusters/nope/services"), 404, cluster="nope")
    assert_error(api.post("/api/v1/clusters/nope/services/x/invoke"), 404, cluster="nope")
    body = assert_error(api.get(api.service_path("no-such-svc")), 404, cluster="local", service="no-such-svc")
    assert body["upstream_status"] == 404
    assert_error(invoke(api, "no-such-svc", data=b"hi"), 404, cluster="local", service="no-such-svc")
    assert_error(api.delete(api.service_path("no-such-svc")), 404)


def test_delete_service(api: BridgeApi) -> None:
    temp = {**FAIL_JSON, "name": "br-temp"}
    assert api.post("/api/v1/clusters/local/services", json=temp).status_code == 200
    assert api.delete(api.service_path("br-temp")).status_code == 204
    assert_error(api.get(api.service_path("br-temp")), 404)


# ------------------------------------------------------------------------------ sync invoke


def test_invoke_text_round_trip(api: BridgeApi) -> None:
    text = "héllo wörld ✓\nline two"
    resp = invoke(api, ECHO, data=text.encode(), headers={"Content-Type": "text/plain; charset=utf-8"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert resp.headers["X-Oscar-Bridge-Output"] == "text"
    assert resp.content == ("got:" + text).encode()  # supervisor log lines stripped


@pytest.mark.parametrize("size", [0, 1, 300_000])
def test_invoke_binary_round_trip(api: BridgeApi, size: int) -> None:
    data = os.urandom(size)
    resp = invoke(api, COPY, data=data, headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-Oscar-Bridge-Output"] == "file"
    assert resp.content == data


def test_invoke_binary_type_guessed(api: BridgeApi) -> None:
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(64)
    resp = invoke(api, COPY, data=png, headers={"Content-Type": "image/png"})
    assert resp.headers["Content-Type"] == "image/png" and resp.content == png


def test_invoke_json_round_trip(api: BridgeApi) -> None:
    doc = {"name": "ünïcode", "values": [1, 2.5, None, True], "nested": {"k": "v"}}
    raw = json.dumps(doc).encode()  # the form OSCAR's supervisor writes to the input file
    resp = invoke(api, COPY, data=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    assert resp.content == raw
    # JSON that is not an object is just bytes: sent base64, comes back unchanged.
    resp = invoke(api, COPY, data=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert resp.content == b"[1, 2]"


def test_invoke_several_files_zip_or_json(api: BridgeApi) -> None:
    resp = invoke(api, MULTI, data=b"one\n")
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
        assert {n: zf.read(n) for n in zf.namelist()} == {"a.txt": b"one\n", "b.txt": b"two\n"}
    resp = invoke(api, MULTI, data=b"one\n", headers={"Accept": "application/json"})
    files = resp.json()["files"]
    assert {n: base64.b64decode(v) for n, v in files.items()} == {"a.txt": b"one\n", "b.txt": b"two\n"}


def test_invoke_script_failure_is_502_with_output(api: BridgeApi) -> None:
    body = assert_error(invoke(api, FAIL, data=b"x"), 502, cluster="local", service=FAIL)
    assert "the script says no" in body["output"]
    assert body["upstream_status"] == 500


def test_oversize_body_is_413(api: BridgeApi) -> None:
    resp = invoke(api, COPY, data=b"x" * (TEST_MAX_BODY_BYTES + 1))
    body = assert_error(resp, 413, limit_bytes=TEST_MAX_BODY_BYTES)
    assert str(TEST_MAX_BODY_BYTES) in body["error"]


# ------------------------------------------------------------------------------ async jobs


def test_async_job_submit_wait_status_logs_delete(api: BridgeApi) -> None:
    resp = api.post(api.service_path(ECHO, "/jobs"), data=b"async payload")
    assert resp.status_code == 202, resp.text
    sub = resp.json()
    job = sub["job"]
    assert sub == {"job": job, "cluster": "local", "service": ECHO, "status": "Pending"}
    assert job.startswith(f"{ECHO}-")
    done = api.get(api.service_path(ECHO, f"/jobs/{job}/wait"), params={"timeout": 90}).json()
    assert done["done"] is True and done["status"] == "Succeeded", done
    status = api.get(api.service_path(ECHO, f"/jobs/{job}")).json()
    assert status["status"] == "Succeeded" and status["job"] == job
    listed = api.get(api.service_path(ECHO, "/jobs")).json()["jobs"]
    assert job in [j["job"] for j in listed]
    logs = api.get(api.service_path(ECHO, f"/jobs/{job}/logs"))
    assert logs.headers["Content-Type"].startswith("text/plain")
    assert "got:async payload" in logs.text
    assert api.delete(api.service_path(ECHO, f"/jobs/{job}")).status_code == 204
    assert_error(api.get(api.service_path(ECHO, f"/jobs/{job}")), 404)


def test_wait_timeout_returns_not_done(api: BridgeApi) -> None:
    slow = {"name": "br-slow", "image": "local/slow", "script": "#!/bin/sh\nsleep 30\n"}
    assert api.post("/api/v1/clusters/local/services", json=slow).status_code == 200
    job = api.post(api.service_path("br-slow", "/jobs"), data=b"").json()["job"]
    resp = api.get(api.service_path("br-slow", f"/jobs/{job}/wait"), params={"timeout": 0.5})
    assert resp.status_code == 200
    assert resp.json()["done"] is False and resp.json()["status"] in ("Pending", "Running")
    api.delete(api.service_path("br-slow", f"/jobs/{job}"))


@pytest.mark.parametrize("timeout", ["abc", "-1", "100000", "nan"])
def test_wait_bad_timeout(api: BridgeApi, timeout: str) -> None:
    resp = api.get(api.service_path(ECHO, "/jobs/whatever/wait"), params={"timeout": timeout})
    assert_error(resp, 400, field="timeout")


def test_unknown_job(api: BridgeApi) -> None:
    assert_error(api.get(api.service_path(ECHO, "/jobs/br-echo-nope")), 404, job="br-echo-nope")
    assert_error(api.get(api.service_path(ECHO, "/jobs/br-echo-nope/logs")), 404)


# ------------------------------------------------------------------------------ upstream down


def test_upstream_down_is_503_and_check_reports_it(api: BridgeApi) -> None:
    from tests.support.ports import free_port

    body = {
        "id": "down",
        "endpoint": f"http://127.0.0.1:{free_port()}",
        "auth": {"kind": "basic", "user": "u", "password": "down-password-77"},
    }
    assert api.post("/api/v1/clusters", json=body).status_code == 201
    try:
        err = assert_error(
            api.get("/api/v1/clusters/down/services"), 503, cluster="down", upstream_status=None
        )
        assert "down-password-77" not in json.dumps(err)
        assert_error(api.post("/api/v1/clusters/down/services/s/invoke", data=b"x"), 503, cluster="down")
        check = api.post("/api/v1/clusters/down/check").json()
        assert check["ok"] is False and check["health"] is False and check["info"] is None
    finally:
        api.delete("/api/v1/clusters/down")


def test_rejected_credentials_are_502_without_the_secret(api: BridgeApi, bridge_server) -> None:
    body = {
        "id": "badpw",
        "endpoint": bridge_server.local.endpoint,
        "auth": {"kind": "basic", "user": "oscar", "password": "wrong-password-99"},
    }
    assert api.post("/api/v1/clusters", json=body).status_code == 201
    try:
        err = assert_error(
            api.get("/api/v1/clusters/badpw/services"), 502, cluster="badpw", upstream_status=401
        )
        assert "rejected the bridge's credentials" in err["error"]
        assert "wrong-password-99" not in json.dumps(err)
    finally:
        api.delete("/api/v1/clusters/badpw")


# ------------------------------------------------------------------------------ metrics


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_invocations_errors_and_jobs(api: BridgeApi) -> None:
    before = api.get("/metrics").text
    invoke(api, ECHO, data=b"m")
    invoke(api, FAIL, data=b"m")
    job = api.post(api.service_path(ECHO, "/jobs"), data=b"m").json()["job"]
    api.get(api.service_path(ECHO, f"/jobs/{job}/wait"), params={"timeout": 90})
    resp = api.get("/metrics")
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    after = resp.text

    def delta(name: str, **labels: str) -> float:
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    assert delta("oscar_bridge_invocations_total", service=ECHO, mode="sync", outcome="ok") == 1
    assert delta("oscar_bridge_invocations_total", service=FAIL, mode="sync", outcome="error") == 1
    assert delta("oscar_bridge_invocations_total", service=ECHO, mode="async", outcome="ok") == 1
    assert delta("oscar_bridge_invocation_duration_seconds_count", service=ECHO, mode="sync") == 1
    assert delta("oscar_bridge_errors_total", kind="script_failed") == 1
    assert delta("oscar_bridge_jobs_total", service=ECHO, status="submitted") == 1
    assert delta("oscar_bridge_jobs_total", service=ECHO, status="Succeeded") == 1
