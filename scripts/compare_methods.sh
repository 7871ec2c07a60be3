#!/usr/bin/env bash
# rho against an independent PyTorch implementation, trained on the same data and scored by the
# same evaluation (docs/method.md, "Parity with PyTorch"): for every method and seed, `rho
# pretrain` and scripts/torch_reference_pretrain.py run the demo's recipe
# (configs/demo/METHOD.toml) on one `rho synth` dataset, then `rho eval` scores both backbones
# with configs/eval/demo_linear_cpu.toml: linear top-1 as the mean over probe seeds 0-2, and kNN.
#
#   scripts/compare_methods.sh [OUT] [--methods "byol moco simclr swav"] [--seeds "0 1 2"]
#                              [--set key=value ...]   (recipe overrides, both sides)
#
# Writes OUT/table.md (method × implementation, mean ± std over seeds) and OUT/results.jsonl.
# Finished runs are kept, so an interrupted comparison continues where it stopped. About
# 12 minutes of a 2-core CPU per method and seed.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=runs/compare_methods
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then OUT=$1; shift; fi
METHODS="byol moco simclr swav"
SEEDS="0 1 2"
SETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --methods) METHODS=$2; shift 2 ;;
    --seeds) SEEDS=$2; shift 2 ;;
    --set) SETS+=("$2"); shift 2 ;;
    *) echo "compare_methods.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
scripts/setup.sh --python
cargo build --release --locked -p rho-cli
RHO=$(scripts/rho_binary.sh)
PY=.venv/bin/python
mkdir -p "$OUT"
DATA=$OUT/data
[ -f "$DATA/test.txt" ] || "$RHO" synth --out "$DATA" > /dev/null

rho_sets=(--set "data.index=\"$DATA/train.txt\"" --set "data.prefix=\"$DATA\"")
torch_sets=()
for s in "${SETS[@]}"; do rho_sets+=(--set "$s"); torch_sets+=(--set "$s"); done
EVAL=(--config configs/eval/demo_linear_cpu.toml
      --set "train.index=\"$DATA/train.txt\"" --set "train.prefix=\"$DATA\""
      --set "test.index=\"$DATA/test.txt\"" --set "test.prefix=\"$DATA\"")

# score RUN: linear (mean of probe seeds 0-2) and kNN of RUN/backbone.safetensors → RUN/scores.json
score() {
  local run=$1 lin=()
  : > "$run/eval.log"
  for p in 0 1 2; do
    "$RHO" eval linear "${EVAL[@]}" --weights "$run/backbone.safetensors" --set seed=$p \
      --out "$run/eval/linear_$p" --cache "$run/eval/cache" >> "$run/eval.log" 2>&1
    lin+=("$run/eval/linear_$p/results.json")
  done
  "$RHO" eval knn "${EVAL[@]}" --weights "$run/backbone.safetensors" --out "$run/eval/knn" \
    --cache "$run/eval/cache" >> "$run/eval.log" 2>&1
  python3 - "$run" "${lin[@]}" <<'PY'
import json, statistics, sys
run, lin = sys.argv[1], [json.load(open(p))["top1"] for p in sys.argv[2:]]
knn = json.load(open(f"{run}/eval/knn/results.json"))["top1"]
json.dump({"linear": statistics.mean(lin), "linear_probes": lin, "knn": knn}, open(f"{run}/scores.json", "w"))
PY
}

# stopped RUN: the pre-training stopped (a collapse or divergence guard, or an error; see RUN.log)
stopped() {
  mkdir -p "$1"
  echo '{"linear": null, "linear_probes": [], "knn": null, "stopped": true}' > "$1/scores.json"
}

for m in $METHODS; do
  for seed in $SEEDS; do
    run=$OUT/rho_${m}_s$seed
    if [ ! -f "$run/scores.json" ]; then
      if "$RHO" pretrain --config "configs/demo/$m.toml" "${rho_sets[@]}" --set "output=\"$run\"" \
        --set seed=$seed > "$run.log" 2>&1; then
        score "$run"
      else stopped "$run"; fi
    fi
    run=$OUT/torch_${m}_s$seed
    if [ ! -f "$run/scores.json" ]; then
      if $PY scripts/torch_reference_pretrain.py --data "$DATA" --recipe "configs/demo/$m.toml" \
        "${torch_sets[@]}" --seed $seed --out "$run" > "$run.log" 2>&1; then
        score "$run"
      else stopped "$run"; fi
    fi
    for impl in rho torch; do
      echo "{\"method\": \"$m\", \"impl\": \"$impl\", \"seed\": $seed, \"scores\": $(cat "$OUT/${impl}_${m}_s$seed/scores.json")}"
    done
  done
done | tee "$OUT/results.jsonl"

python3 - "$OUT" <<'PY'
import json, statistics, sys, pathlib
out = pathlib.Path(sys.argv[1])
rows = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines() if l.strip()]
def ms(xs):
    done = [x for x in xs if x is not None]
    stopped = f" ({len(xs) - len(done)} stopped)" if len(done) < len(xs) else ""
    if not done:
        return "stopped"
    body = f"{statistics.mean(done):.1f} ± {statistics.stdev(done):.1f}" if len(done) > 1 else f"{done[0]:.1f}"
    return body + stopped
lines = ["| method | linear, rho | linear, PyTorch | kNN, rho | kNN, PyTorch | seeds (rho / PyTorch) |",
         "|---|---|---|---|---|---|"]
for m in dict.fromkeys(r["method"] for r in rows):
    get = lambda impl, k: [r["scores"][k] for r in rows if r["method"] == m and r["impl"] == impl]
    seeds = f"{len(get('rho', 'linear'))} / {len(get('torch', 'linear'))}"
    lines.append(f"| ρ{ {'byol': 'BYOL', 'moco': 'MoCo', 'simclr': 'SimCLR', 'swav': 'SwAV'}.get(m, m) } | "
                 f"{ms(get('rho', 'linear'))} | {ms(get('torch', 'linear'))} | {ms(get('rho', 'knn'))} | "
                 f"{ms(get('torch', 'knn'))} | {seeds} |")
table = "\n".join(lines) + "\n"
(out / "table.md").write_text(table)
print(table)
PY
