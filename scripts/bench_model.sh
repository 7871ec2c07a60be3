#!/usr/bin/env bash
# Train-step throughput and peak memory of rho and PyTorch on the same network, batch and
# thread count, side by side in one run, at each thread count.
#
#   scripts/bench_model.sh [ARCH BATCH FRAMES SIZE] ...   (default: the two issue settings)
#
# Env: RHO (binary, default: cargo's release build, scripts/rho_binary.sh), PYTHON (default .venv/bin/python or python3),
#      THREADS (thread counts, default "1 <all cores>"), STEPS (default 5), RHO_BACKEND (default: rho's default),
#      NATIVE=1 (also time rho with the backend's own convolutions and composed BatchNorm).
# Peak RSS is the whole process's (PyTorch's includes its ~300 MB of libraries).
set -euo pipefail
cd "$(dirname "$0")/.."
RHO=${RHO:-$(scripts/rho_binary.sh)}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
THREADS=${THREADS:-"1 $(nproc)"}
STEPS=${STEPS:-5}
[ -x "$RHO" ] || cargo build --release -p rho-cli
if [ $# -eq 0 ]; then set -- r3d_18 8 8 64 slow_r50 2 8 112; fi
backend_flag=()
[ -n "${RHO_BACKEND:-}" ] && backend_flag=(--backend "$RHO_BACKEND")
printf '%-12s %-18s %-8s %12s %12s %8s %10s %10s\n' arch input threads rho_clip/s torch_clip/s ratio rho_MiB torch_MiB
while [ $# -ge 4 ]; do
  arch=$1 b=$2 t=$3 s=$4; shift 4
  for n in $THREADS; do
    export RAYON_NUM_THREADS=$n MATMUL_NUM_THREADS=$n OMP_NUM_THREADS=$n
    args=(bench model --arch "$arch" --batch "$b" --frames "$t" --size "$s" --steps "$STEPS" --json)
    r=$("$RHO" "${backend_flag[@]}" "${args[@]}")
    native='null'
    [ "${NATIVE:-0}" = 1 ] && native=$("$RHO" "${backend_flag[@]}" "${args[@]}" --native-conv --native-norm)
    p=$("$PYTHON" scripts/bench_model.py --arch "$arch" --batch "$b" --frames "$t" --size "$s" --steps "$STEPS" --threads "$n")
    "$PYTHON" - "$r" "$p" "$native" <<'PY'
import json, sys
r, p, native = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
shape = "x".join(map(str, r["input"]))
print(f'{r["arch"]:<12} {shape:<18} {r["threads"]:<8} {r["clips_per_s"]:12.2f} {p["clips_per_s"]:12.2f} '
      f'{r["clips_per_s"]/p["clips_per_s"]:8.2f} {r["peak_rss_mb"]:10.0f} {p["peak_rss_mb"]:10.0f}')
print(f'  rho ({r["backend"]}, {r["conv"]} conv, {r.get("norm", "?")} BatchNorm): step {r["step_ms_median"]:.0f} ms [{r["step_ms_min"]:.0f}-{r["step_ms_max"]:.0f}]; '
      f'pytorch ({p["backend"]}): step {p["step_ms_median"]:.0f} ms [{p["step_ms_min"]:.0f}-{p["step_ms_max"]:.0f}]')
if native:
    print(f'  rho with native conv and BatchNorm: step {native["step_ms_median"]:.0f} ms, {native["clips_per_s"]:.2f} clips/s, '
          f'{native["peak_rss_mb"]:.0f} MiB')
PY
  done
done
