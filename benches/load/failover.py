"""The window without a primary at a Sentinel failover: turnstile next to HAProxy.

One run, one Sentinel-managed Redis on loopback (a primary, one replica, three
redis-sentinel processes, down-after-milliseconds 1000), and two groups of the same
redis-py clients running INCR/SET non-stop: one through turnstile
(`redis+sentinel://…/mymaster`), one through HAProxy with the usual
`tcp-check … expect string role:master` health check (inter 1s). Then N forced
failovers (`SENTINEL FAILOVER`, back and forth) and one `kill -9` of the primary.

The window of a failover is what the clients see: the longest time, around it, in
which no write of the group succeeded. Also counted: errors by kind (`-READONLY`,
turnstile's clean errors), disconnects, and acknowledged INCRs that are not in the
final primary's counters (writes a node took after it had been replaced, or that a
crash lost before replication). A client of HAProxy that gets `-READONLY`
reconnects (HAProxy keeps its session on the demoted node otherwise, for ever).

Usage: python failover.py --turnstile target/release/turnstile [--failovers 5] [--clients 20]
(needs redis-py; benches/load/failover.sh runs it with the compat venv).
"""

import argparse
import json
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

NODE_PW = "node-secret"
SENTINEL_PW = "sentinel-secret"
APP_PW = "app-password"
MASTER = "mymaster"
GAP_MIN = 0.05  # gaps shorter than this are ordinary scheduling, not an outage


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, deadline=15):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on {port}")


def start_node(d, port, replica_of=None):
    # Its own directory: a replica writes the RDB it receives there.
    d = os.path.join(d, str(port))
    os.makedirs(d)
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", d,
            "--requirepass", NODE_PW, "--masterauth", NODE_PW, "--repl-diskless-sync-delay", "0",
            "--protected-mode", "no", "--loglevel", "warning"]
    if replica_of:
        args += ["--replicaof", "127.0.0.1", str(replica_of)]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p


