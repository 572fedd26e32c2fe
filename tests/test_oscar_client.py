"""OscarClient against FakeOscar over real HTTP on 127.0.0.1: every endpoint, both
job-list shapes, job naming, service-token handling, retries, timeouts and errors."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator

import pytest

from bridge.oscar import (
    BadRequest,
    BasicAuth,
    Conflict,
    NotFound,
    OscarClient,
    OscarError,
    ScriptFailed,
    ServiceTokenAuth,
    Unauthorized,
    UpstreamUnavailable,
    error_for_status,
)
from bridge.oscar.client import DELEGATED_JOB_HEADER, job_name_for
from tests.support.fake_oscar import FakeOscar, self_signed_cert
from tests.support.ports import free_port

UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
SERVICE = {"name": "cowsay", "image": "ghcr.io/grycap/cowsay", "script": "cowsay"}


@pytest.fixture
def fake() -> Iterator[FakeOscar]:
    server = FakeOscar().start()
    try:
        yield server
    finally:
        server.stop()


def make_client(fake: FakeOscar, **kwargs) -> OscarClient:
    kwargs.setdefault("retries", 2)
    kwargs.setdefault("backoff", 0.01)
    kwargs.setdefault("timeout", 20.0)
    return OscarClient(fake.endpoint, BasicAuth(fake.user, fake.password), cluster_id="fake", **kwargs)


@pytest.fixture
def client(fake: FakeOscar) -> Iterator[OscarClient]:
    c = make_client(fake)
    yield c
    c.close()


# --------------------------------------------------------------------------- system
def test_health_info_and_status(fake: FakeOscar, client: OscarClient) -> None:
    assert client.health() is True
    assert client.info()["version"] == "v4.1.2"
    assert client.status()["cluster"]["nodes_count"] == 1
    # /health is open: no credentials sent.
    assert "Authorization" not in fake.recorded("GET", "/health")[-1].headers


def test_health_is_false_when_nothing_listens() -> None:
    c = OscarClient(f"http://127.0.0.1:{free_port()}", BasicAuth("u", "p"), retries=0)
    assert c.health() is False


@pytest.mark.parametrize("shape", ["v2", "v3"])
def test_minio_provider_in_both_config_shapes(fake: FakeOscar, client: OscarClient, shape: str) -> None:
    fake.config_shape = shape
    cfg = client.config()
    assert ("config" in cfg) == (shape == "v3")
    provider = client.minio_provider()
    assert provider["access_key"] == "minio"
    assert provider["secret_key"] == fake.minio_secret
    assert set(provider) >= {"endpoint", "verify", "region"}


def test_trailing_slash_redirect_is_followed(fake: FakeOscar, client: OscarClient) -> None:
    resp = client._request("GET", "/system/info/")
    assert resp.json()["version"] == "v4.1.2"
    assert [r.status for r in fake.requests[-2:]] == [301, 200]


def test_endpoint_trailing_slash_is_normalised(fake: FakeOscar) -> None:
    c = OscarClient(fake.endpoint + "/", BasicAuth(fake.user, fake.password))
    assert c.info()["version"]
    assert fake.requests[-1].path == "/system/info"


def test_endpoint_must_be_http_url() -> None:
    with pytest.raises(ValueError, match="endpoint"):
        OscarClient("ftp://example.org")


# --------------------------------------------------------------------------- services
def test_service_lifecycle(fake: FakeOscar, client: OscarClient) -> None:
    assert client.list_services() == []
    client.create_service(SERVICE)
    assert fake.recorded("POST", "/system/services")[-1].status == 201
    svc = client.get_service("cowsay")
    assert svc["image"] == SERVICE["image"] and len(svc["token"]) == 64
    assert [s["name"] for s in client.list_services()] == ["cowsay"]
    client.update_service({**SERVICE, "memory": "1Gi"})
    assert fake.recorded("PUT", "/system/services")[-1].status == 204
    assert client.get_service("cowsay")["memory"] == "1Gi"
    client.delete_service("cowsay")
    with pytest.raises(NotFound) as info:
        client.get_service("cowsay")
    err = info.value
    assert (err.status, err.cluster, err.service) == (404, "fake", "cowsay")
    assert "not found" in str(err)


def test_apply_service_gets_then_posts_or_puts(fake: FakeOscar, client: OscarClient) -> None:
    assert client.apply_service(SERVICE) == "created"
    assert client.apply_service({**SERVICE, "memory": "512Mi"}) == "updated"
    calls = [(r.method, r.path) for r in fake.requests]
    assert calls == [
        ("GET", "/system/services/cowsay"),
        ("POST", "/system/services"),
        ("GET", "/system/services/cowsay"),
        ("PUT", "/system/services"),
    ]
    assert fake.services["cowsay"]["memory"] == "512Mi"


@pytest.mark.parametrize(("status", "cls"), [(409, Conflict), (400, BadRequest)])
def test_duplicate_service_error_carries_oscar_message(
    fake: FakeOscar, client: OscarClient, status: int, cls: type
) -> None:
    fake.duplicate_status = status
    client.create_service(SERVICE)
    with pytest.raises(cls) as info:
        client.create_service(SERVICE)
    assert info.value.message == "The service 'cowsay' already exists"
    assert info.value.status == status


def test_invalid_service_is_bad_request(client: OscarClient) -> None:
    with pytest.raises(BadRequest, match="The service specification is not valid: script"):
        client.create_service({"name": "x", "image": "alpine"})
    with pytest.raises(ValueError, match="name"):
        client.create_service({"image": "alpine"})


def test_update_missing_service_is_not_found(client: OscarClient) -> None:
    with pytest.raises(NotFound):
        client.update_service(SERVICE)


def test_service_names_cannot_add_path_segments(fake: FakeOscar, client: OscarClient) -> None:
    with pytest.raises(NotFound):
        client.get_service("../info")
    # the name travels as one segment: the fake never served /system/info
    assert not fake.recorded("GET", "/system/info")


# --------------------------------------------------------------------------- auth errors
def test_wrong_password_is_unauthorized_without_the_password(fake: FakeOscar) -> None:
    c = OscarClient(fake.endpoint, BasicAuth(fake.user, "wrong-password-xyz"), cluster_id="fake")
    with pytest.raises(Unauthorized) as info:
        c.info()
    assert info.value.status == 401
    assert fake.requests[-1].status == 401
    assert "WWW-Authenticate" not in str(info.value)
    for text in (str(info.value), repr(info.value), repr(c), repr(c.auth)):
        assert "wrong-password-xyz" not in text


def test_secrets_are_scrubbed_from_oscar_messages(fake: FakeOscar, client: OscarClient) -> None:
    svc = fake.add_service("leaky")
    client.run("leaky", b"{}")  # caches the service token
    leak = f"boom password={fake.password} token={svc['token']}".encode()
    fake.inject("GET", "/system/info", 500, body=leak)
    with pytest.raises(OscarError) as info:
        client.info()
    for text in (str(info.value), repr(info.value), info.value.message):
        assert fake.password not in text and svc["token"] not in text
        assert "boom password=***" in text


def test_service_token_auth_is_refused_on_system_locally(fake: FakeOscar) -> None:
    c = OscarClient(fake.endpoint, ServiceTokenAuth("a" * 64), cluster_id="fake")
    with pytest.raises(Unauthorized, match="only on /run and /job"):
        c.list_services()
    assert not fake.recorded(path="/system/services")
    assert "a" * 64 not in repr(c.auth)


# --------------------------------------------------------------------------- /run
def test_run_fetches_and_caches_the_service_token(fake: FakeOscar, client: OscarClient) -> None:
    svc = fake.add_service("echo")
    resp = client.run("echo", b"aGVsbG8=", "text/plain")
    assert resp.status_code == 200 and resp.content == b"aGVsbG8="
    assert resp.headers["Content-Type"].startswith("text/plain")
    client.run("echo", b"{}")
    runs = fake.recorded("POST", "/run/echo")
    assert [r.headers["Authorization"] for r in runs] == [f"Bearer {svc['token']}"] * 2
    assert len(fake.recorded("GET", "/system/services/echo")) == 1
    assert client.service_token("echo") == svc["token"]


def test_run_refetches_a_changed_service_token_once(fake: FakeOscar) -> None:
    fake.regenerate_token_on_update = True
    fake.add_service("echo")
    a, b = make_client(fake), make_client(fake)
    a.run("echo", b"{}")
    old = a.service_token("echo")
    b.update_service({**SERVICE, "name": "echo"})  # old OSCAR: a new token
    assert fake.services["echo"]["token"] != old
    assert a.run("echo", b"x").content == b"x"
    assert [r.status for r in fake.recorded("POST", "/run/echo")] == [200, 401, 200]
    assert a.service_token("echo") == fake.services["echo"]["token"]


def test_run_unauthorized_with_a_fixed_token_is_not_retried(fake: FakeOscar, client: OscarClient) -> None:
    fake.add_service("echo")
    with pytest.raises(Unauthorized) as info:
        client.run("echo", b"{}", token="f" * 64)
    assert len(fake.recorded("POST", "/run/echo")) == 1
    assert not fake.recorded("GET", "/system/services/echo")
    assert "f" * 64 not in str(info.value)


def test_run_with_service_token_auth(fake: FakeOscar) -> None:
    svc = fake.add_service("echo")
    c = OscarClient(fake.endpoint, ServiceTokenAuth(svc["token"]))
    assert c.run("echo", b"hi").content == b"hi"
    assert c.run("echo", b"hi", token=svc["token"]).content == b"hi"


def test_run_500_is_script_failed_with_body_and_not_retried(fake: FakeOscar, client: OscarClient) -> None:
    fake.add_service("bad")
    fake.run_responses["bad"] = (500, b"exit status 1\nsh: oops: not found\n")
    with pytest.raises(ScriptFailed) as info:
        client.run("bad", b"{}")
    assert info.value.body == b"exit status 1\nsh: oops: not found\n"
    assert "oops: not found" in info.value.message
    assert len(fake.recorded("POST", "/run/bad")) == 1


@pytest.mark.parametrize("status", [502, 503, 504])
def test_post_is_never_retried(fake: FakeOscar, client: OscarClient, status: int) -> None:
    fake.add_service("echo")
    client.service_token("echo")
    fake.inject("POST", "/run/echo", status, times=5)
    fake.inject("POST", "/job/echo", status, times=5)
    fake.inject("POST", "/system/services", status, times=5)
    with pytest.raises(UpstreamUnavailable):
        client.run("echo", b"{}")
    client.delegated_job_id_honoured = True
    with pytest.raises(UpstreamUnavailable):
        client.submit_job("echo", b"{}")
    with pytest.raises(UpstreamUnavailable):
        client.create_service(SERVICE)
    assert len(fake.recorded("POST", "/run/echo")) == 1
    assert len(fake.recorded("POST", "/job/echo")) == 1
    assert len(fake.recorded("POST", "/system/services")) == 1


@pytest.mark.parametrize("status", [502, 503, 504])
def test_idempotent_calls_are_retried_on_gateway_errors(
    fake: FakeOscar, client: OscarClient, status: int
) -> None:
    fake.inject("GET", "/system/info", status, times=2)
    assert client.info()["version"] == "v4.1.2"
    assert [r.status for r in fake.recorded("GET", "/system/info")] == [status, status, 200]


def test_retries_give_up_with_upstream_unavailable(fake: FakeOscar, client: OscarClient) -> None:
    fake.add_service("gone")
    fake.inject("DELETE", "/system/services/gone", 503, times=10, body=b"upstream connect error")
    with pytest.raises(UpstreamUnavailable) as info:
        client.delete_service("gone")
    assert info.value.status == 503 and "upstream connect error" in info.value.message
    assert len(fake.recorded("DELETE", "/system/services/gone")) == 3  # 1 + retries


def test_timeouts_are_upstream_unavailable(fake: FakeOscar) -> None:
    c = make_client(fake, timeout=0.5, invoke_timeout=0.5, retries=0)
    fake.inject("GET", "/system/info", 0, delay=30)
    with pytest.raises(UpstreamUnavailable, match="timed out") as info:
        c.info()
    assert info.value.status is None
    fake.add_service("slow")
    c.service_token("slow")
    fake.inject("POST", "/run/slow", 0, delay=30)
    with pytest.raises(UpstreamUnavailable, match="timed out"):
        c.run("slow", b"{}")


def test_run_timeout_overrides_invoke_timeout(fake: FakeOscar) -> None:
    c = make_client(fake, invoke_timeout=60)
    fake.add_service("slow")
    c.service_token("slow")
    fake.inject("POST", "/run/slow", 0, delay=30)
    with pytest.raises(UpstreamUnavailable, match="timed out"):
        c.run("slow", b"{}", timeout=0.5)


class _SlammingServer:
    """Accepts TCP connections and closes them at once, counting them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()
        self._thread.join(timeout=10)


