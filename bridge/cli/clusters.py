"""``oscar-bridge clusters add/list/remove/check``: the clusters the other commands reach.

Secrets go in, never out: ``list`` shows the redacted form (``***`` where a secret is
set), ``add`` echoes the redacted spec. A password can be typed at a prompt or piped
on stdin (``--password -``) so it need not appear in the shell history or ``ps``.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from bridge.oscar.cluster import ClusterSpec

from . import output
from .backend import cluster_store
from .errors import UsageError


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("clusters", aliases=["cluster"], help="manage the configured OSCAR clusters")
    cs = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    add = cs.add_parser(
        "add",
        parents=[common],
        help="add (or replace) a cluster",
        description="Add or replace a cluster. Give exactly one kind of credentials.",
    )
    add.add_argument("id", metavar="ID", help="cluster id used with -c (letters, digits, . _ -)")
    add.add_argument(
        "endpoint", metavar="ENDPOINT", help="the OSCAR endpoint, e.g. https://oscar.example.org"
    )
    add.add_argument("--user", help="admin user (Basic auth)")
    add.add_argument("--password", help="password for --user; '-' reads it from stdin; prompted if omitted")
    add.add_argument("--oidc-token", metavar="TOKEN", help="a static OIDC access token")
    add.add_argument(
        "--oidc-refresh-token", metavar="TOKEN", help="an OIDC refresh token (needs --token-endpoint)"
    )
    add.add_argument("--token-endpoint", metavar="URL", help="the OIDC issuer's token endpoint")
    add.add_argument("--client-id", help="OIDC client id for the refresh (default token-portal)")
    add.add_argument("--insecure", action="store_true", help="do not verify the cluster's TLS certificate")
    add.add_argument("--default", action="store_true", help="make it the default cluster")
    add.set_defaults(func=cmd_add)

    ls = cs.add_parser("list", aliases=["ls"], parents=[common], help="list clusters (secrets redacted)")
    ls.set_defaults(func=cmd_list)

    rm = cs.add_parser("remove", aliases=["rm", "delete"], parents=[common], help="forget a cluster")
    rm.add_argument("id", metavar="ID")
    rm.set_defaults(func=cmd_remove)

    check = cs.add_parser("check", parents=[common], help="call the cluster's /health and /system/info")
    check.add_argument("id", metavar="ID", nargs="?", help="cluster id (default: -c or the default cluster)")
    check.set_defaults(func=cmd_check)


def _spec_from_args(args: argparse.Namespace) -> ClusterSpec:
    """Build the spec; ValueError (usage) when the credential options do not fit."""
    kinds = [
        k
        for k, given in (
            ("basic", args.user is not None),
            ("oidc-token", args.oidc_token is not None),
            ("oidc-refresh", args.oidc_refresh_token is not None),
        )
        if given
    ]
    if len(kinds) != 1:
        raise UsageError("give exactly one of --user, --oidc-token or --oidc-refresh-token")
    verify = not args.insecure
    if kinds[0] == "basic":
        password = args.password
        if password is None:
            password = getpass.getpass(f"password for {args.user}: ") if sys.stdin.isatty() else "-"
        if password == "-":
            password = sys.stdin.readline().rstrip("\r\n")
        return ClusterSpec(args.id, args.endpoint, "basic", user=args.user, password=password, verify=verify)
    if args.password is not None:
        raise UsageError("--password only goes with --user")
    if kinds[0] == "oidc-token":
        return ClusterSpec(args.id, args.endpoint, "oidc", token=args.oidc_token, verify=verify)
    if not args.token_endpoint:
        raise UsageError("--oidc-refresh-token needs --token-endpoint URL")
    return ClusterSpec(
        args.id,
        args.endpoint,
        "oidc",
        refresh_token=args.oidc_refresh_token,
        token_endpoint=args.token_endpoint,
        client_id=args.client_id or "",
        verify=verify,
    )


def cmd_add(args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    shown = cluster_store(args).add(spec, make_default=args.default)
    if args.json:
        output.emit_json(shown)
    else:
        suffix = " (default)" if shown.get("default") else ""
        output.message(f"cluster {spec.id} added: {spec.endpoint}{suffix}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    clusters = cluster_store(args).list()
    if args.json:
        output.emit_json(clusters)
        return 0
    output.table(
        ["ID", "ENDPOINT", "AUTH", "USER", "VERIFY", "DEFAULT"],
        [
            [
                c.get("id"),
                c.get("endpoint"),
                c.get("auth_kind"),
                c.get("user"),
                c.get("verify"),
                c.get("default"),
            ]
            for c in clusters
        ],
    )
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    cluster_store(args).remove(args.id)
    if args.json:
        output.emit_json({"removed": args.id})
    else:
        output.message(f"cluster {args.id} removed")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    result = cluster_store(args).backend(args.id or args.cluster).check()
    if args.json:
        output.emit_json(result)
    else:
        info = result.get("info") or {}
        state = "healthy" if result.get("healthy", True) else "NOT healthy"
        version = info.get("version", "?") if isinstance(info, dict) else "?"
        output.message(f"cluster {result.get('cluster', args.id)}: {state}, OSCAR version {version}")
    return 0 if result.get("healthy", True) else 1
