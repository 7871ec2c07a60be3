#!/usr/bin/env bash
# The test command: set-up (if needed), then every test of the workspace on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --locked "$@"
