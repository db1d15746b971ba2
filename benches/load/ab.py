#!/usr/bin/env python3
"""Before/after: several turnstile builds side by side in front of one Redis, on one
redis-benchmark workload, in interleaved rounds (noise hits all alike), with each
process's CPU per request.

`python3 benches/load/ab.py --clients 20 --keepalive 0 <before> <after>` (see --help).
Only 127.0.0.1 is used; every process started is stopped at the end.
"""

import argparse
import os
import resource
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import PASSWORD, Procs, benchmark, free_port, start_turnstile, wait_port  # noqa: E402
from cpu import cpu  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--requests", type=int, default=100000)
    ap.add_argument("--keepalive", type=int, default=1, help="0: a new connection + AUTH per request")
    ap.add_argument("--test", default="get")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    keep = args.keepalive != 0
    procs = Procs()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            rp = free_port()
            r = procs.start(["redis-server", "--port", str(rp), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                             "no", "--requirepass", PASSWORD, "--maxclients", "20000"])
            wait_port(rp, r, "redis-server")
            targets = [("redis (direct)", rp, r.pid)]
            for i, b in enumerate(args.binaries):
                port, pid, _ = start_turnstile(procs, tmp, b, rp, f"t{i}")
                targets.append((b, port, pid))
            for _, port, _ in targets:
                benchmark(port, args.test, args.clients, args.pipeline, 5000, keep)
            rps = {t[0]: [] for t in targets}
            use = {t[0]: [] for t in targets}
            for _ in range(args.rounds):
                for name, port, pid in targets:
                    u0, s0 = cpu(pid)
                    rps[name].append(benchmark(port, args.test, args.clients, args.pipeline, args.requests, keep)[0])
                    u1, s1 = cpu(pid)
                    use[name].append((1e6 * (u1 - u0) / args.requests, 1e6 * (s1 - s0) / args.requests))
        finally:
            procs.stop_all()
    base = statistics.median(rps["redis (direct)"])
    print(f"{args.test.upper()} -c {args.clients} -P {args.pipeline}{'' if keep else ' -k 0'}, "
          f"{args.requests} requests, median of {args.rounds} interleaved rounds")
    print("| target | rps | vs direct | rounds | user / system µs per request, per round |")
    print("|---|---|---|---|---|")
    for name, _, _ in targets:
        m = statistics.median(rps[name])
        rounds = ", ".join(f"{x:,.0f}" for x in rps[name])
        cpu_rounds = ", ".join(f"{u:.1f}/{s:.1f}" for u, s in use[name])
        print(f"| {name} | {m:,.0f} | {m / base:.2f}× | {rounds} | {cpu_rounds} |")


if __name__ == "__main__":
    main()
