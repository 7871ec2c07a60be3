#!/usr/bin/env bash
# Prints where cargo puts the `rho` binary of a profile (default release): in the target folder
# cargo itself reports (CARGO_TARGET_DIR, a cargo config's build.target-dir, or target/), so the
# scripts that run the built binary find it however the user's cargo is set up.
#   RHO=$(scripts/rho_binary.sh) ; scripts/rho_binary.sh debug
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-release}
dir=$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$dir" ] || { echo "rho_binary.sh: cargo metadata did not report a target directory" >&2; exit 1; }
echo "$dir/$profile/rho"
