"""Bridge building blocks without a running server: token file, metrics text, the
mapping of OSCAR errors to bridge responses, the cluster registry, redaction, and the
OpenAPI document's coverage of every route."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from bridge.oscar import errors as oe
from bridge.oscar.cluster import ClusterSpec
from bridge.server.api.invoke import guess_type
from bridge.server.api.services import redact_service
from bridge.server.app import create_app
from bridge.server.errors import ApiError, oscar_error_response
from bridge.server.metrics import Metrics
from bridge.server.registry import ClusterRegistry
from bridge.server.tokens import load_or_create_token, token_command_output
from bridge.settings import Settings
from bridge.store import Store

# -------------------------------------------------------------------------- token file


def test_token_created_once_with_owner_only_mode(tmp_path: Path) -> None:
    token, created = load_or_create_token(tmp_path)
    assert created and len(token) >= 40
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
    again, created_again = load_or_create_token(tmp_path)
    assert (again, created_again) == (token, False)


def test_token_permissions_tightened_and_empty_file_replaced(tmp_path: Path) -> None:
    token, _ = load_or_create_token(tmp_path)
    os.chmod(tmp_path / "token", 0o644)
    assert load_or_create_token(tmp_path) == (token, False)
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
    (tmp_path / "token").write_text("")
    fresh, created = load_or_create_token(tmp_path)
    assert created and fresh != token


def test_token_command_output_ends_with_the_token(tmp_path: Path) -> None:
    first = token_command_output(tmp_path)
    token, _ = load_or_create_token(tmp_path)
    assert first.split()[-1] == token
    assert token_command_output(tmp_path).split()[-1] == token


# -------------------------------------------------------------------------- metrics

_SAMPLE = re.compile(r'^([a-z_]+)(\{(?:[a-z_]+="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def test_metrics_render_valid_exposition() -> None:
    m = Metrics()
    m.observe_invocation("c1", 'we"ird\nsvc', "sync", 0.02, True)
    m.observe_invocation("c1", "svc", "sync", 3.0, False)
    m.count_error("upstream_unavailable")
    m.count_job("c1", "svc", "submitted")
    text = m.render()
    assert text.endswith("\n")
    families = set()
    for line in text.splitlines():
        if line.startswith("# TYPE"):
            families.add(line.split()[2])
            continue
        if line.startswith("#"):
            continue
        assert _SAMPLE.match(line), line
    assert families == {
        "oscar_bridge_invocations_total",
        "oscar_bridge_invocation_duration_seconds",
        "oscar_bridge_errors_total",
        "oscar_bridge_jobs_total",
    }
    assert 'service="we\\"ird\\nsvc"' in text
    assert 'oscar_bridge_invocations_total{cluster="c1",service="svc",mode="sync",outcome="error"} 1' in text
    # Cumulative buckets: 3.0 s falls in le=5 but not le=2.5; +Inf equals the count.
    base = 'oscar_bridge_invocation_duration_seconds_bucket{cluster="c1",service="svc",mode="sync"'
    assert f'{base},le="2.5"}} 0' in text
    assert f'{base},le="5"}} 1' in text
    assert f'{base},le="+Inf"}} 1' in text
    assert 'oscar_bridge_errors_total{kind="upstream_unavailable"} 1' in text
    assert 'oscar_bridge_jobs_total{cluster="c1",service="svc",status="submitted"} 1' in text


# -------------------------------------------------------------------------- error mapping


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (oe.NotFound(status=404, cluster="c", service="s"), 404),
        (oe.BadRequest("The service specification is not valid", cluster="c"), 400),
        (oe.Conflict(cluster="c"), 409),
        (oe.Unauthorized(cluster="c"), 502),
        (oe.Forbidden(cluster="c"), 502),
        (oe.ScriptFailed("exit status 1", body=b"exit status 1\nboom", cluster="c", service="s"), 502),
        (oe.UpstreamUnavailable("GET x failed: ConnectionError", cluster="c"), 503),
        (oe.UpstreamUnavailable("GET x timed out: ReadTimeout", cluster="c"), 504),
        (oe.UpstreamUnavailable(status=504, cluster="c"), 504),
        (oe.OscarError("weird", status=418, cluster="c"), 502),
    ],
)
def test_oscar_errors_map_to_documented_statuses(error: oe.OscarError, status: int) -> None:
    got, body = oscar_error_response(error)
    assert got == status
    assert body["cluster"] == "c"
    assert body["upstream_status"] == error.status
    assert {"error", "cluster", "service", "upstream_status"} <= set(body)


def test_rejected_credentials_and_script_output_are_explained() -> None:
    _, body = oscar_error_response(oe.Unauthorized(cluster="prod"))
    assert "rejected the bridge's credentials" in body["error"]
    _, body = oscar_error_response(
        oe.ScriptFailed("exit status 3", body=b"exit status 3\nno input", service="s")
    )
    assert body["output"] == "exit status 3\nno input"


# -------------------------------------------------------------------------- registry


def _spec(cluster_id: str = "c1", password: str = "pw-1") -> ClusterSpec:
    return ClusterSpec(
        id=cluster_id, endpoint="http://127.0.0.1:9", auth_kind="basic", user="u", password=password
    )


def test_registry_persists_and_caches_clients(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    reg = ClusterRegistry(store)
    reg.add(_spec())
    with pytest.raises(ApiError) as exc:
        reg.add(_spec())
    assert exc.value.status == 409
    client = reg.client("c1")
    assert reg.client("c1") is client
    reg.add(_spec(password="pw-2"), replace=True)
    assert reg.client("c1") is not client  # replaced specs get a new client
    assert ClusterRegistry(store).get("c1").password == "pw-2"  # survives a new registry
    assert [s.id for s in reg.list()] == ["c1"]
    reg.remove("c1")
    for call in (lambda: reg.get("c1"), lambda: reg.client("c1"), lambda: reg.remove("c1")):
        with pytest.raises(ApiError) as exc:
            call()
        assert exc.value.status == 404
        assert exc.value.to_dict() == {"error": "unknown cluster 'c1'", "cluster": "c1"}
    store.close()


# -------------------------------------------------------------------------- redaction and types


def test_redact_service_hides_every_credential() -> None:
    svc = {
        "name": "s",
        "token": "a" * 64,
        "environment": {"variables": {"MODE": "fast"}, "secrets": {"API_KEY": "s3cr3t"}},
        "storage_providers": {
            "minio": {"default": {"access_key": "hidden", "secret_key": "hidden"}},
            "s3": {"mine": {"access_key": "AK", "secret_key": "SK"}},
            "webdav": {"d": {"login": "u", "password": "pass"}},
        },
        "clusters": {"c": {"auth_user": "u", "auth_password": "pw"}},
    }
    text = repr(redact_service(svc))
    for secret in ("a" * 64, "s3cr3t", "'SK'", "'pass'", "'pw'"):
        assert secret not in text
    assert redact_service(svc)["environment"]["variables"] == {"MODE": "fast"}
    assert svc["token"] == "a" * 64  # the input is not modified


def test_guess_type_from_magic() -> None:
    assert guess_type(b"\x89PNG\r\n\x1a\nrest") == "image/png"
    assert guess_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert guess_type(b"\x00\x01") == "application/octet-stream"


# -------------------------------------------------------------------------- openapi coverage


def _rule_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z_]+:)?([a-z_]+)>", r"{\1}", rule)


def test_openapi_document_covers_exactly_the_routes(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    try:
        client = app.test_client()
        token = app.extensions["bridge"].token
        doc = client.get("/openapi.json", headers={"Authorization": f"Bearer {token}"}).get_json()
        routes = set()
        for rule in app.url_map.iter_rules():
            if rule.endpoint == "static":
                continue
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                routes.add((method.lower(), _rule_path(rule.rule)))
        documented = {(m, p) for p, ops in doc["paths"].items() for m in ops if m != "parameters"}
        assert routes == documented
        # Every path template parameter is declared on its operation.
        for path, ops in doc["paths"].items():
            names = set(re.findall(r"{([a-z_]+)}", path))
            for method, op in ops.items():
                declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
                assert declared == names, (method, path)
    finally:
        app.extensions["bridge"].close()


def test_openapi_document_is_valid_openapi(tmp_path: Path) -> None:
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    app = create_app(Settings(data_dir=tmp_path))
    try:
        token = app.extensions["bridge"].token
        doc = app.test_client().get("/openapi.json", headers={"Authorization": f"Bearer {token}"}).get_json()
        assert doc["openapi"].startswith("3.1")
        OPENAPI_31_VALIDATOR.validate(doc)
        assert doc["paths"]["/healthz"]["get"]["security"] == []
        assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    finally:
        app.extensions["bridge"].close()
