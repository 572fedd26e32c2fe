"""FDL loading, validation and normalisation.

An FDL ("Functions Definition Language") file describes OSCAR services the way oscar-cli
and oscar_python read it::

    functions:
      oscar:
      - <cluster-id>: {name, image, script: <path>, ...}
    storage_providers: {<type>: {<id>: {...}}}
    clusters: {<cluster-id>: {...}}

OSCAR itself only checks a few things and reports them one at a time (often as a bare
400, or not at all until the first invocation). This module checks the whole file up
front, turns it into the JSON a cluster accepts, and reports *every* problem with its
exact location, e.g. ``functions.oscar[0].my-cluster.input[0].path: must contain a
folder``. It also accepts the service JSON OSCAR returns, so ``get`` -> edit -> ``apply``
works without rewriting the definition as an FDL.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "INPUT_PROVIDER_TYPES",
    "LOG_LEVELS",
    "PROVIDER_TYPES",
    "SERVER_SIDE_FIELDS",
    "Fdl",
    "FdlError",
    "ServiceEntry",
    "load_fdl",
    "normalise_service",
    "parse_fdl",
]

PROVIDER_TYPES = ("minio", "s3", "onedata", "webdav", "rucio")
#: OSCAR can only be triggered by its own MinIO, dCache (WebDAV) and Rucio.
INPUT_PROVIDER_TYPES = ("minio", "webdav", "rucio")
LOG_LEVELS = ("NOTSET", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Fields OSCAR generates; sending them back is pointless (or, for ``token``, ignored).
SERVER_SIDE_FIELDS = ("token", "owner", "namespace", "bucket_list", "volume_status", "deployment")

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,37}[a-z0-9])?$")
_QUANTITY_FIELDS = ("cpu", "memory", "total_cpu", "total_memory", "ephemeral_storage_request")
_BOOL_FIELDS = ("enable_gpu", "enable_sgx", "image_prefetch", "alpine", "file_stage_in")
_VISIBILITIES = ("private", "public", "restricted")
_ISOLATION_LEVELS = ("SERVICE", "USER")
_HIDDEN = "hidden"


class FdlError(ValueError):
    """Every problem found in a definition, each as ``(location, message)``."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(f"{loc}: {msg}" if loc else msg for loc, msg in self.errors))


@dataclass
class ServiceEntry:
    """One service and the cluster its FDL entry names (None for OSCAR's service JSON)."""

    cluster_id: str | None
    service: dict


@dataclass
class Fdl:
    services: list[ServiceEntry] = field(default_factory=list)
    storage_providers: dict = field(default_factory=dict)
    clusters: dict = field(default_factory=dict)


class _Errors:
    """Collects errors so one pass reports all of them."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, location: str, message: str) -> None:
        self.items.append((location, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise FdlError(self.items)


def _at(location: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{location}[{key}]"
    return f"{location}.{key}" if location else key


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a map", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


# -- entry points -------------------------------------------------------------------------------


def load_fdl(path: str | os.PathLike[str]) -> Fdl:
    """Read an FDL (or service JSON) file; ``script`` paths are relative to its directory."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise FdlError([(str(file), f"cannot read the file: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError:
        raise FdlError([(str(file), "is not UTF-8 text")]) from None
    return parse_fdl(text, base_dir=file.resolve().parent, source=str(file))


