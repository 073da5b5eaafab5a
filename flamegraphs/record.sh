#!/usr/bin/env bash
# Records a flamegraph of the reactors under the device-path benchmark's 4k randread QD32
# job (synthetic driver → virtio-blk → reactor → io_uring → O_DIRECT file; no KVM):
#
#   bash flamegraphs/record.sh [SECONDS]     (needs perf (linux-perf) and
#                                             inferno: cargo install inferno)
#
# Writes flamegraphs/devpath-blk-randread-4k-qd32.svg. Refresh it when the hot path changes.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-5}
for tool in perf inferno-collapse-perf inferno-flamegraph; do
  command -v "$tool" >/dev/null || { echo "record.sh: $tool is not installed" >&2; exit 2; }
done
cargo build --release --manifest-path "$REPO/Cargo.toml" -p ringvisor-devpath-bench --bin devpath-blk
data=$(mktemp)
trap 'rm -f "$data"' EXIT
perf record -F 999 -g -o "$data" -- "$REPO/target/release/devpath-blk" \
  --seconds "$seconds" --warmup 1 --reactors 1 --jobs randread-4k-qd32 --no-fio \
  --out "$REPO/target/bench/devpath-blk" >/dev/null
perf script -i "$data" 2>/dev/null | inferno-collapse-perf |
  inferno-flamegraph --title "ringvisor devpath-blk randread 4k QD32, 1 reactor" \
    >"$REPO/flamegraphs/devpath-blk-randread-4k-qd32.svg"
echo "wrote flamegraphs/devpath-blk-randread-4k-qd32.svg"
