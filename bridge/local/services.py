"""The service model of the local runtime: tolerant decoding, server defaults, OSCAR's echo.

Three clients generations send service definitions to OSCAR, and each sends something
slightly different (reference §5): oscar-cli compiles against OSCAR v3.3 types
(`environment.Variables`, scalar `expose.nodePort: 0`, `null` lists), oscar_python sends
what the FDL says, and newer tools send v4.1 shapes (list-valued `api_port`). OSCAR
accepts all of them because Go's `encoding/json` matches struct keys case-insensitively,
ignores unknown keys and treats `null` as "leave unset". `decode_service` reproduces that
step, then hands the result to `bridge.oscar.fdl.normalise_service`, the one place where
service definitions are validated, so the runtime and the clients agree on what is valid.

The stored document keeps everything the runtime needs to run the service (real secret
values, the token). `echo` builds what `GET /system/services/{name}` answers: every
field in OSCAR's JSON order (reference §2.1), Go zero values for unset fields, secret
values blanked and `storage_providers.minio.default` pointing at the runtime's own S3
server with "hidden" keys, as OSCAR >= 3.5 shows it.

The `image` field is required, recorded and echoed, but not used: local invocations run
the script with the host's `/bin/sh` (see `/system/info`).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from bridge.local.gojson import gomap, struct
from bridge.oscar.fdl import LOG_LEVELS, FdlError, normalise_service

__all__ = [
    "DEFAULT_OWNER",
    "INVALID_PREFIX",
    "ServiceError",
    "ServiceExists",
    "apply_defaults",
    "decode_service",
    "echo",
    "minio_buckets",
    "new_token",
]

DEFAULT_OWNER = "cluster_admin"
INVALID_PREFIX = "The service specification is not valid: "
DEFAULT_CPU = "0.2"
DEFAULT_MEMORY = "256Mi"
SERVICE_LABEL = "oscar_service"
USER_SERVICE_LABEL = "oscar.grycap/user-service"


class ServiceError(ValueError):
    """A definition OSCAR would answer 400 to; the message is OSCAR's text plus the reasons."""


class ServiceExists(ValueError):
    """A create for a name that is taken (the runtime answers 409, as OSCAR <= 4.0 did)."""


# -- the schema used for case-insensitive decoding --------------------------------------------
# A schema is one of: a scalar marker ("str", "bool", "int", "any"), "ints" (an int or a
# list of ints, as api_port/nodePort changed from scalar to list in v4.1), or one of the
# small classes below. Only struct keys are case-folded: map keys (variables, labels,
# provider ids) are user data and are kept as written, as Go does.


@dataclass(frozen=True)
class _Struct:
    fields: dict[str, Any]


@dataclass(frozen=True)
class _List:
    item: Any


@dataclass(frozen=True)
class _Map:
    value: Any


