#!/usr/bin/env bash
# Long runs of quire's property-based fuzz targets (proptest, stable Rust). `cargo test` runs each
# target briefly; this runs them with many more cases, then the timing target (rendering grows
# linearly with the note), and prints what ran and what was found.
#
#   scripts/fuzz.sh                 every target, CASES cases each (default 100000; the Git-backed
#                                   target runs CASES/200, since each case is a real repository)
#   scripts/fuzz.sh path            only targets whose name contains `path`
#
# A failure is shrunk to a minimal input and kept in proptest-regressions/ (commit it: every later
# run, `cargo test` included, replays it first). Nothing here asserts on time except the linear
# check, which is never part of `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${CASES:-100000}
filter=${1:-fuzz_}
cargo build --release --tests --locked --quiet
status=0
run() {
  local name=$1 n=$2
  local t0 t1
  t0=$(date +%s.%N)
  if PROPTEST_CASES=$n cargo test --release --locked --quiet --lib -- --exact "$name" >"/tmp/quire-fuzz.$$" 2>&1; then
    t1=$(date +%s.%N)
    printf '%-72s %9s cases  %7.1f s  ok\n' "$name" "$n" "$(echo "$t1 - $t0" | bc)"
  else
    status=1
    printf '%-72s %9s cases  FAILED\n' "$name" "$n"
    grep -E "minimal failing input|Test failed" -A8 "/tmp/quire-fuzz.$$" || tail -20 "/tmp/quire-fuzz.$$"
  fi
  rm -f "/tmp/quire-fuzz.$$"
}
targets=$(cargo test --release --locked --quiet --lib -- --list 2>/dev/null | sed -n 's/: test$//p' | grep 'fuzz_' | grep -v 'fuzz_rendering_is_linear' | grep -- "$filter" || true)
for t in $targets; do
  case $t in
    *fuzz_a_refused_bundle_changes_nothing) run "$t" $((cases / 200 > 0 ? cases / 200 : 1)) ;;
    *) run "$t" "$cases" ;;
  esac
done
# The timing target: ignored by `cargo test`, run here with fewer, larger cases.
linear=$(cargo test --release --locked --quiet --lib -- --list --ignored 2>/dev/null | sed -n 's/: test$//p' | grep 'fuzz_rendering_is_linear' | grep -- "$filter" || true)
for t in $linear; do
  if PROPTEST_CASES=${LINEAR_CASES:-300} cargo test --release --locked --quiet --lib -- --exact "$t" --ignored --nocapture 2>&1 | grep -E "worst growth|panicked|took"; then :; fi
done
regressions=$(find proptest-regressions -name '*.txt' -exec grep -h '^cc ' {} + 2>/dev/null | wc -l)
echo "kept failing inputs (proptest-regressions/): $regressions"
exit $status
