#!/bin/sh
# L1 scenario for bench/boot-compare.sh: the same L2 kernel, initramfs, vCPU count and
# memory size under QEMU-KVM (the reference) and then ringvisor, in the same L1. Each
# guest prints "L2: init uptime=" (boot-to-init); measure_vmm adds wall time and peak RSS.
. /lib/lab/measure.sh
CPUS=${CPUS:-2}
MEMORY=${MEMORY:-384M}
CMDLINE="console=ttyS0 reboot=k panic=-1 rv.test=smoke"

echo "L1: begin vmm=qemu"
# -no-reboot: the guest's reset ends QEMU, as it ends ringvisor.
measure_vmm qemu qemu-system-x86_64 -enable-kvm -cpu host -smp "$CPUS" -m "$MEMORY" \
  -nographic -nic none -no-reboot \
  -kernel /l2/vmlinuz -initrd /l2/initramfs.cpio.gz -append "$CMDLINE"
qemu_status=$?

echo "L1: begin vmm=ringvisor"
measure_vmm ringvisor ringvisor run --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz \
  --cpus "$CPUS" --memory "$MEMORY" --cmdline "$CMDLINE"
rv_status=$?
[ "$qemu_status" -eq 0 ] && [ "$rv_status" -eq 0 ]
