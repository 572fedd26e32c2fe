"""``oscar-bridge serve`` and ``oscar-bridge token``: the bridge service and its token.

``token`` prints the bearer token clients (Node-RED, NiFi, curl, ``--bridge``) need.
Its last output word is the token itself, so ``$(oscar-bridge token | awk '{print $NF}')``
works; a note on stderr says when the token was created just now.
"""

from __future__ import annotations

import argparse

from bridge.settings import Settings

from . import output


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve",
        help="run the bridge HTTP service (with the local runtime when no cluster is registered)",
        description=(
            "Run the bridge HTTP API behind a production WSGI server. With no cluster registered it "
            "also starts the embedded local runtime and registers it as cluster 'local'."
        ),
    )
    p.add_argument("--config", dest="settings_file", metavar="FILE", help="settings YAML file")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8780)")
    p.add_argument("--data", metavar="DIR", help="data directory (default: the user's data dir)")
    p.set_defaults(func=cmd_serve)

    t = sub.add_parser(
        "token",
        help="print the bridge's bearer token (created if missing)",
        description="Print the bridge's bearer token; the last word of the output is the token.",
    )
    t.add_argument("--config", dest="settings_file", metavar="FILE", help="settings YAML file")
    t.add_argument("--data", metavar="DIR", help="data directory (default: the user's data dir)")
    t.set_defaults(func=cmd_token)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = Settings.load(args.settings_file).with_overrides(
        host=args.host, port=args.port, data_dir=args.data
    )
    from bridge.server.serve import serve

    return int(serve(settings) or 0)


def cmd_token(args: argparse.Namespace) -> int:
    settings = Settings.load(args.settings_file).with_overrides(data_dir=args.data)
    from bridge.server.tokens import token_command_output

    output.message(token_command_output(settings.data_dir))
    return 0