def start_sentinel(d, i, primary):
    port = free_port()
    conf = os.path.join(d, f"sentinel-{i}.conf")
    with open(conf, "w") as f:
        f.write(f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir {d}\n"
                f"requirepass {SENTINEL_PW}\nsentinel sentinel-pass {SENTINEL_PW}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {primary} 2\nsentinel auth-pass {MASTER} {NODE_PW}\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\nsentinel failover-timeout {MASTER} 4000\n")
    p = subprocess.Popen(["redis-sentinel", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return port, p


def start_haproxy(d, nodes):
    port = free_port()
    servers = "\n".join(f"  server n{i} 127.0.0.1:{p} check inter 1s" for i, p in enumerate(nodes))
    # The recipe HAProxy users copy for Redis behind Sentinel: only the node that
    # says role:master is up.
    cfg = f"""global
  maxconn 4096
defaults
  mode tcp
  timeout connect 1s
  timeout client 60s
  timeout server 60s
frontend redis
  bind 127.0.0.1:{port}
  default_backend primary
backend primary
  option tcp-check
  tcp-check connect
  tcp-check send AUTH\\ {NODE_PW}\\r\\n
  tcp-check expect string +OK
  tcp-check send PING\\r\\n
  tcp-check expect string +PONG
  tcp-check send info\\ replication\\r\\n
  tcp-check expect string role:master
  tcp-check send QUIT\\r\\n
  tcp-check expect string +OK
{servers}
"""
    path = os.path.join(d, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(cfg)
    p = subprocess.Popen(["haproxy", "-f", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return port, p


def start_turnstile(binary, d, sentinels):
    conf = os.path.join(d, "turnstile.toml")
    with open(conf, "w") as f:
        f.write(f"""[admin]
listen = "127.0.0.1:0"
tls = false
[store]
dir = "{d}/store"
[bootstrap]
admin_name = "admin"
admin_email = "admin@example.com"
[proxy]
upstream_connect_timeout_ms = 1000
sentinel_primary_wait_ms = 5000
[[bdbs]]
uid = 1
name = "app"
listen = "127.0.0.1:0"
upstream = "redis+sentinel://:{NODE_PW}@{','.join(f'127.0.0.1:{s}' for s in sentinels)}/{MASTER}"
sentinel_password_env = "BENCH_SENTINEL_PW"
default_password_env = "BENCH_APP_PW"
""")
    env = dict(os.environ, TURNSTILE_ADMIN_PASSWORD="Admin-pw-1!", BENCH_SENTINEL_PW=SENTINEL_PW,
               BENCH_APP_PW=APP_PW, TURNSTILE_LOG="warn")
    p = subprocess.Popen([binary, "--config", conf], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                         text=True)
    for line in p.stdout:
        if "bdb 1 listening on" in line:
            port = int(line.rsplit(":", 1)[1])
        if "admin API listening" in line:
            return port, p
    raise SystemExit("turnstile did not start")


def sentinel_primary(sentinels):
    for s in sentinels:
        try:
            c = redis.Redis(port=s, password=SENTINEL_PW, socket_timeout=1)
            host, port = c.execute_command("SENTINEL", "get-master-addr-by-name", MASTER)
            return int(port)
        except redis.exceptions.RedisError:
            continue
    raise SystemExit("no Sentinel answers")


def role(port):
    try:
        return redis.Redis(port=port, password=NODE_PW, socket_timeout=1).execute_command("ROLE")[0].decode()
    except redis.exceptions.RedisError:
        return None


def clients(name, port, password, n, out, stop):
    """A group of clients; puts (name, report) on `out` once `stop` is set."""
    lock = threading.Lock()
    report = {"ok": 0, "readonly": 0, "errors": {}, "disconnects": 0, "hangs": 0, "incrs": {}}
    oks = []

    def one(i):
        def connect():
            return redis.Redis(port=port, password=password, single_connection_client=True, socket_timeout=10,
                               socket_connect_timeout=2, retry=Retry(NoBackoff(), 0), health_check_interval=0)
        r = connect()
        mine = []
        n_ = 0
        acked = 0
        while not stop.is_set():
            n_ += 1
            for op in ("INCR", "SET"):
                kind = None
                try:
                    if op == "INCR":
                        r.incr(f"{name}:{i}:n")
                        acked += 1
                    else:
                        r.set(f"{name}:{i}", n_)
                    mine.append(time.time())
                except redis.exceptions.TimeoutError:
                    kind = "hang"
                except redis.exceptions.ConnectionError:
                    kind = "disconnect"
                except redis.exceptions.ReadOnlyError:
                    kind = "readonly"
                except redis.exceptions.ResponseError as e:
                    kind = str(e)
                if kind:
                    with lock:
                        if kind in ("hang", "disconnect", "readonly"):
                            report[kind + ("s" if kind != "readonly" else "")] += 1
                        else:
                            report["errors"][kind] = report["errors"].get(kind, 0) + 1
                    if kind in ("hang", "disconnect", "readonly"):
                        try:
                            r.close()
                        except Exception:
                            pass
                        # An application's pool reconnects; so does this, at once.
                        while not stop.is_set():
                            try:
                                r = connect()
                                r.ping()
                                break
                            except redis.exceptions.RedisError:
                                time.sleep(0.01)
                        break
        with lock:
            oks.extend(mine)
            report["ok"] += len(mine)
            report["incrs"][f"{name}:{i}:n"] = acked

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join(15)
    oks.sort()
    report["gaps"] = [(a, b - a) for a, b in zip(oks, oks[1:]) if b - a >= GAP_MIN]
    out.put((name, report))


def window(gaps, t0, t1):
    """The longest gap that overlaps [t0, t1] (the failover's span), or 0."""
    spans = [g for start, g in gaps if start <= t1 and start + g >= t0]
    return max(spans, default=0.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--turnstile", default="target/release/turnstile")
    ap.add_argument("--failovers", type=int, default=5)
    ap.add_argument("--clients", type=int, default=20)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="turnstile-failover-")
    procs = []
    try:
        p1, p2 = free_port(), free_port()
        procs.append(start_node(d, p1))
        procs.append(start_node(d, p2, replica_of=p1))
        nodes = {p1: procs[0], p2: procs[1]}
        sentinels = []
        for i in range(3):
            port, p = start_sentinel(d, i, p1)
            sentinels.append(port)
            procs.append(p)
        hport, hp = start_haproxy(d, [p1, p2])
        procs.append(hp)
        tport, tp = start_turnstile(args.turnstile, d, sentinels)
        procs.append(tp)
        log(f"nodes {p1} {p2}, Sentinels {sentinels}, HAProxy {hport}, turnstile {tport}")
        # Sentinels must know the replica and each other before an election.
        end = time.time() + 30
        while time.time() < end:
            s = redis.Redis(port=sentinels[0], password=SENTINEL_PW)
            info = s.sentinel_master(MASTER)
            if int(info["num-slaves"]) >= 1 and int(info["num-other-sentinels"]) >= 2:
                break
            time.sleep(0.1)
        time.sleep(2)  # HAProxy's checks have seen the roles

        stop = mp.Event()
        out = mp.Queue()
        groups = [mp.Process(target=clients, args=("turnstile", tport, APP_PW, args.clients, out, stop)),
                  mp.Process(target=clients, args=("haproxy", hport, NODE_PW, args.clients, out, stop))]
        for g in groups:
            g.start()
        time.sleep(2)

        events = []  # (kind, start, end of the switch as the Sentinels report it)
        log("clients running")
        for i in range(args.failovers):
            old = sentinel_primary(sentinels)
            log(f"failover {i + 1}: from {old}")
            t0 = time.time()
            s = redis.Redis(port=sentinels[0], password=SENTINEL_PW)
            while True:
                try:
                    s.execute_command("SENTINEL", "FAILOVER", MASTER)
                    break
                except redis.exceptions.ResponseError as e:
                    if time.time() - t0 > 30:
                        raise SystemExit(f"SENTINEL FAILOVER kept failing: {e}")
                    time.sleep(0.05)
            while sentinel_primary(sentinels) == old or role(sentinel_primary(sentinels)) != "master":
                time.sleep(0.01)
            new = sentinel_primary(sentinels)
            # What Sentinel does to the old primary once it sees it again (~10-20 s
            # later); done at once so that the next failover has a replica in sync.
            time.sleep(1)
            redis.Redis(port=old, password=NODE_PW).execute_command("REPLICAOF", "127.0.0.1", new)
            while redis.Redis(port=old, password=NODE_PW).info("replication").get("master_link_status") != "up":
                time.sleep(0.02)
            events.append(("forced", t0, time.time()))
            time.sleep(3)
        old = sentinel_primary(sentinels)
        log(f"kill -9 of {old}")
        t0 = time.time()
        nodes[old].send_signal(signal.SIGKILL)
        while sentinel_primary(sentinels) == old or role(sentinel_primary(sentinels)) != "master":
            time.sleep(0.01)
        events.append(("kill -9", t0, time.time()))
        time.sleep(8)  # long enough for HAProxy's checks to settle, and any stragglers
        stop.set()
        reports = dict(out.get(timeout=60) for _ in groups)
        for g in groups:
            g.join(30)
        final = redis.Redis(port=sentinel_primary(sentinels), password=NODE_PW)
        for r in reports.values():
            r["lost"] = sum(max(0, n - int(final.get(k) or 0)) for k, n in r["incrs"].items())

        print(f"{args.clients} redis-py clients per group (INCR + SET non-stop), down-after-milliseconds 1000")
        print(f"{'failover':<10}{'kind':<9}{'turnstile window':>18}{'HAProxy window':>16}")
        rows = {"turnstile": {"forced": [], "kill -9": []}, "haproxy": {"forced": [], "kill -9": []}}
        for n, (kind, t0, t1) in enumerate(events, 1):
            w = {g: window(reports[g]["gaps"], t0, t1 + 3) for g in reports}
            for g in w:
                rows[g][kind].append(w[g])
            print(f"{n:<10}{kind:<9}{w['turnstile']:>17.3f}s{w['haproxy']:>15.3f}s")
        for kind in ("forced", "kill -9"):
            for g in ("turnstile", "haproxy"):
                v = rows[g][kind]
                if v:
                    print(f"{g:<10} {kind:<8} p50 {statistics.median(v):.3f}s  max {max(v):.3f}s")
        for g in ("turnstile", "haproxy"):
            r = reports[g]
            print(f"{g:<10} ok writes {r['ok']}, -READONLY {r['readonly']}, disconnects {r['disconnects']}, "
                  f"hangs {r['hangs']}, acknowledged INCRs lost {r['lost']}, other errors {json.dumps(r['errors'])}")
        print(f"(a window below {GAP_MIN}s shows as 0.000s: no gap longer than that)")
    finally:
        for p in procs:
            try:
                p.kill()
            except Exception:
                pass


if __name__ == "__main__":
    # SIGTERM (a timeout, Ctrl-C's cousin) still stops every process it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
