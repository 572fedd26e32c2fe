"""OSCAR's invocation conventions (bridge.oscar.codec), both directions."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.oscar import codec
from bridge.oscar.codec import CodecError, Output


def make_png(width: int = 4, height: int = 3) -> bytes:
    """A real (tiny, RGB) PNG, built by hand so the test needs no image library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # each row: filter byte 0, then 3 bytes (R, G, B) per pixel
    raw = b"".join(
        b"\x00" + bytes(c for x in range(width) for c in (x * 30 % 256, y * 40 % 256, 200))
        for y in range(height)
    )
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def supervisor_response(text: str, log_lines: tuple[str, ...] = ()) -> bytes:
    """What OSCAR's watchdog sends back: stderr log lines, then the result print()ed."""
    return ("".join(line + "\n" for line in log_lines) + text + "\n").encode("utf-8")


def runtime_roundtrip(data: bytes | str | dict | None) -> bytes:
    """Client encode -> the supervisor's decoding: the bytes a script finds in its input file."""
    body, _ = codec.encode_input(data)
    return codec.decode_event_body(body)


LOG = "2026-01-01 10:00:00,123 - supervisor - INFO - Received input"


# -- encode_input / decode_event_body -----------------------------------------------------------


def test_png_bytes_reach_the_script_unchanged() -> None:
    png = make_png()
    assert png.startswith(b"\x89PNG") and len(zlib.decompress(png[png.index(b"IDAT") + 4 : -16])) == 3 * 13
    body, content_type = codec.encode_input(png)
    assert content_type == "text/plain"
    assert body == base64.b64encode(png)
    assert codec.decode_event_body(body) == png


@given(st.binary(max_size=2048))
def test_any_bytes_roundtrip_client_to_script(data: bytes) -> None:
    assert runtime_roundtrip(data) == data


@given(st.text(max_size=300))
def test_any_text_roundtrips_as_utf8(text: str) -> None:
    assert runtime_roundtrip(text) == text.encode("utf-8")


def test_non_ascii_text_is_sent_as_utf8_base64() -> None:
    body, _ = codec.encode_input("¡Hola, señor! 日本")
    assert base64.b64decode(body).decode("utf-8") == "¡Hola, señor! 日本"


def test_none_and_empty_input_send_an_empty_body() -> None:
    assert codec.encode_input(None) == (b"", "text/plain")
    assert codec.encode_input(b"") == (b"", "text/plain")
    assert codec.decode_event_body(b"") == b""


def test_dict_is_sent_as_a_json_object() -> None:
    body, content_type = codec.encode_input({"message": "ñandú", "n": [1, 2]})
    assert content_type == "application/json"
    assert json.loads(body) == {"message": "ñandú", "n": [1, 2]}


def test_json_object_is_reserialised_like_the_supervisor() -> None:
    sent = b'{"b":"\xc3\xb1","a":[1,2]}'
    assert codec.decode_event_body(sent) == b'{"b": "\\u00f1", "a": [1, 2]}'
    assert runtime_roundtrip({"k": "v"}) == json.dumps({"k": "v"}).encode()


def test_json_string_is_unwrapped_then_base64_decoded() -> None:
    inner = base64.b64encode(b"\x00\xffpayload").decode()
    assert codec.decode_event_body(json.dumps(inner).encode()) == b"\x00\xffpayload"


