"""FakeOscar: a small, faithful stand-in for OSCAR's REST API, for client tests.

It reproduces what clients can observe of a real OSCAR Manager (gin) rather than how
it works inside: 201 with an empty body on create and on /job, 204 on update and
delete, 404 with an empty body for a missing service, 401 with an empty body and
``WWW-Authenticate``, 301 for a trailing slash, ``404 page not found`` for unknown
routes, and Go-style compact JSON. Switches select version-specific behaviour:

- ``job_list_shape``: ``"paged"`` (v3.6.4+ ``{jobs,next_page,remaining_jobs}``, pages of
  ``page_size``) or ``"legacy"`` (bare map);
- ``honour_delegated_id``: name jobs after ``X-Delegated-Job-ID`` (v4.1+) or not;
- ``regenerate_token_on_update``: OSCAR < v4.0 gave a service a new token on update;
- ``config_shape``: ``"v3"`` (``{config, minio_provider}``) or ``"v2"`` (flat);
- ``duplicate_status``: 409 (<= v4.0) or 400 (v4.1).

It also serves an OIDC token endpoint at ``/oidc/token`` (refresh-token grant, short
lived JWT-shaped tokens) and accepts those tokens as OIDC bearers; ``inject()`` makes
the next matching requests fail (502/503...) or stall (for timeouts). Every request is
recorded in ``requests`` for assertions.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import ssl
import subprocess
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from werkzeug.datastructures import Headers
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from .ports import free_port, wait_until

TOKEN_PATH = "/oidc/token"


def go_json(obj: Any) -> bytes:
    """gin's c.JSON: compact, non-ASCII kept, HTML characters escaped."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode("utf-8")


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def self_signed_cert(directory: str) -> tuple[str, str]:
    """A throw-away certificate for 127.0.0.1 (it is its own CA), made with openssl."""
    cert, key = f"{directory}/cert.pem", f"{directory}/key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def make_jwt(claims: dict) -> str:
    """An unsigned JWT-shaped token (the client never verifies signatures)."""

    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.sig"


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: Headers  # case-insensitive, like HTTP
    body: bytes
    status: int = 0


@dataclass
class _Fault:
    method: str
    path: str
    status: int
    times: int
    delay: float
    body: bytes


@dataclass
class _Job:
    service: str
    status: str
    created: float
    body: bytes


