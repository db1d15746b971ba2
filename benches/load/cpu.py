#!/usr/bin/env python3
"""CPU time per request of each proxy process (user and system), GET -c 50 at
pipeline 1 and 16: where the time goes when throughputs are close.

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
    args = ap.parse_args()
    procs = Procs()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            targets = start_targets(procs, tmp, args.turnstile)
            for pipeline in (1, 16):
                n = args.requests * (4 if pipeline > 1 else 1)
                for name, (port, pid) in targets.items():
                    if name == "redis (direct)":
                        continue
                    u0, s0 = cpu(pid)
                    rps, _, _ = benchmark(port, "get", 50, pipeline, n, True)
                    u1, s1 = cpu(pid)
                    rows.append((f"GET -c 50 -P {pipeline}", name, rps, 1e6 * (u1 - u0) / n, 1e6 * (s1 - s0) / n))
        finally:
            procs.stop_all()
    print("| workload | proxy | rps | user µs/request | system µs/request |")
    print("|---|---|---|---|---|")
    for workload, name, rps, user, system in rows:
        print(f"| {workload} | {name} | {rps:,.0f} | {user:.2f} | {system:.2f} |")


if __name__ == "__main__":
    main()
