#!/usr/bin/env python3
"""50 clients over 10 identities (10 rules: 10 upstream users, 10 lanes) against 50
clients of the default user, in turns, as `compare.py` measures it (one
redis-benchmark per identity, run at once): the share of throughput kept, by summed
rps and by total requests over wall time.

`python3 benches/load/identities.py <bin> [pairs]`. Only 127.0.0.1 is used; every
process started is stopped at the end.
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as c  # noqa: E402

REQUESTS = 100000


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    pairs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    tmp = tempfile.mkdtemp()
    procs = c.Procs()
    try:
        rp = c.free_port()
        r = procs.start(["redis-server", "--port", str(rp), "--bind", "127.0.0.1", "--save", "",
                         "--appendonly", "no", "--requirepass", c.PASSWORD])
        c.wait_port(rp, r, "redis-server")
        port, _, admin = c.start_turnstile(procs, tmp, sys.argv[1], rp, "t")
        c.benchmark(port, "get", 50, 1, REQUESTS)
        c.make_identities(admin, 10)
        users = [f"bench{i}" for i in range(10)]
        for _ in range(pairs):
            t = time.time()
            one = c.spread(port, [None] * 10, 50, REQUESTS)
            one_wall = REQUESTS / (time.time() - t)
            t = time.time()
            ten = c.spread(port, users, 50, REQUESTS)
            ten_wall = REQUESTS / (time.time() - t)
            print(f"one: {one:,.0f} rps ({one_wall:,.0f} over wall time); ten: {ten:,.0f} ({ten_wall:,.0f}); "
                  f"kept {ten / one:.0%} ({ten_wall / one_wall:.0%} over wall time)", flush=True)
        print("shared upstream connections open:", c.lanes_open(admin))
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
