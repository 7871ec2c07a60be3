#!/usr/bin/env bash
# Prepares gpu-carry/ for scripts/gpu_check.sh on a CPU machine: the CUDA build of rho
# (stripped) and the Python packages the baseline needs that a GPU image may lack. A kernel cache
# returned by an earlier GPU run (its $OUT/kernel-cache) can be copied to gpu-carry/kernel-cache
# first; it travels with the rest. Everything carried must stay under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p rho-cli --no-default-features --features cuda --target-dir target/cuda
mkdir -p gpu-carry/py/fvcore/nn
cp target/cuda/release/rho gpu-carry/rho
strip gpu-carry/rho
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
site=$("$PY" -c "import pytorchvideo, os; print(os.path.dirname(os.path.dirname(pytorchvideo.__file__)))")
rm -rf gpu-carry/py/pytorchvideo
cp -r "$site/pytorchvideo" gpu-carry/py/
cp "$site/fvcore/nn/weight_init.py" "$site/fvcore/nn/squeeze_excitation.py" gpu-carry/py/fvcore/nn/
touch gpu-carry/py/fvcore/__init__.py gpu-carry/py/fvcore/nn/__init__.py
find gpu-carry -name __pycache__ -prune -exec rm -rf {} +
du -sh gpu-carry
size=$(du -sm gpu-carry | cut -f1)
if [ "$size" -gt 64 ]; then
  echo "gpu-carry/ is ${size} MiB, over the 64 MiB a device run carries; drop gpu-carry/kernel-cache or its kernels/" >&2
  exit 1
fi
