#!/usr/bin/env bash
# fio in the guest, ringvisor vs QEMU 10 at its best, interleaved in ONE nested-lab L1
# (tests/lab): the same stock Debian L2 guest, one 2-queue disk on a 256 MiB file in L1's
# tmpfs (page cache for every VMM), the jobs of tests/lab/l2-tests/fio.sh (4k randread
# QD1/QD32, 4k randwrite QD32, 128k read QD8). Rounds A B A B ...; per job the medians, the
# ratio of medians with its 95 % bootstrap interval, and ahead/level/behind.
#
#   bash bench/fio-compare.sh [--pairs N] [--l1-cpus N] [--vmms "ringvisor qemu"]     (root)
#
# --vmms may add ringvisor-poll50, ringvisor-pinned-huge, ringvisor-scsi (each compared
# with ringvisor's default). The nested lab is far too slow for absolute figures: a ratio
# inside one run is what this measures. Writes target/bench/fio-compare/DATE/.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lab-common.sh"
lab_bench_setup fio-compare 2,12 "$@"
lab_bench_run fio-compare.sh 3000
# "L1: begin vmm=X pair=N" opens a round; "L2: fio JOB iops= p50_us= p99_us= p999_us=".
awk '
  /^L1: begin vmm=/ { split($3, a, "="); vmm = a[2]; split($4, p, "="); pair = p[2] }
  /^L2: fio [^ ]+ iops=/ && vmm != "" {
    for (i = 4; i <= NF; i++) {
      split($i, kv, "=")
      if (kv[2] ~ /^[0-9.]+$/) printf "%s %s %s/%s %s\n", pair, vmm, $3, kv[1], kv[2]
    }
  }' "$OUT/run.log" >"$OUT/samples.txt"
lab_bench_compare p50_us,p99_us,p999_us
