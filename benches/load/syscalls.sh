#!/usr/bin/env bash
# System calls per request through Redis directly, turnstile, twemproxy and HAProxy
# (GET -c 50 -P 1): installs strace, redis, nutcracker and haproxy if missing, builds
# turnstile in release mode, prints one table. Extra arguments go to syscalls.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
./scripts/ensure-redis.sh
missing=()
command -v strace >/dev/null 2>&1 || missing+=(strace)
command -v nutcracker >/dev/null 2>&1 || missing+=(nutcracker)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --quiet
exec python3 benches/load/syscalls.py --turnstile target/release/turnstile "$@"
