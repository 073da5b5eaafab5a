#!/bin/sh
# L1 scenario for bench/fio-compare.sh: the same L2 guest and fio jobs (l2-tests/fio.sh)
# on one 2-queue disk under each VMM of $VMMS, interleaved in PAIRS rounds (A B A B ...) in
# this one L1, so that every round sees the same machine. VMMs: ringvisor (as it starts by
# default), ringvisor-poll50 (--poll-us 50), ringvisor-pinned-huge (pinned vCPUs, RAM from
# prefaulted 2 MiB huge pages), ringvisor-scsi (the disk as a virtio-scsi unit), qemu
# (QEMU 10 at its best: virtio-blk with an iothread per L1 core over iothread-vq-mapping,
# aio=io_uring). The backing file lives on L1's tmpfs, through the page cache for every
# VMM. /etc/lab/compare.env may set PAIRS (5), VMMS ("ringvisor qemu") and RUNTIME (s per
# job, 4). Each VMM run begins with "L1: begin vmm=NAME pair=N".
. /lib/lab/measure.sh
PAIRS=5
VMMS="ringvisor qemu"
RUNTIME=4
[ -f /etc/lab/compare.env ] && . /etc/lab/compare.env
CMDLINE="console=ttyS0 reboot=k panic=-1 rv.test=fio FIO_RUNTIME=$RUNTIME quiet"
make_disk() { dd if=/dev/zero of="$1" bs=1M count=256 2>/dev/null; }
qemu_iothreads

# run_vmm NAME: one boot of the guest under that VMM, its jobs run; its exit status.
run_vmm() {
  make_disk /tmp/disk.img
  case $1 in
    ringvisor | ringvisor-poll50)
      poll=0
      [ "$1" = ringvisor-poll50 ] && poll=50
      measure_vmm "$1" ringvisor run --no-reboot --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz \
        --cpus 2 --memory 384M --disk path=/tmp/disk.img,direct=off,queues=2 --poll-us "$poll" \
        --cmdline "$CMDLINE"
      ;;
    ringvisor-pinned-huge)
      echo 200 >/proc/sys/vm/nr_hugepages
      measure_vmm "$1" ringvisor run --no-reboot --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz \
        --cpus 2,affinity=0@0,1@1 --memory 384M,hugepages=on,prefault=on \
        --disk path=/tmp/disk.img,direct=off,queues=2 --cmdline "$CMDLINE"
      status=$?
      echo 0 >/proc/sys/vm/nr_hugepages
      return "$status"
      ;;
    ringvisor-scsi)
      measure_vmm "$1" ringvisor run --no-reboot --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz \
        --cpus 2 --memory 384M --scsi queues=2 --scsi-disk path=/tmp/disk.img,direct=off \
        --cmdline "$CMDLINE"
      ;;
    qemu)
      # shellcheck disable=SC2086 # the iothread objects are words
      measure_vmm qemu qemu-system-x86_64 -enable-kvm -cpu host -smp 2 -m 384M \
        -nographic -nic none -no-reboot $QEMU_IOTHREAD_OBJECTS \
        -drive file=/tmp/disk.img,if=none,id=d0,format=raw,aio=io_uring,cache=writeback \
        -device "{\"driver\":\"virtio-blk-pci\",\"drive\":\"d0\",\"num-queues\":2,\"iothread-vq-mapping\":$QEMU_VQ_MAPPING}" \
        -kernel /l2/vmlinuz -initrd /l2/initramfs.cpio.gz -append "$CMDLINE"
      ;;
    *)
      echo "L1: unknown vmm $1"
      return 2
      ;;
  esac
}

after_vmm() { rm -f /tmp/disk.img; }
run_rounds
