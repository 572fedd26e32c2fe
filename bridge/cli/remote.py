"""A small client of the bridge's HTTP API, so every CLI command works with ``--bridge``.

Going through the bridge means the CLI needs no cluster credentials at all (the
bridge holds them), only the bridge's bearer token. Errors come back as the bridge's
JSON ``{"error": ..., "cluster": ..., "service": ..., "upstream_status": ...}`` and are
turned into the same typed OscarError classes the direct mode raises, so commands
report both modes' failures identically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from bridge.oscar.cluster import ClusterSpec
from bridge.oscar.codec import Output, unzip_files
from bridge.oscar.errors import OscarError, error_for_status
from bridge.settings import Settings

ENV_TOKEN = "OSCAR_BRIDGE_TOKEN"
API = "/api/v1"
TIMEOUT = 30.0
INVOKE_TIMEOUT = 330.0  # a little more than OSCAR's own 300 s cut for sync calls


def resolve_token(explicit: str | None, data_dir: str | os.PathLike[str] | None = None) -> str:
    """``--bridge-token``, else ``$OSCAR_BRIDGE_TOKEN``, else the token file that a bridge
    on this machine keeps in its data dir (read only: never create one here)."""
    if explicit:
        return explicit
    if os.environ.get(ENV_TOKEN):
        return os.environ[ENV_TOKEN]
    directory = Path(data_dir) if data_dir else Settings.load().data_dir
    path = _token_file(directory)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError:
        token = ""
    if not token:
        raise ValueError(
            f"no bridge token: pass --bridge-token, set {ENV_TOKEN} or run the bridge here "
            f"(looked for {path})"
        )
    return token


def _token_file(data_dir: Path) -> Path:
    """Where bridge.server.tokens keeps the token of a bridge using ``data_dir``."""
    from bridge.server.tokens import token_path

    return token_path(data_dir)


def _seg(value: str) -> str:
    return quote(str(value), safe="")


class BridgeHttp:
    """Authenticated requests to one bridge; non-2xx answers raise typed OscarErrors."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def request(
        self,
        method: str,
        path: str,
        *,
        cluster: str = "",
        service: str = "",
        timeout: float = TIMEOUT,
        **kwargs: Any,
    ) -> requests.Response:
        try:
            resp = self.session.request(method, self.url + path, timeout=timeout, **kwargs)
        except requests.RequestException as exc:
            raise OscarError(
                f"cannot reach the bridge at {self.url}: {type(exc).__name__}",
                cluster=cluster,
                service=service,
            ) from None
        if resp.status_code >= 400:
            raise _bridge_error(resp, cluster, service)
        return resp

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.request(method, path, **kwargs)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise OscarError(f"the bridge answered {path} with non-JSON content") from None


