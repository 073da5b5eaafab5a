#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this): formatting, lints, unit tests,
# KVM API smoke tests and the nested-lab boots (tests/lab). As root it first installs the
# Debian packages the lab needs; without them the lab tests skip outside CI and fail in it.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

if [ "$(id -u)" -eq 0 ]; then
  bash tests/lab/lab.sh deps
else
  echo "tests: not root, not installing the lab's Debian packages (tests/lab/lab.sh deps)" >&2
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# Includes fuzz/tests/smoke.rs (fuzz/ is a workspace member): every fuzz target's short smoke run.
cargo test --workspace
