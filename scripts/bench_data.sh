#!/usr/bin/env bash
# rho's decoder against PyAV (pytorchvideo/PySlowFast style) and decord on the same files and the
# same frames, one decoding thread each.
#   scripts/bench_data.sh [VIDEO_DIR]   (default: generates 24 Kinetics-like 10 s clips)
# Env: FRAMES, STRIDE, RHO, SHORT_SIDE, PYTHON, RHO (binary).
set -euo pipefail
cd "$(dirname "$0")/.."
RHO=${RHO:-$(scripts/rho_binary.sh)}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
FRAMES=${FRAMES:-8} STRIDE=${STRIDE:-8} RHO_CLIPS=${RHO_CLIPS:-4} SHORT_SIDE=${SHORT_SIDE:-256}
[ -x "$RHO" ] || cargo build --release -p rho-cli
dir=${1:-}
if [ -z "$dir" ]; then
  dir=$(mktemp -d)/videos
  mkdir -p "$dir"
  for i in $(seq 0 23); do
    # 10 s, 340×256, 30 fps, x264 with a 250-frame GOP and B-frames, like Kinetics downloads
    ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=s=340x256:r=30:d=10,hue=h=$((i*15))" \
      -c:v libx264 -preset veryfast -g 250 -bf 2 -pix_fmt yuv420p "$dir/v$i.mp4"
  done
fi
plan=$(mktemp)
export RAYON_NUM_THREADS=1
r=$("$RHO" data bench "$dir" --frames "$FRAMES" --stride "$STRIDE" --rho "$RHO_CLIPS" --short-side "$SHORT_SIDE" --plan-out "$plan" --json)
"$PYTHON" scripts/bench_data.py "$plan" --frames-per-clip "$FRAMES" --rho-json "$r"
