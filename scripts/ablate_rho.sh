#!/usr/bin/env bash
# The paper's central ablation in miniature (Figure 1): the demo pipeline (synthetic videos,
# pre-training, frozen linear probe and kNN) for ρ = 1, 2, 3, 4 with the same budget (the demo
# recipe's epochs) and three seeds (data, initialisation and sampling), as a table of
# mean ± std of held-out top-1. The method is the demo's default unless the extra flags name one.
#
#   scripts/ablate_rho.sh [OUT] [extra `rho demo` flags, e.g. --method byol]
#
# Writes OUT/table.md (default OUT: runs/ablate_rho). Takes about 12 demo runs of CPU time.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/ablate_rho}
shift || true
scripts/setup.sh
cargo build --release --locked -p rho-cli
RHO=$(scripts/rho_binary.sh)
mkdir -p "$OUT"
for seed in 0 1 2; do
  for rho in 1 2 3 4; do
    run="$OUT/rho${rho}_seed${seed}"
    if [ ! -f "$run/results.json" ]; then
      "$RHO" demo --out "$run" --rho "$rho" --seed "$seed" "$@" 2> "$run.log" > /dev/null
    fi
    echo "ρ=$rho seed=$seed: $(tr -d ' \n' < "$run/results.json")"
  done
done
python3 - "$OUT" <<'PY'
import json, statistics, sys, pathlib
out = pathlib.Path(sys.argv[1])
rows = ["| ρ | linear probe top-1 (learned) | kNN top-1 (learned) | linear (random init) |", "|---|---|---|---|"]
for rho in (1, 2, 3, 4):
    rs = [json.loads((out / f"rho{rho}_seed{s}" / "results.json").read_text()) for s in (0, 1, 2)]
    def ms(xs):
        return f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs):.1f}"
    rows.append(f"| {rho} | {ms([r['linear']['learned'] for r in rs])} | {ms([r['knn']['learned'] for r in rs])} | {ms([r['linear']['random'] for r in rs])} |")
table = "\n".join(rows) + "\n"
(out / "table.md").write_text(table)
print(table)
PY
