#!/bin/sh
# L2 test for an NVMe-passthrough disk: the guest's one disk, /dev/vda, is L1's NVMe
# namespace served through its generic device (ringvisor --disk path=/dev/ng0n1).
#   first 16 MiB   fio writes a verifiable pattern (L1 re-reads it through /dev/nvme0n1)
#   from 64 MiB    round trips, a 1 MiB write (several NVMe commands), discard and
#                  write-zeroes
# Prints "L2: nvme ..." facts.
fail=0
check() { # check NAME CONDITION-STATUS
  if [ "$2" -eq 0 ]; then echo "L2: nvme $1 ok"; else echo "L2: nvme $1 FAILED"; fail=1; fi
}
[ -b /dev/vda ] || { echo "L2: nvme no /dev/vda"; exit 1; }
q=/sys/block/vda/queue
echo "L2: nvme vda sectors=$(cat /sys/block/vda/size) lbs=$(cat $q/logical_block_size)" \
  "discard_max=$(cat $q/discard_max_bytes) write_zeroes_max=$(cat $q/write_zeroes_max_bytes)"

# One request at a time first (at 32 MiB), then many (the pattern L1 checks).
fio --name=serial --filename=/dev/vda --ioengine=psync --direct=1 --rw=randwrite \
  --bs=4k --size=2M --offset=32M --randrepeat=1 --verify=crc32c --verify_fatal=1 \
  --do_verify=1 --output=/tmp/fio-serial.out >/dev/null 2>/tmp/fio-serial.err
status=$?
[ $status -eq 0 ] || cat /tmp/fio-serial.err /tmp/fio-serial.out 2>/dev/null | head -n 20
check serial-write-verify $status

fio --name=pattern --filename=/dev/vda --ioengine=libaio --direct=1 --rw=randwrite \
  --bs=4k --iodepth=16 --numjobs=2 --size=8M --offset_increment=8M --randrepeat=1 \
  --verify=crc32c --verify_fatal=1 --do_verify=1 --end_fsync=1 --group_reporting \
  --output=/tmp/fio.out >/dev/null 2>/tmp/fio.err
status=$?
[ $status -eq 0 ] || cat /tmp/fio.err /tmp/fio.out 2>/dev/null | grep -iE "verify|error|bad|fail|issued|fio" | head -n 20
check pattern-write-verify $status

# 1 MiB in one direct write: the host splits it at the controller's transfer limit.
MIB=1048576
head -c $MIB /dev/urandom >/tmp/random
dd if=/tmp/random of=/dev/vda bs=$MIB seek=64 oflag=direct conv=fsync 2>/dev/null &&
  dd if=/dev/vda of=/tmp/back bs=$MIB skip=64 count=1 iflag=direct 2>/dev/null &&
  cmp -s /tmp/random /tmp/back
check large-roundtrip $?

dd if=/dev/zero bs=4096 count=256 2>/dev/null | tr '\000' '\252' >/tmp/ones
dd if=/dev/zero of=/tmp/zeros bs=4096 count=256 2>/dev/null
dd if=/tmp/ones of=/dev/vda bs=$MIB seek=65 oflag=direct conv=fsync 2>/dev/null
blkdiscard -o $((65 * MIB)) -l $MIB /dev/vda
check discard $?
dd if=/dev/vda of=/tmp/back bs=$MIB skip=65 count=1 iflag=direct 2>/dev/null
cmp -s /tmp/zeros /tmp/back
check discard-reads-zeros $?

dd if=/tmp/ones of=/dev/vda bs=$MIB seek=66 oflag=direct conv=fsync 2>/dev/null
/opt/util-linux/blkdiscard -z -o $((66 * MIB)) -l $MIB /dev/vda
check write-zeroes $?
dd if=/dev/vda of=/tmp/back bs=$MIB skip=66 count=1 iflag=direct 2>/dev/null
cmp -s /tmp/zeros /tmp/back
check write-zeroes-reads-zeros $?
# A marker L1 looks for through its own block device after the guest is gone.
printf 'rv-nvme-marker' | dd of=/dev/vda bs=512 seek=$((67 * 2048)) conv=sync,fsync oflag=direct 2>/dev/null
check marker $?
sync
# L1 reads the device's counters now (the NVMe commands the requests became).
echo "L2: nvme counters-now"
sleep 3
echo "L2: nvme done fail=$fail"
exit $fail