def test_connection_errors_retry_only_idempotent_calls() -> None:
    server = _SlammingServer()
    try:
        c = OscarClient(
            f"http://127.0.0.1:{server.port}", BasicAuth("u", "pw-secret"), retries=2, backoff=0.01
        )
        with pytest.raises(UpstreamUnavailable) as info:
            c.info()
        assert server.accepted == 3
        assert info.value.status is None and "pw-secret" not in str(info.value)
        before = server.accepted
        with pytest.raises(UpstreamUnavailable):
            c.run("svc", b"{}", token="t" * 64)
        assert server.accepted == before + 1
    finally:
        server.close()


def test_connection_refused_is_upstream_unavailable() -> None:
    c = OscarClient(
        f"http://127.0.0.1:{free_port()}", BasicAuth("u", "p"), cluster_id="x", retries=1, backoff=0
    )
    with pytest.raises(UpstreamUnavailable) as info:
        c.list_services()
    assert info.value.cluster == "x" and info.value.status is None


# --------------------------------------------------------------------------- jobs
def test_job_name_format() -> None:
    assert re.fullmatch(f"cowsay-{UUID4}", job_name_for("cowsay"))
    long = "a-very-long-service-name-of-30c"
    assert re.fullmatch(f"{long[:16]}-{UUID4}", job_name_for(long))


