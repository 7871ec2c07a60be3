#!/usr/bin/env bash
# Installs what rho's build and tests need on Debian/Ubuntu, only where it is missing.
# Idempotent: a second run changes nothing.
#
#   scripts/setup.sh            system packages (C toolchain, pkg-config, libclang, FFmpeg dev libs,
#                               Open MPI for multi-process training)
#   scripts/setup.sh --python   also a .venv with PyTorch, pytorchvideo, torchvision, safetensors
#                               for scripts/ (parity fixtures, export check, PyTorch baselines)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential pkg-config libclang-dev clang
          libavcodec-dev libavformat-dev libavutil-dev libswscale-dev ffmpeg
          libopenmpi-dev openmpi-bin)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (https://rustup.rs), 1.92 or newer" >&2
  exit 1
fi

if [ "${1:-}" = "--python" ]; then
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  .venv/bin/python -c "import torch, torchvision, pytorchvideo, safetensors, yacs, lightly, tensorboard" 2>/dev/null || \
    .venv/bin/pip install --quiet torch torchvision pytorchvideo safetensors numpy yacs lightly tensorboard
fi
echo "setup: ok"
