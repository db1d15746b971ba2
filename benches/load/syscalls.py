#!/usr/bin/env python3
"""System calls per request, proxy and Redis, for GET -c 50 -P 1 through each target.

Why a proxy that multiplexes clients onto shared upstream connections (twemproxy, and
turnstile for stateless commands) beats a 1:1 relay (HAProxy) at pipeline 1 on a small
machine is a count, not a guess: this prints how many system calls the proxy and Redis
each make per request. Run through syscalls.sh (which
installs strace and builds turnstile). Only 127.0.0.1 is used; every process started is
stopped at the end.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import PASSWORD, Procs, start_targets  # noqa: E402


def traced(pid, out):
    p = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", out],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # strace attaches to every thread
    return p


def calls(path):
    """{syscall: calls} from `strace -c` output."""
    counts = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
            # strace's last line is the sum ("total"): not a call of its own.
            if m and m.group(2) != "total":
                counts[m.group(2)] = int(m.group(1))
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--turnstile", required=True)
    ap.add_argument("--requests", type=int, default=50000)
    ap.add_argument("--churn", action="store_true",
                    help="20 clients, a new connection + AUTH per request (-k 0): calls per connection")
    args = ap.parse_args()
    clients, extra = ("20", ["-k", "0"]) if args.churn else ("50", [])
    procs = Procs()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            targets = start_targets(procs, tmp, args.turnstile)
            redis_pid = targets["redis (direct)"][1]
            for name, (port, pid) in targets.items():
                outs = {}
                tracers = []
                for who, p in (("proxy", pid), ("redis", redis_pid)):
                    if who == "proxy" and pid == redis_pid:
                        continue
                    outs[who] = os.path.join(tmp, f"{port}-{who}.strace")
                    tracers.append(traced(p, outs[who]))
                subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-a", PASSWORD,
                                "-c", clients, "-n", str(args.requests), "-P", "1", "-t", "get", "-q"] + extra,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
                for t in tracers:
                    t.send_signal(signal.SIGINT)
                    t.wait(timeout=30)
                per = {}
                for who, path in outs.items():
                    c = calls(path)
                    io = sum(v for k, v in c.items() if k in (
                        "read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg"))
                    top = sorted(c.items(), key=lambda kv: -kv[1])[:5]
                    per[who] = (io / args.requests, sum(c.values()) / args.requests,
                                ", ".join(f"`{k}` {v / args.requests:.2f}" for k, v in top))
                rows.append((name, per))
        finally:
            procs.stop_all()
    print()
    what = "GET -c 20 -k 0 (a new connection + AUTH per request)" if args.churn else "GET -c 50 -P 1"
    print(f"System calls per request, {what}, {args.requests} requests (strace -c):")
    print()
    print("| target | proxy: socket I/O | proxy: all | Redis: socket I/O | Redis: all |")
    print("|---|---|---|---|---|")
    for name, per in rows:
        p = per.get("proxy")
        r = per["redis"]
        cells = [f"{p[0]:.2f}", f"{p[1]:.2f}"] if p else ["—", "—"]
        print(f"| {name} | {cells[0]} | {cells[1]} | {r[0]:.2f} | {r[1]:.2f} |")
    print()
    print("The most frequent calls, per request:")
    print()
    print("| target | proxy | Redis |")
    print("|---|---|---|")
    for name, per in rows:
        p = per.get("proxy")
        print(f"| {name} | {p[2] if p else '—'} | {per['redis'][2]} |")


if __name__ == "__main__":
    main()
