#!/usr/bin/env bash
# NVMe passthrough on the device path, interleaved in ONE nested-lab L1 (tests/lab) with an
# emulated NVMe namespace: ringvisor's virtio-blk device path on /dev/ng0n1 (NVMe commands
# through io_uring, no block layer) and on /dev/nvme0n1 (O_DIRECT through the block layer),
# each beside fio on the same device in the same invocation (io_uring_cmd on ng0n1,
# io_uring on nvme0n1), and on /dev/ng0n1 with the rig's RAM registered (rv-ng-fixed:
# commands name their buffer by index). Per job: IOPS, p50/p99, and CPU per I/O (the
# reactor thread and its io-wq for ringvisor; fio's usr+sys), medians over the rounds and
# ratios of medians with their 95 % bootstrap interval against rv-ng.
#
#   bash bench/nvme-compare.sh [--pairs N]     (root)
#
# The emulated controller (TCG) is far too slow for absolute figures: ratios inside the
# run are what this measures. Writes target/bench/nvme-compare/DATE/.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lab-common.sh"
lab_bench_setup nvme-compare 2,12 "$@"
cargo build --release --manifest-path "$REPO/Cargo.toml" -p ringvisor-devpath-bench --bin devpath-blk
LAB_RUN_ARGS=(--nvme 256 --extra "$REPO/target/release/devpath-blk:/usr/bin/devpath-blk")
lab_bench_run nvme-compare.sh 1800
# "L1: sample pair=N SIDE JOB/METRIC VALUE" -> "PAIR SIDE METRIC VALUE".
awk '/^L1: sample pair=/ { split($3, p, "="); print p[2], $4, $5, $6 }' "$OUT/run.log" >"$OUT/samples.txt"
A=rv-ng
{
  cat "$OUT/header.md"
  echo
  "$LAB_COMPARE" --a "$A" --lower p50_us,p99_us,cpu_us_per_io --json "$OUT/summary.json" <"$OUT/samples.txt"
} >"$OUT/summary.md"
cat "$OUT/summary.md"