def test_submit_job_uses_delegated_job_id_when_honoured(fake: FakeOscar, client: OscarClient) -> None:
    svc = fake.add_service("echo")
    job = client.submit_job("echo", b'{"a":1}')
    assert re.fullmatch(f"echo-{UUID4}", job)
    post = fake.recorded("POST", "/job/echo")[-1]
    assert post.status == 201 and post.headers[DELEGATED_JOB_HEADER] == job
    assert post.headers["Authorization"] == f"Bearer {svc['token']}"
    assert job in dict(client.iter_jobs("echo"))
    assert client.delegated_job_id_honoured is True
    lists = len(fake.recorded("GET", "/system/logs/echo"))
    job2 = client.submit_job("echo", b"{}")
    assert job2 != job and job2 in fake.jobs["echo"]
    assert len(fake.recorded("GET", "/system/logs/echo")) == lists  # no more diffing


@pytest.mark.parametrize("shape", ["paged", "legacy"])
def test_submit_job_diffs_the_job_list_on_older_clusters(
    fake: FakeOscar, client: OscarClient, shape: str
) -> None:
    fake.honour_delegated_id = False
    fake.job_list_shape = shape
    fake.add_service("echo")
    for _ in range(7):  # more than one page
        fake.add_job("echo")
    job = client.submit_job("echo", b"{}")
    sent = fake.recorded("POST", "/job/echo")[-1].headers[DELEGATED_JOB_HEADER]
    assert job != sent and job in fake.jobs["echo"] and sent not in fake.jobs["echo"]
    assert client.delegated_job_id_honoured is False
    job2 = client.submit_job("echo", b"{}")
    assert job2 not in (job, sent) and job2 in fake.jobs["echo"]
    assert len(fake.jobs["echo"]) == 9


