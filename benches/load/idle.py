#!/usr/bin/env python3
"""RSS per idle authenticated connection after load, per batch of 1,000, for one or
more turnstile builds side by side: each serves the throughput runs of `compare.py`
(GET/SET at pipeline 1 and 16, churn), then `compare.py`'s `idle_connections_rss`
opens 3,000 idle connections and prints the growth of each batch.

`python3 benches/load/idle.py <bin> [<bin>:NAME=VALUE,...]` — after a colon, environment
variables for that build (e.g. `MIMALLOC_PURGE_DELAY=0`). Only 127.0.0.1 is used; every
process started is stopped at the end.
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ["SHOW_GROWTH"] = "1"
import compare as c  # noqa: E402


def main():
    specs = sys.argv[1:]
    if not specs:
        sys.exit(__doc__)
    tmp = tempfile.mkdtemp()
    procs = c.Procs()
    try:
        redis_port = c.free_port()
        r = procs.start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                         "--appendonly", "no", "--requirepass", c.PASSWORD, "--maxclients", "20000"])
        c.wait_port(redis_port, r, "redis-server")
        started = []
        for i, spec in enumerate(specs):
            binary, _, envs = spec.partition(":")
            saved = dict(os.environ)
            for kv in filter(None, envs.split(",")):
                k, v = kv.split("=", 1)
                os.environ[k] = v
            port, pid, _ = c.start_turnstile(procs, tmp, binary, redis_port, f"t{i}")
            os.environ.clear()
            os.environ.update(saved)
            started.append((spec, port, pid))
        for _, port, _ in started:
            for test in ("get", "set"):
                for pipeline in (1, 16):
                    c.benchmark(port, test, 50, pipeline, 100000 * (4 if pipeline > 1 else 1))
            for clients in (20, 50):
                c.benchmark(port, "get", clients, 1, 20000, keepalive=False)
        for spec, port, pid in started:
            print(spec, "after load:", round(c.idle_connections_rss(port, pid, 3000), 2), "KiB", flush=True)
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