def _bridge_error(resp: requests.Response, cluster: str, service: str) -> OscarError:
    """The bridge's JSON error as a typed OscarError (same classes as direct mode)."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        cluster = str(body.get("cluster") or cluster)
        service = str(body.get("service") or service)
        message = str(body.get("error") or "")
        if resp.status_code == 401 and "cluster" not in body:
            message = f"the bridge refused its token: {message or 'unauthorized'}"
        return error_for_status(resp.status_code, message, cluster=cluster, service=service)
    return error_for_status(resp.status_code, resp.content, cluster=cluster, service=service)


# The bridge groups credentials under "auth": {"kind", ...}; the CLI shows ClusterSpec's flat fields.
_AUTH_FIELDS = {
    "basic": ("user", "password"),
    "oidc": ("token", "refresh_token", "token_endpoint", "client_id", "client_secret"),
    "token": ("token",),
}


def _flat_view(view: dict) -> dict:
    """The bridge's cluster view (secrets already ``***``) in ClusterSpec.redacted()'s shape."""
    auth = view.get("auth") if isinstance(view.get("auth"), dict) else {}
    flat = {
        "id": str(view.get("id", "")),
        "endpoint": view.get("endpoint", ""),
        "auth_kind": auth.get("kind", ""),
    }
    for name in (
        "user",
        "password",
        "token",
        "refresh_token",
        "token_endpoint",
        "client_id",
        "client_secret",
    ):
        flat[name] = auth.get(name, "")
    flat["verify"] = view.get("verify", True)
    return flat


def _items(data: Any, key: str) -> Any:
    """Accept both a bare collection and one wrapped as ``{key: ...}``."""
    if isinstance(data, dict) and key in data:
        return data[key]
    return data


class BridgeBackend:
    """One cluster of a bridge, with the Backend interface of bridge.cli.backend."""

    def __init__(self, http: BridgeHttp, cluster_id: str) -> None:
        self.http = http
        self.cluster_id = cluster_id
        self.base = f"{API}/clusters/{_seg(cluster_id)}/services"

    def _kw(self, service: str = "") -> dict:
        return {"cluster": self.cluster_id, "service": service}

    def list_services(self) -> list[dict]:
        return list(_items(self.http.json("GET", self.base, **self._kw()), "services") or [])

    def get_service(self, name: str) -> dict:
        return self.http.json("GET", f"{self.base}/{_seg(name)}", **self._kw(name))

    def apply_services(self, services: list[dict]) -> list[dict]:
        # Scripts are already inlined by load_fdl: the bridge never reads files of its own.
        # A JSON list of services is applied as a whole to this cluster.
        data = self.http.json(
            "POST",
            self.base,
            data=json.dumps(services).encode(),
            headers={"Content-Type": "application/json"},
            **self._kw(),
        )
        applied = data.get("applied") if isinstance(data, dict) else None
        return [
            {"name": str(a.get("name", "")), "action": str(a.get("action", ""))}
            for a in applied or []
            if isinstance(a, dict)
        ]

    def delete_service(self, name: str) -> None:
        self.http.request("DELETE", f"{self.base}/{_seg(name)}", **self._kw(name))

    def invoke(self, name: str, data: bytes | str) -> Output:
        body, ctype = (
            (data.encode("utf-8"), "text/plain; charset=utf-8")
            if isinstance(data, str)
            else (
                data,
                "application/octet-stream",
            )
        )
        resp = self.http.request(
            "POST",
            f"{self.base}/{_seg(name)}/invoke",
            data=body,
            headers={"Content-Type": ctype},
            timeout=INVOKE_TIMEOUT,
            **self._kw(name),
        )
        return _decode_invoke(resp)

    def submit_job(self, name: str, data: bytes | str) -> str:
        body = data.encode("utf-8") if isinstance(data, str) else data
        ctype = "text/plain; charset=utf-8" if isinstance(data, str) else "application/octet-stream"
        result = self.http.json(
            "POST",
            f"{self.base}/{_seg(name)}/jobs",
            data=body,
            headers={"Content-Type": ctype},
            **self._kw(name),
        )
        job = result.get("job") or result.get("name") if isinstance(result, dict) else None
        if not job:
            raise OscarError("the bridge did not return the job name", cluster=self.cluster_id, service=name)
        return str(job)

    def list_jobs(self, name: str) -> dict[str, dict]:
        data = _items(self.http.json("GET", f"{self.base}/{_seg(name)}/jobs", **self._kw(name)), "jobs") or {}
        if isinstance(data, list):  # [{"job", "cluster", "service", "status", *_time}]
            return {
                str(j.get("job")): {k: v for k, v in j.items() if k not in ("job", "cluster", "service")}
                for j in data
                if isinstance(j, dict)
            }
        return dict(data)

    def job_logs(self, name: str, job: str, timestamps: bool = False) -> str:
        params = {"timestamps": "true"} if timestamps else None
        resp = self.http.request(
            "GET", f"{self.base}/{_seg(name)}/jobs/{_seg(job)}/logs", params=params, **self._kw(name)
        )
        return resp.content.decode("utf-8", "replace")

    def delete_job(self, name: str, job: str) -> None:
        self.http.request("DELETE", f"{self.base}/{_seg(name)}/jobs/{_seg(job)}", **self._kw(name))

    def delete_jobs(self, name: str, all: bool = False) -> None:
        # The bridge deletes one job at a time; OSCAR's rule (succeeded only unless all) is kept here.
        for job, info in self.list_jobs(name).items():
            if all or str(info.get("status", "")).lower() == "succeeded":
                self.delete_job(name, job)

    def check(self) -> dict:
        data = self.http.json("POST", f"{API}/clusters/{_seg(self.cluster_id)}/check", **self._kw())
        data = data if isinstance(data, dict) else {}
        result = {"cluster": self.cluster_id, "healthy": bool(data.get("ok")), "info": data.get("info") or {}}
        if data.get("error"):
            result["error"] = data["error"]
        return result


def _decode_invoke(resp: requests.Response) -> Output:
    """The bridge answers with the decoded result: a file's bytes, a zip, or text."""
    ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
    kind = resp.headers.get("X-Oscar-Bridge-Output", "").strip().lower()
    data = resp.content
    if kind == "files" or (not kind and ctype == "application/zip"):
        return Output("files", data, unzip_files(data), "", [])
    if kind == "text" or (not kind and ctype.startswith("text/")):
        return Output("text", data, {}, data.decode("utf-8", "replace"), [])
    return Output("file", data, {}, "", [])


