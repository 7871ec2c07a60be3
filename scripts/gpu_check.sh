#!/usr/bin/env bash
# The GPU check, run on a CUDA machine without network, from the repository root, with a build
# made beforehand on a CPU machine (scripts/gpu_prepare.sh fills gpu-carry/):
#   gpu-carry/rho   the `rho` binary built with --features cuda (no CUDA toolkit needed to build)
#   gpu-carry/py/   pytorchvideo (pure Python) and fvcore's weight_init, for the PyTorch baseline
#
# 1. Correctness on CUDA: rho's features and logits of full-size slow_r50, r3d_18, r2plus1d_18 on
#    the GPU against PyTorch on the same GPU (strict-loaded exported weights, TF32 off).
# 2. Every command on CUDA: synth, pretrain (one replica, and two data-parallel replicas with
#    SyncBN on the one GPU), eval linear and knn, demo; each with its time and status.
# 3. Throughput: train steps of slow_r50 8×224² and r3d_18 8×112² in rho and PyTorch, clips/s,
#    peak GPU memory, ratio.
# Prints one table; finishes in a few minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
RHO=${RHO:-gpu-carry/rho}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/gpu-carry/py${PYTHONPATH:+:$PYTHONPATH}"
BACKEND=${BACKEND:-cuda}          # rho backend
TORCH_DEVICE=${TORCH_DEVICE:-cuda}
SPECS=${SPECS:-"slow_r50 8 8 224;r3d_18 8 8 112;r3d_18 32 8 112"}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-3}
out=${OUT:-/tmp/rho-gpu-check}
mkdir -p "$out"

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "no nvidia-smi"
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')"

echo "== correctness on CUDA (rho cuda vs PyTorch cuda, full precision)"
timeout 300 "$PY" scripts/check_export.py --rho "$RHO" --backend "$BACKEND" --device "$TORCH_DEVICE" --size "${CHECK_SIZE:-224}" --archs "${CHECK_ARCHS:-slow_r50,r3d_18,r2plus1d_18}" --tol 1e-3 2>&1 \
  | grep -vE "^(wrote|loaded|embedded)"

echo "== every command on CUDA (tiny recipes; first-use kernel compilation included)"
work="$out/commands"
rm -rf "$work"; mkdir -p "$work"
CMD_LIMIT=${CMD_LIMIT:-150}
# step NAME CMD...: runs CMD under a time limit, prints status and seconds, and the log's tail on failure.
step() {
  local name=$1; shift
  local t0; t0=$(date +%s%N)
  timeout "$CMD_LIMIT" "$@" > "$work/$name.log" 2>&1
  local rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  if [ $rc -eq 0 ]; then status=ok; elif [ $rc -eq 124 ]; then status="timeout"; else status="rc $rc"; fi
  printf '%-24s %-8s %8.1f s\n' "$name" "$status" "$(echo "$ms" | awk '{print $1/1000}')"
  [ $rc -eq 0 ] || tail -4 "$work/$name.log" | sed 's/^/    /'
}
S="$work/synth"
DATA=(--set "data.index=\"$S/train.txt\"" --set "data.prefix=\"$S\"" --set 'data.format="frames"')
EVAL=(--set "train.index=\"$S/train.txt\"" --set "train.prefix=\"$S\"" --set "test.index=\"$S/test.txt\"" --set "test.prefix=\"$S\"")
step synth "$RHO" synth --out "$S" --classes 4 --train-per-class 8 --test-per-class 4
step pretrain "$RHO" --backend "$BACKEND" pretrain --config configs/tiny_byol_cpu.toml "${DATA[@]}" \
  --max-steps 20 --set "output=\"$work/run1\""
step pretrain-2-replicas "$RHO" --backend "$BACKEND" pretrain --config configs/tiny_byol_cpu.toml "${DATA[@]}" \
  --max-steps 20 --devices 0,0 --set 'model.sync_bn="all"' --set "output=\"$work/run2\""
step eval-linear "$RHO" --backend "$BACKEND" eval linear --config configs/eval/demo_linear_cpu.toml \
  --weights "$work/run1/backbone.safetensors" "${EVAL[@]}" --set epochs=5 --out "$work/linear"
step eval-knn "$RHO" --backend "$BACKEND" eval knn --config configs/eval/demo_linear_cpu.toml \
  --weights "$work/run1/backbone.safetensors" "${EVAL[@]}" --out "$work/knn"
step demo "$RHO" --backend "$BACKEND" demo --classes 4 --max-steps 40 --out "$work/demo"

# Runs a command while nvidia-smi samples the device's memory.used every 50 ms; writes the
# peak (MiB) to the file named by $1.
peak_mem() {
  local dest=$1; shift
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 > "$dest.log" 2>/dev/null &
  local mon=$!
  "$@"
  local rc=$?
  kill $mon 2>/dev/null; wait $mon 2>/dev/null
  sort -n "$dest.log" | tail -1 > "$dest"
  return $rc
}

echo "== throughput (train step: forward, cross-entropy, backward, SGD)"
printf '%-10s %-18s %12s %12s %8s %14s %14s\n' arch input rho_clip/s torch_clip/s ratio rho_peak_MiB torch_peak_MiB
IFS=';' read -ra specs <<< "$SPECS"
for spec in "${specs[@]}"; do
  set -- $spec
  peak_mem "$out/rho_mem" timeout 240 "$RHO" --backend "$BACKEND" bench model --arch "$1" --batch "$2" --frames "$3" \
    --size "$4" --steps "$STEPS" --warmup "$WARMUP" --json > "$out/rho.json" 2> "$out/rho_err.txt"
  r=$(grep '^{' "$out/rho.json" | tail -1)
  rmem=$(cat "$out/rho_mem" 2>/dev/null)
  p=$(timeout 240 "$PY" scripts/bench_model.py --arch "$1" --batch "$2" --frames "$3" --size "$4" \
        --steps "$STEPS" --warmup "$WARMUP" --device "$TORCH_DEVICE" 2> "$out/torch_err.txt" | tail -1)
  "$PY" - "$r" "$p" "$rmem" "$*" <<'PY'
import json, sys
try:
    r = json.loads(sys.argv[1])
except Exception:
    r = None
try:
    p = json.loads(sys.argv[2])
except Exception:
    p = None
spec = sys.argv[4].split()
shape = f"{spec[1]}x3x{spec[2]}x{spec[3]}x{spec[3]}"
rc = r["clips_per_s"] if r else float("nan")
pc = p["clips_per_s"] if p else float("nan")
pm = p.get("peak_mem_mb") if p else None
print(f"{spec[0]:<10} {shape:<18} {rc:12.1f} {pc:12.1f} {rc / pc if p and r else float('nan'):8.2f} {sys.argv[3] or '?':>14} {str(pm if pm is None else round(pm)):>14}")
PY
  [ -s "$out/rho_err.txt" ] && grep -iE "error|panic" "$out/rho_err.txt" | head -3
  [ -s "$out/torch_err.txt" ] && grep -iE "error" "$out/torch_err.txt" | head -3
done
echo "(rho peak: whole-device memory.used sampled by nvidia-smi; torch peak: max_memory_allocated)"
