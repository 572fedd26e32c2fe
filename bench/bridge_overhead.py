"""How much does going through the bridge cost? One run, two paths, same service.

Starts a bridge (with its embedded local runtime) on a temporary data dir, applies a
trivial echo service, then measures synchronous invocations:

* direct: POST /run/<svc> on the local runtime (OSCAR's own API: base64 body, service
  token), i.e. what any OSCAR client does;
* bridge: POST /api/v1/clusters/local/services/<svc>/invoke with the raw bytes.

It prints latency p50/p99 (sequential calls) and throughput (concurrent clients) for
both, and the bridge/direct ratios. Usage:

    python bench/bridge_overhead.py [--requests 200] [--concurrency 4] [--payload 1024]
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.server.serve import BridgeServer
from bridge.settings import Settings

SERVICE = "bench-echo"
DEFINITION = {
    "name": SERVICE,
    "image": "local/echo",
    "log_level": "CRITICAL",
    "script": '#!/bin/sh\ncp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/out"\n',
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def measure(call: Callable[[requests.Session], None], n: int, concurrency: int) -> dict[str, float]:
    """Sequential latencies, then throughput with `concurrency` clients (one session each)."""
    with requests.Session() as session:
        for _ in range(min(10, n)):  # warm up connections and caches
            call(session)
        latencies = []
        for _ in range(n):
            started = time.perf_counter()
            call(session)
            latencies.append(time.perf_counter() - started)

    per_worker = max(1, n // concurrency)

    def worker(_: int) -> None:
        with requests.Session() as s:
            for _ in range(per_worker):
                call(s)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
        "rps": per_worker * concurrency / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="calls per path and phase")
    parser.add_argument("--concurrency", type=int, default=4, help="clients in the throughput phase")
    parser.add_argument("--payload", type=int, default=1024, help="request body size in bytes")
    args = parser.parse_args(argv)
    payload = os.urandom(args.payload)

    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            port=0,
            log_level="WARNING",
            local_max_concurrency=max(4, args.concurrency),
            threads=max(8, 2 * args.concurrency),
        )
        server = BridgeServer(settings, log_file=False).start()
        try:
            auth = {"Authorization": f"Bearer {server.token}"}
            resp = requests.post(
                f"{server.url}/api/v1/clusters/local/services", json=DEFINITION, headers=auth
            )
            resp.raise_for_status()
            assert server.local is not None
            token = server.local.client().get_service(SERVICE)["token"]
            direct_url = f"{server.local.endpoint}/run/{SERVICE}"
            direct_headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
            encoded = base64.b64encode(payload)
            bridge_url = f"{server.url}/api/v1/clusters/local/services/{SERVICE}/invoke"
            bridge_headers = {**auth, "Content-Type": "application/octet-stream"}

            def direct(session: requests.Session) -> None:
                r = session.post(direct_url, data=encoded, headers=direct_headers, timeout=60)
                r.raise_for_status()
                if base64.b64decode(r.content.strip()) != payload:
                    raise SystemExit("direct call returned different bytes")

            def bridged(session: requests.Session) -> None:
                r = session.post(bridge_url, data=payload, headers=bridge_headers, timeout=60)
                r.raise_for_status()
                if r.content != payload:
                    raise SystemExit("bridge call returned different bytes")

            results = {
                "direct": measure(direct, args.requests, args.concurrency),
                "bridge": measure(bridged, args.requests, args.concurrency),
            }
        finally:
            server.stop()

    print(
        f"sync invoke of a {args.payload}-byte echo, {args.requests} sequential calls per path, "
        f"throughput with {args.concurrency} clients"
    )
    print(f"{'path':<8}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}{'req/s':>10}")
    for name, r in results.items():
        print(f"{name:<8}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['mean_ms']:>10.2f}{r['rps']:>10.1f}")
    d, b = results["direct"], results["bridge"]
    print(
        f"ratio bridge/direct: p50 {b['p50_ms'] / d['p50_ms']:.2f}x, p99 {b['p99_ms'] / d['p99_ms']:.2f}x, "
        f"throughput {b['rps'] / d['rps']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