def parse_fdl(
    data: str | bytes | dict | list,
    base_dir: str | os.PathLike[str] | None = None,
    source: str = "<fdl>",
) -> Fdl:
    """Validate and normalise an FDL or OSCAR's service JSON (one service or a list).

    In an FDL, ``script`` is a file path read relative to ``base_dir``. Without a base
    directory (a definition received over the network) nothing is read from disk and
    ``script`` must be the script text itself: a server must not inline its own files.
    In the service JSON shape ``script`` is always the text.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise FdlError([(source, "is not UTF-8 text")]) from None
    if isinstance(data, str):
        try:
            data = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise FdlError([(source, f"invalid YAML{where}: {problem}")]) from None

    if isinstance(data, list):
        return _parse_service_list(data)
    if not isinstance(data, dict):
        raise FdlError([(source, f"must be an FDL map or an OSCAR service, got {_type_name(data)}")])
    if "functions" in data:
        return _parse_fdl_map(data, base_dir)
    if not any(k in data for k in ("name", "image", "script")):
        raise FdlError(
            [(source, "neither an FDL (no functions.oscar) nor an OSCAR service (no name, image or script)")]
        )
    return Fdl(services=[ServiceEntry(None, normalise_service(data))])


def _parse_service_list(items: list) -> Fdl:
    errors = _Errors()
    services: list[ServiceEntry] = []
    for i, item in enumerate(items):
        try:
            services.append(ServiceEntry(None, normalise_service(item, _at("", i))))
        except FdlError as exc:
            errors.items.extend(exc.errors)
    errors.raise_if_any()
    return Fdl(services=services)


def _parse_fdl_map(data: dict, base_dir: str | os.PathLike[str] | None) -> Fdl:
    errors = _Errors()
    providers = _check_providers(data.get("storage_providers"), "storage_providers", errors)
    clusters = data.get("clusters")
    if clusters is None:
        clusters = {}
    elif not isinstance(clusters, dict):
        errors.add("clusters", f"must be a map of cluster-id -> cluster, got {_type_name(clusters)}")
        clusters = {}
    for cid, cluster in clusters.items():
        if not isinstance(cluster, dict):
            errors.add(_at("clusters", str(cid)), f"must be a map, got {_type_name(cluster)}")

    functions = data.get("functions")
    oscar = functions.get("oscar") if isinstance(functions, dict) else None
    if not isinstance(functions, dict):
        errors.add("functions", f"must be a map with an 'oscar' list, got {_type_name(functions)}")
    elif not isinstance(oscar, list):
        what = "missing" if oscar is None else f"got {_type_name(oscar)}"
        errors.add("functions.oscar", f"must be a list of {{cluster-id: service}} maps ({what})")

    services: list[ServiceEntry] = []
    for i, entry in enumerate(oscar if isinstance(oscar, list) else []):
        loc = _at("functions.oscar", i)
        if not isinstance(entry, dict) or len(entry) != 1:
            got = (
                f"{len(entry)} keys ({', '.join(map(str, entry))})"
                if isinstance(entry, dict)
                else _type_name(entry)
            )
            errors.add(loc, f"must be a map with exactly one key {{cluster-id: service}}, got {got}")
            continue
        ((cluster_id, svc),) = entry.items()
        cluster_id = "" if cluster_id is None else str(cluster_id)
        if not cluster_id:
            errors.add(loc, "the cluster id must not be empty")
            continue
        loc = _at(loc, cluster_id)
        if not isinstance(svc, dict):
            errors.add(loc, f"must be a service map, got {_type_name(svc)}")
            continue
        svc = _with_fdl_level(svc, providers, clusters if isinstance(clusters, dict) else {})
        if base_dir is None and _looks_like_script_path(svc.get("script")):
            # An FDL names its script by path, but nothing is read from disk here: storing
            # the path as the script text would only fail later, at the first invocation.
            errors.add(
                _at(loc, "script"),
                f"'{svc['script']}' is a path to a script file, which cannot be read here: "
                "inline the script text (script: |) or apply the file with `oscar-bridge apply`",
            )
            continue
        try:
            normalised = normalise_service(svc, loc, base_dir=base_dir, inline_script=base_dir is not None)
        except FdlError as exc:
            errors.items.extend(exc.errors)
            continue
        services.append(ServiceEntry(cluster_id, normalised))
    errors.raise_if_any()
    return Fdl(services=services, storage_providers=providers, clusters=clusters)


def _with_fdl_level(svc: dict, providers: dict, clusters: dict) -> dict:
    """Copy the FDL-level providers into the service, as oscar-cli does.

    The service's own entries win over FDL-level ones with the same type and id. FDL
    clusters (which carry credentials) are copied only when a federation member or
    replica names them, rather than into every service.
    """
    svc = dict(svc)
    own = svc.get("storage_providers")
    if providers and (own is None or isinstance(own, dict)):
        merged: dict = copy.deepcopy(providers)
        for ptype, ids in (own or {}).items():
            if isinstance(ids, dict) and isinstance(merged.get(ptype), dict):
                merged[ptype].update(ids)
            else:
                merged[ptype] = ids
        svc["storage_providers"] = merged
    referenced = _referenced_clusters(svc)
    wanted = {cid: copy.deepcopy(c) for cid, c in clusters.items() if cid in referenced}
    if wanted:
        own_clusters = svc.get("clusters")
        if own_clusters is None or isinstance(own_clusters, dict):
            svc["clusters"] = {**wanted, **(own_clusters or {})}
    return svc


def _referenced_clusters(svc: dict) -> set[str]:
    members: list = []
    federation = svc.get("federation")
    if isinstance(federation, dict) and isinstance(federation.get("members"), list):
        members += federation["members"]
    if isinstance(svc.get("replicas"), list):
        members += svc["replicas"]
    return {m["cluster_id"] for m in members if isinstance(m, dict) and isinstance(m.get("cluster_id"), str)}


# -- one service ----------------------------------------------------------------------------------


def normalise_service(
    svc: dict,
    location: str = "",
    *,
    base_dir: str | os.PathLike[str] | None = None,
    inline_script: bool = False,
) -> dict:
    """Return a checked, normalised copy of one service definition.

    Pure unless ``inline_script`` is set, in which case ``script`` is a path (relative to
    ``base_dir``, else the working directory) whose content replaces it; a value with a
    newline is already a script, not a path. Normalisation: numeric quantities become
    strings, ``log_level`` is upper-cased, ``environment.Variables`` (oscar-cli's older
    spelling) becomes ``variables``, bare minio/s3 paths become ``<name>/<path>``, CRLF
    line endings in the script become LF, and server-generated fields are dropped.
    Unknown keys are kept so newer OSCAR fields pass through.
    """
    errors = _Errors()
    if not isinstance(svc, dict):
        raise FdlError([(location, f"must be a service map, got {_type_name(svc)}")])
    out = {k: copy.deepcopy(v) for k, v in svc.items() if k not in SERVER_SIDE_FIELDS}

    name = out.get("name")
    if name is None or name == "":
        errors.add(_at(location, "name"), "is required")
        name = ""
    elif not isinstance(name, str) or not _NAME.match(name):
        errors.add(
            _at(location, "name"),
            f"{name!r} is not a valid service name: 1-39 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit",
        )
        name = ""
    image = out.get("image")
    if image is None or image == "":
        errors.add(_at(location, "image"), "is required")
    elif not isinstance(image, str):
        errors.add(_at(location, "image"), f"must be a string, got {_type_name(image)}")

    _normalise_script(out, location, base_dir, inline_script, errors)
    for key in _QUANTITY_FIELDS:
        _normalise_quantity(out, key, location, errors)
    for key in _BOOL_FIELDS:
        if key in out and not isinstance(out[key], bool):
            errors.add(_at(location, key), f"must be true or false, got {_type_name(out[key])}")
    _normalise_log_level(out, location, errors)
    _normalise_choice(out, "visibility", _VISIBILITIES, location, errors, upper=False)
    _normalise_choice(out, "isolation_level", _ISOLATION_LEVELS, location, errors, upper=True)
    _normalise_synchronous(out, location, errors)
    _normalise_environment(out, location, errors)
    for key in ("annotations", "labels"):
        _normalise_string_map(out, key, _at(location, key), errors)
    for key in ("image_pull_secrets", "allowed_users"):
        _normalise_string_list(out, key, location, errors)

    if "storage_providers" in out:
        providers = _drop_hidden_default(out["storage_providers"])
        if providers:
            out["storage_providers"] = _check_providers(providers, _at(location, "storage_providers"), errors)
        else:
            del out["storage_providers"]
    providers = out.get("storage_providers") or {}
    for key in ("input", "output"):
        _normalise_io_list(out, key, name, providers, location, errors)
    if isinstance(out.get("mount"), dict) and not any(out["mount"].values()):
        del out["mount"]  # Go always emits the struct: {"storage_provider": "", "path": ""}
    if out.get("mount") is not None:
        mount = _normalise_io(out["mount"], "mount", name, providers, _at(location, "mount"), errors)
        if mount is not None:
            out["mount"] = mount
    errors.raise_if_any()
    return out


_SCRIPT_PATH = re.compile(r"[\w./-]+\.(?:sh|bash|py)")


def _looks_like_script_path(script: object) -> bool:
    """A one-word value ending in .sh/.bash/.py: a file name, not a script."""
    return isinstance(script, str) and _SCRIPT_PATH.fullmatch(script.strip()) is not None


def _normalise_script(
    out: dict, location: str, base_dir: str | os.PathLike[str] | None, inline: bool, errors: _Errors
) -> None:
    loc = _at(location, "script")
    script = out.get("script")
    if script is None or script == "":
        errors.add(loc, "is required" + (" (a path to the script file)" if inline else ""))
        return
    if not isinstance(script, str):
        errors.add(loc, f"must be a string, got {_type_name(script)}")
        return
    if inline and "\n" not in script:
        path = Path(base_dir or ".") / script
        try:
            script = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            errors.add(loc, f"script file not found: {path}")
            return
        except (OSError, UnicodeDecodeError) as exc:
            errors.add(loc, f"cannot read script file {path}: {getattr(exc, 'strerror', None) or exc}")
            return
    out["script"] = script.replace("\r\n", "\n")


def _normalise_quantity(out: dict, key: str, location: str, errors: _Errors) -> None:
    """OSCAR decodes these as strings: a JSON number is a 400, so numbers are stringified."""
    if key not in out or out[key] is None:
        return
    value = out[key]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        errors.add(_at(location, key), f"must be a string or a number, got {_type_name(value)}")
    elif not isinstance(value, str):
        out[key] = str(value)


def _normalise_log_level(out: dict, location: str, errors: _Errors) -> None:
    if out.get("log_level") in (None, ""):
        return  # OSCAR's default (INFO)
    level = out["log_level"]
    if not isinstance(level, str) or level.upper() not in LOG_LEVELS:
        errors.add(_at(location, "log_level"), f"must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    else:
        out["log_level"] = level.upper()


def _normalise_choice(
    out: dict, key: str, choices: tuple[str, ...], location: str, errors: _Errors, *, upper: bool
) -> None:
    if out.get(key) in (None, ""):
        return
    value = out[key]
    fixed = (value.upper() if upper else value.lower()) if isinstance(value, str) else value
    if fixed not in choices:
        errors.add(_at(location, key), f"must be one of {', '.join(choices)}, got {value!r}")
    else:
        out[key] = fixed


def _normalise_synchronous(out: dict, location: str, errors: _Errors) -> None:
    sync = out.get("synchronous")
    if sync is None:
        return
    loc = _at(location, "synchronous")
    if not isinstance(sync, dict):
        errors.add(loc, f"must be a map {{min_scale, max_scale}}, got {_type_name(sync)}")
        return
    for key in ("min_scale", "max_scale"):
        value = sync.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            errors.add(_at(loc, key), f"must be a whole number >= 0, got {value!r}")


def _normalise_environment(out: dict, location: str, errors: _Errors) -> None:
    env = out.get("environment")
    if env is None:
        return
    loc = _at(location, "environment")
    if not isinstance(env, dict):
        errors.add(loc, f"must be a map {{variables, secrets}}, got {_type_name(env)}")
        return
    env = dict(env)
    if "Variables" in env:
        if "variables" in env:
            errors.add(_at(loc, "Variables"), "give either 'variables' or the older 'Variables', not both")
        else:
            env["variables"] = env.pop("Variables")
    for key in list(env):
        if key in ("variables", "secrets"):
            _normalise_string_map(env, key, _at(loc, key), errors)
        elif key != "Variables":
            errors.add(_at(loc, key), "unknown key (expected variables or secrets)")
    out["environment"] = env


def _scalar_text(value: Any) -> str | None:
    """A YAML scalar as the string Go expects (``true`` not ``True``); None if not a scalar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return ""
    return None


