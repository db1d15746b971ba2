#!/usr/bin/env bash
# The failover comparison, one command: installs redis-server, redis-sentinel and
# haproxy from Debian's packages if missing, builds turnstile in release mode, and
# measures the window without a primary per failover for the same redis-py clients
# through turnstile and through HAProxy's `role:master` check, in one run.
# Extra arguments go to failover.py (e.g. --failovers 10).
set -euo pipefail
cd "$(dirname "$0")/../.."
./scripts/ensure-redis.sh
if ! command -v haproxy >/dev/null 2>&1; then
  SUDO=""; if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq haproxy >/dev/null
fi
./scripts/compat-clients.sh >/dev/null
cargo build --release --quiet
exec "${CARGO_TARGET_DIR:-target}/compat-venv/bin/python" benches/load/failover.py \
  --turnstile "${CARGO_TARGET_DIR:-target}/release/turnstile" "$@"
