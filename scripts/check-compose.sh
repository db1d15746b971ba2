#!/usr/bin/env bash
# Validates docker-compose.yml without a Docker engine and keeps it in step with the
# config format: Debian's docker-compose parses and resolves the file, then
# `turnstile check-config` loads deploy/turnstile.toml with exactly the environment
# the compose file gives the turnstile service, and the ports, the store volume and
# the config path are checked against each other and the Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v docker-compose >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  echo "installing docker-compose (Debian package, parser only, no engine)..." >&2
  # Without recommends: docker.io (the engine) is not needed to parse a file.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi

# Placeholders: the compose file refuses to resolve without its secrets.
export TURNSTILE_ADMIN_PASSWORD=ci-admin-placeholder TURNSTILE_APP_PASSWORD=ci-app-placeholder
export REDIS_PASSWORD=ci-redis-placeholder
resolved=$(docker-compose -f docker-compose.yml config)

cargo build --quiet --bin turnstile
# Debian's python3 (docker-compose depends on python3-yaml there).
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
TURNSTILE_BIN="${CARGO_TARGET_DIR:-target}/debug/turnstile" RESOLVED="$resolved" "$PY" - <<'PYEOF'
import os, re, subprocess, sys, tomllib, yaml

def fail(msg):
    sys.exit(f"check-compose: {msg}")

compose = yaml.safe_load(os.environ["RESOLVED"])
svc = compose["services"]["turnstile"]
env = {k: str(v) for k, v in svc["environment"].items()}
mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
dockerfile = open("Dockerfile").read()
m = re.search(r"^ENV TURNSTILE_CONFIG=(\S+)", dockerfile, re.M)
if not m:
    fail("the Dockerfile does not set TURNSTILE_CONFIG")
config_path = m.group(1)
if "COPY deploy/turnstile.toml " + config_path not in dockerfile:
    fail(f"the Dockerfile does not install deploy/turnstile.toml at {config_path}")
if not mounts.get(config_path, "").endswith("deploy/turnstile.toml"):
    fail(f"the compose file does not mount deploy/turnstile.toml at {config_path}")

# Only the service's environment (plus PATH): every variable the file names must be there.
run_env = dict(env, PATH=os.environ["PATH"])
out = subprocess.run([os.environ["TURNSTILE_BIN"], "check-config", "--config", "deploy/turnstile.toml"],
                     env=run_env, capture_output=True, text=True)
if out.returncode != 0:
    fail(f"turnstile check-config refused deploy/turnstile.toml:\n{out.stderr}")
if "NOT SET" in out.stdout:
    fail("the compose file does not give turnstile a variable its config names:\n" + out.stdout)
for secret in ("ci-admin-placeholder", "ci-app-placeholder", "ci-redis-placeholder"):
    if secret in out.stdout or secret in out.stderr:
        fail("check-config printed a secret")
effective = tomllib.loads(out.stdout)

store = effective["store"]["dir"]
if store not in mounts or "/" in mounts[store]:
    fail(f"store.dir {store} is not on a named volume in the compose file")
published = {int(p.split(":")[-1].split("/")[0]) for p in svc["ports"]}
wanted = {int(effective["admin"]["listen"].rsplit(":", 1)[1])}
wanted |= {int(b["listen"].rsplit(":", 1)[1]) for b in effective["bdbs"]}
if published != wanted:
    fail(f"published container ports {sorted(published)} != listeners in the config {sorted(wanted)}")
m = re.search(r"^EXPOSE (.*)$", dockerfile, re.M)
exposed = {int(p) for p in m.group(1).split()} if m else set()
if not wanted <= exposed:
    fail(f"the Dockerfile EXPOSEs {sorted(exposed)}, the config listens on {sorted(wanted)}")
upstream_host = effective["bdbs"][0]["upstream"].split("@")[-1].split("//")[-1].rsplit(":", 1)[0]
if upstream_host not in compose["services"]:
    fail(f"the upstream host {upstream_host} is not a service of the compose file")
# Every file the build copies from the context exists and is not .dockerignored.
ignored = {l.strip() for l in open(".dockerignore") if l.strip() and not l.startswith("#")}
for line in re.findall(r"^COPY (?!--from)(.*)$", dockerfile, re.M):
    for src in line.split()[:-1]:
        if not os.path.exists(src) or src.split("/")[0] in ignored:
            fail(f"the Dockerfile copies {src}, which is missing or .dockerignored")
if "USER 65532" not in dockerfile:
    fail("the runtime image must run as the non-root user")
print("check-compose: docker-compose.yml, Dockerfile and deploy/turnstile.toml agree")
PYEOF

# The fleet example: two nodes and a store. Each node's environment must satisfy
# the shared config, each node has a store.dir volume of its own, and the store and
# upstream hosts are services of the file.
export STORE_PASSWORD=ci-store-placeholder
fleet=$(docker-compose -f deploy/fleet/docker-compose.yml config)
TURNSTILE_BIN="${CARGO_TARGET_DIR:-target}/debug/turnstile" RESOLVED="$fleet" "$PY" - <<'PYEOF'
import os, subprocess, sys, tomllib, yaml

def fail(msg):
    sys.exit(f"check-compose (fleet): {msg}")

compose = yaml.safe_load(os.environ["RESOLVED"])
nodes = {k: v for k, v in compose["services"].items() if k.startswith("turnstile-")}
if len(nodes) < 2:
    fail("the fleet example must have at least two turnstile nodes")
volumes, host_ports = set(), set()
for name, svc in nodes.items():
    env = {k: str(v) for k, v in svc["environment"].items()}
    mounts = {v["target"] if isinstance(v, dict) else v.split(":")[1]: (v["source"] if isinstance(v, dict) else v.split(":")[0]) for v in svc["volumes"]}
    config = mounts.get("/etc/turnstile/turnstile.toml", "")
    if not config.endswith("deploy/fleet/turnstile.toml"):
        fail(f"{name} does not mount deploy/fleet/turnstile.toml")
    out = subprocess.run([os.environ["TURNSTILE_BIN"], "check-config", "--config", "deploy/fleet/turnstile.toml"],
                         env=dict(env, PATH=os.environ["PATH"]), capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"check-config refused the fleet config with {name}'s environment:\n{out.stderr}")
    if "NOT SET" in out.stdout:
        fail(f"{name} lacks a variable the config names:\n{out.stdout}")
    for secret in ("ci-admin-placeholder", "ci-app-placeholder", "ci-redis-placeholder", "ci-store-placeholder"):
        if secret in out.stdout or secret in out.stderr:
            fail("check-config printed a secret")
    eff = tomllib.loads(out.stdout)
    store_host = eff["store"]["redis"].split("@")[-1].split("//")[-1].rsplit(":", 1)[0]
    if store_host not in compose["services"]:
        fail(f"the store host {store_host} is not a service")
    vol = mounts.get(eff["store"]["dir"])
    if not vol or "/" in vol or vol in volumes:
        fail(f"{name}: store.dir must be a named volume of its own")
    volumes.add(vol)
    for p in svc["ports"]:
        hp = str(p["published"]) if isinstance(p, dict) else p.split(":")[-2]
        if hp in host_ports:
            fail(f"{name} publishes host port {hp} twice")
        host_ports.add(hp)
print("check-compose: deploy/fleet/docker-compose.yml and deploy/fleet/turnstile.toml agree")
PYEOF
