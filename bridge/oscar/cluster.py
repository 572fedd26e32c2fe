"""ClusterSpec: how to reach and authenticate to one OSCAR cluster.

The bridge service persists clusters as ClusterSpec dicts and the CLI keeps them in its
config file, so this is the single place that validates them (errors name the field),
decides which fields are secret, and turns a spec into an OscarClient.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from .auth import DEFAULT_CLIENT_ID, Auth, BasicAuth, OidcAuth, ServiceTokenAuth

AUTH_KINDS = ("basic", "oidc", "token")
SECRET_FIELDS = ("password", "token", "refresh_token", "client_secret")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
REDACTED = "***"


@dataclass
class ClusterSpec:
    """One cluster: endpoint, auth kind and its secrets, TLS verification.

    ``auth_kind``: ``basic`` (user + password), ``oidc`` (token and/or refresh_token,
    optional token_endpoint/client_id/client_secret) or ``token`` (a service token: only
    /run and /job). ``verify``: True, False or a CA bundle path. Secrets stay out of repr.
    """

    id: str
    endpoint: str
    auth_kind: str
    user: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    token_endpoint: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    verify: bool | str = True

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ (de)serialise
    @classmethod
    def from_dict(cls, d: Any) -> ClusterSpec:
        """Build and validate a spec; ValueError names the offending field."""
        if not isinstance(d, dict):
            raise ValueError(f"cluster: must be an object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown field (known: {', '.join(sorted(known))})")
        for name in ("id", "endpoint", "auth_kind"):
            if name not in d or d[name] in (None, ""):
                raise ValueError(f"{name}: required")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d or d[f.name] is None:
                continue
            value = d[f.name]
            if f.name == "verify":
                value = _parse_verify(value)
            elif not isinstance(value, str):
                raise ValueError(f"{f.name}: must be a string, got {type(value).__name__}")
            values[f.name] = value
        return cls(**values)

    def to_dict(self, secrets: bool = True) -> dict:
        """All fields; with ``secrets=False`` the secret fields are left out."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if not secrets:
            for name in SECRET_FIELDS:
                out.pop(name, None)
        return out

    def redacted(self) -> dict:
        """All fields, secret values replaced by ``***`` (empty ones stay empty), so a
        user can see which secrets are set without seeing them."""
        out = self.to_dict()
        for name in SECRET_FIELDS:
            if out.get(name):
                out[name] = REDACTED
        return out

    # ------------------------------------------------------------------ behaviour
    def validate(self) -> None:
        """Raise ValueError naming the first invalid field."""
        if not isinstance(self.id, str) or not _ID_RE.match(self.id):
            raise ValueError(
                "id: must be 1-63 characters of letters, digits, '.', '_' or '-', starting with "
                "a letter or digit"
            )
        if not isinstance(self.endpoint, str):
            raise ValueError("endpoint: must be a string")
        parts = urlsplit(self.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("endpoint: must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("endpoint: must not contain credentials; use user/password")
        self.endpoint = self.endpoint.rstrip("/")
        if self.auth_kind not in AUTH_KINDS:
            raise ValueError(f"auth_kind: must be one of {', '.join(AUTH_KINDS)}")
        if self.auth_kind == "basic":
            if not self.user:
                raise ValueError("user: required when auth_kind is basic")
            if not self.password:
                raise ValueError("password: required when auth_kind is basic")
        elif self.auth_kind == "oidc":
            if not self.token and not self.refresh_token:
                raise ValueError("token: a token or a refresh_token is required when auth_kind is oidc")
            if self.token_endpoint and urlsplit(self.token_endpoint).scheme not in ("http", "https"):
                raise ValueError("token_endpoint: must be an http:// or https:// URL")
        elif not self.token:
            raise ValueError("token: required when auth_kind is token")
        self.verify = _parse_verify(self.verify)

    def auth(self) -> Auth:
        """The auth object for this spec."""
        if self.auth_kind == "basic":
            return BasicAuth(self.user, self.password)
        if self.auth_kind == "oidc":
            return OidcAuth(
                token=self.token or None,
                refresh_token=self.refresh_token or None,
                token_endpoint=self.token_endpoint or None,
                client_id=self.client_id or DEFAULT_CLIENT_ID,
                client_secret=self.client_secret or None,
                verify=self.verify,
            )
        return ServiceTokenAuth(self.token)

    def client(self, **kwargs: Any):  # -> OscarClient (imported lazily: client imports codec)
        """A new OscarClient for this cluster; ``kwargs`` go to OscarClient (timeouts...)."""
        from .client import OscarClient

        return OscarClient(self.endpoint, self.auth(), cluster_id=self.id, verify=self.verify, **kwargs)


def _parse_verify(value: Any) -> bool | str:
    """True/False, the usual spellings of them in config files and env vars (so that
    "False" means False, unlike oscar_python's bool("False")), or a CA bundle path."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip():
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        return value
    raise ValueError("verify: must be true, false or the path of a CA bundle")