def test_submit_job_on_unknown_service(fake: FakeOscar, client: OscarClient) -> None:
    with pytest.raises(NotFound):
        client.submit_job("nope", b"{}")


def test_list_jobs_paged_shape(fake: FakeOscar, client: OscarClient) -> None:
    fake.add_service("echo")
    names = [fake.add_job("echo") for _ in range(7)]
    first = client.list_jobs("echo")
    assert list(first.jobs) == names[:3]
    assert (first.next_page, first.remaining_jobs) == ("3", 4)
    second = client.list_jobs("echo", page=first.next_page)
    assert list(second.jobs) == names[3:6]
    assert fake.recorded("GET", "/system/logs/echo")[-1].query == {"page": "3"}
    assert [name for name, _ in client.iter_jobs("echo")] == names
    info = first.jobs[names[0]]
    assert info["status"] == "Succeeded" and {"creation_time", "start_time", "finish_time"} <= set(info)


def test_list_jobs_legacy_shape(fake: FakeOscar, client: OscarClient) -> None:
    fake.job_list_shape = "legacy"
    fake.add_service("echo")
    names = [fake.add_job("echo") for _ in range(5)]
    page = client.list_jobs("echo")
    assert list(page.jobs) == names and page.next_page is None and page.remaining_jobs is None
    assert [name for name, _ in client.iter_jobs("echo")] == names