class BridgeClusterStore:
    """The bridge's cluster registry, with the ClusterStore interface."""

    def __init__(self, url: str, token: str) -> None:
        self.http = BridgeHttp(url, token)

    def _raw(self) -> list[dict]:
        data = _items(self.http.json("GET", f"{API}/clusters"), "clusters") or []
        return [_flat_view(c) for c in data if isinstance(c, dict)]

    def list(self) -> list[dict]:
        clusters = self._raw()
        default = self._default([c["id"] for c in clusters])
        return [{**c, "default": c["id"] == default} for c in clusters]

    def ids(self) -> list[str]:
        return sorted(c["id"] for c in self._raw())

    def add(self, spec: ClusterSpec, *, make_default: bool = False) -> dict:
        """Register (or replace) the cluster; ``make_default`` has no meaning for a bridge,
        whose default is its only cluster, else ``local``."""
        flat = spec.to_dict(secrets=True)
        auth = {"kind": spec.auth_kind}
        auth.update({k: flat[k] for k in _AUTH_FIELDS[spec.auth_kind] if flat.get(k)})
        body = {"id": spec.id, "endpoint": spec.endpoint, "auth": auth, "verify": spec.verify}
        data = self.http.json(
            "POST", f"{API}/clusters", params={"replace": "true"}, json=body, cluster=spec.id
        )
        view = _flat_view(data) if isinstance(data, dict) else spec.redacted()
        return {**view, "default": self._default(self.ids()) == spec.id}

    def remove(self, cluster_id: str) -> None:
        self.http.request("DELETE", f"{API}/clusters/{_seg(cluster_id)}", cluster=cluster_id)

    @staticmethod
    def _default(ids: list[str]) -> str | None:
        """Without -c: the only cluster, else the embedded ``local`` one."""
        if len(ids) == 1:
            return ids[0]
        return "local" if "local" in ids else None

    def resolve(self, cluster_id: str | None) -> str:
        if cluster_id:
            return cluster_id
        ids = self.ids()
        default = self._default(ids)
        if default is None:
            raise ValueError(f"the bridge has several clusters ({', '.join(ids) or 'none'}): pass -c CLUSTER")
        return default

    def backend(self, cluster_id: str | None) -> BridgeBackend:
        return BridgeBackend(self.http, self.resolve(cluster_id))
