#!/usr/bin/env bash
# The load comparison, one command: installs redis-server, redis-tools, nutcracker
# (twemproxy) and haproxy from Debian's packages if missing, builds turnstile in
# release mode, and runs the same redis-benchmark workloads against Redis directly,
# turnstile, twemproxy and HAProxy (TCP mode) on 127.0.0.1. Runs the whole comparison
# three times on new processes (--runs), prints each run and the worst of them per target.
# Extra arguments go to compare.py (e.g. --requests 100000).
set -euo pipefail
cd "$(dirname "$0")/../.."
./scripts/ensure-redis.sh
if ! command -v nutcracker >/dev/null 2>&1 || ! command -v haproxy >/dev/null 2>&1; then
  SUDO=""; if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nutcracker haproxy >/dev/null
fi
cargo build --release --quiet
exec python3 benches/load/compare.py --turnstile target/release/turnstile "$@"
