#!/bin/sh
# L1 scenario for bench/boot-compare.sh: the same L2 kernel, initramfs, vCPU count and
# memory size under QEMU 10 with KVM (the reference) and ringvisor, in PAIRS rounds
# (/etc/lab/compare.env, default 5) in this one L1. Each guest prints "L2: init uptime="
# (boot-to-init; with DEBIAN=1 the Debian root's "L2: debian boot-time multi_user_s=");
# measure_vmm adds wall time and peak RSS.
. /lib/lab/measure.sh
CPUS=${CPUS:-2}
MEMORY=${MEMORY:-384M}
PAIRS=5
[ -f /etc/lab/compare.env ] && . /etc/lab/compare.env
CMDLINE="console=ttyS0 reboot=k panic=-1 rv.test=smoke"
# DEBIAN=1 (bench/boot-compare.sh --debian): the Debian root image, L1's /dev/vda, booted
# to multi-user.target and powered off (tests/lab/debian/rv-lab.sh, rv.lab=boot-time);
# both VMMs with O_DIRECT and io_uring on it.
RINGVISOR_DISK=
QEMU_DISK=
if [ "${DEBIAN:-0}" = 1 ]; then
  CMDLINE="console=ttyS0 panic=-1 rv.root=/dev/vda rv.lab=boot-time"
  MEMORY=512M
  RINGVISOR_DISK="--disk path=/dev/vda"
  QEMU_DISK="-drive file=/dev/vda,format=raw,if=virtio,cache=none,aio=io_uring"
fi

run_vmm() {
  case $1 in
    ringvisor)
      # shellcheck disable=SC2086 # the disk options are words
      measure_vmm ringvisor ringvisor run --no-reboot --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz \
        --cpus "$CPUS" --memory "$MEMORY" $RINGVISOR_DISK --cmdline "$CMDLINE"
      ;;
    qemu)
      # -no-reboot: the guest's reset ends QEMU, as it ends ringvisor.
      # shellcheck disable=SC2086
      measure_vmm qemu qemu-system-x86_64 -enable-kvm -cpu host -smp "$CPUS" -m "$MEMORY" \
        -nographic -nic none -no-reboot $QEMU_DISK \
        -kernel /l2/vmlinuz -initrd /l2/initramfs.cpio.gz -append "$CMDLINE"
      ;;
  esac
}
after_vmm() { :; }
VMMS="ringvisor qemu"
run_rounds
