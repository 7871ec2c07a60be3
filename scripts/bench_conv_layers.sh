#!/usr/bin/env bash
# Per-layer GF/s of rho's host convolution kernels beside PyTorch's on R3D-18's layers, in one
# run, at each thread count (forward, dX, dW; see crates/rho-model/examples/conv_bench.rs).
#
# Env: THREADS (default "1 <all cores>"), B (batch, default 8), PYTHON (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
THREADS=${THREADS:-"1 $(nproc)"}
export B=${B:-8}
cargo build --release -q -p rho-model --example conv_bench
bin=${CARGO_TARGET_DIR:-target}/release/examples/conv_bench
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for n in $THREADS; do
  echo "threads $n, batch $B"
  RAYON_NUM_THREADS=$n "$bin" --json > "$out"
  OMP_NUM_THREADS=$n "$PYTHON" scripts/bench_conv_layers.py --rho "$out" --threads "$n"
done
