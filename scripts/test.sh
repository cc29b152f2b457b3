#!/usr/bin/env bash
# The whole test suite, as CI runs it: services ensured, then format, lints and tests
# against the real NATS and PostgreSQL on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh
# The pinned current nats-server (scripts/nats-server.txt): the group commit tests start
# private servers with it; the shared server stays the machine's Debian 2.9.10.
WXLEDGER_NATS_SERVER=$(scripts/install-nats-server.sh)
export WXLEDGER_NATS_SERVER
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
# The API docs build without a broken or private link.
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --quiet
# Integration tests mostly wait on sockets: run more of them than there are cores.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-6}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# Each failing test's first lines (where it panicked and why) again at the end, where a
# reader of the run's tail sees them: a failure's message (with logs) is often long.
if [ "$status" -ne 0 ]; then
    echo "--- failures, first lines ---"
    awk '/^thread .* panicked at / { n = 6 } n > 0 { print substr($0, 1, 300); n-- }' "$log"
fi
# One closing line for the whole run, summed over the test binaries.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