def test_list_jobs_empty_and_missing(fake: FakeOscar, client: OscarClient) -> None:
    fake.add_service("echo")
    assert client.list_jobs("echo").jobs == {}
    assert list(client.iter_jobs("echo")) == []
    with pytest.raises(NotFound):
        client.list_jobs("nope")


def test_job_logs_and_deletes(fake: FakeOscar, client: OscarClient) -> None:
    fake.add_service("echo")
    done = fake.add_job("echo", status="Succeeded")
    running = fake.add_job("echo", status="Running")
    failed = fake.add_job("echo", status="Failed")
    assert client.job_logs("echo", done) == f"log of {done}\n"
    stamped = client.job_logs("echo", done, timestamps=True)
    assert stamped.endswith(f"log of {done}\n") and re.match(r"\d{4}-\d\d-\d\dT", stamped)
    assert fake.recorded("GET", f"/system/logs/echo/{done}")[-1].query == {"timestamps": "true"}
    with pytest.raises(NotFound, match="not found"):
        client.job_logs("echo", "echo-missing")
    client.delete_jobs("echo")  # succeeded only
    assert set(fake.jobs["echo"]) == {running, failed}
    client.delete_job("echo", running)
    assert set(fake.jobs["echo"]) == {failed}
    client.delete_jobs("echo", all=True)
    assert fake.jobs["echo"] == {}
    assert fake.recorded("DELETE", "/system/logs/echo")[-1].query == {"all": "true"}
    with pytest.raises(NotFound):
        client.delete_job("echo", running)


# --------------------------------------------------------------------------- buckets
def test_buckets(fake: FakeOscar, client: OscarClient) -> None:
    assert client.list_buckets() == []  # OSCAR sends null
    client.create_bucket("data", visibility="restricted", allowed_users=["alice"])
    sent = json.loads(fake.recorded("POST", "/system/buckets")[-1].body)
    assert sent == {"bucket_name": "data", "visibility": "restricted", "allowed_users": ["alice"]}
    assert [b["bucket_name"] for b in client.list_buckets()] == ["data"]
    with pytest.raises(BadRequest, match="Error creating bucket with name 'data'"):
        client.create_bucket("data")
    client.delete_bucket("data")
    with pytest.raises(NotFound):
        client.delete_bucket("data")


