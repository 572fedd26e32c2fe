"""How commands print: aligned tables for people, ``--json`` for scripts.

Every command returns data (a list of rows, a dict, a message) and lets this module
decide the form, so that ``--json`` output is always one parseable JSON document on
stdout and human output never leaks into it. Errors and notes go to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

import yaml


def emit_json(data: Any, stream: TextIO | None = None) -> None:
    """One JSON document, indented, non-ASCII kept, on stdout."""
    out = stream or sys.stdout
    out.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    out.flush()


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], stream: TextIO | None = None) -> None:
    """A plain left-aligned table: header row, then one row per item (no borders, so
    it stays greppable and cut-able)."""
    out = stream or sys.stdout
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    for row in [list(headers), *cells]:
        out.write("  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip() + "\n")
    out.flush()


def message(text: str, stream: TextIO | None = None) -> None:
    """A line for people on stdout."""
    out = stream or sys.stdout
    out.write(text + "\n")
    out.flush()


def note(text: str) -> None:
    """A side remark on stderr (warnings, hints) that never pollutes piped output."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def error(text: str) -> None:
    """``error: ...`` on stderr; extra lines of a long message are indented under it."""
    lines = [line for line in str(text).strip().splitlines() if line.strip()] or ["unknown error"]
    sys.stderr.write(f"error: {lines[0]}\n")
    for line in lines[1:]:
        sys.stderr.write(f"  {line}\n")
    sys.stderr.flush()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value) or "-"
    text = str(value)
    return text.replace("\n", " ") if text else "-"


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (service scripts) as ``|`` blocks, so they read like files."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not any(c in value for c in "\t\r") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def yaml_text(data: Any) -> str:
    """YAML for people (and for ``apply``), key order kept."""
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, default_flow_style=False)
