#!/usr/bin/env bash
# Property-based tests of the admin API against its own OpenAPI document: starts a
# throwaway redis-server and the turnstile binary (admin API over plain HTTP), checks
# that /v1/openapi.json is a valid OpenAPI document, then runs schemathesis against it:
# no 5xx, every status, header and body as documented, schema-violating requests
# refused, credentials never ignored, undocumented methods 405 with `Allow`.
#
#   ./scripts/schemathesis.sh                 # debug build, ~2 minutes
#   SCHEMATHESIS_TIME=600 ./scripts/schemathesis.sh   # a longer soak
#   SCHEMATHESIS_SEED=1234 ./scripts/schemathesis.sh  # replay a run (its seed is printed)
#   SCHEMATHESIS_ARGS="--report har --report-dir /tmp/st" ./scripts/schemathesis.sh  # every exchange
#
# schemathesis (PyPI) is pinned: its CLI changed between 3.x and 4.x. It is installed
# into a virtualenv under ~/.cache/turnstile, made once.
set -euo pipefail
cd "$(dirname "$0")/.."

ST_VERSION=4.32.5
SPEC_VALIDATOR_VERSION=0.9.0
VENV="${SCHEMATHESIS_VENV:-$HOME/.cache/turnstile/schemathesis-$ST_VERSION}"
BUDGET="${SCHEMATHESIS_TIME:-120}"           # seconds for the whole fuzzing, both runs
SEED="${SCHEMATHESIS_SEED:-$RANDOM$RANDOM}"
PROFILE="${SCHEMATHESIS_PROFILE:-debug}"      # or release
TARGET="${CARGO_TARGET_DIR:-target}"

install_python() {
  if python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' >/dev/null 2>&1; then
    return
  fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  echo "installing python3-venv (Debian packages)..." >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3 python3-venv >/dev/null
}

if [ ! -x "$VENV/bin/schemathesis" ]; then
  install_python
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "schemathesis==$ST_VERSION" "openapi-spec-validator==$SPEC_VALIDATOR_VERSION"
fi

if [ "$PROFILE" = release ]; then
  cargo build --quiet --release --bin turnstile
else
  cargo build --quiet --bin turnstile
fi
BIN="$TARGET/$PROFILE/turnstile"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Waits (up to 20 s) until the command succeeds.
wait_for() {
  for _ in $(seq 200); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for: $*" >&2
  return 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_for redis-cli -p "$REDIS_PORT" ping

# Cheap argon2: this exercises the API, not hashing cost.
cat >"$WORK/turnstile.toml" <<EOF
[admin]
listen = "127.0.0.1:0"
tls = false
[store]
dir = "$WORK/data"
[auth]
argon2_m_cost = 64
argon2_t_cost = 1
[bootstrap]
admin_name = "admin"
admin_email = "admin@example.com"
[[bdbs]]
uid = 1
name = "app"
listen = "127.0.0.1:0"
upstream = "redis://127.0.0.1:$REDIS_PORT"
default_password_env = "TURNSTILE_APP_PASSWORD"
EOF
TURNSTILE_ADMIN_PASSWORD='Admin-pw-1!' TURNSTILE_APP_PASSWORD='app-pw-1' TURNSTILE_LOG=warn \
  "$BIN" --config "$WORK/turnstile.toml" >"$WORK/turnstile.out" 2>"$WORK/turnstile.log" &
PIDS+=($!)
wait_for grep -q 'admin API listening on' "$WORK/turnstile.out"
API="$(grep -o 'admin API listening on .*' "$WORK/turnstile.out" | awk '{print $NF}')"

admin() { # METHOD PATH BODY: as the bootstrap admin; fails unless 200
  curl -sf -u 'admin:Admin-pw-1!' -X "$1" -H 'content-type: application/json' "$API$2" -d "$3" >/dev/null
}
# The fuzzer may change any setting: no lockout, and its own admin account, so the
# bootstrap admin is not the last one (DELETE of the last admin is refused by design).
admin PUT /v1/cluster/policy '{"login_lockout_threshold": 0}'
admin POST /v1/users '{"name": "fuzzer", "email": "fuzzer@example.com", "password": "Fuzzer-pw-1!", "role": "admin"}'

curl -sf "$API/v1/openapi.json" -o "$WORK/openapi.json"
"$VENV/bin/openapi-spec-validator" "$WORK/openapi.json"

# Operations that can take away the fuzzer's own access (its password, role, the
# account itself) run last, in a run of their own, so they cannot blind the first.
# Every check but positive_data_acceptance: a well-formed request may rightly be
# refused (a taken name, a role that does not exist, a weak password).
CHECKS="${SCHEMATHESIS_CHECKS:-all}"
SELF_HARM='^(update_user|delete_user|replace_user_passwords)$'
run() { # from $WORK: schemathesis keeps its example database in the working directory
  cd "$WORK"
  "$VENV/bin/schemathesis" --no-color run "$API/v1/openapi.json" \
    --auth 'fuzzer:Fuzzer-pw-1!' \
    --checks "$CHECKS" --exclude-checks positive_data_acceptance \
    --workers 1 --seed "$SEED" --max-examples 50 ${SCHEMATHESIS_ARGS:-} "$@"
}
echo "schemathesis $ST_VERSION against $API, seed $SEED (SCHEMATHESIS_SEED=$SEED to replay)"
status=0
run --max-time $((BUDGET * 3 / 4)) --exclude-operation-id-regex "$SELF_HARM" || status=$?
run --max-time $((BUDGET / 4)) --include-operation-id-regex "$SELF_HARM" || status=$?
if [ "$status" != 0 ]; then
  echo "--- turnstile's log (warnings and errors) ---" >&2
  tail -n 50 "$WORK/turnstile.log" >&2
fi
exit "$status"
