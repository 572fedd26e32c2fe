"""``oscar-bridge apply FDL`` and ``services list/get/delete``.

``apply`` validates the whole FDL locally first (every problem reported with its
location, nothing sent when one is wrong), inlines the scripts, then creates or
updates each service on its cluster. As with oscar-cli, an FDL entry's cluster id
picks the cluster; ``-c`` sends every entry to one cluster instead, which is what a
user wants when trying an FDL written for someone else's cluster on ``local``.

``services get`` prints YAML that ``apply`` accepts back, so get -> edit -> apply works.
"""

from __future__ import annotations

import argparse

from bridge.oscar.fdl import load_fdl

from . import output
from .backend import cluster_store


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    ap = sub.add_parser(
        "apply",
        parents=[common],
        help="create or update the services of an FDL file",
        description="Create or update every service of an FDL file (or of OSCAR's service JSON/YAML).",
    )
    ap.add_argument("fdl", metavar="FDL", help="FDL file (YAML), scripts relative to it")
    ap.set_defaults(func=cmd_apply)

    p = sub.add_parser("services", aliases=["service", "svc"], help="list, show and delete services")
    ss = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = ss.add_parser("list", aliases=["ls"], parents=[common], help="list the cluster's services")
    ls.set_defaults(func=cmd_list)
    get = ss.add_parser("get", parents=[common], help="show one service (YAML that apply accepts)")
    get.add_argument("name", metavar="NAME")
    get.set_defaults(func=cmd_get)
    rm = ss.add_parser("delete", aliases=["rm", "remove"], parents=[common], help="delete services")
    rm.add_argument("names", metavar="NAME", nargs="+")
    rm.set_defaults(func=cmd_delete)


def cmd_apply(args: argparse.Namespace) -> int:
    fdl = load_fdl(args.fdl)
    store = cluster_store(args)
    groups: dict[str, list[dict]] = {}
    skipped: list[str] = []
    if args.cluster:
        groups[store.resolve(args.cluster)] = [e.service for e in fdl.services]
    else:
        known = set(store.ids())
        for entry in fdl.services:
            if entry.cluster_id is None:  # OSCAR's service JSON carries no cluster: the default one
                groups.setdefault(store.resolve(None), []).append(entry.service)
            elif entry.cluster_id in known:
                groups.setdefault(entry.cluster_id, []).append(entry.service)
            else:
                skipped.append(f"{entry.service.get('name')} (cluster {entry.cluster_id})")
    if not groups:
        raise ValueError(
            f"{args.fdl}: none of its clusters is configured ({', '.join(skipped)}); "
            "pass -c CLUSTER to apply every service to one cluster"
        )
    for item in skipped:
        output.note(f"warning: skipped {item}: not a configured cluster (use -c to choose one)")
    results = []
    for cluster_id, services in groups.items():
        for r in store.backend(cluster_id).apply_services(services):
            results.append({"cluster": cluster_id, **r})
    if args.json:
        output.emit_json(results)
    else:
        for r in results:
            output.message(f"service {r['name']} {r['action']} on cluster {r['cluster']}")
    return 0


def _inputs(svc: dict) -> list[str]:
    return [str(i.get("path", "")) for i in svc.get("input") or [] if isinstance(i, dict)]


def cmd_list(args: argparse.Namespace) -> int:
    services = cluster_store(args).backend(args.cluster).list_services()
    if args.json:
        output.emit_json(services)
        return 0
    output.table(
        ["NAME", "IMAGE", "CPU", "MEMORY", "INPUTS"],
        [[s.get("name"), s.get("image"), s.get("cpu"), s.get("memory"), _inputs(s)] for s in services],
    )
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    svc = cluster_store(args).backend(args.cluster).get_service(args.name)
    if args.json:
        output.emit_json(svc)
    else:
        output.message(output.yaml_text(svc).rstrip("\n"))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    backend = cluster_store(args).backend(args.cluster)
    for name in args.names:
        backend.delete_service(name)
        if not args.json:
            output.message(f"service {name} deleted from cluster {backend.cluster_id}")
    if args.json:
        output.emit_json({"cluster": backend.cluster_id, "deleted": args.names})
    return 0
