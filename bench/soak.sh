#!/usr/bin/env bash
# The soak: one stock Debian L2 guest under ringvisor (seccomp filters enforced) in the
# nested lab, for SECS (default 1200: 20 minutes), writing with CRC32C verification on a
# virtio-blk and a virtio-scsi disk while TCP runs both ways over virtio-net and a ping
# goes every second (tests/lab/scenarios/soak.sh, tests/lab/l2-tests/soak.sh).
#
#   bash bench/soak.sh [--secs SECS]      (root: the lab installs Debian packages)
#   bash bench/soak.sh --summarize RUN.LOG [--secs SECS]   (the verdict of a finished run)
#
# Passes when both fio jobs end with no error, iperf3 and ping complete, the VMM exits 0,
# and ringvisor's RSS without guest RAM after the first minute stays within 5% (or 8 MiB)
# of its first sample there. Writes target/bench/soak/{run.log,summary.md}.
set -euo pipefail
secs=1200
args=()
from_log=""
while [ $# -gt 0 ]; do
  case $1 in
    --secs) secs=${2:?--secs needs seconds}; shift 2 ;;
    --summarize) from_log=${2:?--summarize needs a run.log}; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
case $secs in '' | *[!0-9]* | 0) echo "soak: --secs wants a positive count" >&2; exit 2 ;; esac

# summarize LOG STATUS: the verdict of a run from its console log and lab.sh's exit status.
summarize() {
  tr -d '\r' <"$1" | awk -v secs="$secs" -v status="$2" '
  /^L1: soak rss t=/ {
    # vmm_kb: the RSS without guest RAM, which grows as the guest touches new pages.
    split($4, t, "="); split($7, k, "="); split($5, all, "=")
    if (t[2] >= 60) { if (base == "") base = k[2]; if (k[2] > peak) peak = k[2]; last = k[2] }
    samples = samples " " k[2]; totals = totals " " all[2]
  }
  # Only the result lines: each job also prints "L2: soak NAME done rc=N" as it ends.
  /^L2: soak fio [a-z]* exit=/ { fio[$4] = $0; if ($5 != "exit=0" || $6 != "error=0") bad = 1 }
  /^L2: soak net exit=/ { net = $0; if ($4 != "exit=0") bad = 1 }
  /^L2: soak ping sent=/ { ping = $0; split($4, s, "="); split($5, r, "="); if (r[2] + 0 < 1) bad = 1 }
  /^L1: soak vmm exit=/ { vmm = $0; if ($4 != "exit=0") bad = 1 }
  END {
    growth = (base == "") ? 0 : peak - base
    flat = (base != "") && (growth <= base * 0.05 || growth <= 8192)
    printf "# Soak, %d s\n\n", secs
    printf "- %s\n- %s\n- %s\n- %s\n- %s\n", fio["blk"], fio["scsi"], net, ping, vmm
    printf "- RSS without guest RAM (KiB, every 30 s):%s\n", samples
    printf "- RSS with guest RAM (KiB):%s\n", totals
    printf "- RSS without guest RAM from the first minute on: first %s, peak %s, growth %d KiB (%s)\n",
      base, peak, growth, flat ? "flat" : "NOT flat"
    ok = !bad && flat && status == 0 && fio["blk"] != "" && fio["scsi"] != "" && net != "" && ping != ""
    printf "- verdict: %s\n", ok ? "PASS" : "FAIL"
    exit ok ? 0 : 1
  }'
}
if [ -n "$from_log" ]; then
  # A finished run's lab.sh status is in its log: a loss or an error line, or neither.
  status=0
  grep -q '^lab: run: lost to the lab' "$from_log" && status=75
  grep -q '^lab: error' "$from_log" && status=1
  summarize "$from_log" "$status"
  exit
fi
. "$(dirname "${BASH_SOURCE[0]}")/lab-common.sh"
lab_bench_setup soak 8,8 ${args[@]+"${args[@]}"}
env_file=$OUT/soak.env
echo "SOAK_SECS=$secs" >"$env_file"
log=$OUT/run.log
# A run the lab lost with evidence (tests/lab/lab.sh exits 75: a fault in L1's kernel log
# or an abort of L1's QEMU) says nothing about ringvisor and is made again, up to
# SOAK_ATTEMPTS (3) times; the logs of lost runs stay as run.log.lost-N. Any other failure,
# an L2 fault or a hang included, is ringvisor's and ends the soak.
# The timeout allows twice the soak: on the lab's one-vCPU L1 the guest's jobs end well
# after SECS of wall time (a 1200 s soak was cut off at 1600 s with none of them done).
attempts=${SOAK_ATTEMPTS:-3}
for attempt in $(seq 1 "$attempts"); do
  status=0
  bash "$REPO/tests/lab/lab.sh" run --scenario "$REPO/tests/lab/scenarios/soak.sh" \
    --vmm "$VMM" --timeout $((secs * 2 + 400)) --extra "$env_file:/etc/lab/soak.env" \
    >"$log" 2>&1 || status=$?
  [ "$status" -eq 75 ] || break
  echo "soak: RETRY: the lab lost attempt $attempt: $(sed -n 's/^lab: run: lost to the lab: //p' "$log")" >&2
  [ "$attempt" -lt "$attempts" ] || break
  mv "$log" "$log.lost-$attempt"
done
summarize "$log" "$status" | tee "$OUT/summary.md"
