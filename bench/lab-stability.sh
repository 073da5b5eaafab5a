#!/usr/bin/env bash
# How often does the nested lab lose a run, for each way of running L1? Runs one of the
# scenarios tests/lab_boot.rs checks (ringvisor-boot by default, or ringvisor-knobs)
# N times under each configuration, interleaved (A B A B ...) so that all see the same load
# on this machine, and tabulates the outcomes from the lab's ledger: ok, lost with evidence
# (L1 kernel fault, L1 triple fault, L1 QEMU abort), L2 triple fault, L1 timed out or
# vanished, other failure. A configuration is L1:TCG[:KVM_AMD[:CPUS]], L1 old (QEMU 7.2,
# kernel 6.1) or new (QEMU 10, kernel 6.12), TCG multi (a host thread per L1 vCPU) or
# single, KVM_AMD parameters for L1's kvm_amd joined by '+' (e.g. new:multi:npt=0+avic=0,
# '-' for none), CPUS L1's vCPU count (1, the lab's default).
#
#   bash bench/lab-stability.sh [--runs N] [--configs new:multi:-:1,new:multi:-:2]
#                               [--scenario ringvisor-boot|ringvisor-knobs] [--out DIR]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=20 configs=new:multi:-:1,new:multi:-:2 out="" scenario=ringvisor-boot
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=${2:?}; shift 2 ;;
    --configs) configs=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --scenario) scenario=${2:?}; shift 2 ;;
    *) sed -n '2,14s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
  esac
done
case $runs in '' | *[!0-9]* | 0) echo "lab-stability: --runs wants a positive count" >&2; exit 2 ;; esac
for c in ${configs//,/ }; do
  case $c in old:single* | old:multi* | new:single* | new:multi*) ;;
    *) echo "lab-stability: a configuration is old|new:single|multi[:KVM_AMD], not '$c'" >&2; exit 2 ;;
  esac
done
# l1 CONFIG, tcg CONFIG, kvm_amd CONFIG: its parts ('-' for no kvm_amd parameters).
l1() { cut -d: -f1 <<<"$1"; }
tcg() { cut -d: -f2 <<<"$1"; }
kvm_amd() { local p; p=$(cut -s -d: -f3 <<<"$1"); printf '%s\n' "${p:--}"; }
cpus() { local p; p=$(cut -s -d: -f4 <<<"$1"); printf '%s\n' "${p:-1}"; }
out=${out:-$REPO/target/bench/lab-stability-$(date -u +%Y%m%dT%H%M%S)}
mkdir -p "$out"
cargo build --release --quiet --manifest-path "$REPO/Cargo.toml" --bin ringvisor
ledger=$out/ledger
: >"$ledger"
[ -f "$REPO/tests/lab/scenarios/$scenario.sh" ] || { echo "lab-stability: no scenario $scenario" >&2; exit 2; }
echo "lab-stability: $runs runs of $scenario under each of $configs, commit $(git -C "$REPO" rev-parse --short HEAD), logs in $out" >&2
for i in $(seq 1 "$runs"); do
  for c in ${configs//,/ }; do
    params=$(kvm_amd "$c")
    [ "$params" != - ] || params=""
    RINGVISOR_LAB_L1=$(l1 "$c") RINGVISOR_LAB_TCG_THREAD=$(tcg "$c") RINGVISOR_LAB_KVM_AMD=${params//+/ } \
      RINGVISOR_LAB_L1_CPUS=$(cpus "$c") \
      RINGVISOR_LAB_LEDGER=$ledger \
      bash "$REPO/tests/lab/lab.sh" run --scenario "$REPO/tests/lab/scenarios/$scenario.sh" \
      --vmm "$REPO/target/release/ringvisor" --timeout 400 >"$out/run-$i-${c//:/-}.log" 2>&1 || true
    echo "lab-stability: run $i $c: $(tail -n 1 "$ledger" | cut -d' ' -f2-)" >&2
  done
done
{
  printf '| L1 | TCG | kvm_amd | L1 vCPUs | runs | ok | lost with evidence | L2 triple fault | L1 timed out / vanished | other failure | not ok |\n'
  printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
  for c in ${configs//,/ }; do
    awk -v l1="L1=$(l1 "$c")" -v tcg="tcg=$(tcg "$c")" -v kvm="kvm_amd=$(kvm_amd "$c" | tr + ,)" \
      -v cpus="cpus=$(cpus "$c")" '$3 == l1 && $4 == tcg && $5 == kvm && $6 == cpus {
        n++
        if ($2 == "ok") ok++
        else if ($2 == "lost") lost++
        else if ($0 ~ /triple fault/) tf++
        else if ($0 ~ /timed out|never printed/) hang++
        else other++
      }
      END {
        printf "| %s | %s | %s | %s | %d | %d | %d | %d | %d | %d | %d %% |\n", substr(l1, 4), substr(tcg, 5), substr(kvm, 9), substr(cpus, 6), n, ok, lost, tf, hang, other, n ? (n - ok) * 100 / n : 0
      }' "$ledger"
  done
} | tee "$out/summary.md"
