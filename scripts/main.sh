#!/usr/bin/env bash
# The main job on an embedded default. Until `rho demo` lands (pre-training + linear probe on
# generated videos), it extracts Slow R-50 features from a generated 8x224x224 clip.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p rho-cli
out=${OUT:-rho-main-output}
mkdir -p "$out"
target/release/rho make-clip --shape 2,3,8,224,224 --out "$out/clip.npy"
target/release/rho init --arch slow_r50 --num-classes 400 --naming pytorchvideo --out "$out/slow_r50_init.safetensors"
target/release/rho embed --arch slow_r50 --weights "$out/slow_r50_init.safetensors" \
  --input "$out/clip.npy" --out "$out/features.npy" --logits "$out/logits.npy"
echo "features: $out/features.npy"
