#!/usr/bin/env bash
# Time the README's commands on a fresh clone, set-up included: `make test` (and, with
# --run, `make run SMOKE=1`). Prints the wall time of each and the smoke-run summary.
# Usage: bash benchmarks/fresh_clone.sh [--run]   (uses ../shared/data as mirror when present)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone --quiet "$repo" "$work/mae-nb"
cd "$work/mae-nb"
if [ -d "$repo/../shared/data" ] && [ -z "${MAE_NB_DATA_MIRRORS:-}" ]; then
    export MAE_NB_DATA_MIRRORS="$(cd "$repo/../shared/data" && pwd)"
fi
export MAE_NB_CACHE="$work/cache"
start=$(date +%s)
make test > "$work/test.log" 2>&1 || { tail -40 "$work/test.log"; echo "make test FAILED"; exit 1; }
end=$(date +%s)
tail -3 "$work/test.log"
echo "make test from a fresh clone (set-up included): $((end - start)) s"
if [ "${1:-}" = "--run" ]; then
    start=$(date +%s)
    make run SMOKE=1 > "$work/run.log" 2>&1 || { tail -40 "$work/run.log"; echo "make run FAILED"; exit 1; }
    end=$(date +%s)
    cat build/summary.md
    echo "make run SMOKE=1 (venv reused): $((end - start)) s"
fi
