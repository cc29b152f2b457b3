#!/usr/bin/env bash
# The whole test suite, as CI runs it: services ensured, then format, lints and tests
# against the real NATS and PostgreSQL on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-services.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
# Integration tests mostly wait on sockets: run more of them than there are cores.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-6}"
cargo test --locked "$@"
