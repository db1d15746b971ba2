#!/usr/bin/env python3
"""GET throughput kept under an AUTH storm (200 connections of wrong passwords from 127.0.0.2), for several turnstile binaries in turn: `python3 benches/load/storm.py <binary>...` (N=requests per round)."""
import os, sys, tempfile, resource, threading, time, statistics
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import Procs, start_turnstile, free_port, wait_port, PASSWORD, benchmark, auth_storm
h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; resource.setrlimit(resource.RLIMIT_NOFILE, (h, h))
binaries = sys.argv[1:]
n = int(os.environ.get("N", "100000"))
for b in binaries:
    procs = Procs()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            rp = free_port()
            r = procs.start(["redis-server", "--port", str(rp), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--requirepass", PASSWORD])
            wait_port(rp, r, "redis")
            port, pid, admin = start_turnstile(procs, tmp, b, rp, "t")
            benchmark(port, "get", 50, 1, 20000)
            # Quiet and stormy rounds take turns (the storm pauses in between).
            stop, running = threading.Event(), threading.Event()
            auth_storm(port, stop, running=running)
            quiet, stormy = [], []
            for _ in range(3):
                running.clear()
                time.sleep(0.5)
                quiet.append(benchmark(port, "get", 50, 1, n)[0])
                running.set()
                time.sleep(1)
                stormy.append(benchmark(port, "get", 50, 1, n)[0])
            stop.set()
            print(f"{b}: quiet {[round(q) for q in quiet]} stormy {[round(s) for s in stormy]} "
                  f"kept median {statistics.median(stormy)/statistics.median(quiet):.0%} first-round {stormy[0]/statistics.median(quiet):.0%}", flush=True)
        finally:
            procs.stop_all()
