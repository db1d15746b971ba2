#!/usr/bin/env bash
# The fleet benchmark (issue 14), one command: change-to-visible-everywhere latency
# over 500 changes on three nodes, admin write latency file store vs Redis store, and
# the data path's throughput through a fleet node vs a file-store node (ratio).
# Extra arguments go to fleet.py (e.g. --changes 200).
set -euo pipefail
cd "$(dirname "$0")/../.."
./scripts/ensure-redis.sh
cargo build --release --quiet
exec python3 benches/load/fleet.py --turnstile target/release/turnstile "$@"