def test_presign_sends_expires_in(fake: FakeOscar, client: OscarClient) -> None:
    client.create_bucket("data")
    out = client.presign("data", "in/a.txt", "upload", expires_in=60, content_type="text/plain")
    sent = json.loads(fake.recorded("POST", "/system/buckets/data/presign")[-1].body)
    assert sent == {
        "object_key": "in/a.txt",
        "operation": "upload",
        "expires_in": 60,
        "content_type": "text/plain",
    }
    assert "expires" not in sent
    assert out["method"] == "PUT" and "X-Amz-Expires=60" in out["url"]
    assert client.presign("data", "x")["method"] == "GET"
    with pytest.raises(ValueError, match="operation"):
        client.presign("data", "x", operation="delete")
    with pytest.raises(NotFound):
        client.presign("nobucket", "x")


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("status", "run", "name"),
    [
        (400, False, "BadRequest"),
        (401, False, "Unauthorized"),
        (403, False, "Forbidden"),
        (404, False, "NotFound"),
        (409, False, "Conflict"),
        (500, True, "ScriptFailed"),
        (500, False, "OscarError"),
        (502, False, "UpstreamUnavailable"),
        (503, False, "UpstreamUnavailable"),
        (504, False, "UpstreamUnavailable"),
        (418, False, "OscarError"),
    ],
)
def test_error_for_status(status: int, run: bool, name: str) -> None:
    err = error_for_status(status, b"  text from OSCAR\n", cluster="c1", service="s1", run=run)
    assert type(err).__name__ == name
    assert (err.status, err.cluster, err.service, err.message) == (status, "c1", "s1", "text from OSCAR")
    assert str(err) == f"cluster 'c1', service 's1': HTTP {status}: text from OSCAR"


def test_error_messages_for_empty_and_json_bodies() -> None:
    assert error_for_status(404, b"").message == "not found"
    assert error_for_status(400, b'{"error":"bad start"}').message == "bad start"
    assert error_for_status(500, "x" * 5000).message.endswith("...")


def test_submit_job_with_only_a_service_token_returns_the_chosen_name(fake: FakeOscar) -> None:
    svc = fake.add_service("echo")
    c = OscarClient(fake.endpoint, ServiceTokenAuth(svc["token"]))
    job = c.submit_job("echo", b"{}")
    assert job in fake.jobs["echo"]
    assert fake.recorded("POST", "/job/echo")[-1].headers[DELEGATED_JOB_HEADER] == job
    assert not fake.recorded("GET", "/system/logs/echo")


def test_invoke_encodes_input_and_decodes_output(fake: FakeOscar, client: OscarClient) -> None:
    from bridge.oscar import codec

    fake.add_service("echo")
    fake.run_responses["echo"] = (200, b"hello from the script\n")
    fake.run_headers["echo"] = {codec.OUTPUT_HINT_HEADER: "text"}
    out = client.invoke("echo", {"message": "hi"})
    sent = fake.recorded("POST", "/run/echo")[-1]
    assert json.loads(sent.body) == {"message": "hi"}
    assert sent.headers["Content-Type"] == codec.encode_input({"message": "hi"})[1]
    assert out.kind == "text" and "hello from the script" in out.text


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_is_verified_by_default(tmp_path) -> None:
    cert, key = self_signed_cert(str(tmp_path))
    server = FakeOscar(tls=(cert, key)).start()
    try:
        auth = BasicAuth(server.user, server.password)
        with pytest.raises(UpstreamUnavailable, match="SSL"):
            OscarClient(server.endpoint, auth, retries=0).info()
        assert OscarClient(server.endpoint, auth, verify=cert).info()["version"]
        assert OscarClient(server.endpoint, auth, verify=False).info()["version"]
    finally:
        server.stop()
