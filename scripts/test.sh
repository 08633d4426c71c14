#!/usr/bin/env bash
# The test command of the README: installs the client tools the end-to-end
# tests use, then runs every test of the workspace (unit, conformance,
# end-to-end with the real binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-test-tools.sh
cargo test --workspace --all-targets --no-fail-fast "$@"
