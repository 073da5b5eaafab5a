#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this): formatting, lints, unit tests,
# KVM API smoke tests and the nested-lab boots (tests/lab). As root it first sets up the
# lab (tests/lab/lab.sh deps: host tools from Debian, kernels and QEMU unpacked into
# target/lab, nothing in /boot); without it the lab tests skip outside CI and fail in it.
# Every lab run is written to a ledger; the summary at the end gives its losses with their
# evidence, and fails the run when the lab lost more than a quarter of them.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

if [ "$(id -u)" -eq 0 ]; then
  bash tests/lab/lab.sh deps
else
  echo "tests: not root, not setting up the lab (tests/lab/lab.sh deps)" >&2
fi
mkdir -p target/lab
RINGVISOR_LAB_LEDGER=$REPO/target/lab/ledger-$(date -u +%Y%m%dT%H%M%S)
export RINGVISOR_LAB_LEDGER
: >"$RINGVISOR_LAB_LEDGER"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# Includes fuzz/tests/smoke.rs (fuzz/ is a workspace member): every fuzz target's short smoke run.
status=0
cargo test --workspace || status=$?
echo "--- the nested lab in this run ($RINGVISOR_LAB_LEDGER) ---"
bash tests/lab/lab.sh ledger "$RINGVISOR_LAB_LEDGER" || status=1
exit "$status"
