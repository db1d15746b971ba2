#!/usr/bin/env bash
# Runs turnstile in front of a real Redis: installs redis-server if needed, starts it
# on 127.0.0.1:16379 with a password of its own ($TURNSTILE_UPSTREAM_PASSWORD, random
# by default: applications never need it, and nobody can bypass turnstile with
# none), and starts turnstile on 127.0.0.1:12000 with examples/turnstile.toml.
# The application password is $TURNSTILE_APP_PASSWORD (default: change-me-now); the
# admin API (https://127.0.0.1:9443, self-signed) logs in admin@example.com with
# $TURNSTILE_ADMIN_PASSWORD (default: Admin-pw-1!). State lives in ./turnstile-data.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-redis.sh
export TURNSTILE_APP_PASSWORD="${TURNSTILE_APP_PASSWORD:-change-me-now}"
export TURNSTILE_ADMIN_PASSWORD="${TURNSTILE_ADMIN_PASSWORD:-Admin-pw-1!}"
TURNSTILE_UPSTREAM_PASSWORD="${TURNSTILE_UPSTREAM_PASSWORD:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
export TURNSTILE_UPSTREAM_PASSWORD
cargo build --release --quiet
# The password reaches redis-server on its standard input (its config), not on a
# command line that `ps` would show.
printf 'requirepass %s\n' "$TURNSTILE_UPSTREAM_PASSWORD" |
  redis-server - --port 16379 --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
    --loglevel warning &
REDIS_PID=$!
trap 'kill $REDIS_PID 2>/dev/null || true' EXIT
until REDISCLI_AUTH="$TURNSTILE_UPSTREAM_PASSWORD" redis-cli -p 16379 ping 2>/dev/null | grep -q PONG; do
  kill -0 $REDIS_PID 2>/dev/null || { echo "redis-server failed to start (port 16379 busy?)" >&2; exit 1; }
  sleep 0.1
done
echo "Redis on 127.0.0.1:16379; turnstile on 127.0.0.1:12000. Try:" >&2
echo "  redis-cli -p 12000 -a \"\$TURNSTILE_APP_PASSWORD\" --no-auth-warning ping" >&2
echo "  curl -k -u 'admin@example.com:$TURNSTILE_ADMIN_PASSWORD' https://127.0.0.1:9443/v1/bdbs" >&2
./target/release/turnstile --config examples/turnstile.toml
