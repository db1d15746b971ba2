#!/usr/bin/env bash
# The test command: installs what the tests need (redis-server, redis-py) and runs them all.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-redis.sh
./scripts/ensure-python-redis.sh
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets
