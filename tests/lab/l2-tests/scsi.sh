#!/bin/sh
# L2 test for virtio-scsi (the scenario gives the controller 64 logical units):
#   0:0:0  path=/tmp/scsi-data.img,serial=rv-scsi-data   fio writes a verifiable pattern
#   0:1:0  path=/tmp/scsi-ro.img,readonly=on               writes must fail
#   0:3:5  path=/tmp/scsi-lun5.img,target=3,lun=5          found through REPORT LUNS
#   0:2:0  path=/tmp/scsi-extra-1.img                      a second pattern, concurrently
#   61 more extras on targets 4, 5, ...
# Prints "L2: scsi ..." facts; the L1 scenario verifies both patterns afterwards.
fail=0
check() { # check NAME CONDITION-STATUS
  if [ "$2" -eq 0 ]; then echo "L2: scsi $1 ok"; else echo "L2: scsi $1 FAILED"; fail=1; fi
}

# The block device of the unit at channel 0, target $1, LUN $2.
disk_of() {
  for d in /sys/class/scsi_disk/*:0:"$1":"$2"; do
    [ -d "$d/device/block" ] && ls "$d/device/block" && return 0
  done
  return 1
}
for i in $(seq 1 80); do
  [ "$(ls /sys/class/scsi_disk 2>/dev/null | wc -l)" -ge 64 ] && break
  sleep 0.25
done
echo "L2: scsi units=$(ls /sys/class/scsi_disk | wc -l) sd_block=$(ls -d /sys/block/sd* | wc -l)"
data=$(disk_of 0 0) && ro=$(disk_of 1 0) && lun5=$(disk_of 3 5) && extra=$(disk_of 2 0) ||
  { echo "L2: scsi missing units"; exit 1; }
unit=$(ls -d /sys/class/scsi_disk/*:0:0:0)
echo "L2: scsi vendor=$(sed "s/ *$//" "$unit/device/vendor") model=$(cat "$unit/device/model" | sed 's/ *$//')"
echo "L2: scsi cache_type=$(cat "$unit/cache_type") provisioning=$(cat "$unit/provisioning_mode")"
echo "L2: scsi wwid=$(cat "$unit/device/wwid") serial=$(tail -c +5 "$unit/device/vpd_pg80" | tr -d '\0')"
echo "L2: scsi $data sectors=$(cat /sys/block/$data/size) physical=$(cat /sys/block/$data/queue/physical_block_size)"
echo "L2: scsi $ro ro=$(cat /sys/block/$ro/ro)"
echo "L2: scsi hw_queues=$(ls /sys/block/$data/mq | wc -l)"

# Two LUNs at once, two fio processes (each numbers its jobs from 1, as the host's
# --verify_only runs do).
fio --name=pattern --filename=/dev/$data --ioengine=libaio --direct=1 --rw=randwrite \
  --bs=4k --iodepth=16 --numjobs=2 --size=8M --offset_increment=8M --randrepeat=1 \
  --verify=crc32c --verify_fatal=1 --do_verify=1 --end_fsync=1 --group_reporting \
  --output=/tmp/fio-scsi.out >/dev/null 2>&1 &
first=$!
fio --name=extra --filename=/dev/$extra --ioengine=libaio --direct=1 --rw=randwrite \
  --bs=4k --iodepth=16 --size=8M --randrepeat=1 \
  --verify=crc32c --verify_fatal=1 --do_verify=1 --end_fsync=1 \
  --output=/tmp/fio-extra.out >/dev/null 2>&1
second=$?
wait $first
status=$?
[ $status -eq 0 ] || tail -n 20 /tmp/fio-scsi.out
[ $second -eq 0 ] || tail -n 20 /tmp/fio-extra.out
[ $status -eq 0 ] && [ $second -eq 0 ]
status=$?
check pattern-write-verify $status

dd if=/dev/zero of=/dev/$ro bs=4096 count=1 oflag=direct 2>/dev/null
[ $? -ne 0 ]
check readonly-refuses-writes $?
dd if=/dev/$ro of=/dev/null bs=4096 count=16 iflag=direct 2>/dev/null
check readonly-reads $?

dd if=/dev/zero bs=4096 count=256 2>/dev/null | tr '\000' '\252' >/tmp/ones
dd if=/tmp/ones of=/dev/$lun5 bs=4096 oflag=direct conv=fsync 2>/dev/null &&
  dd if=/dev/$lun5 of=/tmp/back bs=4096 count=256 iflag=direct 2>/dev/null &&
  cmp -s /tmp/ones /tmp/back
check lun5-roundtrip $?
blkdiscard -o 0 -l 1048576 /dev/$lun5
check discard $?
dd if=/dev/$lun5 of=/tmp/back bs=4096 count=256 iflag=direct 2>/dev/null
dd if=/dev/zero of=/tmp/zeros bs=4096 count=256 2>/dev/null
cmp -s /tmp/zeros /tmp/back
check discard-reads-zeros $?
# A rescan probes the unit again (INQUIRY, VPD pages, READ CAPACITY, MODE SENSE); it must
# keep working after it.
echo 1 >"/sys/class/scsi_disk/$(basename "$unit")/device/rescan"
check rescan $?
dd if=/dev/$data of=/dev/null bs=4096 count=16 iflag=direct 2>/dev/null
check read-after-rescan $?
exit $fail
