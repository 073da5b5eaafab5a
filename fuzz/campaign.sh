#!/usr/bin/env bash
# Runs every fuzz target under libFuzzer until it has executed RUNS inputs or spent SECS
# seconds (issue 9 asks for 10 million executions or 20 minutes), JOBS targets at a time,
# each continuing the corpus in fuzz/corpus/<target>/, and prints a Markdown table of
# executions, coverage (cov: edges, ft: features), time and findings. Crashes land in
# fuzz/artifacts/<target>/; copy each to fuzz/regressions/<target>/ with its fix.
#
#   bash fuzz/campaign.sh [--runs N] [--secs S] [--jobs J] [TARGET...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); stable Rust, no sanitizer (fuzz/README.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=10000000 secs=1200 jobs=2 targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=${2:?}; shift 2 ;;
    --secs) secs=${2:?}; shift 2 ;;
    --jobs) jobs=${2:?}; shift 2 ;;
    -*) sed -n '2,10s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
fuzz=(cargo fuzz)
build=(--sanitizer none --features libfuzzer -a --target-dir fuzz/target)
"${fuzz[@]}" build "${build[@]}"
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <("${fuzz[@]}" list)
cargo run --quiet -p ringvisor-fuzz --example write_seeds
logs=fuzz/target/campaign
mkdir -p "$logs"
run_one() {
  local t=$1 start
  start=$(date +%s)
  mkdir -p "fuzz/artifacts/$t"
  nice -n 10 "fuzz/target/x86_64-unknown-linux-gnu/release/$t" "fuzz/corpus/$t" \
    -artifact_prefix="fuzz/artifacts/$t/" -runs="$runs" -max_total_time="$secs" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$logs/$t.log" 2>&1
  echo "$? $(($(date +%s) - start))" >"$logs/$t.status"
}
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
  run_one "$t" &
done
wait
echo "| target | executions | cov | ft | seconds | corpus | findings |"
echo "|---|---|---|---|---|---|---|"
status=0
for t in "${targets[@]}"; do
  read -r rc took <"$logs/$t.status"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -n 1)
  last=$(grep -E '^#[0-9]+' "$logs/$t.log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corpus=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
  found=$(find "fuzz/artifacts/$t" -type f | wc -l)
  [ "$rc" -eq 0 ] && [ "$found" -eq 0 ] || status=1
  echo "| $t | ${execs:-?} | ${cov:-?} | ${ft:-?} | $took | ${corpus:-?} | $([ "$found" -eq 0 ] && echo none || echo "$found in fuzz/artifacts/$t (exit $rc)") |"
done
exit "$status"
