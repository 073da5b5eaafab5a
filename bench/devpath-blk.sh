#!/usr/bin/env bash
# Device-path benchmark for virtio-blk on the host, no KVM: a synthetic guest driver keeps
# QD reads in flight through the real virtio-blk device, reactors and io_uring on a real
# file (O_DIRECT), then host fio runs the same job on the same file.
#
#   bash bench/devpath-blk.sh [--seconds S] [--reactors 1,2] [--jobs NAME,..] [--file PATH]
#                             [--no-fio] [--seed N]        (--help lists every option)
#
# Jobs: randread-4k-qd1, randread-4k-qd32, read-128k-qd8, each with 1 and 2 reactors.
# Prints Markdown tables and writes summary.md and results.json to target/bench/devpath-blk/.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
if ! command -v fio >/dev/null && [[ " $* " != *" --no-fio "* ]]; then
  echo "devpath-blk: fio is not installed (apt-get install fio), or pass --no-fio" >&2
  exit 2
fi
cargo build --release -p ringvisor-devpath-bench --bin devpath-blk
exec "$REPO/target/release/devpath-blk" "$@"
