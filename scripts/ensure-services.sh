#!/usr/bin/env bash
# Makes sure NATS (with JetStream) and PostgreSQL answer on 127.0.0.1: uses the running
# ones, starts installed ones that are stopped, installs them from the OS packages when
# absent. Creates the databases `wxledger` (demo) and `test` (tests) when missing.
set -euo pipefail

NATS_PORT=4222
PG_PORT=5432
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

say() { printf 'services: %s\n' "$*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 120); do
    if port_open "$1"; then return 0; fi
    sleep 0.5
  done
  say "nothing answers on 127.0.0.1:$1"
  return 1
}
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

ensure_nats() {
  if port_open "$NATS_PORT"; then say "nats: running"; return; fi
  if [ ! -x /usr/sbin/nats-server ] && ! command -v nats-server >/dev/null; then
    say "nats: installing nats-server"
    apt_install nats-server
  fi
  local bin
  bin=$(command -v nats-server || echo /usr/sbin/nats-server)
  $SUDO mkdir -p /var/lib/nats-server
  say "nats: starting with JetStream"
  $SUDO start-stop-daemon --start --oknodo --background --exec "$bin" -- \
    -a 127.0.0.1 -p "$NATS_PORT" -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port "$NATS_PORT"
}

psql_admin() {
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"
}

ensure_postgres() {
  if ! port_open "$PG_PORT"; then
    if ! command -v pg_ctlcluster >/dev/null; then
      say "postgres: installing postgresql"
      apt_install postgresql
    fi
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$version" ]; then
      version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
      $SUDO pg_createcluster "$version" main >/dev/null
    fi
    say "postgres: starting cluster $version/main"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_port "$PG_PORT"
  else
    say "postgres: running"
  fi
  if ! psql_admin -c 'SELECT 1' >/dev/null 2>&1; then
    # A fresh install asks for passwords on TCP: trust loopback, as these machines do.
    say "postgres: allowing trust auth on loopback"
    local hba
    hba=$($SUDO -u postgres psql -qAt -c 'SHOW hba_file' 2>/dev/null || su postgres -c "psql -qAt -c 'SHOW hba_file'")
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    ($SUDO -u postgres psql -qAt -c 'SELECT pg_reload_conf()' 2>/dev/null || su postgres -c "psql -qAt -c 'SELECT pg_reload_conf()'") >/dev/null
    sleep 1
  fi
  for db in wxledger test; do
    if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]; then
      say "postgres: creating database $db"
      psql_admin -c "CREATE DATABASE $db" || true
    fi
  done
}

if ! command -v psql >/dev/null; then apt_install postgresql-client; fi
ensure_nats
ensure_postgres
