#!/usr/bin/env python3
"""The fleet benchmark (issue 14), one run, every figure from the same processes.

1. Change-to-visible-everywhere: three nodes (127.0.0.2, .3, .4) on a Redis store;
   N password replacements (PUT) spread over the nodes; for each, the time from
   sending the request until the new password AUTHs on all three nodes, and how many
   AUTH attempts that took beyond the first (0 expected: the 200 means live everywhere).
2. Admin write latency, file store vs Redis store: the same N PUTs on a node with
   the file store and on the fleet (p50 / p99 / max).
3. Data-path throughput: redis-benchmark SET/GET through a file-store node and
   through a fleet node, and their ratio.
"""
import argparse
import base64, concurrent.futures, json, os, socket, statistics, subprocess, sys, tempfile, time, urllib.request

ADMIN, ADMIN_PW = "admin@example.com", "Admin-pw-1!"


def free_port(host="127.0.0.1"):
    s = socket.socket()
    s.bind((host, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def redis(port):
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--protected-mode", "no"], stdout=subprocess.PIPE, text=True)
    for line in p.stdout:
        if "Ready to accept connections" in line:
            return p
    sys.exit("redis-server did not start")


def node(binary, host, d, store_url):
    cfg = os.path.join(d, "turnstile.toml")
    store = f'redis = "{store_url}"\n' if store_url else ""
    with open(cfg, "w") as f:
        f.write(f'[admin]\nlisten = "{host}:0"\ntls = false\n[store]\ndir = "{d}/data"\n{store}'
                f'[auth]\nargon2_m_cost = 19456\nargon2_t_cost = 2\nthrottle_failures = 0\n')
    env = dict(os.environ, TURNSTILE_ADMIN_PASSWORD=ADMIN_PW, TURNSTILE_LOG="warn")
    p = subprocess.Popen([binary, "--config", cfg], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True, env=env)
    for line in p.stdout:
        if "admin API listening on" in line:
            return p, line.split()[-1]
    sys.exit("turnstile did not start")


def api(url, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("authorization", "Basic " + base64.b64encode(f"{ADMIN}:{ADMIN_PW}".encode()).decode())
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read()
        return json.loads(text) if text else None


class Conn:
    def __init__(self, addr):
        h, p = addr.rsplit(":", 1)
        self.s = socket.create_connection((h, int(p)))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")

    def auth(self, pw):
        self.s.sendall(f"*2\r\n$4\r\nAUTH\r\n${len(pw)}\r\n{pw}\r\n".encode())
        return self.f.readline().startswith(b"+OK")


def retries(c, pw):
    n = 0
    while not c.auth(pw):
        n += 1
    return n


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def ms(v):
    return f"p50 {pct(v, .5) * 1e3:7.2f} ms  p99 {pct(v, .99) * 1e3:7.2f} ms  max {max(v) * 1e3:7.2f} ms"


def database(url, upstream):
    b = api(url, "POST", "/v1/bdbs", {"name": "app", "port": 0, "upstream": f"redis://{upstream}"})
    api(url, "PUT", "/v1/bdbs/1/passwords", {"password": "bench-start"})
    return b["port"]


def throughput(host, port, n):
    out = subprocess.run(["redis-benchmark", "-h", host, "-p", str(port), "-a", "bench-final", "-n", str(n),
                          "-c", "50", "-t", "set,get", "-q", "--csv"], capture_output=True, text=True).stdout
    rps = {}
    for line in out.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if cells[0] in ("SET", "GET"):
            rps[cells[0]] = float(cells[1])
    return rps


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--turnstile", default="target/release/turnstile")
    a.add_argument("--changes", type=int, default=500)
    a.add_argument("--requests", type=int, default=100000)
    a.add_argument("--rounds", type=int, default=3)
    o = a.parse_args()
    procs = []
    try:
        sp, up = free_port(), free_port()
        procs += [redis(sp), redis(up)]
        tmp = tempfile.mkdtemp(prefix="turnstile-fleet-bench-")
        fleet = []
        for i, h in enumerate(["127.0.0.2", "127.0.0.3", "127.0.0.4"]):
            d = os.path.join(tmp, f"n{i}")
            os.makedirs(d)
            p, url = node(o.turnstile, h, d, f"redis://127.0.0.1:{sp}")
            procs.append(p)
            fleet.append((h, url))
            # Registered, so writers wait for it too.
            deadline = time.time() + 10
            while len(api(url, "GET", "/v1/nodes")) < i + 1:
                if time.time() > deadline:
                    sys.exit(f"node {h} did not register")
                time.sleep(0.01)
        port = database(fleet[0][1], f"127.0.0.1:{up}")
        conns = [Conn(f"{h}:{port}") for h, _ in fleet]
        visible, after_200, write_fleet, extra = [], [], [], 0
        pool = concurrent.futures.ThreadPoolExecutor(3)
        for i in range(o.changes):
            pw = f"bench-{i}" if i < o.changes - 1 else "bench-final"
            url = fleet[i % 3][1]
            t0 = time.perf_counter()
            api(url, "PUT", "/v1/bdbs/1/passwords", {"password": pw})
            t1 = time.perf_counter()
            # The three AUTHs at once (each costs one argon2 evaluation on its node).
            extra += sum(pool.map(lambda c: retries(c, pw), conns))
            t2 = time.perf_counter()
            write_fleet.append(t1 - t0)
            visible.append(t2 - t0)
            after_200.append(t2 - t1)
        fd = os.path.join(tmp, "file")
        os.makedirs(fd)
        p, furl = node(o.turnstile, "127.0.0.6", fd, None)
        procs.append(p)
        fport = database(furl, f"127.0.0.1:{up}")
        write_file = []
        for i in range(o.changes):
            pw = f"bench-{i}" if i < o.changes - 1 else "bench-final"
            t0 = time.perf_counter()
            api(furl, "PUT", "/v1/bdbs/1/passwords", {"password": pw})
            write_file.append(time.perf_counter() - t0)
        print(f"fleet benchmark: {o.changes} password changes, 3 nodes on a Redis store (argon2 m=19456 t=2)")
        print(f"  change visible on all 3 nodes   {ms(visible)}   AUTH retries needed: {extra}")
        print("    (from sending the change to a successful AUTH with it on every node, the AUTHs in parallel)")
        print(f"  from the 200 to AUTH on all 3    {ms(after_200)}   (the three AUTHs' own argon2 cost)")
        print(f"  admin write, Redis store (fleet) {ms(write_fleet)}")
        print(f"  admin write, file store (1 node) {ms(write_file)}")
        # Alternate the order each round, so warm-up and drift fall on both sides;
        # the worst and the median ratio of the rounds are printed.
        ratios = {"SET": [], "GET": []}
        for r in range(o.rounds):
            order = [("file", "127.0.0.6", fport), ("fleet", "127.0.0.2", port)]
            got = {name: throughput(h, pt, o.requests) for name, h, pt in (order if r % 2 == 0 else order[::-1])}
            for k in ratios:
                if k in got["file"] and k in got["fleet"]:
                    ratios[k].append(got["fleet"][k] / got["file"][k])
                    print(f"  round {r + 1} {k}: file-store node {got['file'][k]:9.0f} req/s, "
                          f"fleet node {got['fleet'][k]:9.0f} req/s, ratio {ratios[k][-1]:.3f}")
        for k, v in ratios.items():
            if v:
                print(f"  data path {k} fleet/file ratio: worst {min(v):.3f}, median {statistics.median(v):.3f} over {len(v)} rounds")
    finally:
        for p in procs:
            p.kill()


if __name__ == "__main__":
    main()