_IO = _Struct(
    {
        "storage_provider": "str",
        "path": "str",
        "suffix": _List("str"),
        "prefix": _List("str"),
        "options": "str",
    }
)
_PROVIDER_FIELDS: dict[str, tuple[str, ...]] = {
    "s3": ("access_key", "secret_key", "region"),
    "minio": ("endpoint", "verify", "access_key", "secret_key", "region"),
    "onedata": ("oneprovider_host", "token", "space"),
    "webdav": ("hostname", "login", "password"),
    "rucio": ("host", "account", "rse", "refresh_token", "auth_host", "oidc_audience", "token_endpoint"),
}
_PROVIDERS = _Struct(
    {
        ptype: _Map(_Struct({f: ("bool" if f == "verify" else "str") for f in fields}))
        for ptype, fields in _PROVIDER_FIELDS.items()
    }
)
_EXPOSE_FIELDS = (
    "min_scale",
    "max_scale",
    "api_port",
    "cpu_threshold",
    "rewrite_target",
    "nodePort",
    "default_command",
    "set_auth",
    "auth_type",
    "health_path",
    "probe_mode",
)
_EXPOSE = _Struct(
    {
        "min_scale": "int",
        "max_scale": "int",
        "api_port": "ints",
        "cpu_threshold": "int",
        "rewrite_target": "bool",
        "nodePort": "ints",
        "default_command": "bool",
        "set_auth": "bool",
        "auth_type": "str",
        "health_path": "str",
        "probe_mode": "str",
    }
)
_CLUSTER = _Struct({"endpoint": "str", "auth_user": "str", "auth_password": "str", "ssl_verify": "bool"})
_VOLUME_FIELDS = ("name", "size", "mount_path", "lifecycle_policy")
_VOLUME = _Struct({f: "str" for f in _VOLUME_FIELDS})
_SERVICE = _Struct(
    {
        "name": "str",
        "cluster_id": "str",
        "memory": "any",
        "cpu": "any",
        "total_memory": "any",
        "total_cpu": "any",
        "ephemeral_storage_request": "any",
        "enable_gpu": "bool",
        "enable_sgx": "bool",
        "image_prefetch": "bool",
        "synchronous": _Struct({"min_scale": "int", "max_scale": "int"}),
        "federation": "any",
        "log_level": "str",
        "image": "str",
        "alpine": "bool",
        "token": "str",
        "file_stage_in": "bool",
        "input": _List(_IO),
        "output": _List(_IO),
        "script": "str",
        "image_pull_secrets": _List("str"),
        "expose": _EXPOSE,
        "environment": _Struct({"variables": _Map("any"), "secrets": _Map("any")}),
        "annotations": _Map("any"),
        "labels": _Map("any"),
        "vo": "str",
        "storage_providers": _PROVIDERS,
        "clusters": _Map(_CLUSTER),
        "owner": "str",
        "namespace": "str",
        "interlink_node_name": "str",
        "visibility": "str",
        "allowed_users": _List("str"),
        "isolation_level": "str",
        "bucket_list": _List("str"),
        "mount": _IO,
        "volume": _VOLUME,
        "volume_status": "any",
        "kserve": "any",
    }
)


def _canonical(value: Any, schema: Any, location: str) -> Any:
    """Go-like decoding of one value: case-insensitive struct keys, unknown keys dropped,
    `null` kept as None (callers drop it, so defaults apply)."""
    if value is None:
        return None
    if isinstance(schema, _Struct):
        if not isinstance(value, dict):
            raise ServiceError(f"{location or 'service'}: must be an object")
        lowered = {key.lower(): key for key in schema.fields}
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = key if key in schema.fields else lowered.get(str(key).lower())
            if name is None:
                continue  # unknown keys are ignored, as encoding/json does
            loc = f"{location}.{name}" if location else name
            fixed = _canonical(item, schema.fields[name], loc)
            if fixed is None:
                out.pop(name, None)
            else:
                out[name] = fixed
        return out
    if isinstance(schema, _List):
        if not isinstance(value, list):
            return value  # let the validator name the problem
        return [_canonical(item, schema.item, f"{location}[{i}]") for i, item in enumerate(value)]
    if isinstance(schema, _Map):
        if not isinstance(value, dict):
            return value
        return {str(k): _canonical(v, schema.value, f"{location}.{k}") for k, v in value.items()}
    if schema == "ints":
        items = value if isinstance(value, list) else [value]
        ports = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int):
                raise ServiceError(f"{location}: must be a port number or a list of port numbers")
            if item:
                ports.append(item)
        return ports
    if schema == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise ServiceError(f"{location}: must be a whole number")
    if schema == "bool" and not isinstance(value, bool):
        raise ServiceError(f"{location}: must be true or false")
    if schema == "str" and not isinstance(value, str):
        raise ServiceError(f"{location}: must be a string")
    return value


# -- decoding -------------------------------------------------------------------------------


