"""Sync-invoke latency of the local runtime against spawning /bin/sh directly.

Starts a LocalRuntime on a temporary data dir, creates a service with a trivial script,
then alternates N `POST /run/<svc>` calls over HTTP with N direct `/bin/sh script.sh`
spawns of the same script (alternating keeps both equally exposed to load changes on
the machine), and prints p50/p99 of each and their ratio. The ratio is the price of
the runtime's HTTP + supervisor layer over the bare process spawn, which dominates.

    python bench/local_invoke.py [-n 200] [--warmup 10]
"""

from __future__ import annotations

import argparse
import base64
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bridge.local.runtime import LocalRuntime

SCRIPT = "echo ok\n"


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: every value reported was measured)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=200, help="measured calls of each kind (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured calls first (default 10)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("-n must be at least 1")

    with tempfile.TemporaryDirectory(prefix="oscar-bench-") as tmp:
        script = Path(tmp) / "script.sh"
        script.write_text(SCRIPT)
        with LocalRuntime(Path(tmp) / "data", max_concurrency=1, timeout_s=60) as rt:
            session = requests.Session()
            session.auth = (rt.user, rt.password)
            svc = {"name": "bench", "image": "none", "script": SCRIPT, "log_level": "CRITICAL"}
            resp = session.post(rt.endpoint + "/system/services", json=svc, timeout=60)
            resp.raise_for_status()
            token = session.get(rt.endpoint + "/system/services/bench", timeout=30).json()["token"]
            invoke = requests.Session()
            headers = {"Authorization": "Bearer " + token, "Content-Type": "text/plain"}
            body = base64.b64encode(b"x")

            def http_call() -> float:
                started = time.perf_counter()
                reply = invoke.post(rt.endpoint + "/run/bench", data=body, headers=headers, timeout=60)
                elapsed = time.perf_counter() - started
                if reply.status_code != 200 or reply.text.strip() != "ok":
                    raise SystemExit(f"unexpected reply {reply.status_code}: {reply.text[:200]!r}")
                return elapsed

            def direct_call() -> float:
                started = time.perf_counter()
                subprocess.run(["/bin/sh", str(script)], input=b"", capture_output=True, check=True)
                return time.perf_counter() - started

            for _ in range(args.warmup):
                http_call()
                direct_call()
            http_s: list[float] = []
            direct_s: list[float] = []
            for _ in range(args.n):
                http_s.append(http_call())
                direct_s.append(direct_call())

    rows = (("HTTP /run (local runtime)", http_s), ("/bin/sh script.sh (direct)", direct_s))
    print(f"sync invoke of a trivial script, n={args.n} each (warmup {args.warmup})")
    print(f"{'':28} {'p50 ms':>9} {'p99 ms':>9}")
    for label, values in rows:
        print(f"{label:28} {percentile(values, 50) * 1e3:9.2f} {percentile(values, 99) * 1e3:9.2f}")
    for pct in (50, 99):
        ratio = percentile(http_s, pct) / percentile(direct_s, pct)
        print(f"ratio p{pct}: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
