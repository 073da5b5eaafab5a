#!/bin/sh
# L1 scenario for bench/boot-compare.sh: the same L2 kernel, initramfs, vCPU count and
# memory size under QEMU 10 with KVM (the reference) and ringvisor, in PAIRS rounds
# (/etc/lab/compare.env, default 5) in this one L1. Each guest prints "L2: init uptime="
# (boot-to-init); measure_vmm adds wall time and peak RSS.
. /lib/lab/measure.sh
CPUS=${CPUS:-2}
MEMORY=${MEMORY:-384M}
PAIRS=5
[ -f /etc/lab/compare.env ] && . /etc/lab/compare.env
CMDLINE="console=ttyS0 reboot=k panic=-1 rv.test=smoke"

run_vmm() {
  case $1 in
    ringvisor)
      measure_vmm ringvisor ringvisor run --no-reboot --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz \
        --cpus "$CPUS" --memory "$MEMORY" --cmdline "$CMDLINE"
      ;;
    qemu)
      # -no-reboot: the guest's reset ends QEMU, as it ends ringvisor.
      measure_vmm qemu qemu-system-x86_64 -enable-kvm -cpu host -smp "$CPUS" -m "$MEMORY" \
        -nographic -nic none -no-reboot \
        -kernel /l2/vmlinuz -initrd /l2/initramfs.cpio.gz -append "$CMDLINE"
      ;;
  esac
}
after_vmm() { :; }
VMMS="ringvisor qemu"
run_rounds
