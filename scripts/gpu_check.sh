#!/usr/bin/env bash
# The GPU check, run on a CUDA machine without network, from the repository root, with a build
# made beforehand on a CPU machine (scripts/gpu_prepare.sh fills gpu-carry/):
#   gpu-carry/rho   the `rho` binary built with --features cuda (no CUDA toolkit needed to build)
#   gpu-carry/py/   pytorchvideo (pure Python) and fvcore's weight_init, for the PyTorch baseline
#   gpu-carry/kernel-cache/   (optional) CubeCL's autotune results and compiled kernels from an
#                   earlier run: copy that run's returned $OUT/kernel-cache here before
#                   gpu_prepare.sh (it is carried with gpu-carry/) and rho skips the cold start.
#
# 1. Correctness on CUDA: rho's features and logits of full-size slow_r50, r3d_18, r2plus1d_18 on
#    the GPU against PyTorch on the same GPU (strict-loaded exported weights). The criterion is
#    PyTorch with TF32 allowed (its cuDNN default; CubeCL's f32 matmul/conv kernels use TF32 on
#    GPUs that have it), tolerance 2e-2 relative L2; the line with TF32 off is for information.
# 2. Every command on CUDA: synth, pretrain (one replica, two data-parallel replicas with SyncBN
#    on the one GPU, and bf16), eval linear and knn, demo; each with its time and status.
# 3. Throughput: train steps of slow_r50 8×224² and r3d_18 8×112², rho in f32 and bf16 against
#    PyTorch in f32 (TF32 allowed) and AMP bf16: steady-state clips/s, the cold first step, peak
#    memory, ratios.
# Warm-up: every rho command runs with CubeCL's minimal autotune level (AUTOTUNE_LEVEL) and one
# kernel cache ($RHO_KERNEL_CACHE, default gpu-carry/kernel-cache), shared by all of them, so
# each shape is compiled and tuned once; each benchmark's warm-up has WARMUP_BUDGET_S seconds.
# The cache is copied to $OUT/kernel-cache at the end. Prints one table; a few minutes.
#
# CPU dry run (no GPU): BACKEND=flex TORCH_DEVICE=cpu RHO=target/release/rho PYTHON=.venv/bin/python \
#   SPECS="r3d_18 2 4 32" CHECK_SIZE=32 scripts/gpu_check.sh
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
WARMUP_BUDGET_S=${WARMUP_BUDGET_S:-180}
out=${OUT:-/tmp/rho-gpu-check}
mkdir -p "$out"
export RHO_KERNEL_CACHE=${RHO_KERNEL_CACHE:-$PWD/gpu-carry/kernel-cache}
AUTOTUNE_LEVEL=${AUTOTUNE_LEVEL:-minimal}
RHO_OPTS=(--backend "$BACKEND" --autotune-level "$AUTOTUNE_LEVEL")
# Copies the kernel cache into $OUT on every exit, so a cut-off run still returns it.
save_cache() { [ -d "$RHO_KERNEL_CACHE" ] && rm -rf "$out/kernel-cache" && cp -r "$RHO_KERNEL_CACHE" "$out/kernel-cache" && rm -rf "$out/kernel-cache/logs"; }
trap save_cache EXIT

echo "== device"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
else
  echo "no nvidia-smi"
fi
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')"

echo "== correctness (rho $BACKEND vs PyTorch $TORCH_DEVICE; criterion: TF32 allowed, 2e-2)"
for tf32 in on off; do
  timeout 300 "$PY" scripts/check_export.py --rho "$RHO" --backend "$BACKEND" --device "$TORCH_DEVICE" \
    --size "${CHECK_SIZE:-224}" --archs "${CHECK_ARCHS:-slow_r50,r3d_18,r2plus1d_18}" --tf32 $tf32 \
    --tol "$([ $tf32 = on ] && echo 2e-2 || echo 1e-1)" 2>&1 | grep -vE "^(wrote|loaded|embedded|kernel cache)"
done

echo "== every command on $BACKEND (tiny recipes; first-use kernel compilation included)"
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
step pretrain "$RHO" "${RHO_OPTS[@]}" pretrain --config configs/tiny_byol_cpu.toml "${DATA[@]}" \
  --max-steps 20 --set "output=\"$work/run1\""
step pretrain-bf16 "$RHO" "${RHO_OPTS[@]}" pretrain --config configs/tiny_byol_cpu.toml "${DATA[@]}" \
  --max-steps 20 --set precision=bf16 --set "output=\"$work/run3\""
step pretrain-2-replicas "$RHO" "${RHO_OPTS[@]}" pretrain --config configs/tiny_byol_cpu.toml "${DATA[@]}" \
  --max-steps 20 --devices 0,0 --set 'model.sync_bn="all"' --set "output=\"$work/run2\""
