"""redis-py clients running INCR/SET/GET non-stop through failovers.

Usage: failover_clients.py HOST PORT PASSWORD CLIENTS PREFIX
Runs until stdin is closed, then prints one JSON object: per outcome counts, every
distinct error text, the disconnects (each followed by a reconnect), the slowest
operation, and the gaps (seconds) between consecutive successful writes, largest
first (the window without a primary, as clients see it).

Each client has one connection of its own (single_connection_client) and no retry
of any kind: an error is reported as it came, a dropped connection as a
disconnect. A reply slower than the socket timeout would be a hang.
"""

import json
import sys
import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST, PORT, PASSWORD, CLIENTS, PREFIX = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
SOCKET_TIMEOUT = 15.0

stop = threading.Event()
lock = threading.Lock()
stats = {"ok": 0, "errors": {}, "disconnects": 0, "hangs": 0, "readonly": 0, "slowest": 0.0}
writes = []  # (time, ok) of every write, in order per client


def client(i):
    def connect():
        return redis.Redis(
            host=HOST,
            port=PORT,
            password=PASSWORD,
            single_connection_client=True,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=5,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )

    r = connect()
    n = 0
    mine = []
    while not stop.is_set():
        n += 1
        key = f"{PREFIX}:{i}"
        ops = [("INCR", lambda: r.incr(key + ":n")), ("SET", lambda: r.set(key, str(n))), ("GET", lambda: r.get(key))]
        for name, op in ops:
            started = time.monotonic()
            outcome = None
            try:
                op()
            except redis.exceptions.TimeoutError:
                outcome = "hang"
            except redis.exceptions.ConnectionError as e:
                outcome = "disconnect"
                err = f"disconnect: {e}"
            except redis.exceptions.ReadOnlyError as e:
                # redis-py turns -READONLY into this class and drops the code.
                outcome = "error"
                err = f"READONLY {e}"
            except redis.exceptions.ResponseError as e:
                outcome = "error"
                err = str(e)
            took = time.monotonic() - started
            if name != "GET":
                mine.append((time.monotonic(), outcome is None))
            with lock:
                stats["slowest"] = max(stats["slowest"], took)
                if outcome is None:
                    stats["ok"] += 1
                elif outcome == "hang":
                    stats["hangs"] += 1
                else:
                    if outcome == "disconnect":
                        stats["disconnects"] += 1
                    if err.startswith("READONLY"):
                        stats["readonly"] += 1
                    stats["errors"][err] = stats["errors"].get(err, 0) + 1
            if outcome in ("disconnect", "hang"):
                try:
                    r.close()
                except Exception:
                    pass
                r = connect()
                break
    with lock:
        writes.extend(mine)


threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
for t in threads:
    t.start()
print("running", flush=True)
sys.stdin.read()
stop.set()
for t in threads:
    t.join(SOCKET_TIMEOUT + 5)
stats["stuck_threads"] = sum(t.is_alive() for t in threads)
# Gaps between consecutive successful writes of all clients together.
ok = sorted(t for t, good in writes if good)
gaps = sorted((b - a for a, b in zip(ok, ok[1:])), reverse=True)
stats["largest_gaps"] = [round(g, 3) for g in gaps[:10]]
print(json.dumps(stats), flush=True)
