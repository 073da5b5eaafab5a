#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this): formatting, lints, unit tests,
# KVM API smoke tests and the nested-lab boots (tests/lab). As root it first sets up the
# lab (tests/lab/lab.sh deps: host tools from Debian, kernels and QEMU unpacked into
# target/lab, nothing in /boot); without it the lab tests skip outside CI and fail in it.
# Every lab run is written to a ledger; the summary at the end gives its losses with their
# evidence, and fails the run when the lab lost more than a quarter of them. A test that
# cannot run here (no root, no /dev/kvm, ...) says so through ringvisor-test-support's
# skip(), which fails it in CI and otherwise adds it to the run's skip log: the run ends
# with that list and a closing line of counts.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
# Toolchain, root, io_uring, /dev/kvm: one line each if missing, before anything installs.
bash tests/preflight.sh tests || exit 2

if [ "$(id -u)" -eq 0 ]; then
  bash tests/lab/lab.sh deps
else
  echo "tests: not root, not setting up the lab (tests/lab/lab.sh deps)" >&2
fi
mkdir -p target/lab
RINGVISOR_LAB_LEDGER=$REPO/target/lab/ledger-$(date -u +%Y%m%dT%H%M%S)
export RINGVISOR_LAB_LEDGER
: >"$RINGVISOR_LAB_LEDGER"
RINGVISOR_SKIP_LOG=${RINGVISOR_LAB_LEDGER/ledger-/skipped-}
export RINGVISOR_SKIP_LOG
: >"$RINGVISOR_SKIP_LOG"
test_log=${RINGVISOR_LAB_LEDGER/ledger-/cargo-test-}
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# No dependency declared and unused (cargo-machete, from the registry, pinned).
command -v cargo-machete >/dev/null || cargo install --locked --quiet cargo-machete --version 0.9.2
cargo machete
# Includes fuzz/tests/smoke.rs (fuzz/ is a workspace member): every fuzz target's short smoke run.
status=0
cargo test --workspace --no-fail-fast 2>&1 | tee "$test_log" || status=$?
echo "--- the nested lab in this run ($RINGVISOR_LAB_LEDGER) ---"
lab_summary=$(bash tests/lab/lab.sh ledger "$RINGVISOR_LAB_LEDGER") || status=1
echo "$lab_summary"
skipped=$(grep -c . "$RINGVISOR_SKIP_LOG" || true)
echo "--- tests that could not run here: $skipped ($RINGVISOR_SKIP_LOG) ---"
sed 's/^SKIPPED: /  /' "$RINGVISOR_SKIP_LOG"
# libtest's "test result: ok. 3 passed; 0 failed; 2 ignored; ..." lines, one per test binary
# (the ignored ones are tests/seccomp.rs's child processes, run by their parent tests).
counts=$(awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
  END { printf "%d passed (%d of them skipped, listed above), %d failed, %d ignored", passed, skips, failed, ignored }' \
  skips="$skipped" "$test_log")
echo "tests: $counts; lab: $(echo "$lab_summary" | head -n 1)"
# Under sudo, the build and the lab cache go back to the user who ran it.
if [ "$(id -u)" -eq 0 ] && [ -n "${SUDO_UID:-}" ] && [ "$SUDO_UID" != 0 ]; then
  chown -R "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$REPO/target" 2>/dev/null || true
fi
exit "$status"
