#!/usr/bin/env bash
# fio in the guest, ringvisor vs QEMU-KVM, inside one nested-lab L1 (tests/lab): the same
# stock Debian L2 guest, one 2-queue virtio-blk disk on a 256 MiB file in L1's tmpfs
# (page cache for both VMMs: 6.1's tmpfs has no O_DIRECT), the jobs of
# tests/lab/l2-tests/fio.sh (4k randread QD1/QD32, 4k randwrite QD32, 128k read QD8).
# ringvisor runs as it starts by default, with --poll-us 50, with pinned vCPUs and
# huge-page RAM, and on virtio-scsi, then QEMU-KVM with
# virtio-blk-pci, an iothread and aio=io_uring.
#
#   bash bench/fio-compare.sh [--runs N]      (root: the lab installs Debian packages)
#
# A ratio within one run is what this measures; the nested lab is far too slow and noisy
# for absolute figures. Writes target/bench/fio-compare/{run-N.log,summary.md}.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lab-common.sh"
lab_bench_setup fio-compare 2,13 "$@"
table=$OUT/summary.md
{
  echo "| run | vmm | job | IOPS | p50 µs | p99 µs | p99.9 µs |"
  echo "|---|---|---|---|---|---|---|"
} >"$table"
failed=0
for run in $(seq 1 "$runs"); do
  log=$OUT/run-$run.log
  # A run whose L1 or L2 died (the nested lab under TCG does, now and then, under both
  # VMMs) still reports the jobs that finished; the summary says which VMMs exited badly.
  bash "$REPO/tests/lab/lab.sh" run --scenario "$REPO/tests/lab/scenarios/fio-compare.sh" \
    --vmm "$VMM" --timeout 590 >"$log" 2>&1 || failed=1
  awk -v run="$run" '
    /^L1: begin vmm=/ { split($3, a, "="); vmm = a[2] }
    /^L2: fio [^ ]+ iops=/ {
      for (i = 4; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      printf "| %s | %s | %s | %s | %s | %s | %s |\n", run, vmm, $3, v["iops"],
        v["p50_us"], v["p99_us"], v["p999_us"]
    }
    /^L1: vmm=[^ ]+ exit=[1-9]/ { printf "| %s | %s | (VMM exited: %s) | | | | |\n", run, vmm, $3 }
  ' "$log" >>"$table"
done
cat "$table"
[ "$failed" -eq 0 ] || echo "fio-compare: some lab runs failed; see $OUT/run-*.log" >&2