def decode_service(data: bytes | str | dict) -> dict:
    """Decode and validate a service definition from a request body (any Content-Type).

    Raises ServiceError with OSCAR's "The service specification is not valid: ..." text.
    Server-side fields (token, owner, namespace, ...) are dropped by the validator.
    """
    if isinstance(data, bytes | bytearray):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ServiceError(INVALID_PREFIX + "the body is not UTF-8 text") from exc
    if isinstance(data, str):
        try:
            data = json.loads(data) if data.strip() else None
        except json.JSONDecodeError as exc:
            raise ServiceError(INVALID_PREFIX + f"invalid JSON: {exc.msg} (line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise ServiceError(INVALID_PREFIX + "the body must be a JSON object")
    try:
        svc = _canonical(data, _SERVICE, "")
    except ServiceError as exc:
        raise ServiceError(INVALID_PREFIX + str(exc)) from exc
    level = svc.get("log_level")
    if isinstance(level, str) and level.upper() not in LOG_LEVELS:
        svc["log_level"] = "INFO"  # OSCAR silently falls back to INFO
    for key in ("visibility", "isolation_level"):
        if svc.get(key) == "":
            del svc[key]
    try:
        return normalise_service(svc)
    except FdlError as exc:
        reasons = "; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in exc.errors)
        raise ServiceError(INVALID_PREFIX + reasons) from exc


def new_token() -> str:
    """A service token as OSCAR makes them: 32 random bytes, hex-encoded."""
    return secrets.token_hex(32)


def apply_defaults(svc: dict, *, token: str, owner: str = DEFAULT_OWNER) -> dict:
    """The stored document: the decoded definition plus what the server sets."""
    out = dict(svc)
    out["token"] = token
    out["owner"] = owner
    for key, default in (("cpu", DEFAULT_CPU), ("memory", DEFAULT_MEMORY), ("log_level", "INFO")):
        if not out.get(key):
            out[key] = default
    out.setdefault("visibility", "private")
    out.setdefault("isolation_level", "SERVICE")
    labels = dict(out.get("labels") or {})
    labels[SERVICE_LABEL] = out["name"]
    labels[USER_SERVICE_LABEL] = "true"
    out["labels"] = labels
    providers = out.get("storage_providers")
    if isinstance(providers, dict) and isinstance(providers.get("minio"), dict):
        # minio.default is always the runtime's own S3 server, whatever was sent.
        minio = {k: v for k, v in providers["minio"].items() if k != "default"}
        providers = (
            {**providers, "minio": minio} if minio else {k: v for k, v in providers.items() if k != "minio"}
        )
        out["storage_providers"] = providers
    return out


def minio_buckets(svc: dict) -> list[tuple[str, str]]:
    """(bucket, folder) of every input/output on the runtime's own S3 (minio / minio.default)."""
    found: list[tuple[str, str]] = []
    for key in ("input", "output"):
        for entry in svc.get(key) or []:
            if not isinstance(entry, dict) or entry.get("storage_provider") not in ("minio", "minio.default"):
                continue
            bucket, _, folder = str(entry.get("path") or "").strip("/").partition("/")
            if bucket and (bucket, folder) not in found:
                found.append((bucket, folder))
    return found


# -- the echo ---------------------------------------------------------------------------------


def echo(svc: dict, minio_default: dict) -> dict:
    """The service as OSCAR returns it, keys in its JSON order (reference §2.1 table).

    `minio_default` is the runtime's own provider {endpoint, verify, region, ...}; its
    keys are shown as "hidden". Secret values are blanked.
    """
    env = svc.get("environment") or {}
    secrets_ = env.get("secrets")
    environment = {
        "variables": gomap(env.get("variables")),
        "secrets": gomap({k: "" for k in secrets_}) if secrets_ is not None else None,
    }
    sync = svc.get("synchronous") or {}
    default = {
        "endpoint": minio_default.get("endpoint", ""),
        "verify": bool(minio_default.get("verify", False)),
        "access_key": "hidden",
        "secret_key": "hidden",
        "region": minio_default.get("region", ""),
    }
    return struct(
        [
            ("name", svc.get("name", ""), False),
            ("cluster_id", svc.get("cluster_id", ""), False),
            ("memory", svc.get("memory", ""), False),
            ("cpu", svc.get("cpu", ""), False),
            ("total_memory", svc.get("total_memory", ""), False),
            ("total_cpu", svc.get("total_cpu", ""), False),
            ("ephemeral_storage_request", svc.get("ephemeral_storage_request", ""), True),
            ("enable_gpu", bool(svc.get("enable_gpu")), False),
            ("enable_sgx", bool(svc.get("enable_sgx")), False),
            ("image_prefetch", bool(svc.get("image_prefetch")), False),
            (
                "synchronous",
                {"min_scale": int(sync.get("min_scale") or 0), "max_scale": int(sync.get("max_scale") or 0)},
                False,
            ),
            ("federation", svc.get("federation"), True),
            ("log_level", svc.get("log_level", ""), False),
            ("image", svc.get("image", ""), False),
            ("alpine", bool(svc.get("alpine")), False),
            ("token", svc.get("token", ""), False),
            ("file_stage_in", bool(svc.get("file_stage_in")), False),
            ("input", _io_list(svc.get("input")), False),
            ("output", _io_list(svc.get("output")), False),
            ("script", svc.get("script", ""), True),
            ("image_pull_secrets", svc.get("image_pull_secrets"), True),
            ("expose", _expose(svc.get("expose") or {}), False),
            ("environment", environment, False),
            ("annotations", gomap(svc.get("annotations")), False),
            ("labels", gomap(svc.get("labels")), False),
            ("vo", svc.get("vo", ""), False),
            ("storage_providers", _providers(svc.get("storage_providers") or {}, default), False),
            ("clusters", _clusters(svc.get("clusters")), True),
            ("owner", svc.get("owner", ""), False),
            ("namespace", svc.get("namespace", ""), True),
            ("interlink_node_name", svc.get("interlink_node_name", ""), False),
            ("visibility", svc.get("visibility", ""), False),
            ("allowed_users", svc.get("allowed_users"), False),
            ("isolation_level", svc.get("isolation_level", ""), False),
            ("bucket_list", svc.get("bucket_list"), False),
            ("mount", _io(svc.get("mount") or {}), False),
            ("volume", _volume(svc.get("volume")), True),
            ("volume_status", _volume_status(svc.get("volume")), False),
            ("kserve", svc.get("kserve"), True),
        ]
    )


def _io(entry: dict) -> dict:
    return struct(
        [
            ("storage_provider", entry.get("storage_provider", ""), False),
            ("path", entry.get("path", ""), False),
            ("suffix", entry.get("suffix"), True),
            ("prefix", entry.get("prefix"), True),
            ("options", entry.get("options", ""), True),
        ]
    )


def _io_list(entries: list | None) -> list | None:
    if entries is None:
        return None
    return [_io(e) for e in entries if isinstance(e, dict)]


def _expose(expose: dict) -> dict:
    ports = expose.get("nodePort")
    return struct(
        [
            ("min_scale", int(expose.get("min_scale") or 0), False),
            ("max_scale", int(expose.get("max_scale") or 0), False),
            ("api_port", expose.get("api_port"), True),
            ("cpu_threshold", int(expose.get("cpu_threshold") or 0), False),
            ("rewrite_target", bool(expose.get("rewrite_target")), False),
            # null rather than [] when unset: oscar-cli (v3.3 types, scalar nodePort) can decode null.
            ("nodePort", ports or None, False),
            ("default_command", bool(expose.get("default_command")), False),
            ("set_auth", bool(expose.get("set_auth")), False),
            ("auth_type", expose.get("auth_type", ""), True),
            ("health_path", expose.get("health_path", ""), False),
            ("probe_mode", expose.get("probe_mode", ""), True),
        ]
    )


def _providers(providers: dict, default: dict) -> dict:
    out: dict[str, Any] = {}
    for ptype, fields in _PROVIDER_FIELDS.items():
        ids = dict(providers.get(ptype) or {})
        if ptype == "minio":
            ids["default"] = default
        if not ids:
            continue
        out[ptype] = gomap(
            {
                pid: {f: p.get(f, False if f == "verify" else "") for f in fields}
                for pid, p in ids.items()
                if isinstance(p, dict)
            }
        )
    return out


def _clusters(clusters: dict | None) -> dict | None:
    if not clusters:
        return None
    return gomap(
        {
            cid: {
                "endpoint": c.get("endpoint", ""),
                "auth_user": c.get("auth_user", ""),
                "auth_password": c.get("auth_password", ""),
                "ssl_verify": bool(c.get("ssl_verify", False)),
            }
            for cid, c in clusters.items()
            if isinstance(c, dict)
        }
    )


def _volume(volume: dict | None) -> dict | None:
    if not volume:
        return None
    return struct(
        [
            ("name", volume.get("name", ""), True),
            ("size", volume.get("size", ""), False),
            ("mount_path", volume.get("mount_path", ""), False),
            ("lifecycle_policy", volume.get("lifecycle_policy", ""), True),
        ]
    )


def _volume_status(volume: dict | None) -> dict:
    if not volume:
        return {"enabled": False}
    # Recorded but not provisioned: say so rather than pretend a volume is attached.
    return {"enabled": False, "error": "managed volumes are not supported by the local runtime"}
