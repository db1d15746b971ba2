#!/usr/bin/env bash
# Runs the cargo-fuzz targets (fuzz/) for SECONDS each (default 60), on a scratch copy
# of the committed seed corpus so the repository stays small. Needs the nightly
# toolchain; installs cargo-fuzz if missing. A crash leaves its input in
# fuzz/artifacts/<target>/: copy it to fuzz/regressions/<target>/ so that the normal
# `cargo test --test fuzz_regressions` replays it forever.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (targets: request reply framing; framing needs redis-server)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request reply framing)
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for t in "${targets[@]}"; do
  work="fuzz/target/corpus/$t"
  mkdir -p "$work"
  cp -n fuzz/corpus/"$t"/* "$work"/
  echo "== fuzzing $t for ${secs}s"
  # -max_len: enough for pipelines of several requests; the inline limit (64 KiB) is
  # covered by the unit tests.
  cargo +nightly fuzz run "$t" "$work" -- -max_total_time="$secs" -max_len=8192 \
    -print_final_stats=1
done