def _normalise_string_map(container: dict, key: str, loc: str, errors: _Errors) -> None:
    """Maps of strings (env vars, labels): YAML scalars such as ``8080`` are stringified."""
    value = container.get(key)
    if value is None:
        return
    if not isinstance(value, dict):
        errors.add(loc, f"must be a map of names to strings, got {_type_name(value)}")
        return
    fixed: dict[str, str] = {}
    for name, item in value.items():
        text = _scalar_text(item)
        if text is None:
            errors.add(_at(loc, str(name)), f"must be a string, got {_type_name(item)}")
        else:
            fixed[str(name)] = text
    container[key] = fixed


def _normalise_string_list(out: dict, key: str, location: str, errors: _Errors) -> None:
    value = out.get(key)
    if value is None:
        return
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.add(_at(location, key), "must be a list of strings")
        return
    out[key] = value


def _drop_hidden_default(providers: Any) -> Any:
    """Remove the ``minio.default`` OSCAR adds to every service it returns.

    Its keys read "hidden" since OSCAR 3.5; sending it back would at best be ignored and
    at worst store the literal "hidden" credentials.
    """
    if not isinstance(providers, dict) or not isinstance(providers.get("minio"), dict):
        return providers
    default = providers["minio"].get("default")
    if isinstance(default, dict) and _HIDDEN in (default.get("access_key"), default.get("secret_key")):
        providers = dict(providers)
        minio = {k: v for k, v in providers["minio"].items() if k != "default"}
        if minio:
            providers["minio"] = minio
        else:
            del providers["minio"]
    return providers


