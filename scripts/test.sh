#!/usr/bin/env bash
# The test command: installs what the tests need (redis-server, Valkey, the third-party
# clients of tests/compat.rs, redis-py for tests/tls.rs, docker-compose's parser,
# schemathesis in a virtualenv) and runs them all.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-redis.sh
./scripts/ensure-valkey.sh
./scripts/ensure-python-redis.sh
./scripts/compat-clients.sh
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
versions="${CARGO_TARGET_DIR:-target}/tmp/compat-versions.txt"
rm -f "$versions"
cargo test --all-targets
echo "clients tested by tests/compat.rs:"; cat "$versions"
./scripts/check-compose.sh
# The admin API against its own OpenAPI document (~2.5 minutes; skip locally with
# TURNSTILE_SKIP_SCHEMATHESIS=1).
if [ "${TURNSTILE_SKIP_SCHEMATHESIS:-}" != 1 ]; then
  ./scripts/schemathesis.sh
fi
