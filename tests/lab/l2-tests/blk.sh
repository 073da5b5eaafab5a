#!/bin/sh
# L2 test for virtio-blk (the scenario gives the guest three disks):
#   vda  path=/tmp/data.img,queues=2,serial=rv-data   fio writes a verifiable pattern
#   vdb  path=/tmp/ro.img,readonly=on                  writes must fail
#   vdc  path=/tmp/scratch.img                         discard / write-zeroes / flush
# Prints "L2: blk ..." facts; the L1 scenario verifies data.img on the host afterwards.
fail=0
check() { # check NAME CONDITION-STATUS
  if [ "$2" -eq 0 ]; then echo "L2: blk $1 ok"; else echo "L2: blk $1 FAILED"; fail=1; fi
}

for d in vda vdb vdc; do
  [ -b /dev/$d ] || { echo "L2: blk no /dev/$d"; exit 1; }
done
echo "L2: blk vda sectors=$(cat /sys/block/vda/size) queues=$(ls /sys/block/vda/mq | wc -l)"
echo "L2: blk vda serial=$(cat /sys/block/vda/serial 2>/dev/null)"
echo "L2: blk vdb ro=$(cat /sys/block/vdb/ro)"

# The pattern job: two jobs (one per queue, ideally) over disjoint halves of the first
# 16 MiB, direct I/O, crc32c verify headers, read back and checked in the guest, ending
# with an fsync (a virtio FLUSH). The host re-runs the same job with --verify_only.
fio --name=pattern --filename=/dev/vda --ioengine=libaio --direct=1 --rw=randwrite \
  --bs=4k --iodepth=16 --numjobs=2 --size=8M --offset_increment=8M --randrepeat=1 \
  --verify=crc32c --verify_fatal=1 --do_verify=1 --end_fsync=1 --group_reporting \
  --output=/tmp/fio.out >/dev/null 2>&1
status=$?
[ $status -eq 0 ] || tail -n 20 /tmp/fio.out
check pattern-write-verify $status

# Read-only disk: a write must be refused, reads must work.
dd if=/dev/zero of=/dev/vdb bs=4096 count=1 oflag=direct 2>/dev/null
[ $? -ne 0 ]
check readonly-refuses-writes $?
dd if=/dev/vdb of=/dev/null bs=4096 count=16 iflag=direct 2>/dev/null
check readonly-reads $?

# Scratch disk: fill 1 MiB with 0xAA... via a file of ones, discard it, read zeros back.
dd if=/dev/zero bs=4096 count=256 2>/dev/null | tr '\000' '\252' >/tmp/ones
dd if=/tmp/ones of=/dev/vdc bs=4096 oflag=direct conv=fsync 2>/dev/null
dd if=/dev/vdc of=/tmp/back bs=4096 count=256 iflag=direct 2>/dev/null
cmp -s /tmp/ones /tmp/back
check scratch-roundtrip $?
echo "L2: blk vdc discard_max=$(cat /sys/block/vdc/queue/discard_max_bytes)"
blkdiscard -o 0 -l 1048576 /dev/vdc
check discard $?
dd if=/dev/vdc of=/tmp/back bs=4096 count=256 iflag=direct 2>/dev/null
dd if=/dev/zero of=/tmp/zeros bs=4096 count=256 2>/dev/null
cmp -s /tmp/zeros /tmp/back
check discard-reads-zeros $?
# Driver unbind/bind resets the device (status 0: queues taken back from the reactors)
# and brings it up again; the disk must work after it.
dev=$(basename "$(readlink /sys/block/vdc/device)")
echo "$dev" >/sys/bus/virtio/drivers/virtio_blk/unbind &&
  echo "$dev" >/sys/bus/virtio/drivers/virtio_blk/bind
check rebind $?
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vdc ] && break; sleep 0.5; done
dd if=/tmp/ones of=/dev/vdc bs=4096 seek=512 oflag=direct conv=fsync 2>/dev/null &&
  dd if=/dev/vdc of=/tmp/back bs=4096 skip=512 count=256 iflag=direct 2>/dev/null &&
  cmp -s /tmp/ones /tmp/back
check roundtrip-after-reset $?
exit $fail
