#!/bin/sh
# L1 scenario: NVMe passthrough (run with lab.sh --nvme 128). L1 has an emulated NVMe
# controller; the stock L2 kernel's one virtio-blk disk is its namespace, served through
# the generic device /dev/ng0n1 (io_uring driver commands, no block layer in L1). The
# guest's checks are l2-tests/nvme.sh; afterwards L1 reads what it wrote back through its
# own block device, /dev/nvme0n1. Then a character device that is no NVMe namespace must
# be refused.
. /lib/lab/measure.sh
MEMORY=${MEMORY:-384M}
for i in $(seq 1 50); do
  [ -c /dev/ng0n1 ] && [ -b /dev/nvme0n1 ] && break
  sleep 0.2
done
echo "L1: nvme devices generic=$([ -c /dev/ng0n1 ] && echo yes || echo no)" \
  "block=$([ -b /dev/nvme0n1 ] && echo yes || echo no)"
# While the guest waits after its checks: how many NVMe commands its requests became (a
# 1 MiB write is four at the 256 KiB transfer limit), and how many named their one buffer
# in registered guest RAM (prefault=on registers it; IORING_URING_CMD_FIXED).
(
  for i in $(seq 1 3000); do grep -q '^L2: nvme counters-now' /tmp/nvme.out 2>/dev/null && break; sleep 0.1; done
  ringvisor ctl --socket /tmp/nvme.sock stats >/tmp/nvme-stats.json 2>&1
  requests=0
  for key in reads writes flushes discards write_zeroes; do
    requests=$((requests + $(stat_sum /tmp/nvme-stats.json $key)))
  done
  echo "L1: nvme stats requests=$requests commands=$(stat_sum /tmp/nvme-stats.json nvme_commands)" \
    "io_errors=$(stat_sum /tmp/nvme-stats.json io_errors)" \
    "fixed_buffer_ops=$(stat_sum /tmp/nvme-stats.json fixed_buffer_ops)" >/tmp/nvme-stats.facts
) &
# Bounded: a guest whose disk stopped answering would otherwise keep L1 up until the
# lab's own timeout, with nothing printed.
timeout -s KILL 420 ringvisor --log-level info run --no-reboot --kernel /l2/vmlinuz \
  --initramfs /l2/initramfs.cpio.gz --cpus 1 --memory "$MEMORY",prefault=on --disk path=/dev/ng0n1 \
  --api-socket /tmp/nvme.sock --cmdline "console=ttyS0 reboot=k panic=-1 rv.test=nvme" </dev/null >/tmp/nvme.out 2>/tmp/nvme.err
rc=$?
grep -E '^L2: (nvme|test nvme)' /tmp/nvme.out | tr -d '\r'
echo "L1: nvme vmm exit=$rc"
cat /tmp/nvme-stats.facts 2>/dev/null
if [ $rc -ne 0 ] || ! grep -q '^L2: test nvme exit=0' /tmp/nvme.out; then
  tr -d '\r' </tmp/nvme.out | grep -v '^L2: ' | tail -n 40
  tail -n 30 /tmp/nvme.err
fi
grep -h 'made a forbidden system call' /tmp/nvme.err
echo "L1: nvme log $(grep -o 'NVMe passthrough.*' /tmp/nvme.err | head -n 1)"
# The pattern the guest wrote, read back through L1's block layer.
fio --name=pattern --filename=/dev/nvme0n1 --ioengine=psync --direct=1 --rw=randwrite \
  --bs=4k --numjobs=2 --size=8M --offset_increment=8M --randrepeat=1 \
  --verify=crc32c --verify_fatal=1 --verify_only --group_reporting \
  --output=/tmp/fio-host.out >/dev/null 2>&1
verify=$?
[ $verify -eq 0 ] || tail -n 20 /tmp/fio-host.out
echo "L1: nvme host verify exit=$verify"
marker=$(dd if=/dev/nvme0n1 bs=512 skip=$((67 * 2048)) count=1 iflag=direct 2>/dev/null | head -c 14)
echo "L1: nvme host marker=$marker"

ringvisor run --kernel /l2/vmlinuz --disk path=/dev/null >/tmp/neg.out 2>&1
echo "L1: negative not-nvme exit=$? out=$(head -c 300 /tmp/neg.out | tr '\n' '|')"
exit "$rc"
