#!/usr/bin/env bash
# The daemon's main job, end to end: services ensured, build, start the WeChat simulator
# and the daemon, walk a scripted mini program user through the API, stop both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh
cargo build --locked --quiet --bin wxledger
bin=target/debug/wxledger

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port_from() {
  local p=$1
  while ! port_free "$p"; do p=$((p + 1)); done
  echo "$p"
}
api_port=$(free_port_from "${WXLEDGER_DEMO_API_PORT:-8080}")
sim_port=$(free_port_from "${WXLEDGER_DEMO_SIM_PORT:-8090}")
if [ "$sim_port" = "$api_port" ]; then sim_port=$(free_port_from $((api_port + 1))); fi

mkdir -p .demo
export WXLEDGER__HTTP__LISTEN="127.0.0.1:$api_port"
export WXLEDGER__SIM__LISTEN="127.0.0.1:$sim_port"
export WXLEDGER__WECHAT__API_BASE="http://127.0.0.1:$sim_port"
export WXLEDGER__PAY__API_BASE="http://127.0.0.1:$sim_port"
export WXLEDGER__PAY__NOTIFY_URL="http://127.0.0.1:$api_port/webhooks/wechatpay"
export WXLEDGER__DATABASE__URL="${WXLEDGER__DATABASE__URL:-postgres://postgres@127.0.0.1:5432/wxledger}"
# Fresh secrets each run: the demo keeps nothing that needs them afterwards.
WXLEDGER__AUTH__JWT_SECRET=$(head -c 32 /dev/urandom | base64)
WXLEDGER__AUTH__SESSION_KEY_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64)
WXLEDGER__AUTH__ADMIN_TOKEN=$(head -c 32 /dev/urandom | base64)
export WXLEDGER__AUTH__JWT_SECRET WXLEDGER__AUTH__SESSION_KEY_ENCRYPTION_KEY WXLEDGER__AUTH__ADMIN_TOKEN

"$bin" sim >.demo/sim.log 2>&1 &
sim_pid=$!
# Development mode, chosen explicitly: the simulator's credentials and the public keys.
"$bin" serve --dev >.demo/serve.log 2>&1 &
api_pid=$!
cleanup() {
  kill "$api_pid" "$sim_pid" 2>/dev/null || true
  wait "$api_pid" "$sim_pid" 2>/dev/null || true
}
trap cleanup EXIT
echo "simulator on :$sim_port, daemon on :$api_port (logs in .demo/)"
if ! "$bin" demo --api "http://127.0.0.1:$api_port" --sim "http://127.0.0.1:$sim_port"; then
  echo "--- daemon log (tail) ---"; tail -n 30 .demo/serve.log
  exit 1
fi
# Finance's side of the same books: rebuild them from the stream into a scratch schema,
# compare with the live tables and check the invariants (exit 1 on any breach).
echo
echo "--- wxledger audit ---"
"$bin" audit --dev --verify-signatures
