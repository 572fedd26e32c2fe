"""``oscar-bridge local``: run the embedded OSCAR-compatible runtime in the foreground.

Only option parsing lives here; the runtime itself (``bridge.local.runtime``) is
imported when the command runs, so the rest of the CLI works even where the local
runtime's optional pieces (the S3 server) are not installed.
"""

from __future__ import annotations

import argparse

from bridge.settings import Settings


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "local",
        help="run the embedded local OSCAR-compatible runtime",
        description=(
            "Run OSCAR services on this machine behind OSCAR's own REST API (services, tokens, jobs "
            "and logs are kept in the data directory across restarts). Stops on Ctrl-C."
        ),
    )
    p.add_argument("--config", dest="settings_file", metavar="FILE", help="settings YAML file")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: a free one)")
    p.add_argument("--data", metavar="DIR", help="data directory (default: the user's data dir)")
    p.add_argument("--user", help="admin user (default oscar)")
    p.add_argument("--password", help="admin password (default: generated once, kept in the data dir)")
    p.set_defaults(func=cmd_local)


def cmd_local(args: argparse.Namespace) -> int:
    settings = Settings.load(args.settings_file).with_overrides(
        local_host=args.host,
        local_port=args.port,
        data_dir=args.data,
        local_user=args.user,
        local_password=args.password,
    )
    from bridge.local.runtime import run_local

    return int(run_local(settings) or 0)
