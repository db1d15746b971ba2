#!/usr/bin/env python3
"""Instructions per request a turnstile binary executes (valgrind's callgrind), for a
redis-benchmark workload: a count, not a time, so it is the same whatever else the
machine is doing — the way to compare two builds' data-path cost on a shared box.

`python3 benches/load/instructions.py <turnstile binary> <get|set> <requests> [redis-benchmark args…]`
e.g. `… target/release/turnstile get 30000` (50 clients, pipeline 1) or
`… target/release/turnstile get 5000 -k 0` (a new connection and AUTH per request).
Only user-space instructions of turnstile count (system calls are the kernel's).
Needs valgrind (Debian's package). Only 127.0.0.1 is used; everything started is stopped.
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import ADMIN_PASSWORD, PASSWORD, Procs, free_port, wait_port  # noqa: E402


def main():
    binary, test, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    extra = sys.argv[4:]
    procs = Procs()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            rp = free_port()
            r = procs.start(["redis-server", "--port", str(rp), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--requirepass", PASSWORD])
            wait_port(rp, r, "redis-server")
            port, admin = free_port(), free_port()
            cfg = os.path.join(tmp, "t.toml")
            with open(cfg, "w") as f:
                f.write(f"""
[admin]
listen = "127.0.0.1:{admin}"
tls = false
[store]
dir = "{tmp}/data"
[[bdbs]]
uid = 1
name = "bench"
listen = "127.0.0.1:{port}"
upstream = "redis://127.0.0.1:{rp}"
upstream_password_env = "BENCH_PW"
default_password_env = "BENCH_PW"
""")
            env = dict(os.environ, BENCH_PW=PASSWORD, TURNSTILE_ADMIN_PASSWORD=ADMIN_PASSWORD, TURNSTILE_LOG="warn")
            out = os.path.join(tmp, "callgrind.out")
            t = procs.start(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                             f"--callgrind-out-file={out}", binary, "--config", cfg], env=env)
            wait_port(port, t, "turnstile", timeout=120)
            bench = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-a", PASSWORD, "-c", "50", "-P", "1",
                     "-t", test, "-r", "10000", "-q"] + extra
            # Not counted: the first AUTH's argon2, the first lane, caches.
            subprocess.run(bench + ["-n", "2000"], capture_output=True, timeout=600)
            subprocess.run(["callgrind_control", "-i", "on", str(t.pid)], capture_output=True, check=True)
            subprocess.run(bench + ["-n", str(n)], capture_output=True, timeout=1800)
            subprocess.run(["callgrind_control", "-i", "off", str(t.pid)], capture_output=True, check=True)
            subprocess.run(["callgrind_control", "-d", str(t.pid)], capture_output=True, check=True)
            total = 0
            for path in glob.glob(out + "*"):
                with open(path) as f:
                    for line in f:
                        if line.startswith("totals:"):
                            total += int(line.split()[1])
                            break
            print(f"{binary} {test} {' '.join(extra)}: {total / n:,.0f} instructions/request")
            # KEEP_CALLGRIND=<dir>: keep the profile for callgrind_annotate (where they go).
            keep = os.environ.get("KEEP_CALLGRIND")
            if keep:
                os.makedirs(keep, exist_ok=True)
                for path in glob.glob(out + "*"):
                    shutil.copy(path, keep)
        finally:
            procs.stop_all()


if __name__ == "__main__":
    main()