step eval-linear "$RHO" "${RHO_OPTS[@]}" eval linear --config configs/eval/demo_linear_cpu.toml \
  --weights "$work/run1/backbone.safetensors" "${EVAL[@]}" --set epochs=5 --out "$work/linear"
step eval-knn "$RHO" "${RHO_OPTS[@]}" eval knn --config configs/eval/demo_linear_cpu.toml \
  --weights "$work/run1/backbone.safetensors" "${EVAL[@]}" --out "$work/knn"
step demo "$RHO" "${RHO_OPTS[@]}" demo --classes 4 --max-steps 40 --out "$work/demo"

# Runs a command while nvidia-smi samples the device's memory.used every 50 ms; writes the
# peak (MiB) to the file named by $1 (empty without nvidia-smi: the JSON's own peak is used).
peak_mem() {
  local dest=$1; shift
  local mon=""
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 > "$dest.log" 2>/dev/null &
    mon=$!
  else
    : > "$dest.log"
  fi
  "$@"
  local rc=$?
  [ -n "$mon" ] && { kill $mon 2>/dev/null; wait $mon 2>/dev/null; }
  sort -n "$dest.log" | tail -1 > "$dest"
  return $rc
}

echo "== throughput (train step: forward, cross-entropy, backward, SGD; steady state after $WARMUP warm-up steps)"
printf '%-9s %-16s %9s %9s %9s %9s %7s %7s %9s %9s %9s\n' arch input rho_f32 rho_bf16 pt_tf32 pt_bf16 f32_x bf16_x rho_1st_s rho_MiB pt_MiB
IFS=';' read -ra specs <<< "$SPECS"
for spec in "${specs[@]}"; do
  set -- $spec
  args=(--arch "$1" --batch "$2" --frames "$3" --size "$4" --steps "$STEPS" --warmup "$WARMUP")
  for prec in f32 bf16; do
    budget=$(( WARMUP_BUDGET_S + 30 * STEPS ))
    peak_mem "$out/rho_mem_$prec" timeout "$budget" "$RHO" "${RHO_OPTS[@]}" bench model "${args[@]}" \
      --precision $prec --json > "$out/rho_$prec.json" 2> "$out/rho_err_$prec.txt"
    rc=$?; [ $rc -eq 124 ] && echo "rho $1 $prec: over the budget of $budget s (warm-up $WARMUP_BUDGET_S s)"
  done
  timeout 240 "$PY" scripts/bench_model.py "${args[@]}" --device "$TORCH_DEVICE" --tf32 on \
    > "$out/torch_f32.json" 2> "$out/torch_err.txt"
  timeout 240 "$PY" scripts/bench_model.py "${args[@]}" --device "$TORCH_DEVICE" --amp bf16 \
    > "$out/torch_bf16.json" 2>> "$out/torch_err.txt"
  "$PY" - "$out" "$*" <<'PY'
import json, sys, os
out, spec = sys.argv[1], sys.argv[2].split()
def read(name):
    try:
        lines = [l for l in open(os.path.join(out, name)) if l.startswith("{")]
        return json.loads(lines[-1])
    except Exception:
        return None
def mem(name):
    try:
        return float(open(os.path.join(out, name)).read().strip())
    except Exception:
        return None
rf, rb, pf, pb = read("rho_f32.json"), read("rho_bf16.json"), read("torch_f32.json"), read("torch_bf16.json")
c = lambda r: r["clips_per_s"] if r else float("nan")
rmem = mem("rho_mem_f32") or (rf or {}).get("peak_rss_mb")
pmem = (pf or {}).get("peak_mem_mb") or (pf or {}).get("peak_rss_mb")
first = (rf or {}).get("first_step_ms", float("nan")) / 1e3
shape = f"{spec[1]}x3x{spec[2]}x{spec[3]}²"
fmt = lambda v: "?" if v is None else f"{v:.0f}"
print(f"{spec[0]:<9} {shape:<16} {c(rf):9.1f} {c(rb):9.1f} {c(pf):9.1f} {c(pb):9.1f} {c(rf) / c(pf):7.2f} "
      f"{c(rb) / c(pb):7.2f} {first:9.1f} {fmt(rmem):>9} {fmt(pmem):>9}")
k = (rf or {}).get("kernels_total")
if k:
    print(f"          rho f32: {k['compiled']} kernels compiled, {k['autotuned']} shapes autotuned "
          f"({(rf.get('kernels_first_step') or {}).get('compiled', '?')} in the first step)")
PY
  for f in "$out"/rho_err_*.txt "$out/torch_err.txt"; do
    [ -s "$f" ] && grep -iE "error|panic" "$f" | head -3
  done
done
echo "(clips/s, steady state; f32_x, bf16_x: rho / PyTorch; rho_1st_s: rho's first f32 step, compilation and autotuning included;"
echo " rho peak: whole-device memory.used sampled by nvidia-smi, or the process's RSS on the CPU; PyTorch: max_memory_allocated or RSS)"
