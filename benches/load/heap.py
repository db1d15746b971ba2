#!/usr/bin/env python3
"""Heap bytes per idle authenticated connection after load: valgrind massif detailed
snapshots before and after opening N idle connections on a turnstile that has served
GET/SET load. Needs a `--features sysalloc` build (massif sees the system allocator only):
  cargo build --release --features sysalloc --target-dir target/sysalloc
  python3 benches/load/heap.py target/sysalloc/release/turnstile 2000 /tmp/heap
Prints heap bytes and allocator overhead per connection. Only 127.0.0.1 is used."""
import os, sys, tempfile, resource, subprocess, time, socket
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import Procs, free_port, wait_port, PASSWORD, ADMIN_PASSWORD, benchmark
h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; resource.setrlimit(resource.RLIMIT_NOFILE, (h, h))
binary = sys.argv[1]; count = int(sys.argv[2]); outdir = sys.argv[3]
os.makedirs(outdir, exist_ok=True)
procs = Procs()
with tempfile.TemporaryDirectory() as tmp:
    try:
        rp = free_port()
        r = procs.start(["redis-server", "--port", str(rp), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--requirepass", PASSWORD, "--maxclients", "20000"])
        wait_port(rp, r, "redis")
        port, admin = free_port(), free_port()
        cfg = os.path.join(tmp, "t.toml")
        open(cfg, "w").write(f"""
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
        t = procs.start(["valgrind", "--tool=massif", "--threshold=0.2", f"--massif-out-file={outdir}/massif.out", binary, "--config", cfg], env=env)
        wait_port(port, t, "turnstile", timeout=120)
        for test in ("get", "set"):
            benchmark(port, test, 50, 1, 5000)
            benchmark(port, test, 50, 16, 20000)
        benchmark(port, "get", 20, 1, 1000, keepalive=False)
        time.sleep(12)
        subprocess.run(["vgdb", f"--pid={t.pid}", "detailed_snapshot", f"{outdir}/before"], check=True)
        conns = []
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(f"*2\r\n$4\r\nAUTH\r\n${len(PASSWORD)}\r\n{PASSWORD}\r\n*1\r\n$4\r\nPING\r\n".encode())
            conns.append(s)
        for s in conns:
            got = b""
            while not got.endswith(b"+PONG\r\n"):
                got += s.recv(64)
        time.sleep(3.5)  # idle connections park after one to two 1-s sweeps
        subprocess.run(["vgdb", f"--pid={t.pid}", "detailed_snapshot", f"{outdir}/after"], check=True)
    finally:
        procs.stop_all()


def totals(path):
    d = {}
    for line in open(path):
        if line.startswith(("mem_heap_B=", "mem_heap_extra_B=")):
            k, v = line.strip().split("=")
            d[k] = int(v)
    return d


a, z = totals(f"{outdir}/before"), totals(f"{outdir}/after")
print(f"heap per idle connection: {(z['mem_heap_B'] - a['mem_heap_B']) / count:,.0f} B "
      f"(+{(z['mem_heap_extra_B'] - a['mem_heap_extra_B']) / count:,.0f} B allocator overhead)")
