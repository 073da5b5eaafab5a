#!/bin/sh
# L1 scenario: boot the stock L2 kernel under ringvisor inside L1, then the bad-input cases.
# The L2 guest prints its own "L2: ..." facts; tests/lab_boot.rs checks all of them.
. /lib/lab/measure.sh
CPUS=${CPUS:-2}
MEMORY=${MEMORY:-384M}

measure_vmm ringvisor ringvisor run --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz \
  --cpus "$CPUS" --memory "$MEMORY" \
  --cmdline "console=ttyS0 reboot=k panic=-1 rv.test=smoke"
status=$?

# Bad input must give one clear line and a non-zero status, never a panic.
ringvisor run --kernel /nonexistent/vmlinuz >/tmp/neg.out 2>&1
echo "L1: negative missing-kernel exit=$? out=$(head -c 300 /tmp/neg.out | tr '\n' '|')"
ringvisor run --kernel /l2/initramfs.cpio.gz >/tmp/neg.out 2>&1
echo "L1: negative not-bzimage exit=$? out=$(head -c 300 /tmp/neg.out | tr '\n' '|')"
ringvisor run --kernel /l2/vmlinuz --cpus 255 >/tmp/neg.out 2>&1
echo "L1: negative too-many-cpus exit=$? out=$(head -c 300 /tmp/neg.out | tr '\n' '|')"
ringvisor run --kernel /l2/vmlinuz --memory 0 >/tmp/neg.out 2>&1
echo "L1: negative zero-memory exit=$? out=$(head -c 300 /tmp/neg.out | tr '\n' '|')"
exit "$status"
