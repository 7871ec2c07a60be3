#!/usr/bin/env bash
# Train-step throughput of rho and PyTorch on the same network, batch and thread count.
#
#   scripts/bench_model.sh [ARCH BATCH FRAMES SIZE] ...   (default: the two issue settings)
#
# Env: RHO (binary, default: cargo's release build, scripts/rho_binary.sh), PYTHON (default .venv/bin/python or python3),
#      THREADS (default: all cores), STEPS (default 5), RHO_BACKEND (default: rho's default).
set -euo pipefail
cd "$(dirname "$0")/.."
RHO=${RHO:-$(scripts/rho_binary.sh)}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
THREADS=${THREADS:-$(nproc)}
STEPS=${STEPS:-5}
export RAYON_NUM_THREADS=$THREADS MATMUL_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
[ -x "$RHO" ] || cargo build --release -p rho-cli
if [ $# -eq 0 ]; then set -- r3d_18 8 8 64 slow_r50 2 8 112; fi
backend_flag=()
[ -n "${RHO_BACKEND:-}" ] && backend_flag=(--backend "$RHO_BACKEND")
printf '%-12s %-18s %-8s %12s %12s %8s\n' arch input threads rho_clip/s torch_clip/s ratio
while [ $# -ge 4 ]; do
  arch=$1 b=$2 t=$3 s=$4; shift 4
  r=$("$RHO" "${backend_flag[@]}" bench model --arch "$arch" --batch "$b" --frames "$t" --size "$s" --steps "$STEPS" --json)
  p=$("$PYTHON" scripts/bench_model.py --arch "$arch" --batch "$b" --frames "$t" --size "$s" --steps "$STEPS" --threads "$THREADS")
  "$PYTHON" - "$r" "$p" <<'PY'
import json, sys
r, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
shape = "x".join(map(str, r["input"]))
print(f'{r["arch"]:<12} {shape:<18} {r["threads"]:<8} {r["clips_per_s"]:12.2f} {p["clips_per_s"]:12.2f} {r["clips_per_s"]/p["clips_per_s"]:8.2f}')
print(f'  rho ({r["backend"]}): step {r["step_ms_median"]:.0f} ms [{r["step_ms_min"]:.0f}-{r["step_ms_max"]:.0f}]; '
      f'pytorch ({p["backend"]}): step {p["step_ms_median"]:.0f} ms [{p["step_ms_min"]:.0f}-{p["step_ms_max"]:.0f}]')
PY
done
