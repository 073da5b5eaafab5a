#!/usr/bin/env bash
# Boot-time and memory comparison: ringvisor vs QEMU-KVM booting the same stock Debian L2
# guest (same kernel, initramfs, vCPUs, memory) one after the other inside one nested-lab
# L1 (tests/lab). A ratio from one run is meaningful; absolute lab times are not.
#
#   bash bench/boot-compare.sh [--runs N]      (root: the lab installs Debian packages)
#
# Prints one Markdown table row per VMM and run and writes the console logs and the
# table to target/bench/boot-compare/.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lab-common.sh"
lab_bench_setup boot-compare 2,9 "$@"
table=$OUT/summary.md
{
  echo "| run | vmm | L2 boot-to-init (s) | VMM wall (ms) | VMM peak RSS (MiB) | exit |"
  echo "|---|---|---|---|---|---|"
} >"$table"
for run in $(seq 1 "$runs"); do
  log=$OUT/run-$run.log
  bash "$REPO/tests/lab/lab.sh" run --scenario "$REPO/tests/lab/scenarios/boot-compare.sh" \
    --vmm "$VMM" --timeout 600 >"$log"
  # "L1: begin vmm=X" opens each VMM's section; its guest's uptime line follows it.
  awk -v run="$run" '
    /^L1: begin vmm=/ { split($3, a, "="); vmm = a[2] }
    /^L2: init uptime=/ { split($3, a, "="); uptime[vmm] = a[2] }
    /^L1: vmm=/ {
      split($2, a, "="); v = a[2]; split($3, kv, "=")
      val[v, kv[1]] = kv[2]
      if (kv[1] == "exit") order[++n] = v
    }
    END {
      for (i = 1; i <= n; i++) {
        v = order[i]
        printf "| %s | %s | %s | %s | %.1f | %s |\n", run, v, uptime[v], val[v, "wall_ms"],
          val[v, "rss_peak_kb"] / 1024, val[v, "exit"]
      }
    }' "$log" >>"$table"
done
cat "$table"
