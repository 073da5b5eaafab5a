#!/bin/sh
# L1 scenario (two L1 cores): the vCPUs pinned crosswise, vCPU 0 on core 1 and vCPU 1 on
# core 0 with the reactor, their placement read back from /proc while the guest starts
# and the overlap warned about; then a core L1 does not have, which must be refused.
# The guest is ended as soon as the placement is read: an L1 with two vCPUs (two TCG
# threads) loses most long runs (tests/lab/README.md), so this one stays seconds long.
# A disk, so that there is an I/O reactor to place; the display, so that there is a
# low-priority one.
dd if=/dev/zero of=/tmp/pin.img bs=1M count=0 seek=16 2>/dev/null
ringvisor --log-level info run --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz \
  --cpus 2,affinity=0@1,1@0 --reactor-cores 0 --memory 256M \
  --disk path=/tmp/pin.img --display qxl \
  --cmdline "console=ttyS0 reboot=k panic=-1" </dev/null >/tmp/pin.out 2>/tmp/pin.err &
vmm=$!
for i in $(seq 1 300); do
  grep -qx vcpu1 /proc/"$vmm"/task/*/comm 2>/dev/null && break
  sleep 0.1
done
for t in /proc/"$vmm"/task/*; do
  printf '%s=%s\n' "$(awk '/^Name:/ { print $2 }' "$t/status")" \
    "$(awk '/^Cpus_allowed_list:/ { print $2 }' "$t/status")"
done 2>/dev/null | grep -E '^(vcpu|reactor|lowprio)' | sort | tr '\n' ' ' >/tmp/topology
kill -KILL "$vmm"
wait "$vmm" 2>/dev/null
echo "L1: topology $(cat /tmp/topology)"
echo "L1: placement warnings=$(grep -c 'placement: vCPU 1 shares core(s) 0 with an I/O reactor' /tmp/pin.err)"
grep -h 'made a forbidden system call' /tmp/pin.err

ringvisor run --kernel /l2/vmlinuz --cpus 2,affinity=1@7 >/tmp/neg.out 2>&1
echo "L1: negative affinity-core exit=$? out=$(head -c 300 /tmp/neg.out | tr '\n' '|')"
