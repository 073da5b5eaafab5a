#!/bin/sh
# L1 scenario for bench/net-compare.sh: the same L2 guest and iperf3 runs
# (l2-tests/netbench.sh) over one virtio-net NIC on an L1 TAP, under each VMM of $VMMS in
# PAIRS rounds (A B A B ...) in this one L1. VMMs: ringvisor (a reactor on each of L1's two
# cores, as by default), ringvisor-1reactor (one reactor for the queue pair), qemu (QEMU 10
# with KVM, userspace virtio-net: vhost off), qemu-vhost (the kernel's vhost-net fast path).
# /etc/lab/compare.env may set PAIRS (5) and VMMS ("ringvisor qemu qemu-vhost"). Each VMM
# run begins with "L1: begin vmm=NAME pair=N".
. /lib/lab/measure.sh
PAIRS=5
VMMS="ringvisor qemu qemu-vhost"
[ -f /etc/lab/compare.env ] && . /etc/lab/compare.env
CMDLINE="console=ttyS0 reboot=k panic=-1 rv.test=netbench quiet"
# L1's side of TAP $1 gets 169.254.100.1 as soon as the VMM has created it. The previous
# VMM's TAP of that name must be gone first, or the address and the server's socket go
# with it.
tap_address() {
  for i in $(seq 1 100); do [ -d "/sys/class/net/$1" ] || break; sleep 0.1; done
  (
    for i in $(seq 1 600); do [ -d "/sys/class/net/$1" ] && break; sleep 0.1; done
    ip addr add 169.254.100.1/24 dev "$1" && ip link set "$1" up
    # The server binds 169.254.100.1, which exists only now.
    iperf3 -s -D -B 169.254.100.1
  ) &
}
# The server of a run whose guest died mid-test may hang on to 169.254.100.1 (and answer the
# next guest "busy"): it goes for good before the next VMM starts.
stop_server() {
  pkill -9 iperf3 2>/dev/null
  for i in $(seq 1 50); do pidof iperf3 >/dev/null || break; sleep 0.1; done
}

# run_vmm NAME: one boot of the guest under that VMM, its measurements run.
run_vmm() {
  case $1 in
    ringvisor | ringvisor-1reactor)
      placement=""
      [ "$1" = ringvisor-1reactor ] && placement="--reactor-cores 0"
      tap_address rvtap0
      # shellcheck disable=SC2086 # the placement is words
      measure_vmm "$1" ringvisor run --no-reboot --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz \
        --cpus 2 --memory 384M --net tap=rvtap0 $placement --cmdline "$CMDLINE"
      ;;
    qemu | qemu-vhost)
      vhost=off
      [ "$1" = qemu-vhost ] && vhost=on
      tap_address qtap0
      measure_vmm "$1" qemu-system-x86_64 -enable-kvm -cpu host -smp 2 -m 384M \
        -nographic -no-reboot \
        -netdev tap,id=n0,ifname=qtap0,script=no,downscript=no,vhost=$vhost \
        -device virtio-net-pci,netdev=n0 \
        -kernel /l2/vmlinuz -initrd /l2/initramfs.cpio.gz -append "$CMDLINE"
      ;;
    *)
      echo "L1: unknown vmm $1"
      return 2
      ;;
  esac
}

after_vmm() { stop_server; }
run_rounds
