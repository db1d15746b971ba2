#!/usr/bin/env python3
"""CPU time per request of each proxy process (user and system) and of Redis behind
it, GET and SET -c 50 at pipeline 1 and 16 and GET -c 20 with a new connection per request
(-k 0): where the time goes when throughputs are close.

Read from /proc/<pid>/stat around each redis-benchmark run. Run from the repository
root after `./benches/load/compare.sh` has installed what it needs:
`python3 benches/load/cpu.py --turnstile target/release/turnstile`. Only 127.0.0.1 is
used; every process started is stopped at the end.
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import Procs, benchmark, start_targets  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    """(user, system) seconds used so far by `pid`."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--turnstile", required=True)
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--churn-requests", type=int, default=20000)
    args = ap.parse_args()
    procs = Procs()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            targets = start_targets(procs, tmp, args.turnstile)
            redis_pid = targets["redis (direct)"][1]
            workloads = [("GET -c 50 -P 1", "get", 50, 1, args.requests, True),
                         ("SET -c 50 -P 1", "set", 50, 1, args.requests, True),
                         ("GET -c 50 -P 16", "get", 50, 16, 4 * args.requests, True),
                         ("SET -c 50 -P 16", "set", 50, 16, 4 * args.requests, True),
                         ("GET -c 20 -k 0 (new connection + AUTH per request)", "get", 20, 1, args.churn_requests,
                          False)]
            for label, test, clients, pipeline, n, keepalive in workloads:
                for name, (port, pid) in targets.items():
                    u0, s0 = cpu(pid)
                    r0 = sum(cpu(redis_pid))
                    rps, _, _ = benchmark(port, test, clients, pipeline, n, keepalive)
                    u1, s1 = cpu(pid)
                    r1 = sum(cpu(redis_pid))
                    if name == "redis (direct)":
                        u0 = u1 = s0 = s1 = 0.0
                    rows.append((label, name, rps, 1e6 * (u1 - u0) / n, 1e6 * (s1 - s0) / n, 1e6 * (r1 - r0) / n))
        finally:
            procs.stop_all()
    print("| workload | target | rps | proxy user µs/request | proxy system µs/request | Redis µs/request |")
    print("|---|---|---|---|---|---|")
    for workload, name, rps, user, system, redis in rows:
        print(f"| {workload} | {name} | {rps:,.0f} | {user:.2f} | {system:.2f} | {redis:.2f} |")


if __name__ == "__main__":
    main()
