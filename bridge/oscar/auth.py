"""The three ways a client authenticates to OSCAR.

OSCAR accepts admin HTTP Basic or an OIDC bearer token on ``/system/*``, and only a
bearer token (the service's own 64-hex token or an OIDC token) on ``/run`` and
``/job``. Each class here knows what to send, how to recover from a 401 (an OIDC token
can be refreshed; a password cannot), and which strings are secret so the client can
scrub them out of error messages. None of them shows a secret in its repr.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Sequence

import requests

from .errors import Unauthorized, UpstreamUnavailable, body_text

# oscar_python's defaults: EGI Check-in, the most common OSCAR identity provider.
DEFAULT_TOKEN_ENDPOINT = "https://aai.egi.eu/auth/realms/egi/protocol/openid-connect/token"
DEFAULT_SCOPES: tuple[str, ...] = ("openid", "email", "profile", "voperson_id", "eduperson_entitlement")
DEFAULT_CLIENT_ID = "token-portal"


class Auth:
    """Common interface; subclasses override what they support."""

    #: whether the credentials are accepted on /system/* (a service token is not)
    system_access = True

    def system_headers(self) -> dict[str, str]:
        """Headers for /system/* calls."""
        return {}

    def bearer(self) -> str | None:
        """A bearer token usable on /run and /job by itself, if this auth has one."""
        return None

    def refresh_after_401(self) -> bool:
        """Try to get fresh credentials after a 401; True when a retry may now succeed."""
        return False

    def secrets(self) -> list[str]:
        """Every secret string this auth holds, for scrubbing messages."""
        return []


class BasicAuth(Auth):
    """OSCAR's admin user and password (``OSCAR_USERNAME``/``OSCAR_PASSWORD``)."""

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self.password = password

    def system_headers(self) -> dict[str, str]:
        raw = f"{self.user}:{self.password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}

    def secrets(self) -> list[str]:
        raw = f"{self.user}:{self.password}".encode()
        return [self.password, base64.b64encode(raw).decode("ascii")]

    def __repr__(self) -> str:
        return f"BasicAuth(user={self.user!r}, password='***')"


class ServiceTokenAuth(Auth):
    """A service's own token: enough to invoke that service, nothing else."""

    system_access = False

    def __init__(self, token: str) -> None:
        self.token = token

    def bearer(self) -> str | None:
        return self.token

    def secrets(self) -> list[str]:
        return [self.token]

    def __repr__(self) -> str:
        return "ServiceTokenAuth(token='***')"


def jwt_claims(token: str) -> dict:
    """The claims of a JWT, decoded WITHOUT verifying the signature.

    Only used to read ``exp`` (when to refresh) and ``iss`` (where to refresh); OSCAR
    verifies the token, so trusting it here cannot grant anything.
    """
    parts = token.split(".")
    if len(parts) < 2:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, UnicodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


class OidcAuth(Auth):
    """An OIDC access token, either fixed or kept fresh with a refresh token.

    With a refresh token the access token is exchanged at ``token_endpoint``
    (``grant_type=refresh_token``, form-encoded) and renewed *before* it expires, using
    the response's ``expires_in`` or else the token's ``exp`` claim, so long-running
    bridges never send a stale token. A 401 forces one more refresh, because tokens can
    be revoked early. Without ``token_endpoint`` the one derived from the token's issuer
    (Keycloak layout, as oscar-cli does) or EGI Check-in (as oscar_python does) is used.

    ``verify``/``timeout`` apply to the token endpoint; ``leeway`` is how many seconds
    before expiry a token is renewed (at most half its lifetime); ``clock`` is a seam
    for tests. All keyword extensions of the contract, with safe defaults.
    """

    def __init__(
        self,
        token: str | None = None,
        refresh_token: str | None = None,
        token_endpoint: str | None = None,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str | None = None,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        *,
        verify: bool | str = True,
        timeout: float = 30.0,
        leeway: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not token and not refresh_token:
            raise ValueError("OidcAuth needs a token or a refresh_token")
        self.refresh_token = refresh_token or None
        self.client_id = client_id or DEFAULT_CLIENT_ID
        self.client_secret = client_secret or None
        self.scopes = tuple(scopes)
        self.verify = verify
        self.timeout = timeout
        self.leeway = leeway
        self._clock = clock
        self._lock = threading.Lock()
        self._session: requests.Session | None = None
        self._token: str | None = token or None
        self._expires_at: float | None = None
        self._lifetime: float | None = None
        self.refresh_count = 0
        if self._token:
            self._set_expiry_from_claims(self._token)
        self.token_endpoint = token_endpoint or self._derived_endpoint() or DEFAULT_TOKEN_ENDPOINT

    # -- public -------------------------------------------------------------------------
    @property
    def token(self) -> str | None:
        """The current access token (may be None before the first exchange)."""
        return self._token

    def access_token(self) -> str:
        """A valid access token, refreshed first if it is about to expire."""
        with self._lock:
            if self._token is None or (self.refresh_token and self._expiring()):
                self._refresh_locked()
            assert self._token is not None
            return self._token

    def system_headers(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.access_token()}

    def bearer(self) -> str | None:
        return self.access_token()

    def refresh_after_401(self) -> bool:
        if not self.refresh_token:
            return False
        with self._lock:
            self._refresh_locked()
        return True

    def secrets(self) -> list[str]:
        return [s for s in (self._token, self.refresh_token, self.client_secret) if s]

    def __repr__(self) -> str:
        mode = "refresh" if self.refresh_token else "static"
        return (
            f"OidcAuth(mode={mode!r}, token_endpoint={self.token_endpoint!r}, client_id={self.client_id!r})"
        )

    # -- internals ----------------------------------------------------------------------
    def _derived_endpoint(self) -> str | None:
        iss = jwt_claims(self._token).get("iss") if self._token else None
        if isinstance(iss, str) and iss.startswith(("http://", "https://")):
            return iss.rstrip("/") + "/protocol/openid-connect/token"
        return None

    def _set_expiry_from_claims(self, token: str) -> None:
        claims = jwt_claims(token)
        exp, iat = claims.get("exp"), claims.get("iat")
        if isinstance(exp, int | float):
            self._expires_at = float(exp)
            now = self._clock()
            start = float(iat) if isinstance(iat, int | float) else now
            self._lifetime = max(float(exp) - start, 0.0)
        else:
            self._expires_at = None
            self._lifetime = None

    def _expiring(self) -> bool:
        if self._expires_at is None:
            return False  # unknown expiry: use it until OSCAR answers 401
        margin = self.leeway
        if self._lifetime:
            margin = min(margin, self._lifetime / 2)
        return self._clock() >= self._expires_at - margin

    def _refresh_locked(self) -> None:
        if not self.refresh_token:
            raise Unauthorized("the OIDC token expired and there is no refresh token to renew it")
        data = {
            "grant_type": "refresh_token",
            "refresh_token": self.refresh_token,
            "client_id": self.client_id,
        }
        if self.client_secret:
            data["client_secret"] = self.client_secret
        if self.scopes:
            data["scope"] = " ".join(self.scopes)
        if self._session is None:
            self._session = requests.Session()
        try:
            resp = self._session.post(
                self.token_endpoint,
                data=data,
                headers={"Accept": "application/json"},
                timeout=self.timeout,
                verify=self.verify,
            )
        except requests.RequestException as exc:
            raise UpstreamUnavailable(
                f"cannot reach the OIDC token endpoint {self.token_endpoint}: {type(exc).__name__}"
            ) from None
        if resp.status_code != 200:
            message = self._scrub(body_text(resp.content))
            raise Unauthorized(
                f"refreshing the OIDC token at {self.token_endpoint} failed: {message or resp.reason}",
                status=resp.status_code,
            )
        try:
            payload = resp.json()
            token = payload["access_token"]
        except (ValueError, KeyError, TypeError):
            raise Unauthorized(
                f"the OIDC token endpoint {self.token_endpoint} answered without an access_token"
            ) from None
        now = self._clock()
        self._token = token
        self.refresh_count += 1
        if payload.get("refresh_token"):  # rotating refresh tokens (Keycloak's default)
            self.refresh_token = payload["refresh_token"]
        expires_in = payload.get("expires_in")
        if isinstance(expires_in, int | float) and expires_in > 0:
            self._expires_at = now + float(expires_in)
            self._lifetime = float(expires_in)
        else:
            self._set_expiry_from_claims(token)

    def _scrub(self, text: str) -> str:
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return text