def _check_providers(providers: Any, loc: str, errors: _Errors) -> dict:
    """``{type: {id: {...}}}`` with known types; returns the valid part of it.

    Only the valid part is returned so that FDL-level mistakes, reported here once, are
    not reported again for every service they are copied into.
    """
    if providers is None:
        return {}
    if not isinstance(providers, dict):
        errors.add(loc, f"must be a map of provider type -> {{id: provider}}, got {_type_name(providers)}")
        return {}
    valid: dict = {}
    for ptype, ids in providers.items():
        ploc = _at(loc, str(ptype))
        if ptype not in PROVIDER_TYPES:
            errors.add(ploc, f"unknown storage provider type (expected one of {', '.join(PROVIDER_TYPES)})")
        elif not isinstance(ids, dict):
            errors.add(ploc, f"must be a map of id -> provider, got {_type_name(ids)}")
        else:
            valid[ptype] = {}
            for pid, provider in ids.items():
                if isinstance(provider, dict):
                    valid[ptype][pid] = provider
                else:
                    errors.add(_at(ploc, str(pid)), f"must be a map, got {_type_name(provider)}")
    return valid


def _normalise_io_list(
    out: dict, key: str, name: str, providers: dict, location: str, errors: _Errors
) -> None:
    items = out.get(key)
    if items is None:
        return
    loc = _at(location, key)
    if not isinstance(items, list):
        errors.add(loc, f"must be a list of {{storage_provider, path}} maps, got {_type_name(items)}")
        return
    fixed = []
    for i, item in enumerate(items):
        io = _normalise_io(item, key, name, providers, _at(loc, i), errors)
        if io is not None:
            fixed.append(io)
    out[key] = fixed


