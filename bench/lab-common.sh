# Sourced by the nested-lab benchmarks (boot-compare.sh, fio-compare.sh, net-compare.sh,
# soak.sh). A comparison runs in ONE L1: the scenario interleaves the VMMs in rounds
# (A B A B ...), and lab-compare turns the rounds into medians, the ratio of medians and
# its 95 % bootstrap interval. Results of different L1s are never pooled.
#
# lab_bench_setup NAME USAGE_LINES "$@": parses --pairs N (5) and --vmms "A B ..." into
# $OUT/compare.env (PAIRS=, VMMS=) for the scenario, --l1-cpus N (the lab's default, 1)
# into $L1_CPUS, sets up the lab, builds ringvisor and
# lab-compare (release) and sets $REPO, $OUT (target/bench/NAME/DATE), $VMM, $LAB_COMPARE,
# $BUILT_FROM (the commit built, and whether the tree had uncommitted changes).
lab_bench_setup() {
  local name=$1 usage_lines=$2 script=${BASH_SOURCE[1]} pairs=5 vmms=""
  L1_CPUS=${RINGVISOR_LAB_L1_CPUS:-1}
  shift 2
  REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  OUT=$REPO/target/bench/$name/$(date -u +%Y%m%dT%H%M%S)
  VMM=$REPO/target/release/ringvisor
  LAB_COMPARE=$REPO/target/release/lab-compare
  while [ $# -gt 0 ]; do
    case $1 in
      --pairs) pairs=${2:?--pairs needs a count}; shift 2 ;;
      --vmms) vmms=${2:?--vmms needs a list}; shift 2 ;;
      --l1-cpus) L1_CPUS=${2:?--l1-cpus needs a count}; shift 2 ;;
      *) sed -n "${usage_lines}s/^# \{0,1\}//p" "$script" >&2; exit 2 ;;
    esac
  done
  case $pairs in '' | *[!0-9]* | 0) echo "$name: --pairs wants a positive count" >&2; exit 2 ;; esac
  bash "$REPO/tests/lab/lab.sh" deps
  # The commit the binaries are built from, taken now: the tree may move on during a run.
  BUILT_FROM="$(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- . 2>/dev/null || echo ' with uncommitted changes')"
  cargo build --release --manifest-path "$REPO/Cargo.toml" --bin ringvisor
  cargo build --release --manifest-path "$REPO/Cargo.toml" -p ringvisor-bench --bin lab-compare
  mkdir -p "$OUT"
  {
    echo "PAIRS=$pairs"
    [ -z "$vmms" ] || echo "VMMS=\"$vmms\""
  } >"$OUT/compare.env"
}

# lab_bench_run SCENARIO TIMEOUT: one L1 with the scenario, its console in $OUT/run.log;
# LAB_RUN_ARGS (an array, if set) go to `lab.sh run` as well.
# A lost or failed L1 still leaves the rounds it finished; the run's verdict is printed
# and kept in $LAB_STATUS (0, 75 for a run the lab lost with evidence, else 1).
lab_bench_run() {
  LAB_STATUS=0
  bash "$REPO/tests/lab/lab.sh" run --scenario "$REPO/tests/lab/scenarios/$1" \
    --vmm "$VMM" --timeout "$2" --extra "$OUT/compare.env:/etc/lab/compare.env" --l1-cpus "$L1_CPUS" \
    ${LAB_RUN_ARGS[@]+"${LAB_RUN_ARGS[@]}"} >"$OUT/run.log" 2>&1 || LAB_STATUS=$?
  grep -E '^lab: (run: (lost|L1 took)|error)' "$OUT/run.log" >&2 || true
  {
    echo "- commit $BUILT_FROM, $(date -u +%Y-%m-%d), L1 with $L1_CPUS vCPU(s): $(bash "$REPO/tests/lab/lab.sh" kernels | tr '\n' ' ')"
    case $LAB_STATUS in
      0) echo "- the L1 run completed" ;;
      75) echo "- the lab lost the L1 run: $(sed -n 's/^lab: run: lost to the lab: //p' "$OUT/run.log"); the rounds before the loss are below" ;;
      *) echo "- the L1 run FAILED ($(sed -n 's/^lab: error: run: //p' "$OUT/run.log")); the rounds before the failure are below" ;;
    esac
  } >"$OUT/header.md"
}

# lab_bench_outcomes: per VMM, how many of its guest runs reached "L2: done" and how many
# ended early (a guest triple fault, a crash, a lost L1): L2 faults under the reference in
# the same L1 are what tells a lab fault from ringvisor's.
lab_bench_outcomes() {
  awk '
    function close_run() { if (vmm != "") { runs[vmm]++; if (done) ok[vmm]++ } }
    /^L1: begin vmm=/ { close_run(); split($3, a, "="); vmm = a[2]; done = 0; order[vmm] = 1 }
    /^L2: done/ { done = 1 }
    END {
      close_run()
      for (v in order) printf "- %s: %d guest runs, %d completed, %d ended early\n", v, runs[v], ok[v], runs[v] - ok[v]
    }' "$OUT/run.log" | sort
}

# lab_bench_compare LOWER: $OUT/samples.txt ("PAIR VMM METRIC VALUE") into
# $OUT/summary.{md,json}; LOWER lists the metrics (or their last /part) where lower is better.
lab_bench_compare() {
  {
    cat "$OUT/header.md"
    lab_bench_outcomes
    echo
    "$LAB_COMPARE" --a ringvisor --lower "$1" --json "$OUT/summary.json" <"$OUT/samples.txt"
  } >"$OUT/summary.md"
  cat "$OUT/summary.md"
}
