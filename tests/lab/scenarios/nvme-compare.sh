#!/bin/sh
# L1 scenario for bench/nvme-compare.sh (run with lab.sh --nvme 256 and devpath-blk as
# /usr/bin/devpath-blk): the device path (synthetic virtio-blk driver -> reactor ->
# io_uring) on L1's emulated NVMe namespace, through its generic device /dev/ng0n1 (NVMe
# passthrough) and through its block device /dev/nvme0n1 (O_DIRECT reads through the block
# layer), each against fio on the same device in the same invocation (io_uring_cmd on
# ng0n1, io_uring on nvme0n1), and on ng0n1 again with the rig's RAM registered (ng-fixed).
# Interleaved in PAIRS rounds (ng ng-fixed blk, ng ng-fixed blk, ...) in this one L1.
# /etc/lab/compare.env may set PAIRS (5), JOBS and SECONDS_PER_SIDE (per side and job, 3).
# Each round prints "L1: begin vmm=NAME pair=N" and the rig's "devpath-sample" lines.
PAIRS=5
JOBS=randread-4k-qd1,randread-4k-qd32
SECONDS_PER_SIDE=3
[ -f /etc/lab/compare.env ] && . /etc/lab/compare.env
for i in $(seq 1 50); do
  [ -c /dev/ng0n1 ] && [ -b /dev/nvme0n1 ] && break
  sleep 0.2
done
# Reads of never-written blocks cost the emulated controller nothing: fill it first.
fio --name=fill --filename=/dev/nvme0n1 --ioengine=psync --direct=1 --rw=write --bs=1M \
  --buffer_pattern=0x5a5aa5a5 --output=/tmp/fill.out >/dev/null 2>&1
echo "L1: nvme fill exit=$?"
pair=1
while [ "$pair" -le "$PAIRS" ]; do
  for target in ng ng-fixed blk; do
    # ng-fixed: passthrough with the rig's RAM prefaulted, so registered: each command
    # names its buffer by index (IORING_URING_CMD_FIXED); fio already ran on ng.
    extra=""
    case $target in
      ng) dev=/dev/ng0n1 ;;
      ng-fixed) dev=/dev/ng0n1 extra="--prefault --no-fio" ;;
      blk) dev=/dev/nvme0n1 ;;
    esac
    echo "L1: begin vmm=rv-$target pair=$pair"
    # shellcheck disable=SC2086 # the extra options are words
    devpath-blk --file "$dev" --jobs "$JOBS" --reactors 1 --seconds "$SECONDS_PER_SIDE" \
      --warmup 0.5 --sample-label "$target" $extra --out /tmp/devpath >/tmp/devpath.out 2>/tmp/devpath.err
    status=$?
    sed -n "s/^devpath-sample /L1: sample pair=$pair /p" /tmp/devpath.out
    [ $status -eq 0 ] || { echo "L1: devpath $target exit=$status"; tail -n 5 /tmp/devpath.err; }
  done
  pair=$((pair + 1))
done
echo "L1: nvme-compare done"
