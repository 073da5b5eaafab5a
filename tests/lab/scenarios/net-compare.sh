#!/bin/sh
# L1 scenario for bench/net-compare.sh: the same L2 guest and iperf3 runs
# (l2-tests/netbench.sh) over one virtio-net NIC on an L1 TAP, under ringvisor and then
# QEMU 10 with KVM, userspace virtio-net (vhost off) and vhost-net, in the same L1.
. /lib/lab/measure.sh
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

rv_status=0
# ringvisor as it starts by default (a reactor on each of L1's two cores), then with one
# reactor for the NIC's whole queue pair.
for cores in all 0; do
  [ "$cores" = all ] && name=ringvisor || name=ringvisor-1reactor
  [ "$cores" = all ] && placement="" || placement="--reactor-cores $cores"
  echo "L1: begin vmm=$name"
  tap_address rvtap0
  measure_vmm "$name" ringvisor run --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz \
    --cpus 2 --memory 384M --net tap=rvtap0 $placement --cmdline "$CMDLINE" || rv_status=1
  stop_server
done

# QEMU 10 twice: userspace virtio-net (vhost off), then the kernel's fast path (vhost-net),
# the bar users compare against.
qemu_status=0
for vhost in off on; do
  [ "$vhost" = off ] && name=qemu || name=qemu-vhost
  echo "L1: begin vmm=$name"
  tap_address qtap0
  measure_vmm "$name" qemu-system-x86_64 -enable-kvm -cpu host -smp 2 -m 384M \
    -nographic -no-reboot \
    -netdev tap,id=n0,ifname=qtap0,script=no,downscript=no,vhost=$vhost \
    -device virtio-net-pci,netdev=n0 \
    -kernel /l2/vmlinuz -initrd /l2/initramfs.cpio.gz -append "$CMDLINE" || qemu_status=1
  stop_server
done
[ "$qemu_status" -eq 0 ] && [ "$rv_status" -eq 0 ]