@dataclass
class FakeOscar:
    """Start with ``start()`` (or as a context manager); ``endpoint`` is its base URL."""

    user: str = "oscar"
    password: str = "s3cr3t-pass"
    job_list_shape: str = "paged"
    page_size: int = 3
    honour_delegated_id: bool = True
    regenerate_token_on_update: bool = False
    config_shape: str = "v3"
    duplicate_status: int = 409
    # (certfile, keyfile): serve HTTPS with that certificate
    tls: tuple[str, str] | None = None
    # OIDC token endpoint
    oidc_client_id: str = "token-portal"
    oidc_refresh_token: str = "refresh-abc-123"
    oidc_token_lifetime: float = 300.0
    oidc_send_expires_in: bool = True
    oidc_rotate_refresh: bool = False
    minio_secret: str = "minio-secret-key"
    services: dict[str, dict] = field(default_factory=dict)
    jobs: dict[str, dict[str, _Job]] = field(default_factory=dict)
    buckets: dict[str, dict] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    run_responses: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    run_headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._faults: list[_Fault] = []
        self._oidc_tokens: dict[str, float] = {}  # token -> server-side expiry
        self._stopping = threading.Event()
        self._server = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def endpoint(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def token_endpoint(self) -> str:
        return self.endpoint + TOKEN_PATH

    def start(self) -> FakeOscar:
        self.port = free_port()
        ssl_context = None
        if self.tls:
            ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ssl_context.load_cert_chain(*self.tls)
        self._server = make_server("127.0.0.1", self.port, self._wsgi, threaded=True, ssl_context=ssl_context)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-oscar", daemon=True)
        self._thread.start()
        probe = ssl.create_default_context(cafile=self.tls[0]) if self.tls else None
        ok = wait_until(
            lambda: urllib.request.urlopen(self.endpoint + "/health", timeout=5, context=probe).status == 200
        )
        if not ok:
            raise RuntimeError("fake OSCAR did not start")
        with self._lock:
            self.requests.clear()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> FakeOscar:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test controls
    def inject(
        self,
        method: str,
        path: str,
        status: int = 503,
        *,
        times: int = 1,
        delay: float = 0.0,
        body: bytes = b"",
    ) -> None:
        """Make the next ``times`` requests to ``method path`` (path prefix) answer
        ``status`` with ``body`` after ``delay`` seconds (status 0: stall, then serve)."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), path, status, times, delay, body))

    def add_service(self, name: str, **extra: Any) -> dict:
        """Create a service directly (as if POSTed)."""
        svc = {"name": name, "image": "alpine", "script": "echo hi", **extra}
        with self._lock:
            self._store_service(svc, owner="cluster_admin")
            return self.services[name]

    def add_job(self, service: str, name: str | None = None, status: str = "Succeeded") -> str:
        name = name or f"{service}-{uuid.uuid4()}"
        with self._lock:
            created = time.time() + len(self.jobs.get(service, {}))  # strictly increasing
            self.jobs.setdefault(service, {})[name] = _Job(service, status, created, b"")
        return name

    def revoke_oidc_tokens(self) -> None:
        """Invalidate every issued access token (as an IdP session logout would)."""
        with self._lock:
            self._oidc_tokens.clear()

    def issue_oidc_token(self, lifetime: float | None = None, iss: str | None = None) -> str:
        """An access token the fake accepts (as if obtained elsewhere)."""
        with self._lock:
            return self._issue(lifetime if lifetime is not None else self.oidc_token_lifetime, iss)

    def recorded(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and (path is None or r.path == path)
            ]

    # ------------------------------------------------------------------ WSGI
    def _wsgi(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        rec = Recorded(request.method, request.path, dict(request.args), Headers(request.headers), body)
        with self._lock:
            self.requests.append(rec)
        response = self._handle(request, body)
        rec.status = response.status_code
        return response(environ, start_response)

    def _handle(self, request: Request, body: bytes) -> Response:
        fault = self._take_fault(request.method, request.path)
        if fault is not None:
            self._stopping.wait(fault.delay)
            if fault.status:
                return Response(fault.body, status=fault.status, content_type="text/plain; charset=utf-8")
        path = request.path
        if path != "/" and path.endswith("/"):
            code = 301 if request.method == "GET" else 307
            return Response(b"", status=code, headers={"Location": path.rstrip("/")})
        if path == "/health" and request.method == "GET":
            return Response(b"Ok", content_type="text/plain; charset=utf-8")
        if path == TOKEN_PATH and request.method == "POST":
            return self._token_endpoint(request)
        m = re.fullmatch(r"/(run|job)/([^/]+)", path)
        if m and request.method == "POST":
            return self._invoke(m.group(1), m.group(2), request, body)
        if path.startswith("/system/"):
            if not self._system_auth_ok(request.headers.get("Authorization", "")):
                return self._unauthorized()
            return self._system(request, body)
        return self._text(404, "404 page not found")

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method == method and path.startswith(fault.path) and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    # ------------------------------------------------------------------ auth
    @staticmethod
    def _unauthorized() -> Response:
        return Response(b"", status=401, headers={"WWW-Authenticate": 'Basic realm="Authorization Required"'})

    def _system_auth_ok(self, header: str) -> bool:
        if header.startswith("Basic "):
            expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            return header[6:] == expected
        if header.startswith("Bearer "):
            return self._oidc_ok(header[7:].strip())
        return False

    def _oidc_ok(self, token: str) -> bool:
        with self._lock:
            expiry = self._oidc_tokens.get(token)
        return expiry is not None and time.time() < expiry

    def _issue(self, lifetime: float, iss: str | None = None) -> str:
        now = time.time()
        claims = {"sub": "user-1", "iat": int(now), "exp": int(now + lifetime), "jti": uuid.uuid4().hex}
        claims["iss"] = iss or self.endpoint
        token = make_jwt(claims)
        self._oidc_tokens[token] = now + lifetime
        return token

    def _token_endpoint(self, request: Request) -> Response:
        form = request.form.to_dict()
        with self._lock:
            self.token_requests.append(form)
            if (
                form.get("grant_type") != "refresh_token"
                or form.get("refresh_token") != self.oidc_refresh_token
                or form.get("client_id") != self.oidc_client_id
            ):
                return Response(
                    go_json({"error": "invalid_grant", "error_description": "Invalid refresh token"}),
                    status=400,
                    content_type="application/json",
                )
            token = self._issue(self.oidc_token_lifetime)
            payload: dict[str, Any] = {"access_token": token, "token_type": "Bearer"}
            if self.oidc_send_expires_in:
                payload["expires_in"] = int(self.oidc_token_lifetime)
            if self.oidc_rotate_refresh:
                self.oidc_refresh_token = "refresh-" + secrets.token_hex(8)
                payload["refresh_token"] = self.oidc_refresh_token
        return Response(go_json(payload), content_type="application/json")

    # ------------------------------------------------------------------ /run and /job
    def _invoke(self, kind: str, name: str, request: Request, body: bytes) -> Response:
        header = request.headers.get("Authorization", "")
        with self._lock:
            svc = self.services.get(name)
            if not header.startswith("Bearer "):
                return Response(b"", status=401)
            token = header[7:].strip()
            if len(token) == 64:
                if svc is None or token != svc["token"]:
                    return Response(b"", status=401)
            elif not self._oidc_ok(token):
                return Response(b"", status=401)
            elif svc is None:
                return Response(b"", status=404)
            if kind == "job":
                delegated = request.headers.get("X-Delegated-Job-ID")
                if self.honour_delegated_id and delegated:
                    job = delegated
                else:
                    prefix = name[:16] if len(name) >= 25 else name
                    job = f"{prefix}-{uuid.uuid4()}"
                created = time.time() + len(self.jobs.get(name, {}))
                self.jobs.setdefault(name, {})[job] = _Job(name, "Pending", created, body)
                return Response(b"", status=201)
            status, out = self.run_responses.get(name, (200, body))
            headers = {"X-Duration-Seconds": "0.01", **self.run_headers.get(name, {})}
        return Response(
            out,
            status=status,
            content_type=request.headers.get("Content-Type", "text/plain"),
            headers=headers,
        )

    # ------------------------------------------------------------------ /system
    def _system(self, request: Request, body: bytes) -> Response:
        method, path = request.method, request.path
        with self._lock:
            if path == "/system/info" and method == "GET":
                return self._json(
                    200,
                    {
                        "version": "v4.1.2",
                        "git_commit": "7ade09ee",
                        "architecture": "amd64",
                        "kubernetes_version": "v1.30.0",
                    },
                )
            if path == "/system/config" and method == "GET":
                return self._json(200, self._config())
            if path == "/system/status" and method == "GET":
                return self._json(200, {"cluster": {"nodes_count": 1}})
            if path == "/system/services":
                return self._services(method, body)
            m = re.fullmatch(r"/system/services/([^/]+)", path)
            if m:
                return self._service(method, m.group(1))
            m = re.fullmatch(r"/system/logs/([^/]+)(?:/([^/]+))?", path)
            if m:
                return self._logs(method, m.group(1), m.group(2), request.args)
            if path == "/system/buckets":
                return self._buckets(method, body)
            m = re.fullmatch(r"/system/buckets/([^/]+)(/presign)?", path)
            if m:
                return self._bucket(method, m.group(1), bool(m.group(2)), body)
        return self._text(404, "404 page not found")

    def _config(self) -> dict:
        provider = {
            "endpoint": "http://127.0.0.1:9000",
            "verify": False,
            "access_key": "minio",
            "secret_key": self.minio_secret,
            "region": "us-east-1",
        }
        if self.config_shape == "v2":
            return {"name": "oscar", "namespace": "oscar", "minio_provider": provider}
        return {"config": {"name": "oscar", "namespace": "oscar"}, "minio_provider": provider}

    def _store_service(self, svc: dict, owner: str) -> None:
        stored = {"name": svc["name"], "cpu": "0.2", "memory": "256Mi", **svc}
        stored["token"] = secrets.token_hex(32)
        stored["owner"] = owner
        self.services[svc["name"]] = stored

    def _services(self, method: str, body: bytes) -> Response:
        if method == "GET":
            return self._json(200, list(self.services.values()))
        if method not in ("POST", "PUT"):
            return self._text(404, "404 page not found")
        try:
            svc = json.loads(body)
        except ValueError as exc:
            return self._text(400, f"The service specification is not valid: {exc}")
        missing = [k for k in ("name", "image", "script") if not isinstance(svc, dict) or not svc.get(k)]
        if missing:
            return self._text(400, f"The service specification is not valid: {missing[0]} is required")
        name = svc["name"]
        if method == "POST":
            if name in self.services:
                return self._text(self.duplicate_status, f"The service '{name}' already exists")
            self._store_service(svc, owner="cluster_admin")
            self.jobs.setdefault(name, {})
            return Response(b"", status=201)
        old = self.services.get(name)
        if old is None:
            return Response(b"", status=404)
        new = {**old, **svc}
        new["token"] = secrets.token_hex(32) if self.regenerate_token_on_update else old["token"]
        self.services[name] = new
        return Response(b"", status=204)

    def _service(self, method: str, name: str) -> Response:
        svc = self.services.get(name)
        if svc is None:
            return Response(b"", status=404)
        if method == "GET":
            return self._json(200, svc)
        if method == "DELETE":
            del self.services[name]
            self.jobs.pop(name, None)
            return Response(b"", status=204)
        return self._text(404, "404 page not found")

    def _job_info(self, job: _Job) -> dict:
        info = {"status": job.status, "creation_time": rfc3339(job.created)}
        if job.status != "Pending":
            info["start_time"] = rfc3339(job.created)
        if job.status in ("Succeeded", "Failed"):
            info["finish_time"] = rfc3339(job.created + 1)
        return info

    def _logs(self, method: str, svc: str, job: str | None, args: Any) -> Response:
        if svc not in self.services:
            return Response(b"", status=404)
        jobs = self.jobs.setdefault(svc, {})
        if job is None and method == "GET":
            ordered = sorted(jobs.items(), key=lambda kv: kv[1].created)
            if self.job_list_shape == "legacy":
                return self._json(200, {name: self._job_info(j) for name, j in ordered})
            start = int(args.get("page") or 0)
            chunk = ordered[start : start + self.page_size]
            payload: dict[str, Any] = {"jobs": {name: self._job_info(j) for name, j in chunk}}
            remaining = len(ordered) - start - len(chunk)
            if remaining > 0:
                payload["next_page"] = str(start + len(chunk))
                payload["remaining_jobs"] = remaining
            return self._json(200, payload)
        if job is None and method == "DELETE":
            delete_all = args.get("all") == "true"
            for name in [n for n, j in jobs.items() if delete_all or j.status == "Succeeded"]:
                del jobs[name]
            return Response(b"", status=204)
        if job not in jobs:
            return self._text(404, f'jobs.batch "{job}" not found')
        if method == "GET":
            prefix = rfc3339(jobs[job].created) + " " if args.get("timestamps") == "true" else ""
            return self._text(200, f"{prefix}log of {job}\n")
        if method == "DELETE":
            del jobs[job]
            return Response(b"", status=204)
        return self._text(404, "404 page not found")

    def _buckets(self, method: str, body: bytes) -> Response:
        if method == "GET":
            return self._json(200, list(self.buckets.values()) or None)
        if method != "POST":
            return self._text(404, "404 page not found")
        try:
            bucket = json.loads(body)
            name = bucket["bucket_name"]
        except (ValueError, KeyError, TypeError):
            return self._text(400, "Invalid bucket specification")
        if name in self.buckets:
            return self._text(400, f"Error creating bucket with name '{name}'")
        self.buckets[name] = {
            "bucket_name": name,
            "visibility": bucket.get("visibility") or "private",
            "allowed_users": bucket.get("allowed_users") or [],
            "owner": "cluster_admin",
        }
        return Response(b"", status=201)

    def _bucket(self, method: str, name: str, presign: bool, body: bytes) -> Response:
        if name not in self.buckets:
            return self._text(404, f"Bucket '{name}' not found")
        if presign and method == "POST":
            req = json.loads(body or b"{}")
            if not req.get("object_key") or req.get("operation") not in ("upload", "download"):
                return self._json(400, {"error": "object_key and operation are required"})
            expires_in = int(req.get("expires_in") or 900)
            return self._json(
                200,
                {
                    "object_key": req["object_key"],
                    "operation": req["operation"],
                    "method": "PUT" if req["operation"] == "upload" else "GET",
                    "url": f"http://127.0.0.1:9000/{name}/{req['object_key']}?X-Amz-Expires={expires_in}",
                    "expires_at": rfc3339(time.time() + expires_in),
                },
            )
        if method == "DELETE" and not presign:
            del self.buckets[name]
            return Response(b"", status=204)
        return self._text(404, "404 page not found")

    @staticmethod
    def _json(status: int, obj: Any) -> Response:
        return Response(go_json(obj), status=status, content_type="application/json; charset=utf-8")

    @staticmethod
    def _text(status: int, text: str) -> Response:
        return Response(text.encode(), status=status, content_type="text/plain; charset=utf-8")
