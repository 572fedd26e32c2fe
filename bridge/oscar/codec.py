"""OSCAR's invocation conventions, both directions, in one place.

OSCAR has no typed wire format for synchronous invocations: the request body is either a
JSON object or base64 text, and the response is the supervisor's log lines followed by
either the script's output (text) or base64 of the file(s) the script wrote. Every part
of the suite that sends or receives such bodies goes through this module so the rules
(and their quirks) live in exactly one place:

* client side (``encode_input`` / ``decode_output``): what a caller sends to ``/run`` and
  how to read what comes back;
* runtime side (``decode_event_body`` / ``encode_output``): what the faas-supervisor does
  with a body and with ``$TMP_OUTPUT_DIR``, reimplemented by the local runtime.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

__all__ = [
    "LOG_LEVELS",
    "OUTPUT_HINT_HEADER",
    "CodecError",
    "Output",
    "decode_event_body",
    "decode_output",
    "encode_input",
    "encode_output",
    "format_log_line",
    "strip_log_lines",
    "unzip_files",
    "zip_files",
]

#: Extension header sent by our local runtime so clients need not guess the output kind.
OUTPUT_HINT_HEADER = "X-Oscar-Bridge-Output"

#: Levels the supervisor's logging can emit (NOTSET never reaches a log line).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

OutputKind = Literal["file", "files", "text"]
_KINDS = ("file", "files", "text")

# `%(asctime)s - supervisor - %(levelname)s - %(message)s` with logging's default asctime.
_LOG_LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} - supervisor - "
    r"(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) - .*$"
)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# A fixed timestamp makes zip_files deterministic (same files -> same bytes).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class CodecError(ValueError):
    """A body that OSCAR's conventions cannot represent (the real supervisor would crash)."""


@dataclass(frozen=True)
class Output:
    """A decoded ``/run`` response.

    ``kind`` says what the script produced: ``"text"`` (its merged stdout/stderr),
    ``"file"`` (exactly one file in ``$TMP_OUTPUT_DIR``) or ``"files"`` (several, zipped).
    ``data`` holds the bytes: the text's UTF-8, the file, or the zip. ``files`` maps
    relative path -> bytes for ``"files"`` (empty otherwise, as OSCAR does not send the
    single file's name). ``text`` is the body without log lines and without the newline
    the supervisor's ``print()`` adds: the script output for ``"text"``, the base64 for
    the file kinds (handy to forward unchanged). ``logs`` are the supervisor log lines.
    """

    kind: OutputKind
    data: bytes
    files: dict[str, bytes] = field(default_factory=dict)
    text: str = ""
    logs: list[str] = field(default_factory=list)


# -- client side --------------------------------------------------------------------------------


def encode_input(data: bytes | bytearray | memoryview | str | dict | None) -> tuple[bytes, str]:
    """Build a ``/run`` or ``/job`` body and its content type.

    A dict is sent as a JSON object (the supervisor re-serialises it into the input file);
    everything else as base64 text, which is the only way binary survives the watchdog's
    text stdin. Strings are encoded as UTF-8 first: oscar_python uses ASCII and fails on
    anything else.
    """
    if isinstance(data, dict):
        return json.dumps(data, ensure_ascii=False).encode("utf-8"), "application/json"
    if data is None:
        raw = b""
    elif isinstance(data, str):
        raw = data.encode("utf-8")
    elif isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
    else:
        raise CodecError(
            f"cannot send a {type(data).__name__} to OSCAR: pass bytes, str, a dict (JSON object) or None"
        )
    return base64.b64encode(raw), "text/plain"


def strip_log_lines(text: str) -> tuple[str, list[str]]:
    """Split supervisor log lines out of a response body.

    The watchdog merges the supervisor's stderr into the body, so with any log level
    below CRITICAL the result is preceded (and sometimes interleaved) with lines such as
    ``2026-01-01 10:00:00,123 - supervisor - INFO - msg``. Returns the body without them
    (other lines untouched, newlines kept) and the log lines without their line ending.
    """
    rest: list[str] = []
    logs: list[str] = []
    for line in _split_lf(text):
        bare = line.rstrip("\n").rstrip("\r")
        if _LOG_LINE.match(bare):
            logs.append(bare)
        else:
            rest.append(line)
    return "".join(rest), logs


