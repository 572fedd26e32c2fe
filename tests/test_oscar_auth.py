"""OIDC token refresh (before expiry and after a 401), service tokens with OIDC, and
ClusterSpec validation/serialisation, against FakeOscar over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.oscar import (
    BasicAuth,
    ClusterSpec,
    OidcAuth,
    OscarClient,
    ServiceTokenAuth,
    Unauthorized,
    UpstreamUnavailable,
)
from bridge.oscar.auth import DEFAULT_TOKEN_ENDPOINT, jwt_claims
from tests.support.fake_oscar import FakeOscar, make_jwt
from tests.support.ports import free_port


@pytest.fixture
def fake() -> Iterator[FakeOscar]:
    server = FakeOscar().start()
    try:
        yield server
    finally:
        server.stop()


class Clock:
    """A controllable wall clock for OidcAuth (the fake's own clock stays real)."""

    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def oidc_client(fake: FakeOscar, clock: Clock | None = None, **kwargs) -> OscarClient:
    auth = OidcAuth(
        refresh_token=fake.oidc_refresh_token,
        token_endpoint=fake.token_endpoint,
        clock=clock or Clock(),
        **kwargs,
    )
    return OscarClient(fake.endpoint, auth, cluster_id="fake", retries=0)


# --------------------------------------------------------------------------- OIDC
@pytest.mark.parametrize("send_expires_in", [True, False])
def test_refresh_token_exchanged_and_renewed_before_expiry(fake: FakeOscar, send_expires_in: bool) -> None:
    fake.oidc_send_expires_in = send_expires_in  # False: the client must read the JWT exp
    clock = Clock()
    c = oidc_client(fake, clock, client_secret="client-secret-1", scopes=("openid", "profile"))
    assert c.info()["version"]
    assert c.list_services() == []
    assert len(fake.token_requests) == 1
    form = fake.token_requests[0]
    assert form == {
        "grant_type": "refresh_token",
        "refresh_token": fake.oidc_refresh_token,
        "client_id": "token-portal",
        "client_secret": "client-secret-1",
        "scope": "openid profile",
    }
    first = c.auth.token
    assert fake.recorded("GET", "/system/info")[-1].headers["Authorization"] == f"Bearer {first}"
    clock.now += fake.oidc_token_lifetime - 5  # inside the refresh margin, not yet expired
    assert c.info()["version"]
    assert len(fake.token_requests) == 2
    assert c.auth.token != first
    assert fake.recorded("GET", "/system/info")[-1].headers["Authorization"] == f"Bearer {c.auth.token}"
    assert all(r.status != 401 for r in fake.requests)


def test_refresh_after_401_then_retry_once(fake: FakeOscar) -> None:
    c = oidc_client(fake)
    assert c.info()
    fake.revoke_oidc_tokens()
    assert c.info()["version"]
    assert [r.status for r in fake.recorded("GET", "/system/info")] == [200, 401, 200]
    assert len(fake.token_requests) == 2


def test_rotating_refresh_tokens_are_followed(fake: FakeOscar) -> None:
    fake.oidc_rotate_refresh = True
    c = oidc_client(fake)
    c.info()
    fake.revoke_oidc_tokens()
    c.info()
    # the second exchange used the refresh token issued by the first (the fake accepts only that one)
    assert fake.token_requests[0]["refresh_token"] == "refresh-abc-123"
    assert fake.token_requests[1]["refresh_token"] not in ("", "refresh-abc-123")
    assert [r.status for r in fake.recorded("GET", "/system/info")] == [200, 401, 200]
    assert c.auth.refresh_token == fake.oidc_refresh_token


def test_invalid_refresh_token_is_unauthorized_without_secrets(fake: FakeOscar) -> None:
    auth = OidcAuth(
        refresh_token="bad-refresh-999", token_endpoint=fake.token_endpoint, client_secret="cs-777"
    )
    c = OscarClient(fake.endpoint, auth, cluster_id="fake")
    with pytest.raises(Unauthorized, match="Invalid refresh token") as info:
        c.info()
    assert info.value.cluster == "fake"
    for text in (str(info.value), repr(info.value), repr(auth), repr(c)):
        assert "bad-refresh-999" not in text and "cs-777" not in text
    assert not fake.recorded(path="/system/info")  # never sent a request without a token


def test_unreachable_token_endpoint(fake: FakeOscar) -> None:
    auth = OidcAuth(refresh_token="r", token_endpoint=f"http://127.0.0.1:{free_port()}/token", timeout=5)
    with pytest.raises(UpstreamUnavailable, match="token endpoint"):
        OscarClient(fake.endpoint, auth).info()


def test_static_token_is_used_and_not_refreshed(fake: FakeOscar) -> None:
    token = fake.issue_oidc_token()
    c = OscarClient(fake.endpoint, OidcAuth(token=token), cluster_id="fake")
    assert c.info()["version"]
    fake.revoke_oidc_tokens()
    with pytest.raises(Unauthorized) as info:
        c.info()
    assert fake.token_requests == []
    assert token not in str(info.value) and token not in repr(c.auth)


def test_token_endpoint_defaults() -> None:
    kc = make_jwt({"iss": "https://kc.example.org/realms/oscar", "exp": 1})
    assert OidcAuth(token=kc, refresh_token="r").token_endpoint == (
        "https://kc.example.org/realms/oscar/protocol/openid-connect/token"
    )
    assert OidcAuth(refresh_token="r").token_endpoint == DEFAULT_TOKEN_ENDPOINT
    with pytest.raises(ValueError, match="token or a refresh_token"):
        OidcAuth()


def test_jwt_claims_tolerates_garbage() -> None:
    assert jwt_claims("not-a-jwt") == {}
    assert jwt_claims("a.!!!.c") == {}
    assert jwt_claims(make_jwt({"exp": 5}))["exp"] == 5


def test_oidc_run_uses_the_service_token(fake: FakeOscar) -> None:
    svc = fake.add_service("echo")
    c = oidc_client(fake)
    assert c.run("echo", b"hi").content == b"hi"
    get = fake.recorded("GET", "/system/services/echo")[-1]
    assert get.headers["Authorization"].startswith("Bearer ey")
    assert fake.recorded("POST", "/run/echo")[-1].headers["Authorization"] == f"Bearer {svc['token']}"


def test_oidc_run_falls_back_to_the_access_token_when_the_service_is_unreadable(fake: FakeOscar) -> None:
    fake.add_service("public")
    c = oidc_client(fake)
    fake.inject(
        "GET", "/system/services/public", 403, body=b"User x doesn't have permision to get this service"
    )
    assert c.run("public", b"hi").content == b"hi"
    assert fake.recorded("POST", "/run/public")[-1].headers["Authorization"] == f"Bearer {c.auth.token}"


def test_oidc_job_refreshes_access_token_after_401(fake: FakeOscar) -> None:
    fake.add_service("public")
    c = oidc_client(fake)
    c.delegated_job_id_honoured = True
    fake.inject("GET", "/system/services/public", 403, times=5)
    c.auth.access_token()
    fake.revoke_oidc_tokens()
    job = c.submit_job("public", b"{}")
    assert job in fake.jobs["public"]
    assert [r.status for r in fake.recorded("POST", "/job/public")] == [401, 201]


def test_auth_reprs_hide_secrets() -> None:
    assert "pw" not in repr(BasicAuth("u", "pw")).replace("password", "")
    assert "tok123" not in repr(ServiceTokenAuth("tok123"))
    assert "rt-1" not in repr(OidcAuth(refresh_token="rt-1", client_secret="cs-1"))


# --------------------------------------------------------------------------- ClusterSpec
BASIC = {
    "id": "prod",
    "endpoint": "https://oscar.example.org/",
    "auth_kind": "basic",
    "user": "oscar",
    "password": "pw-1",
}


def test_cluster_spec_round_trip_and_redaction() -> None:
    spec = ClusterSpec.from_dict(BASIC)
    assert spec.endpoint == "https://oscar.example.org"
    assert spec.verify is True
    assert ClusterSpec.from_dict(spec.to_dict()) == spec
    public = spec.to_dict(secrets=False)
    assert "password" not in public and public["user"] == "oscar"
    red = spec.redacted()
    assert red["password"] == "***" and red["token"] == "" and red["user"] == "oscar"
    assert "pw-1" not in repr(spec) and "pw-1" not in str(red)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"auth_kind": "kerberos"}, "auth_kind: must be one of basic, oidc, token"),
        ({"id": ""}, "id: required"),
        ({"id": "bad id/x"}, "id: must be"),
        ({"endpoint": "oscar.example.org"}, "endpoint: must be an http"),
        ({"endpoint": "https://u:p@oscar.example.org"}, "endpoint: must not contain credentials"),
        ({"password": ""}, "password: required when auth_kind is basic"),
        ({"user": 5}, "user: must be a string"),
        ({"verify": 3}, "verify: must be"),
        ({"pasword": "x"}, "pasword: unknown field"),
        ({"auth_kind": "oidc", "password": ""}, "token: a token or a refresh_token is required"),
        ({"auth_kind": "token", "password": ""}, "token: required when auth_kind is token"),
    ],
)
def test_cluster_spec_errors_name_the_field(change: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        ClusterSpec.from_dict({**BASIC, **change})
    assert str(info.value).startswith(message)
    assert "pw-1" not in str(info.value)


def test_cluster_spec_rejects_non_dict() -> None:
    with pytest.raises(ValueError, match="cluster: must be an object"):
        ClusterSpec.from_dict(["x"])


@pytest.mark.parametrize(
    ("value", "expected"), [("False", False), ("true", True), (False, False), ("/etc/ca.pem", "/etc/ca.pem")]
)
def test_cluster_spec_verify(value: object, expected: object) -> None:
    assert ClusterSpec.from_dict({**BASIC, "verify": value}).verify == expected


def test_cluster_spec_builds_working_clients(fake: FakeOscar) -> None:
    basic = ClusterSpec.from_dict(
        {
            "id": "f",
            "endpoint": fake.endpoint,
            "auth_kind": "basic",
            "user": fake.user,
            "password": fake.password,
        }
    )
    c = basic.client(timeout=10)
    assert isinstance(c.auth, BasicAuth) and c.cluster_id == "f" and c.timeout == 10
    assert c.info()["version"]
    svc = fake.add_service("echo")
    token = ClusterSpec("t", fake.endpoint, "token", token=svc["token"]).client()
    assert isinstance(token.auth, ServiceTokenAuth)
    assert token.run("echo", b"x").content == b"x"
    oidc = ClusterSpec.from_dict(
        {
            "id": "o",
            "endpoint": fake.endpoint,
            "auth_kind": "oidc",
            "refresh_token": fake.oidc_refresh_token,
            "token_endpoint": fake.token_endpoint,
            "verify": "false",
        }
    ).client()
    assert isinstance(oidc.auth, OidcAuth) and oidc.verify is False and oidc.session.verify is False
    assert oidc.info()["version"]
    assert fake.token_requests[-1]["client_id"] == "token-portal"
