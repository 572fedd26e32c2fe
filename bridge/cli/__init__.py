"""``oscar-bridge``: the command line of the suite.

One module per command group (clusters, services/apply, invoke, jobs, local,
serve/token); this module builds the parser and is the single place where failures
become ``error: ...`` lines and exit codes (see ``errors.py``), so no command can leak
a traceback.

The options shared by the OSCAR commands (``-c``, ``--json``, ``--config``,
``--bridge``, ``--bridge-token``) are accepted both before the command and after it
(``oscar-bridge --json services list`` and ``oscar-bridge services list --json``):
they live in a parent parser whose defaults are SUPPRESSed, so a sub-command never
overwrites a value given at the top level.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bridge import __version__

from . import clusters, invoke, jobs, local, serve, services
from .errors import EXIT_USAGE, report

_COMMON_DEFAULTS = {"cluster": None, "json": False, "config": None, "bridge": None, "bridge_token": None}


def _common_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("common options")
    g.add_argument(
        "-c", "--cluster", default=argparse.SUPPRESS, help="cluster id (default: the default cluster)"
    )
    g.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON output for scripts")
    g.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="clusters file (default: $OSCAR_BRIDGE_CLUSTERS or <data dir>/clusters.yaml)",
    )
    g.add_argument(
        "--bridge",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="go through a running bridge's HTTP API instead of calling OSCAR directly",
    )
    g.add_argument(
        "--bridge-token",
        default=argparse.SUPPRESS,
        metavar="TOKEN",
        help="the bridge's token (default: $OSCAR_BRIDGE_TOKEN, else the local bridge's token file)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_parser()
    parser = argparse.ArgumentParser(
        prog="oscar-bridge",
        parents=[common],
        description=(
            "OSCAR serverless services from the command line, Node-RED, NiFi and MQTT: manage "
            "clusters, apply FDL files, invoke services and read jobs; run the embedded local "
            "runtime (local) or the bridge service (serve)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (clusters, services, invoke, jobs, local, serve):
        module.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 failure, 2 usage) instead of exiting."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    for name, value in _COMMON_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    try:
        return args.func(args)
    except (Exception, KeyboardInterrupt) as exc:  # one line, never a traceback
        return report(exc)
