#!/bin/sh
# L1 scenario for bench/fio-compare.sh: the same L2 guest and fio jobs (l2-tests/fio.sh)
# on one virtio-blk disk with 2 queues, under ringvisor (default, --poll-us 50, pinned
# vCPUs with huge-page RAM, and the
# same file as a virtio-scsi unit with 2 request queues) and then QEMU-KVM
# (virtio-blk-pci, an iothread, aio=io_uring), in the same L1. The backing files live on L1's tmpfs, which
# has no O_DIRECT in kernel 6.1: both VMMs use the page cache there.
. /lib/lab/measure.sh
CMDLINE="console=ttyS0 reboot=k panic=-1 rv.test=fio quiet"
make_disk() { dd if=/dev/zero of="$1" bs=1M count=256 2>/dev/null; }

# ringvisor as it starts by default, then with adaptive polling.
rv_status=0
for poll in 0 50; do
  [ "$poll" = 0 ] && name=ringvisor || name=ringvisor-poll$poll
  echo "L1: begin vmm=$name"
  make_disk /tmp/rv.img
  measure_vmm "$name" ringvisor run --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz \
    --cpus 2 --memory 384M --disk path=/tmp/rv.img,direct=off,queues=2 --poll-us "$poll" \
    --cmdline "$CMDLINE" || rv_status=1
  rm -f /tmp/rv.img
done
# The high-performance knobs: guest RAM from prefaulted 2 MiB huge pages, each vCPU
# pinned to its own core (a reactor per core, as by default).
echo 200 >/proc/sys/vm/nr_hugepages
echo "L1: begin vmm=ringvisor-pinned-huge"
make_disk /tmp/rv.img
measure_vmm ringvisor-pinned-huge ringvisor run --kernel /l2/vmlinuz \
  --initramfs /l2/initramfs.cpio.gz --cpus 2,affinity=0@0,1@1 \
  --memory 384M,hugepages=on,prefault=on --disk path=/tmp/rv.img,direct=off,queues=2 \
  --cmdline "$CMDLINE" || rv_status=1
rm -f /tmp/rv.img
echo 0 >/proc/sys/vm/nr_hugepages
echo "L1: begin vmm=ringvisor-scsi"
make_disk /tmp/rv.img
measure_vmm ringvisor-scsi ringvisor run --kernel /l2/vmlinuz \
  --initramfs /l2/initramfs.cpio.gz --cpus 2 --memory 384M \
  --scsi queues=2 --scsi-disk path=/tmp/rv.img,direct=off --cmdline "$CMDLINE" || rv_status=1
rm -f /tmp/rv.img

# QEMU last: its L2 guest runs with an XCR0 that L1's KVM never saw it set (nested SVM
# under TCG does not trap XSETBV) and, in this lab, sometimes takes L1 down with it.
echo "L1: begin vmm=qemu"
make_disk /tmp/qemu.img
# QEMU 10 at its best: an iothread per L1 core, the disk's queues spread over them.
qemu_iothreads
# shellcheck disable=SC2086 # the iothread objects are words
measure_vmm qemu qemu-system-x86_64 -enable-kvm -cpu host -smp 2 -m 384M \
  -nographic -nic none -no-reboot $QEMU_IOTHREAD_OBJECTS \
  -drive file=/tmp/qemu.img,if=none,id=d0,format=raw,aio=io_uring,cache=writeback \
  -device "{\"driver\":\"virtio-blk-pci\",\"drive\":\"d0\",\"num-queues\":2,\"iothread-vq-mapping\":$QEMU_VQ_MAPPING}" \
  -kernel /l2/vmlinuz -initrd /l2/initramfs.cpio.gz -append "$CMDLINE"
qemu_status=$?
rm -f /tmp/qemu.img
[ "$qemu_status" -eq 0 ] && [ "$rv_status" -eq 0 ]
