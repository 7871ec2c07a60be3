#!/usr/bin/env bash
# One tiny fixed-shape training step of rho on the wgpu backend, on a software Vulkan device
# (Mesa lavapipe) when no GPU is present. Opt-in, not part of .ci/run: the wgpu build takes about
# 21 minutes and 6–7 GB on a 2-core machine (the step itself ~15 s cold, ~4 s with warm shader
# caches), measured 2026-11-26. Cache target/wgpu and ~/.cache/cubecl if a CI job runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
missing=()
for p in mesa-vulkan-drivers libvulkan1; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
cargo build --locked -p rho-cli --no-default-features --features wgpu,flex --target-dir target/wgpu
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
# Without a discrete GPU, let cubecl take the CPU (lavapipe) adapter.
if ! command -v nvidia-smi >/dev/null 2>&1; then export CUBECL_WGPU_DEFAULT_DEVICE=${CUBECL_WGPU_DEFAULT_DEVICE:-Cpu}; fi
out=$(target/wgpu/debug/rho --backend wgpu bench model --arch slow_r18_tiny --batch 2 --frames 4 \
  --size 32 --classes 4 --steps 2 --warmup 1 --json)
echo "$out"
echo "$out" | grep -qE '"final_loss":[0-9]' || { echo "wgpu smoke: the loss is not finite" >&2; exit 1; }
echo "wgpu smoke: ok"
