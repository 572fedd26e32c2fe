"""OscarClient: the one client of OSCAR's REST API (v3.x - v4.x), used by everything.

Design choices worth knowing:

- One ``requests.Session`` per client (connection pooling; TLS verification on by
  default) and a timeout on every call (``invoke_timeout`` for ``/run``).
- Retries with exponential backoff only where it is safe: idempotent methods (GET,
  PUT, DELETE, HEAD) after connection errors or 502/503/504. ``/run``, ``/job`` and
  service/bucket creation are never repeated, since OSCAR may have acted already.
- ``/run`` and ``/job`` only accept bearer tokens. With Basic or OIDC credentials the
  client reads the service's own token from ``GET /system/services/{name}`` (as
  oscar_python and oscar-cli do), caches it, and reads it again once after a 401,
  because OSCAR before v4.0 generated a new token on every update.
- ``submit_job`` names the job itself (``<svc>-<uuid4>``) and sends that name in
  ``X-Delegated-Job-ID``; OSCAR v4.1+ uses it. Older clusters ignore it and never return
  the name, so the client then finds the job by comparing the job list before and after
  the submission, and remembers which case applies so the listing is paid only when
  needed.
- Errors are typed (errors.py) and never contain the client's secrets.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests

from .auth import Auth, OidcAuth
from .errors import Forbidden, NotFound, OscarError, Unauthorized, UpstreamUnavailable, error_for_status

if TYPE_CHECKING:
    from . import codec

DELEGATED_JOB_HEADER = "X-Delegated-Job-ID"
IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "DELETE", "HEAD"})
RETRY_STATUSES = frozenset({502, 503, 504})
# How often submit_job re-reads the job list when a new job is not listed yet.
_JOB_DIFF_ATTEMPTS = 5


@dataclass
class JobPage:
    """One page of ``GET /system/logs/{svc}``; the legacy bare map gives a single page."""

    jobs: dict[str, dict] = field(default_factory=dict)
    next_page: str | None = None
    remaining_jobs: int | None = None


def job_name_for(service: str) -> str:
    """A job name as OSCAR makes them: ``<svc>-<uuid4>``, the service name cut to 16
    characters when it has 25 or more (keeps k8s names under 63 characters)."""
    prefix = service[:16] if len(service) >= 25 else service
    return f"{prefix}-{uuid.uuid4()}"


def _segment(value: str) -> str:
    """One URL path segment; names come from users, so never let them add segments."""
    return quote(str(value), safe="")


def _strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
    return urlunsplit(parts)


class OscarClient:
    """Every user-facing endpoint of one OSCAR cluster.

    ``verify`` is True, False or a CA bundle path. ``retries`` is how many times a safe
    call is repeated; ``backoff`` (extension) is the first delay in seconds, doubled
    each time. Thread-safe: the bridge shares one client between request threads.
    """

    def __init__(
        self,
        endpoint: str,
        auth: Auth | None = None,
        *,
        cluster_id: str = "",
        verify: bool | str = True,
        timeout: float = 30.0,
        invoke_timeout: float = 300.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        if not endpoint or not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"endpoint: must be an http(s) URL, got {_strip_userinfo(str(endpoint))!r}")
        self.endpoint = endpoint.rstrip("/")
        self.auth = auth
        self.cluster_id = cluster_id
        self.verify = verify
        self.timeout = timeout
        self.invoke_timeout = invoke_timeout
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.session = requests.Session()
        self.session.verify = verify
        self.session.headers["User-Agent"] = "oscar-bridge"
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}
        self._extra_secrets: set[str] = set()
        # None: not known yet; True/False: whether the cluster names jobs after our header.
        self.delegated_job_id_honoured: bool | None = None
        self._submit_locks: dict[str, threading.Lock] = {}

    def __repr__(self) -> str:
        return f"OscarClient(endpoint={_strip_userinfo(self.endpoint)!r}, cluster_id={self.cluster_id!r})"

    def close(self) -> None:
        """Release pooled connections."""
        self.session.close()

    def __enter__(self) -> OscarClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ system info
    def health(self) -> bool:
        """True when ``GET /health`` answers 200 (``Ok``); never raises for an unreachable cluster."""
        try:
            resp = self._request("GET", "/health", auth=False, retries=0)
        except OscarError:
            return False
        return resp.status_code == 200

    def info(self) -> dict:
        """``GET /system/info``: version, git commit, architecture, k8s and backend versions."""
        return self._json(self._request("GET", "/system/info"))

    def config(self) -> dict:
        """``GET /system/config`` as returned (v2: flat Config; v3+: ``{config, minio_provider, ...}``)."""
        return self._json(self._request("GET", "/system/config"))

    def minio_provider(self) -> dict:
        """The cluster's MinIO provider ``{endpoint, verify, access_key, secret_key, region}``.

        v2 returns it at the top level of the Config object; v3+ next to ``config``; a
        nested ``config.minio_provider`` is accepted too.
        """
        cfg = self.config()
        provider = cfg.get("minio_provider") if isinstance(cfg, dict) else None
        if not isinstance(provider, dict) and isinstance(cfg, dict) and isinstance(cfg.get("config"), dict):
            provider = cfg["config"].get("minio_provider")
        if not isinstance(provider, dict):
            raise OscarError("the cluster's /system/config has no minio_provider", cluster=self.cluster_id)
        return provider

    def status(self) -> dict:
        """``GET /system/status`` (v3.1+; its shape changed in v3.7)."""
        return self._json(self._request("GET", "/system/status"))

    # ------------------------------------------------------------------ services
    def list_services(self) -> list[dict]:
        """``GET /system/services``."""
        return self._json(self._request("GET", "/system/services")) or []

    def get_service(self, name: str) -> dict:
        """``GET /system/services/{name}``; NotFound when it does not exist."""
        return self._json(self._request("GET", f"/system/services/{_segment(name)}", service=name))

    def create_service(self, svc: dict) -> None:
        """``POST /system/services`` (201, empty). Not retried: OSCAR may have created it."""
        name = self._service_name(svc)
        self._request("POST", "/system/services", service=name, json_body=svc)
        self._forget_token(name)

    def update_service(self, svc: dict) -> None:
        """``PUT /system/services`` (204; 200 with federation warnings on v4.1)."""
        name = self._service_name(svc)
        self._request("PUT", "/system/services", service=name, json_body=svc)
        self._forget_token(name)  # OSCAR < v4.0 generated a new token on update

    def apply_service(self, svc: dict) -> str:
        """Create or update, as ``oscar-cli apply`` does: GET, then PUT if it exists else POST."""
        name = self._service_name(svc)
        try:
            self.get_service(name)
        except NotFound:
            self.create_service(svc)
            return "created"
        self.update_service(svc)
        return "updated"

    def delete_service(self, name: str) -> None:
        """``DELETE /system/services/{name}`` (204). Since v3.4 this also deletes its buckets."""
        self._request("DELETE", f"/system/services/{_segment(name)}", service=name)
        self._forget_token(name)

    def service_token(self, name: str, refresh: bool = False) -> str:
        """The service's own token for /run and /job, read from the service and cached."""
        if not refresh:
            with self._lock:
                cached = self._tokens.get(name)
            if cached:
                return cached
        token = self.get_service(name).get("token") or ""
        if not token:
            raise Unauthorized(
                "the service definition carries no token to invoke it with",
                cluster=self.cluster_id,
                service=name,
            )
        with self._lock:
            self._tokens[name] = token
        return token

    # ------------------------------------------------------------------ invocation
    def run(
        self,
        name: str,
        body: bytes,
        content_type: str = "application/json",
        *,
        token: str | None = None,
        timeout: float | None = None,
    ) -> requests.Response:
        """``POST /run/{name}``: synchronous invocation, the raw response back.

        A 500 raises ScriptFailed (the script or supervisor failed) with its output.
        """
        return self._invoke(
            "run", name, body, content_type, token=token, timeout=timeout or self.invoke_timeout
        )

    def invoke(self, name: str, data: bytes | str | dict | None, *, token: str | None = None) -> codec.Output:
        """Encode ``data`` the way OSCAR expects, run the service and decode its answer."""
        from . import codec  # imported here so the client does not depend on codec at import time

        body, content_type = codec.encode_input(data)
        resp = self.run(name, body, content_type, token=token)
        return codec.decode_output(resp.content, resp.headers.get(codec.OUTPUT_HINT_HEADER))

    def submit_job(
        self,
        name: str,
        body: bytes,
        content_type: str = "application/json",
        *,
        token: str | None = None,
    ) -> str:
        """``POST /job/{name}``: asynchronous invocation; returns the job's name.

        See the module docstring for how the name is known on every OSCAR version.
        """
        job = job_name_for(name)
        headers = {DELEGATED_JOB_HEADER: job}
        if self.delegated_job_id_honoured is True or not self._can_list_jobs():
            # Honoured, or nothing to compare with (a service token cannot read the job
            # list): the name we chose is the best answer there is.
            self._invoke("job", name, body, content_type, token=token, extra_headers=headers)
            return job
        with self._submit_lock(name):
            try:
                before = set(self._all_jobs(name))
            except (Unauthorized, Forbidden):
                self._invoke("job", name, body, content_type, token=token, extra_headers=headers)
                return job
            self._invoke("job", name, body, content_type, token=token, extra_headers=headers)
            for attempt in range(_JOB_DIFF_ATTEMPTS):
                after = self._all_jobs(name)
                if job in after:
                    self.delegated_job_id_honoured = True
                    return job
                new = [j for j in after if j not in before]
                if new:
                    self.delegated_job_id_honoured = False
                    # Several new jobs: someone else submitted too; ours is the newest.
                    return max(new, key=lambda j: str(after[j].get("creation_time") or ""))
                time.sleep(min(0.2 * (2**attempt), 2.0))
        raise OscarError(
            "the job was submitted but does not appear in the job list, so its name is unknown",
            cluster=self.cluster_id,
            service=name,
        )

    # ------------------------------------------------------------------ jobs
    def list_jobs(self, name: str, page: str | None = None) -> JobPage:
        """One page of ``GET /system/logs/{name}`` in either shape.

        v3.6.4+: ``{"jobs": {...}, "next_page": "...", "remaining_jobs": N}``;
        before: a bare ``{"<job>": {...}}`` map (a single page).
        """
        params = {"page": page} if page else None
        data = self._json(self._request("GET", f"/system/logs/{_segment(name)}", service=name, params=params))
        return self._job_page(data)

    def iter_jobs(self, name: str) -> Iterator[tuple[str, dict]]:
        """Every job of the service, following ``next_page`` until the last page."""
        page: str | None = None
        seen_pages: set[str] = set()
        while True:
            result = self.list_jobs(name, page)
            yield from result.jobs.items()
            if not result.next_page or result.next_page in seen_pages:
                return
            seen_pages.add(result.next_page)
            page = result.next_page

    def job_logs(self, name: str, job: str, timestamps: bool = False) -> str:
        """``GET /system/logs/{svc}/{job}``: the job container's logs as text."""
        params = {"timestamps": "true"} if timestamps else None
        resp = self._request(
            "GET", f"/system/logs/{_segment(name)}/{_segment(job)}", service=name, params=params
        )
        return resp.content.decode("utf-8", "replace")

    def delete_job(self, name: str, job: str) -> None:
        """``DELETE /system/logs/{svc}/{job}`` (204)."""
        self._request("DELETE", f"/system/logs/{_segment(name)}/{_segment(job)}", service=name)

    def delete_jobs(self, name: str, all: bool = False) -> None:
        """``DELETE /system/logs/{svc}``: succeeded jobs only, or every job with ``all=True``."""
        params = {"all": "true"} if all else None
        self._request("DELETE", f"/system/logs/{_segment(name)}", service=name, params=params)

    # ------------------------------------------------------------------ buckets
    def list_buckets(self) -> list[dict]:
        """``GET /system/buckets`` (v3.6+). OSCAR answers ``null`` when there are none."""
        data = self._json(self._request("GET", "/system/buckets"))
        if isinstance(data, dict):  # oscar-cli also accepts {"buckets": [...]}
            data = data.get("buckets")
        return list(data or [])

    def create_bucket(
        self, name: str, visibility: str = "private", allowed_users: list[str] | None = None
    ) -> None:
        """``POST /system/buckets`` (201). A ``bucket/folder`` name creates the folder."""
        body = {"bucket_name": name, "visibility": visibility, "allowed_users": list(allowed_users or [])}
        self._request("POST", "/system/buckets", json_body=body)

    def delete_bucket(self, name: str) -> None:
        """``DELETE /system/buckets/{name}`` (204): objects and bucket removed."""
        self._request("DELETE", f"/system/buckets/{_segment(name)}")

    def presign(
        self,
        bucket: str,
        object_key: str,
        operation: str = "download",
        expires_in: int = 900,
        content_type: str | None = None,
    ) -> dict:
        """``POST /system/buckets/{bucket}/presign`` (v3.6.4+).

        Sends ``expires_in``, the key OSCAR reads (oscar_python sends ``expires``, which
        OSCAR ignores). Answers ``{object_key, operation, method, url, expires_at, headers?}``.
        """
        if operation not in ("download", "upload"):
            raise ValueError("operation: must be one of download, upload")
        body: dict[str, Any] = {
            "object_key": object_key,
            "operation": operation,
            "expires_in": int(expires_in),
        }
        if content_type:
            body["content_type"] = content_type
        return self._json(
            self._request("POST", f"/system/buckets/{_segment(bucket)}/presign", json_body=body)
        )

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _service_name(svc: dict) -> str:
        name = svc.get("name") if isinstance(svc, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError("name: a service definition needs a non-empty name")
        return name

    def _forget_token(self, name: str) -> None:
        with self._lock:
            self._tokens.pop(name, None)

    def _submit_lock(self, name: str) -> threading.Lock:
        with self._lock:
            return self._submit_locks.setdefault(name, threading.Lock())

    def _can_list_jobs(self) -> bool:
        return self.auth is not None and self.auth.system_access

    def _all_jobs(self, name: str) -> dict[str, dict]:
        return dict(self.iter_jobs(name))

    @staticmethod
    def _job_page(data: Any) -> JobPage:
        if data is None:
            return JobPage()
        if not isinstance(data, dict):
            raise OscarError(f"unexpected job list of type {type(data).__name__}")
        if isinstance(data.get("jobs"), dict | type(None)) and set(data) <= {
            "jobs",
            "next_page",
            "remaining_jobs",
        }:
            remaining = data.get("remaining_jobs")
            return JobPage(
                jobs=dict(data.get("jobs") or {}),
                next_page=data.get("next_page") or None,
                remaining_jobs=int(remaining) if isinstance(remaining, int | float) else None,
            )
        return JobPage(jobs={k: v for k, v in data.items() if isinstance(v, dict)})

    def _invoke(
        self,
        kind: str,
        name: str,
        body: bytes,
        content_type: str,
        *,
        token: str | None,
        timeout: float | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """POST /run or /job with the right bearer token; one token re-read after a 401."""
        path = f"/{kind}/{_segment(name)}"
        from_service = False
        if token:
            bearer = token
            self._extra_secrets.add(token)
        elif self.auth is not None and not self.auth.system_access:
            bearer = self.auth.bearer() or ""
        elif self.auth is None:
            raise Unauthorized(
                "no credentials: give a service token to invoke this service",
                cluster=self.cluster_id,
                service=name,
            )
        else:
            bearer, from_service = self._service_bearer(name)
        headers = {"Content-Type": content_type}
        headers.update(extra_headers or {})
        for attempt in range(2):
            headers["Authorization"] = "Bearer " + bearer
            try:
                return self._request(
                    "POST",
                    path,
                    service=name,
                    data=body,
                    headers=headers,
                    auth=False,
                    timeout=timeout,
                    run=(kind == "run"),
                )
            except Unauthorized:
                if attempt == 0 and from_service:
                    # The service token may have changed (OSCAR < v4.0 renews it on update).
                    fresh = self.service_token(name, refresh=True)
                    if fresh != bearer:
                        bearer = fresh
                        continue
                elif attempt == 0 and not token and isinstance(self.auth, OidcAuth):
                    if self._refresh_auth(name):
                        bearer = self.auth.bearer() or ""
                        continue
                raise
        raise AssertionError("unreachable")

    def _service_bearer(self, name: str) -> tuple[str, bool]:
        """(token, whether it is the service's own token) for Basic/OIDC clients."""
        try:
            return self.service_token(name), True
        except (Forbidden, Unauthorized):
            # An OIDC user may invoke services it cannot read (public ones): OSCAR also
            # accepts the user's own access token on /run and /job.
            if isinstance(self.auth, OidcAuth):
                return self.auth.bearer() or "", False
            raise

    def _request(
        self,
        method: str,
        path: str,
        *,
        service: str = "",
        params: dict | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        timeout: float | None = None,
        retries: int | None = None,
        run: bool = False,
    ) -> requests.Response:
        """One API call with auth, timeout, safe retries and typed errors."""
        url = self.endpoint + path
        send_headers = dict(headers or {})
        if auth and self.auth is not None and not self.auth.system_access:
            raise Unauthorized(
                "a service token is accepted only on /run and /job, not on " + path,
                cluster=self.cluster_id,
                service=service,
            )
        max_retries = self.retries if retries is None else retries
        if method not in IDEMPOTENT_METHODS:
            max_retries = 0
        refreshed = False
        attempt = 0
        while True:
            if auth and self.auth is not None:
                send_headers.update(self._auth_headers(service))
            try:
                resp = self.session.request(
                    method,
                    url,
                    params=params,
                    json=json_body,
                    data=data,
                    headers=send_headers,
                    timeout=timeout or self.timeout,
                    # per call: a session-level verify loses to REQUESTS_CA_BUNDLE (requests#3829)
                    verify=self.verify,
                )
            except requests.RequestException as exc:
                if attempt < max_retries:
                    self._sleep(attempt)
                    attempt += 1
                    continue
                raise UpstreamUnavailable(
                    self._scrub(self._describe(exc, method, path)),
                    cluster=self.cluster_id,
                    service=service,
                ) from None
            if resp.status_code in RETRY_STATUSES and attempt < max_retries:
                resp.close()
                self._sleep(attempt)
                attempt += 1
                continue
            if resp.status_code == 401 and auth and not refreshed and self.auth is not None:
                refreshed = True
                if self._refresh_auth(service):
                    continue
            if resp.status_code >= 400:
                err = error_for_status(
                    resp.status_code, resp.content, cluster=self.cluster_id, service=service, run=run
                )
                err.message = self._scrub(err.message)
                err.args = (self._scrub(str(err.args[0])),)
                raise err
            return resp

    def _auth_headers(self, service: str) -> dict[str, str]:
        try:
            return self.auth.system_headers() if self.auth else {}
        except OscarError as exc:
            exc.cluster = exc.cluster or self.cluster_id
            exc.service = exc.service or service
            exc.args = (self._scrub(exc._render()),)
            raise

    def _refresh_auth(self, service: str) -> bool:
        assert self.auth is not None
        try:
            return self.auth.refresh_after_401()
        except OscarError as exc:
            exc.cluster = exc.cluster or self.cluster_id
            exc.service = exc.service or service
            exc.args = (self._scrub(exc._render()),)
            raise

    def _sleep(self, attempt: int) -> None:
        time.sleep(min(self.backoff * (2**attempt), 30.0))

    def _describe(self, exc: requests.RequestException, method: str, path: str) -> str:
        kind = "timed out" if isinstance(exc, requests.Timeout) else "failed"
        where = _strip_userinfo(self.endpoint) + path
        reason = str(exc.args[0]) if exc.args else type(exc).__name__
        return f"{method} {where} {kind}: {type(exc).__name__}: {reason}"

    def _secrets(self) -> list[str]:
        found = list(self.auth.secrets()) if self.auth else []
        with self._lock:
            found.extend(self._tokens.values())
        found.extend(self._extra_secrets)
        parts = urlsplit(self.endpoint)
        if parts.password:
            found.append(parts.password)
        # Longest first, so a secret containing another is replaced whole.
        return sorted({s for s in found if s and len(s) >= 3}, key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    def _json(self, resp: requests.Response) -> Any:
        if not resp.content.strip():
            return None
        try:
            return resp.json()
        except ValueError:
            raise OscarError(
                f"expected JSON from {resp.request.method} {urlsplit(resp.url).path}, got "
                f"{resp.headers.get('Content-Type', 'no content type')}",
                status=resp.status_code,
                cluster=self.cluster_id,
            ) from None
