"""``oscar-bridge invoke SERVICE (-i TEXT | -f FILE) [--async] [-o OUT]``.

The OSCAR wire format (base64 bodies, zipped multi-file outputs, supervisor log lines
mixed into the response) is the codec's business; this command only deals in what
the user means: the bytes of the input, and the script's result as text, one file or
several files. A file's bytes come out exactly as the script wrote them.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

from bridge.oscar.codec import Output

from . import output
from .backend import cluster_store
from .errors import UsageError


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "invoke",
        aliases=["run"],
        parents=[common],
        help="invoke a service synchronously (or submit an async job)",
        description=(
            "Invoke a service. Synchronously, the result goes to OUT or stdout: text is printed, a "
            "single output file's bytes are written, several output files are extracted into the "
            "directory OUT. With --async the job's name is printed."
        ),
    )
    p.add_argument("service", metavar="SERVICE")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("-i", "--input", metavar="TEXT", help="input text")
    src.add_argument("-f", "--file", metavar="FILE", help="input file ('-' reads stdin)")
    p.add_argument("--async", dest="asynchronous", action="store_true", help="submit an async job instead")
    p.add_argument(
        "-o", "--output", metavar="OUT", help="write the result to this file (directory for several)"
    )
    p.set_defaults(func=cmd_invoke)


def _read_input(args: argparse.Namespace) -> bytes | str:
    if args.input is not None:
        return args.input
    if args.file == "-":
        return sys.stdin.buffer.read()
    return Path(args.file).read_bytes()


def cmd_invoke(args: argparse.Namespace) -> int:
    if args.asynchronous and args.output:
        raise UsageError("-o/--output does not apply to --async (the job's outputs go to its output buckets)")
    data = _read_input(args)
    backend = cluster_store(args).backend(args.cluster)
    if args.asynchronous:
        job = backend.submit_job(args.service, data)
        if args.json:
            output.emit_json({"cluster": backend.cluster_id, "service": args.service, "job": job})
        else:
            output.message(job)
        return 0
    result = backend.invoke(args.service, data)
    written = _write_result(result, args.output, quiet=args.json) if args.output else []
    if args.json:
        doc: dict = {"cluster": backend.cluster_id, "service": args.service, "kind": result.kind}
        if written:
            doc["written"] = written
        elif result.kind == "text":
            doc["text"] = result.text
        elif result.kind == "file":
            doc["base64"] = base64.b64encode(result.data).decode()
        else:
            doc["files"] = {name: base64.b64encode(b).decode() for name, b in result.files.items()}
        output.emit_json(doc)
    elif not args.output:
        _print_result(result)
    return 0


def _print_result(result: Output) -> None:
    """Text as text; binary as raw bytes, unless stdout is a terminal."""
    if result.kind == "text":
        text = result.text
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
        sys.stdout.flush()
        return
    if sys.stdout.isatty():
        what = "a file" if result.kind == "file" else f"{len(result.files)} files"
        raise UsageError(f"the service returned {what} ({len(result.data)} bytes): pass -o OUT to save it")
    sys.stdout.flush()
    sys.stdout.buffer.write(result.data)  # several files: the zip, as the bridge returns them
    sys.stdout.buffer.flush()


def _write_result(result: Output, out: str, *, quiet: bool) -> list[str]:
    """Write OUT; several files go under the directory OUT, never outside it."""
    target = Path(out)
    if result.kind != "files":
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(result.data)
        paths = [str(target)]
    else:
        target.mkdir(parents=True, exist_ok=True)
        root = target.resolve()
        paths = []
        for name, content in sorted(result.files.items()):
            path = (root / name).resolve()
            if not path.is_relative_to(root):
                raise ValueError(f"refusing to write {name!r} outside {target}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            paths.append(str(target / name))
    if not quiet:
        for p in paths:
            output.note(f"wrote {p}")
    return paths
