#!/usr/bin/env bash
# Installs the third-party clients tests/compat.rs drives: redis-py (PyPI, pinned in
# tests/clients/requirements.txt) into target/compat-venv, and node-redis (npm,
# pinned by tests/clients/package-lock.json) into tests/clients/node_modules when
# node and npm are present. redis-cli and redis-benchmark come with redis-tools
# (scripts/ensure-redis.sh); the `redis` crate is a dev-dependency.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CARGO_TARGET_DIR:-target}/compat-venv"
if ! "$VENV/bin/python" -c 'import redis' >/dev/null 2>&1; then
  # Debian's python3 makes venvs only with python3-venv installed.
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -m venv --clear "$VENV" >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    echo "installing python3 and python3-venv (Debian packages)..." >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3 python3-venv >/dev/null
    python3 -m venv --clear "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check -r tests/clients/requirements.txt
fi
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  if [ ! -d tests/clients/node_modules/redis ]; then
    (cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)
  fi
else
  echo "compat-clients: node/npm not installed; tests/compat.rs will skip node-redis" >&2
fi
