# Sourced by the nested-lab benchmarks (boot-compare.sh, fio-compare.sh).
# lab_bench_setup NAME USAGE_LINES "$@": parses --runs N into $runs, installs the lab's
# packages, builds ringvisor (release) and sets $REPO, $OUT (target/bench/NAME) and $VMM.
lab_bench_setup() {
  local name=$1 usage_lines=$2 script=${BASH_SOURCE[1]}
  shift 2
  REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  OUT=$REPO/target/bench/$name
  VMM=$REPO/target/release/ringvisor
  runs=1
  while [ $# -gt 0 ]; do
    case $1 in
      --runs) runs=${2:?--runs needs a count}; shift 2 ;;
      *) sed -n "${usage_lines}s/^# \{0,1\}//p" "$script" >&2; exit 2 ;;
    esac
  done
  case $runs in '' | *[!0-9]* | 0) echo "$name: --runs wants a positive count" >&2; exit 2 ;; esac
  bash "$REPO/tests/lab/lab.sh" deps
  cargo build --release --manifest-path "$REPO/Cargo.toml" --bin ringvisor
  mkdir -p "$OUT"
}
