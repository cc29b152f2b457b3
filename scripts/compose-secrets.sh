#!/usr/bin/env bash
# Writes fresh random secrets for docker-compose.yml's services, one env file per service
# so that each sees only its own: DIR/wxledger.env, DIR/nats.env, DIR/postgres.env
# (DIR defaults to .compose, which git ignores). Keeps existing files unless --force:
# the stack's data (Postgres, sealed session keys) outlives a restart.
#
#   scripts/compose-secrets.sh [DIR] [--force]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.compose
force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    *) dir=$arg ;;
  esac
done
mkdir -p "$dir"
chmod 700 "$dir"
if [ "$force" = 0 ] && [ -f "$dir/wxledger.env" ]; then
  echo "compose secrets kept in $dir (use --force to replace them)"
  exit 0
fi
# Letters and digits only: the values go into URLs and nats-server's config unquoted.
random() { head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c "$1"; }
nats_wxledger=$(random 32)
nats_consumer=$(random 32)
postgres=$(random 32)
umask 077
cat >"$dir/wxledger.env" <<ENV
WXLEDGER__AUTH__JWT_SECRET=$(random 48)
WXLEDGER__AUTH__SESSION_KEY_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64)
WXLEDGER__AUTH__ADMIN_TOKEN=$(random 48)
WXLEDGER__PRIVACY__DATA_KEY_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64)
WXLEDGER__PRIVACY__BLIND_INDEX_KEY=$(head -c 32 /dev/urandom | base64)
WXLEDGER__NATS__AUTH__PASSWORD=$nats_wxledger
WXLEDGER__DATABASE__URL=postgres://wxledger:$postgres@postgres:5432/wxledger
ENV
cat >"$dir/nats.env" <<ENV
NATS_WXLEDGER_PASSWORD=$nats_wxledger
NATS_CONSUMER_PASSWORD=$nats_consumer
ENV
cat >"$dir/postgres.env" <<ENV
POSTGRES_USER=wxledger
POSTGRES_PASSWORD=$postgres
POSTGRES_DB=wxledger
ENV
echo "compose secrets written to $dir"
