#!/usr/bin/env bash
# Installs redis-py (the `redis` module for python3) if it is missing: tests/tls.rs
# drives it over TLS (ssl=True). pip first (current redis-py, into the python3 on
# PATH); Debian's python3-redis when pip is unavailable or refuses (PEP 668).
set -euo pipefail
if command -v python3 >/dev/null 2>&1 && python3 -c "import redis" 2>/dev/null; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
  echo "installing redis-py with pip..." >&2
  python3 -m pip install --quiet --disable-pip-version-check redis 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages redis 2>/dev/null \
    || true
fi
if ! python3 -c "import redis" 2>/dev/null; then
  echo "installing python3-redis (Debian package)..." >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3 python3-redis >/dev/null
fi
# Fail here, loudly, rather than in the middle of the tests.
python3 -c "import redis" || { echo "redis-py could not be installed" >&2; exit 1; }
