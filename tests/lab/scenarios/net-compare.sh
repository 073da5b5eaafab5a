#!/bin/sh
# L1 scenario for bench/net-compare.sh: the same L2 guest and iperf3 runs
# (l2-tests/netbench.sh) over one virtio-net NIC on an L1 TAP, under ringvisor and then
# QEMU-KVM's userspace virtio-net (virtio-net-pci on a TAP, vhost off), in the same L1.
. /lib/lab/measure.sh
CMDLINE="console=ttyS0 reboot=k panic=-1 rv.test=netbench quiet"
# L1's side of TAP $1 gets 10.0.2.1 as soon as the VMM has created it. The previous
# VMM's TAP of that name must be gone first, or the address and the server's socket go
# with it.
tap_address() {
  for i in $(seq 1 100); do [ -d "/sys/class/net/$1" ] || break; sleep 0.1; done
  (
    for i in $(seq 1 600); do [ -d "/sys/class/net/$1" ] && break; sleep 0.1; done
    ip addr add 10.0.2.1/24 dev "$1" && ip link set "$1" up
    # The server binds 10.0.2.1, which exists only now.
    iperf3 -s -D -B 10.0.2.1
  ) &
}
# The server of a run whose guest died mid-test may hang on to 10.0.2.1 (and answer the
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

echo "L1: begin vmm=qemu"
tap_address qtap0
measure_vmm qemu qemu-system-x86_64 -enable-kvm -cpu host -smp 2 -m 384M \
  -nographic -no-reboot \
  -netdev tap,id=n0,ifname=qtap0,script=no,downscript=no,vhost=off \
  -device virtio-net-pci,netdev=n0 \
  -kernel /l2/vmlinuz -initrd /l2/initramfs.cpio.gz -append "$CMDLINE"
qemu_status=$?
[ "$qemu_status" -eq 0 ] && [ "$rv_status" -eq 0 ]
