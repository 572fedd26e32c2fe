"""BridgeServer as a process would run it: the data dir survives restarts (token,
clusters, the embedded `local` re-registered on its new port), and no credential ever
shows in a response, a captured log record or the bridge's log file."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from bridge.server.serve import LOG_FILE
from tests.support.bridge import BridgeApi, api_for, start_bridge
from tests.support.ports import free_port


def test_restart_keeps_token_and_clusters(tmp_path: Path) -> None:
    first = start_bridge(tmp_path)
    try:
        assert first.token_created and first.local is not None
        assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
        with api_for(first) as api:
            resp = api.post(
                "/api/v1/clusters",
                json={
                    "id": "remote",
                    "endpoint": "https://oscar.example.org",
                    "auth": {"kind": "token", "token": "t1"},
                },
            )
            assert resp.status_code == 201
        token, old_endpoint = first.token, first.local.endpoint
    finally:
        first.stop()
    second = start_bridge(tmp_path, local_port=free_port())
    try:
        assert second.token == token and not second.token_created
        assert second.local is not None and second.local.endpoint != old_endpoint
        with api_for(second) as api:
            ids = {c["id"] for c in api.get("/api/v1/clusters").json()["clusters"]}
            assert ids == {"local", "remote"}
            local = api.get("/api/v1/clusters/local").json()
            assert local["endpoint"] == second.local.endpoint
            assert api.post("/api/v1/clusters/local/check").json()["ok"] is True
            # A user deleting `local` means it: the next start does not bring it back.
            assert api.delete("/api/v1/clusters/local").status_code == 204
    finally:
        second.stop()
    third = start_bridge(tmp_path)
    try:
        assert third.local is None
        with api_for(third) as api:
            assert {c["id"] for c in api.get("/api/v1/clusters").json()["clusters"]} == {"remote"}
    finally:
        third.stop()


def test_stop_is_idempotent_and_frees_the_port(tmp_path: Path) -> None:
    port = free_port()
    server = start_bridge(tmp_path, port=port)
    server.stop()
    server.stop()
    again = start_bridge(tmp_path, port=port)
    try:
        with api_for(again) as api:
            assert api.get("/healthz").status_code == 200
    finally:
        again.stop()


def test_secrets_never_leave_the_bridge(
    bridge_server,
    bridge_api: BridgeApi,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    closed = f"http://127.0.0.1:{free_port()}"
    secrets = {
        "basic-pass": "basic-SECRET-pw-1",
        "oidc-refresh": "oidc-SECRET-rt-2",
        "oidc-client": "oidc-SECRET-cs-3",
        "svc-token": "token-SECRET-tk-4",
        "local-password": bridge_server.local.password,
    }
    clusters = [
        {
            "id": "s-basic",
            "endpoint": closed,
            "auth": {"kind": "basic", "user": "u", "password": secrets["basic-pass"]},
        },
        {
            "id": "s-badpw",
            "endpoint": bridge_server.local.endpoint,
            "auth": {"kind": "basic", "user": "oscar", "password": secrets["basic-pass"]},
        },
        {
            "id": "s-oidc",
            "endpoint": bridge_server.local.endpoint,
            "auth": {
                "kind": "oidc",
                "refresh_token": secrets["oidc-refresh"],
                "client_secret": secrets["oidc-client"],
                "token_endpoint": closed + "/token",
            },
        },
        {
            "id": "s-token",
            "endpoint": bridge_server.local.endpoint,
            "auth": {"kind": "token", "token": secrets["svc-token"]},
        },
    ]
    service = {"name": "sec-echo", "image": "x", "script": "#!/bin/sh\necho hi\n"}
    texts: list[str] = []
    try:
        resp = bridge_api.post("/api/v1/clusters/local/services", json=service)
        assert resp.status_code == 200, resp.text
        secrets["service-token"] = bridge_server.local.client().get_service("sec-echo")["token"]
        for body in clusters:
            texts.append(bridge_api.post("/api/v1/clusters", json=body).text)
        texts.append(bridge_api.get("/api/v1/clusters").text)
        for body in clusters:
            cid = body["id"]
            for method, path in [
                ("GET", f"/api/v1/clusters/{cid}"),
                ("POST", f"/api/v1/clusters/{cid}/check"),
                ("GET", f"/api/v1/clusters/{cid}/services"),
                ("GET", f"/api/v1/clusters/{cid}/services/sec-echo"),
                ("POST", f"/api/v1/clusters/{cid}/services/sec-echo/invoke"),
                ("POST", f"/api/v1/clusters/{cid}/services/sec-echo/jobs"),
            ]:
                resp = bridge_api.request(method, path, data=b"x")
                texts.append(f"{resp.status_code} {json.dumps(dict(resp.headers))} {resp.text}")
        for path in (
            "/api/v1/clusters/local",
            "/api/v1/clusters/local/services",
            "/api/v1/clusters/local/services/sec-echo",
        ):
            texts.append(bridge_api.get(path).text)
        texts.append(bridge_api.post("/api/v1/clusters/local/services/sec-echo/invoke", data=b"x").text)
    finally:
        for body in clusters:
            bridge_api.delete(f"/api/v1/clusters/{body['id']}")
        bridge_api.delete("/api/v1/clusters/local/services/sec-echo")
    # Sanity: the calls did fail the ways that could leak (otherwise the test proves little).
    joined = "\n".join(texts)
    assert "rejected the bridge's credentials" in joined and "is unavailable" in joined
    log_file = (Path(bridge_server.settings.data_dir) / LOG_FILE).read_text()
    assert "GET /api/v1/clusters" in log_file  # the access log is written there
    for name, secret in secrets.items():
        assert secret and secret not in joined, f"{name} in a response"
        assert secret not in caplog.text, f"{name} in a log record"
        assert secret not in log_file, f"{name} in {LOG_FILE}"
