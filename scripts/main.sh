#!/usr/bin/env bash
# The main job on an embedded default: `rho demo` (generated labelled videos, ρBYOL
# pre-training, linear probe and kNN of the learned versus a randomly initialised backbone).
# Extra arguments go to `rho demo` (e.g. --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p rho-cli
exec "$(scripts/rho_binary.sh)" demo "$@"
