"""``oscar-bridge jobs list/logs/delete``: the async jobs of a service.

OSCAR pages its job list (v3.6.4+) or returns a bare map (older); the client hides
both, so ``list`` always shows every job, oldest first.
"""

from __future__ import annotations

import argparse

from . import output
from .backend import cluster_store


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("jobs", aliases=["job"], help="list, read and delete a service's async jobs")
    js = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    ls = js.add_parser("list", aliases=["ls"], parents=[common], help="list the jobs of a service")
    ls.add_argument("service", metavar="SERVICE")
    ls.set_defaults(func=cmd_list)

    logs = js.add_parser("logs", aliases=["log"], parents=[common], help="print a job's logs")
    logs.add_argument("service", metavar="SERVICE")
    logs.add_argument("job", metavar="JOB")
    logs.add_argument("-t", "--timestamps", action="store_true", help="prefix each line with its timestamp")
    logs.set_defaults(func=cmd_logs)

    rm = js.add_parser(
        "delete",
        aliases=["rm"],
        parents=[common],
        help="delete jobs and their logs",
        description="Delete one job, every succeeded job (--succeeded) or every job (--all).",
    )
    rm.add_argument("service", metavar="SERVICE")
    which = rm.add_mutually_exclusive_group(required=True)
    which.add_argument("job", metavar="JOB", nargs="?", help="the job to delete")
    which.add_argument("--all", action="store_true", help="every job, whatever its status")
    which.add_argument("--succeeded", action="store_true", help="every succeeded job")
    rm.set_defaults(func=cmd_delete)


def cmd_list(args: argparse.Namespace) -> int:
    jobs = cluster_store(args).backend(args.cluster).list_jobs(args.service)
    ordered = sorted(jobs.items(), key=lambda kv: (str(kv[1].get("creation_time") or ""), kv[0]))
    if args.json:
        output.emit_json([{"job": name, **info} for name, info in ordered])
        return 0
    output.table(
        ["JOB", "STATUS", "CREATED", "STARTED", "FINISHED"],
        [
            [name, i.get("status"), i.get("creation_time"), i.get("start_time"), i.get("finish_time")]
            for name, i in ordered
        ],
    )
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    text = cluster_store(args).backend(args.cluster).job_logs(args.service, args.job, args.timestamps)
    if args.json:
        output.emit_json({"service": args.service, "job": args.job, "logs": text})
    else:
        output.message(text.rstrip("\n"))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    backend = cluster_store(args).backend(args.cluster)
    if args.job:
        backend.delete_job(args.service, args.job)
        what = f"job {args.job}"
    else:
        backend.delete_jobs(args.service, all=args.all)
        what = "all jobs" if args.all else "succeeded jobs"
    if args.json:
        output.emit_json(
            {"service": args.service, "deleted": args.job or ("all" if args.all else "succeeded")}
        )
    else:
        output.message(f"deleted {what} of {args.service}")
    return 0
