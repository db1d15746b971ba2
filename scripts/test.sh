#!/usr/bin/env bash
# The test command: installs what the tests need (redis-server; schemathesis in a
# virtualenv) and runs them all.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-redis.sh
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets
# The admin API against its own OpenAPI document (~2.5 minutes; skip locally with
# TURNSTILE_SKIP_SCHEMATHESIS=1).
if [ "${TURNSTILE_SKIP_SCHEMATHESIS:-}" != 1 ]; then
  ./scripts/schemathesis.sh
fi
