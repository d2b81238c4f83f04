#!/usr/bin/env bash
# Runs the fuzz targets with seed corpora made from the fixtures (fuzz/seeds.py), each for a
# bounded time, and prints per target: executions, coverage (libFuzzer's `cov`, edges) and
# features (`ft`). Crashes are kept in fuzz/artifacts/TARGET/ and fail the run.
#
# Usage: fuzz/run.sh [--seconds N] [TARGET ...]     (default: 60 s each, every target)
#   CI runs `fuzz/run.sh --seconds 5`; a longer local run: `fuzz/run.sh --seconds 600`.
# The corpus grows in fuzz/corpus/TARGET/ (not committed); the build goes to
# $CEDARGATE_TOOLS/fuzz-target so that every checkout on the machine shares it.
set -euo pipefail
cd "$(dirname "$0")"
seconds=60
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(bearer signed_claims event arn published policy_tests jwks iam)

# libFuzzer needs nightly's `-Z` flags: the nightly toolchain where there is one, else the
# stable one with RUSTC_BOOTSTRAP (no toolchain can be downloaded on these machines).
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  cargo_fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  cargo_fuzz=(cargo fuzz)
fi
tools=${CEDARGATE_TOOLS:-$HOME/.cache/cedargate-tools}
# Optimized, with debug assertions and overflow checks; no sanitizer: cedargate forbids
# `unsafe`, and an address sanitizer would only slow the search down.
flags=(-O -a -s none --target-dir "$tools/fuzz-target")

"${cargo_fuzz[@]}" build "${flags[@]}"
python3 seeds.py corpus >/dev/null

failed=0
printf '\n%-14s %12s %8s %8s %7s  %s\n' target executions cov ft corpus result
for t in "${targets[@]}"; do
  mkdir -p "artifacts/$t"
  log=$(mktemp)
  # Inputs of a published bundle or a policy-test file are a few kilobytes and more.
  set +e
  "${cargo_fuzz[@]}" run "${flags[@]}" "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}' | tail -1)
  done_line=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1)
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$done_line")
  ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$done_line")
  corp=$(sed -n 's/.*corp: \([0-9]*\).*/\1/p' <<<"$done_line")
  if [ "$rc" = 0 ]; then result=ok; else result="FAILED (log: $log)"; failed=1; fi
  printf '%-14s %12s %8s %8s %7s  %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
  if [ "$rc" != 0 ]; then
    grep -E 'panicked|ERROR|SUMMARY|artifact' "$log" | head -20 >&2
  else
    rm -f "$log"
  fi
done
exit $failed