def _split_lf(text: str) -> list[str]:
    """Split on ``\\n`` only, keeping it (``str.splitlines`` also splits on ``\\x0c``, ``\\x85``...)."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def decode_output(body: bytes | str, hint: str | None = None) -> Output:
    """Decode a ``/run`` response body (see :class:`Output`).

    Without a hint the kind is guessed like OSCAR's own clients do, but strictly: the
    remainder is a file only if it is canonical base64, and a zip only if it really opens
    as one. ``hint`` (the ``X-Oscar-Bridge-Output`` header of our local runtime) removes
    the ambiguity of text that happens to be valid base64 (``"abcd"``); an unknown hint
    value is ignored, and a hint the body contradicts falls back to the next best kind
    rather than failing, since the body is what the caller got.
    """
    if isinstance(body, bytes | bytearray | memoryview):
        # surrogateescape keeps non-UTF-8 script output byte-exact in Output.data
        text = bytes(body).decode("utf-8", errors="surrogateescape")
    else:
        text = body
    rest, logs = strip_log_lines(text)
    if rest.endswith("\r\n"):
        rest = rest[:-2]
    elif rest.endswith("\n"):
        rest = rest[:-1]
    hint = hint.strip().lower() if isinstance(hint, str) else None
    if hint not in _KINDS:
        hint = None

    data = _strict_b64decode(rest) if hint != "text" and (hint is not None or rest) else None
    if data is not None:
        if hint != "file" and data.startswith(_ZIP_MAGIC):
            try:
                files = unzip_files(data)
            except CodecError:
                files = None
            if files is not None:
                return Output("files", data, files, rest, logs)
        return Output("file", data, {}, rest, logs)

    raw = rest.encode("utf-8", errors="surrogateescape")
    return Output("text", raw, {}, raw.decode("utf-8", errors="replace"), logs)


def _strict_b64decode(text: str) -> bytes | None:
    """Decode canonical base64 (no whitespace, padding only at the end), else None."""
    if len(text) % 4 or not text.isascii():
        return None
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


# -- runtime side (the faas-supervisor's conventions) ------------------------------------------


def decode_event_body(body: bytes) -> bytes:
    """Return the input file the supervisor writes for a non-storage ("unknown") event.

    * a JSON object becomes Python's ``json.dumps(obj)`` (default separators, non-ASCII
      escaped): OSCAR scripts see that, not the bytes that were sent;
    * a JSON string is unwrapped, then base64-decoded;
    * JSON arrays, numbers, booleans and null make the real supervisor crash -> CodecError;
    * anything else is base64-decoded leniently (non-alphabet characters such as newlines
      are skipped, as ``base64.b64decode`` does without ``validate``).
    """
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CodecError(
            "the body is raw binary: OSCAR expects base64 text or a JSON object "
            f"(invalid UTF-8 at byte {exc.start})"
        ) from None
    try:
        value = json.loads(text)
    except ValueError:
        return _lenient_b64decode(text)
    if isinstance(value, dict):
        return json.dumps(value).encode("ascii")
    if isinstance(value, str):
        return _lenient_b64decode(value)
    kind = "null" if value is None else "an array" if isinstance(value, list) else f"a {type(value).__name__}"
    raise CodecError(f"the body is JSON {kind}: OSCAR accepts only a JSON object or base64 text")


def _lenient_b64decode(text: str) -> bytes:
    if not text.isascii():
        raise CodecError("the body is neither a JSON object nor base64 text (it has non-ASCII characters)")
    try:
        return base64.b64decode(text)
    except binascii.Error as exc:
        raise CodecError(f"the body is neither a JSON object nor valid base64 ({exc})") from None


def encode_output(files: dict[str, bytes]) -> tuple[str, str]:
    """The supervisor's response for files found in ``$TMP_OUTPUT_DIR``.

    One file -> base64 of it (kind ``"file"``); several -> base64 of a zip of all of them
    keyed by their path relative to the directory (kind ``"files"``). With no files the
    supervisor returns the script output instead, so that is the caller's case.
    """
    if not files:
        raise CodecError(
            "encode_output needs at least one file (with none, the response is the script output)"
        )
    if len(files) == 1:
        (data,) = files.values()
        return base64.b64encode(data).decode("ascii"), "file"
    return base64.b64encode(zip_files(files)).decode("ascii"), "files"


def zip_files(files: dict[str, bytes]) -> bytes:
    """Zip ``relpath -> bytes`` deterministically (sorted names, fixed timestamps)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            _check_member_name(name)
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name])
    return buf.getvalue()


def unzip_files(data: bytes) -> dict[str, bytes]:
    """Read a zip into ``relpath -> bytes`` (directory entries skipped).

    Member names that are absolute or climb out with ``..`` are refused, because callers
    write these names to disk.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            out: dict[str, bytes] = {}
            for info in zf.infolist():
                if info.is_dir():
                    continue
                _check_member_name(info.filename)
                out[info.filename] = zf.read(info)
            return out
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError) as exc:
        raise CodecError(f"not a readable zip archive: {exc}") from None


def _check_member_name(name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
        raise CodecError(f"unsafe file name in zip: {name!r}")


def format_log_line(level: str, message: str, when: datetime | float | None = None) -> str:
    """One supervisor log line, ``<asctime> - supervisor - LEVEL - message`` (no newline).

    ``when`` is a datetime or an epoch time (default: now), rendered in local time as
    Python logging's default ``asctime``. Newlines in the message are flattened so that
    every line we emit is recognised by :func:`strip_log_lines`.
    """
    level = level.upper()
    if level not in LOG_LEVELS:
        raise CodecError(f"unknown log level {level!r}: expected one of {', '.join(LOG_LEVELS)}")
    if when is None:
        when = time.time()
    moment = when if isinstance(when, datetime) else datetime.fromtimestamp(when)
    asctime = moment.strftime("%Y-%m-%d %H:%M:%S") + f",{moment.microsecond // 1000:03d}"
    flat = " ".join(message.splitlines()) if ("\n" in message or "\r" in message) else message
    return f"{asctime} - supervisor - {level} - {flat}"
