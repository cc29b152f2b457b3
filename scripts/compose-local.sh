#!/usr/bin/env bash
# docker-compose.yml without a Docker engine: starts the same services as plain processes,
# each with exactly the environment compose gives it (its env files, secrets written by
# scripts/compose-secrets.sh into a temporary directory), then runs the documented demo
#   docker compose run --rm wxledger demo --api http://wxledger:8080 --sim http://sim:8090
# against them, and stops everything.
#
# What differs from compose, and why:
# - compose's hostnames (nats, postgres, sim, wxledger) and ports become loopback and free
#   ports, in the variables' values and the demo's arguments;
# - NATS is a private nats-server on random ports with config/nats/wxledger.conf and the
#   same auth.conf (users, passwords, permissions); `sync_interval` is dropped when the
#   server is older than 2.10 (Debian's 2.9 does not know it);
# - Postgres is the machine's server (127.0.0.1:5432) with a database of this run's own,
#   dropped at the end, reached as `postgres` (the shared server is never reconfigured, so
#   no `wxledger` role is created there).
#
#   scripts/compose-local.sh            # builds target/debug/wxledger first
#   COMPOSE_LOCAL_BIN=path/to/wxledger scripts/compose-local.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
scripts/ensure-services.sh >/dev/null
if [ -z "${COMPOSE_LOCAL_BIN:-}" ]; then
  cargo build --locked --quiet --bin wxledger
  bin=$repo/target/debug/wxledger
else
  bin=$COMPOSE_LOCAL_BIN
fi
nats_server=$(command -v nats-server || echo /usr/sbin/nats-server)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nats_port=$(free_port); monitor_port=$(free_port); api_port=$(free_port); sim_port=$(free_port)
db="compose_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

scripts/compose-secrets.sh "$tmp/secrets" >/dev/null

# KEY=VALUE lines of env files, compose hostnames rewritten to this run's loopback ports.
env_of() {
  local file
  for file in "$@"; do
    grep -Ev '^[[:space:]]*(#|$)' "$file"
  done | sed -e "s#0\.0\.0\.0:8080#127.0.0.1:$api_port#g" \
             -e "s#0\.0\.0\.0:8090#127.0.0.1:$sim_port#g" \
             -e "s#nats://nats:4222#nats://127.0.0.1:$nats_port#g" \
             -e "s#http://sim:8090#http://127.0.0.1:$sim_port#g" \
             -e "s#http://wxledger:8080#http://127.0.0.1:$api_port#g" \
             -e "s#postgres://[^@]*@postgres:5432/wxledger#postgres://postgres@127.0.0.1:5432/$db#g"
}
# Runs a command with exactly the environment compose would give the service.
with_env() {
  local envfile=$1
  shift
  local vars=()
  mapfile -t vars <"$envfile"
  env -i PATH="$PATH" HOME="${HOME:-/root}" "${vars[@]}" "$@"
}
# The same in the background, output to LOG, its pid kept for cleanup: `env` execs the
# service, so the pid is the service's own (`with_env ... &` would be a subshell's, and
# killing it left the service running).
spawn() {
  local log=$1 envfile=$2
  shift 2
  local vars=()
  mapfile -t vars <"$envfile"
  env -i PATH="$PATH" HOME="${HOME:-/root}" "${vars[@]}" "$@" >"$log" 2>&1 &
  pids+=($!)
}

# nats: compose's config and auth files, on private ports and storage.
mkdir -p "$tmp/nats/data"
cp config/nats/*.conf "$tmp/nats/"
sed -i -e "s#^port: 4222#port: $nats_port#" -e "s#^http_port: 8222#http_port: $monitor_port#" \
       -e "s#store_dir: \"/data\"#store_dir: \"$tmp/nats/data\"#" "$tmp/nats/wxledger.conf"
version=$("$nats_server" --version | grep -Eo '[0-9]+\.[0-9]+' | head -n1)
if [ "$(printf '%s\n' "$version" 2.10 | sort -V | head -n1)" != 2.10 ]; then
  sed -i '/sync_interval/d' "$tmp/nats/wxledger.conf"
fi
env_of "$tmp/secrets/nats.env" >"$tmp/nats.env"
spawn "$tmp/nats.log" "$tmp/nats.env" "$nats_server" --config "$tmp/nats/wxledger.conf"

# postgres: a database of this run's own on the machine's server.
psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $db" >/dev/null

env_of config/compose/sim.env >"$tmp/sim.env"
env_of config/compose/wxledger.env "$tmp/secrets/wxledger.env" >"$tmp/wxledger.env"

for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break
  sleep 0.1
done
spawn "$tmp/sim.log" "$tmp/sim.env" "$bin" sim
spawn "$tmp/wxledger.log" "$tmp/wxledger.env" "$bin" serve

# wxledger's healthcheck, as compose runs it, until healthy.
healthy=0
for _ in $(seq 120); do
  if with_env "$tmp/wxledger.env" "$bin" healthcheck >/dev/null 2>&1; then healthy=1; break; fi
  sleep 0.5
done
if [ "$healthy" != 1 ]; then
  echo "compose-local: wxledger never became healthy" >&2
  tail -n 30 "$tmp/wxledger.log" "$tmp/nats.log" >&2
  exit 1
fi
echo "compose-local: nats :$nats_port, sim :$sim_port, wxledger :$api_port healthy (database $db)"

# docker compose run --rm wxledger demo --api http://wxledger:8080 --sim http://sim:8090
if ! with_env "$tmp/wxledger.env" "$bin" demo --api "http://127.0.0.1:$api_port" --sim "http://127.0.0.1:$sim_port"; then
  echo "--- wxledger log (tail) ---" >&2
  tail -n 30 "$tmp/wxledger.log" >&2
  exit 1
fi
echo "compose-local: demo passed"
