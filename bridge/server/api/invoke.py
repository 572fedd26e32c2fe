"""Synchronous invocation: any body in, the decoded result out.

Callers send what they have (an image, text, a JSON object) and get back what the
script produced, with a fitting Content-Type; OSCAR's base64/zip conventions and the
supervisor's log lines stay inside the bridge (bridge.oscar.codec).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from flask import Blueprint, Response, jsonify, request

from bridge.oscar import codec
from bridge.server.context import ctx
from bridge.server.openapi import UPSTREAM_ERRORS, error_responses, path_param

bp = Blueprint("invoke", __name__)

OUTPUT_KIND_HEADER = "X-Oscar-Bridge-Output"
LOG_LINES_HEADER = "X-Oscar-Bridge-Log-Lines"

# Enough to label the outputs scripts typically write; anything else is octet-stream.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"BM", "image/bmp"),
)


def guess_type(data: bytes) -> str:
    """A media type from the first bytes (RIFF/WEBP checked apart: its magic is split)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, mimetype in _MAGIC:
        if data.startswith(magic):
            return mimetype
    return "application/octet-stream"


def request_body() -> tuple[bytes, str]:
    """The OSCAR body and content type for the current request.

    A JSON object (declared as JSON and parsing to an object) goes as JSON, which
    OSCAR's supervisor writes to the input file itself; anything else (bytes, text,
    JSON that is not an object) goes base64, the only form binary survives in.
    """
    raw = request.get_data(cache=False)
    if request.mimetype == "application/json" or request.mimetype.endswith("+json"):
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return raw, "application/json"
    return codec.encode_input(raw)


def output_response(out: codec.Output) -> Response:
    """The HTTP response for a decoded output (see the module docstring)."""
    if out.kind == "files":
        if request.accept_mimetypes.best_match(["application/zip", "application/json"]) == "application/json":
            files = {name: base64.b64encode(data).decode("ascii") for name, data in out.files.items()}
            resp = jsonify({"files": files})
        else:
            resp = Response(out.data, content_type="application/zip")
            resp.headers["Content-Disposition"] = 'attachment; filename="outputs.zip"'
    elif out.kind == "file":
        resp = Response(out.data, content_type=guess_type(out.data))
    else:
        resp = Response(out.data, content_type="text/plain; charset=utf-8")
    resp.headers[OUTPUT_KIND_HEADER] = out.kind
    resp.headers[LOG_LINES_HEADER] = str(len(out.logs))
    return resp


@bp.post("/api/v1/clusters/<cluster>/services/<service>/invoke")
def invoke(cluster: str, service: str) -> Response:
    context = ctx()
    client = context.registry.client(cluster)
    body, content_type = request_body()
    with context.metrics.timed_invocation(cluster, service, "sync"):
        resp = client.run(service, body, content_type)
    out = codec.decode_output(resp.content, resp.headers.get(codec.OUTPUT_HINT_HEADER))
    return output_response(out)


_BINARY = {"schema": {"type": "string", "format": "binary"}}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/clusters/{cluster}/services/{service}/invoke": {
        "post": {
            "tags": ["invoke"],
            "summary": "Synchronous invocation: raw body in, decoded result out",
            "description": "Any body: bytes and text are sent base64, a JSON object (Content-Type "
            "application/json) as JSON. The answer: a single output file as its bytes (type guessed from "
            "its magic), several as a zip (or `{files: {name: base64}}` with Accept: application/json), "
            "text as text/plain. OSCAR's log lines are stripped (their count is in "
            "X-Oscar-Bridge-Log-Lines); "
            "X-Oscar-Bridge-Output says file, files or text. A failing script gives 502 with its `output`.",
            "parameters": [path_param("cluster", "Cluster id"), path_param("service", "Service name")],
            "requestBody": {
                "required": False,
                "content": {
                    "application/octet-stream": _BINARY,
                    "text/plain": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "object"}},
                },
            },
            "responses": {
                "200": {
                    "description": "The service's output",
                    "headers": {
                        OUTPUT_KIND_HEADER: {"schema": {"type": "string", "enum": ["file", "files", "text"]}},
                    },
                    "content": {
                        "application/octet-stream": _BINARY,
                        "application/zip": _BINARY,
                        "text/plain": {"schema": {"type": "string"}},
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "files": {"type": "object", "additionalProperties": {"type": "string"}}
                                },
                            }
                        },
                    },
                },
                **error_responses(400, 409, 413, *UPSTREAM_ERRORS),
            },
        }
    }
}
