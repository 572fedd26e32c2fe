"""The bridge's HTTP API: one blueprint module per resource.

Every module defines `bp` (its Blueprint) and `OPENAPI_PATHS` (its part of the
OpenAPI document); `MODULE_NAMES` is the one list of them, used both to register the
blueprints and to build /openapi.json, so the two cannot drift apart.
"""

from __future__ import annotations

import importlib
from types import ModuleType

MODULE_NAMES = ("meta", "clusters", "services", "invoke", "jobs", "files", "events")


def modules() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{name}") for name in MODULE_NAMES]


def read_json(*, what: str = "body") -> object:
    """The request body parsed as JSON; ApiError 400 naming the problem otherwise.

    Parsed here rather than with `request.get_json()` so a malformed body gives the
    bridge's JSON error (with the parser's position) and not Werkzeug's HTML-ish text.
    """
    import json

    from flask import request

    from bridge.server.errors import ApiError

    raw = request.get_data(cache=True)
    if not raw.strip():
        raise ApiError(400, f"{what}: a JSON document is required", field=what)
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise ApiError(400, f"{what}: not UTF-8 text", field=what) from None
    except ValueError as exc:
        raise ApiError(400, f"{what}: malformed JSON: {exc}", field=what) from None


def read_json_object(*, what: str = "body") -> dict:
    """Like `read_json`, but the document must be an object."""
    from bridge.server.errors import ApiError

    data = read_json(what=what)
    if not isinstance(data, dict):
        raise ApiError(400, f"{what}: must be a JSON object, got {type(data).__name__}", field=what)
    return data
