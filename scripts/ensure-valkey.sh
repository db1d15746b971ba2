#!/usr/bin/env bash
# Valkey 8 (the Redis 7.2 line, whose ACL errors name the user) for the tests that
# check turnstile's upstream user names never reach a client: Debian's package
# (bookworm-backports on Debian 12), unpacked into target/valkey, not installed as
# a service. The tests find it there (or at $TURNSTILE_VALKEY_SERVER).
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${CARGO_TARGET_DIR:-target}/valkey"
bin="$dest/usr/bin/valkey-server"
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
policy="$(apt-cache policy valkey-server 2>/dev/null || true)"
if ! grep -q 'Candidate: [0-9]' <<<"$policy"; then
  . /etc/os-release
  echo "adding ${VERSION_CODENAME}-backports for valkey-server (Debian packages)..." >&2
  echo "deb http://deb.debian.org/debian ${VERSION_CODENAME}-backports main" |
    $SUDO tee "/etc/apt/sources.list.d/${VERSION_CODENAME}-backports.list" >/dev/null
  $SUDO apt-get update -qq
fi
# Its libraries, from the release itself (the binary is run from target/valkey).
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libatomic1 libjemalloc2 liblzf1 libssl3 libsystemd0 >/dev/null
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -qq valkey-server valkey-tools 2>/dev/null) || {
  . /etc/os-release
  (cd "$tmp" && apt-get download -qq -t "${VERSION_CODENAME}-backports" valkey-server valkey-tools)
}
mkdir -p "$dest"
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$dest"; done
"$bin" --version