def _normalise_io(item: Any, role: str, name: str, providers: dict, loc: str, errors: _Errors) -> dict | None:
    """One StorageIOConfig: provider reference, path rules, suffix/prefix lists."""
    if not isinstance(item, dict):
        errors.add(loc, f"must be a map {{storage_provider, path}}, got {_type_name(item)}")
        return None
    io = dict(item)
    ptype = _check_provider_ref(
        io.get("storage_provider"), role, providers, _at(loc, "storage_provider"), errors
    )

    path = io.get("path")
    ploc = _at(loc, "path")
    if path is None or (isinstance(path, str) and not path.strip("/")):
        errors.add(ploc, "must contain a folder" if role == "input" else "is required")
    elif not isinstance(path, str):
        errors.add(ploc, f"must be a string, got {_type_name(path)}")
    else:
        if ptype in ("minio", "s3") and "/" not in path and name:
            path = f"{name}/{path}"  # what OSCAR >= 4.1 does (normalizeStoragePaths)
        bucket, _, folder = path.lstrip("/").partition("/")
        if role == "input" and ptype == "minio" and not folder.strip("/"):
            errors.add(ploc, f"must contain a folder: {path!r} names only the bucket {bucket!r}")
        io["path"] = path
    for key in ("suffix", "prefix"):
        value = io.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            errors.add(_at(loc, key), "must be a list of strings")
        else:
            io[key] = value
    return io


def _check_provider_ref(ref: Any, role: str, providers: dict, loc: str, errors: _Errors) -> str | None:
    """Check ``<type>`` / ``<type>.<id>``; returns the type when it is usable."""
    if ref is None or ref == "":
        errors.add(loc, "is required (e.g. minio or minio.default)")
        return None
    if not isinstance(ref, str):
        errors.add(loc, f"must be a string like minio.default, got {_type_name(ref)}")
        return None
    ptype, _, pid = ref.partition(".")
    if ptype not in PROVIDER_TYPES:
        errors.add(
            loc, f"unknown storage provider type {ptype!r} (expected one of {', '.join(PROVIDER_TYPES)})"
        )
        return None
    if "." in ref and not pid:
        errors.add(loc, f"{ref!r} has an empty provider id")
        return None
    allowed = INPUT_PROVIDER_TYPES if role == "input" else PROVIDER_TYPES
    if ptype not in allowed:
        errors.add(loc, f"{ptype} cannot trigger a service; inputs must use one of {', '.join(allowed)}")
        return None
    pid = pid or "default"
    if pid != "default":
        ids = providers.get(ptype)
        if not isinstance(ids, dict) or pid not in ids:
            errors.add(loc, f"provider {ptype}.{pid} is not defined in storage_providers.{ptype}")
    return ptype
