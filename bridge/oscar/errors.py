"""Typed errors for everything that can go wrong talking to an OSCAR cluster.

Callers (the bridge service, the CLI, Node-RED/NiFi adapters) need to tell "the
service does not exist" from "your credentials are wrong" from "the cluster is down"
without parsing text, so each HTTP outcome has its own class. Every error carries the
cluster id, the service name, the HTTP status and OSCAR's own message (its response
body), because OSCAR's bodies are usually the only explanation a user gets
("The service specification is not valid: ...").

Messages are built by the client, which scrubs its secrets out of them before raising:
an error may end up in a log line, an HTTP response of the bridge or an MQTT message.
"""

from __future__ import annotations

import json

# OSCAR often answers with an empty body (gin's c.Status); these fill the gap.
_DEFAULT_MESSAGES = {
    400: "bad request",
    401: "invalid credentials",
    403: "forbidden",
    404: "not found",
    409: "conflict",
    500: "internal server error",
    502: "bad gateway: the service is not ready yet or its container failed",
    503: "service unavailable",
    504: "gateway timeout",
}

# Keep error messages readable: OSCAR may return whole script outputs on failure.
MAX_MESSAGE_CHARS = 2000


class OscarError(Exception):
    """Base of every OSCAR client error.

    Attributes: ``status`` (HTTP status or None when no response came back),
    ``cluster`` (cluster id), ``service`` (service name or ""), ``message`` (OSCAR's own
    text or the client's explanation).
    """

    default_status: int | None = None

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        cluster: str = "",
        service: str = "",
    ) -> None:
        self.status = status if status is not None else self.default_status
        self.cluster = cluster
        self.service = service
        self.message = message or _DEFAULT_MESSAGES.get(self.status or 0, "OSCAR request failed")
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.cluster:
            where.append(f"cluster {self.cluster!r}")
        if self.service:
            where.append(f"service {self.service!r}")
        prefix = ", ".join(where)
        status = f"HTTP {self.status}: " if self.status is not None else ""
        return f"{prefix}: {status}{self.message}" if prefix else f"{status}{self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, cluster={self.cluster!r}, "
            f"service={self.service!r}, message={self.message!r})"
        )

    def to_dict(self) -> dict:
        """The fields the bridge puts in its JSON error bodies."""
        return {
            "error": self.message,
            "cluster": self.cluster,
            "service": self.service,
            "upstream_status": self.status,
        }


class BadRequest(OscarError):
    """400: OSCAR rejected the request (invalid service definition, duplicate name on v4.1+...)."""

    default_status = 400


class Unauthorized(OscarError):
    """401: missing or wrong credentials (or a service token that changed)."""

    default_status = 401


class Forbidden(OscarError):
    """403: authenticated, but not allowed (not the owner, quota exceeded...)."""

    default_status = 403


class NotFound(OscarError):
    """404: the service, job, bucket or route does not exist."""

    default_status = 404


class Conflict(OscarError):
    """409: the object already exists (duplicate service name before v4.1)."""

    default_status = 409


class ScriptFailed(OscarError):
    """500 from /run: the service's script or supervisor failed.

    ``body`` keeps the raw response (OSCAR's watchdog puts the combined output there),
    so callers can show what the script printed.
    """

    default_status = 500

    def __init__(self, message: str = "", *, body: bytes = b"", **kwargs) -> None:
        self.body = body
        super().__init__(message or "the service's script failed", **kwargs)


class UpstreamUnavailable(OscarError):
    """502/503/504, connection errors and timeouts: the cluster could not answer.

    Worth retrying later; the request may or may not have been processed when this
    comes from a timeout of a non-idempotent call.
    """


def body_text(body: bytes | str | None) -> str:
    """OSCAR's message from a response body: the text itself, or the `error`/`message`
    field of a JSON object (some v4 handlers answer ``{"error": ...}``)."""
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text.strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            for key in ("error_description", "error", "message"):
                if isinstance(obj.get(key), str) and obj[key]:
                    text = obj[key]
                    break
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[:MAX_MESSAGE_CHARS] + "..."
    return text


_BY_STATUS: dict[int, type[OscarError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    502: UpstreamUnavailable,
    503: UpstreamUnavailable,
    504: UpstreamUnavailable,
}


def error_for_status(
    status: int,
    body: bytes | str | None,
    *,
    cluster: str = "",
    service: str = "",
    run: bool = False,
) -> OscarError:
    """The typed error for an unsuccessful HTTP status.

    ``run=True`` (an extension of the contract, default off) marks a synchronous /run
    call, where a 500 means the service's script failed rather than OSCAR itself.
    Statuses without a class of their own give a plain OscarError.
    """
    message = body_text(body)
    if status == 500 and run:
        raw = body.encode() if isinstance(body, str) else (body or b"")
        return ScriptFailed(message, body=raw, status=status, cluster=cluster, service=service)
    cls = _BY_STATUS.get(status, OscarError)
    return cls(message, status=status, cluster=cluster, service=service)