def test_base64_is_decoded_leniently_like_b64decode() -> None:
    wrapped = base64.encodebytes(b"x" * 200)  # newlines every 76 characters
    assert b"\n" in wrapped.strip()
    assert codec.decode_event_body(wrapped) == b"x" * 200
    assert codec.decode_event_body(b"aGk=\n") == b"hi"


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"[1, 2]", "JSON an array"),
        (b"42", "JSON a int"),
        (b"true", "JSON a bool"),
        (b"null", "JSON null"),
        (b"abcde", "valid base64"),
        (b'"abc"', "valid base64"),
        ("señor".encode(), "non-ASCII"),
        (b"\x89PNG\r\n\x1a\n\xff", "raw binary"),
    ],
)
def test_bodies_the_supervisor_cannot_take_raise_codec_error(body: bytes, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        codec.decode_event_body(body)


def test_unsupported_input_types_are_refused() -> None:
    with pytest.raises(CodecError, match="list"):
        codec.encode_input([1, 2])  # type: ignore[arg-type]
    assert isinstance(CodecError("x"), ValueError)


# -- encode_output / decode_output ------------------------------------------------------------


def test_one_output_file_roundtrips() -> None:
    png = make_png(8, 8)
    text, kind = codec.encode_output({"out/image.png": png})
    assert kind == "file"
    out = codec.decode_output(supervisor_response(text))
    assert out == Output("file", png, {}, text, [])


def test_several_output_files_roundtrip_as_a_zip() -> None:
    files = {"a.txt": b"one\n", "sub/b.bin": bytes(range(256)), "empty": b""}
    text, kind = codec.encode_output(files)
    assert kind == "files"
    out = codec.decode_output(supervisor_response(text), hint="files")
    assert out.kind == "files" and out.files == files
    assert codec.unzip_files(out.data) == files
    assert codec.decode_output(supervisor_response(text)).files == files  # also without a hint


@given(st.dictionaries(st.from_regex(r"[a-z]{1,8}(/[a-z]{1,8})?", fullmatch=True), st.binary(), min_size=2))
def test_zip_roundtrip(files: dict[str, bytes]) -> None:
    assert codec.unzip_files(codec.zip_files(files)) == files


def test_zip_is_deterministic() -> None:
    files = {"b": b"2", "a": b"1"}
    assert codec.zip_files(files) == codec.zip_files(dict(reversed(files.items())))


def test_unsafe_or_broken_zips_are_refused() -> None:
    with pytest.raises(CodecError, match="unsafe"):
        codec.zip_files({"../evil": b""})
    with pytest.raises(CodecError, match="zip"):
        codec.unzip_files(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(CodecError, match="at least one"):
        codec.encode_output({})


def test_text_output_drops_only_the_print_newline() -> None:
    out = codec.decode_output(b"to-stdout\nto-stderr\n\n")
    assert out.kind == "text"
    assert out.text == "to-stdout\nto-stderr\n"
    assert out.data == b"to-stdout\nto-stderr\n"


def test_log_lines_are_stripped_and_kept() -> None:
    logs = (
        "2026-01-01 10:00:00,123 - supervisor - INFO - Received input",
        "2026-01-01 10:00:00,200 - supervisor - DEBUG - Running script",
    )
    after = "2026-01-01 10:00:01,999 - supervisor - WARNING - late"
    body = supervisor_response("HELLO\n- supervisor - INFO - not a log line", logs)
    body = body.replace(b"HELLO\n", b"HELLO\n" + after.encode() + b"\n")
    out = codec.decode_output(body, hint="text")
    assert out.kind == "text"
    assert out.text == "HELLO\n- supervisor - INFO - not a log line"
    assert out.logs == [*logs, after]


def test_log_lines_before_a_base64_file() -> None:
    text, _ = codec.encode_output({"f": b"\x00binary\xff"})
    out = codec.decode_output(supervisor_response(text, (LOG,)))
    assert out.kind == "file" and out.data == b"\x00binary\xff" and out.logs == [LOG]


def test_critical_only_service_has_no_log_lines() -> None:
    out = codec.decode_output(b"just the answer\n")
    assert out.logs == [] and out.text == "just the answer"


@pytest.mark.parametrize("level", codec.LOG_LEVELS)
def test_format_log_line_is_recognised_by_strip(level: str) -> None:
    line = codec.format_log_line(level.lower(), "multi\nline message")
    assert "\n" not in line and f" - supervisor - {level} - multi line message" in line
    rest, found = codec.strip_log_lines(line + "\nbody\n")
    assert found == [line] and rest == "body\n"


def test_format_log_line_uses_logging_asctime() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 67_000)
    assert codec.format_log_line("ERROR", "x", when) == "2026-01-02 03:04:05,067 - supervisor - ERROR - x"
    stamp = datetime(2026, 5, 6, 7, 8, 9).timestamp()
    assert codec.format_log_line("INFO", "y", stamp).startswith("2026-05-06 07:08:09,000 - ")
    with pytest.raises(CodecError, match="log level"):
        codec.format_log_line("LOUD", "x")


def test_strip_keeps_other_line_separators_and_crlf() -> None:
    rest, found = codec.strip_log_lines(f"{LOG}\r\na\x0cb\x85c\r\nend")
    assert found == [LOG] and rest == "a\x0cb\x85c\r\nend"


def test_hint_text_keeps_base64_looking_output_as_text() -> None:
    assert codec.decode_output(b"abcd\n").kind == "file"  # ambiguous without a hint
    out = codec.decode_output(b"abcd\n", hint="text")
    assert out.kind == "text" and out.text == "abcd" and out.data == b"abcd"


def test_hint_file_keeps_a_zip_output_file_whole() -> None:
    zipped = codec.zip_files({"a": b"1", "b": b"2"})
    text = base64.b64encode(zipped).decode()
    assert codec.decode_output(text).kind == "files"
    out = codec.decode_output(text + "\n", hint="file")
    assert out.kind == "file" and out.data == zipped and out.files == {}


def test_hint_file_allows_an_empty_file() -> None:
    assert codec.decode_output(b"\n", hint="file") == Output("file", b"", {}, "", [])
    assert codec.decode_output(b"\n") == Output("text", b"", {}, "", [])
    assert codec.decode_output(b"") == Output("text", b"", {}, "", [])


def test_contradicted_or_unknown_hints_fall_back_to_the_body() -> None:
    assert codec.decode_output(b"not base64!\n", hint="file").kind == "text"
    assert codec.decode_output(base64.b64encode(b"plain"), hint="files").kind == "file"
    assert codec.decode_output(b"abcd", hint="weird").kind == "file"
    assert codec.decode_output(b"abcd", hint=" TEXT ").kind == "text"


def test_fake_zip_magic_is_a_plain_file() -> None:
    data = b"PK\x03\x04 but truncated"
    out = codec.decode_output(base64.b64encode(data))
    assert out.kind == "file" and out.data == data


def test_non_strict_base64_is_text() -> None:
    for body in (b"aGk\n", b"aGk=aGk=\n", b"aG k=\n", b"a\nGk=\n"):
        assert codec.decode_output(body).kind == "text", body


def test_non_utf8_text_output_is_kept_byte_exact() -> None:
    out = codec.decode_output(b"caf\xe9 \xff!\n")
    assert out.kind == "text"
    assert out.data == b"caf\xe9 \xff!"
    assert out.text == "caf\ufffd \ufffd!"


def test_str_body_is_accepted() -> None:
    out = codec.decode_output(f"{LOG}\nbonjour\n")
    assert out.kind == "text" and out.text == "bonjour" and out.logs == [LOG]
