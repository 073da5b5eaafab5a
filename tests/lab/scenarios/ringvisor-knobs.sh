#!/bin/sh
# L1 scenario: the high-performance knobs and the display. A short boot of the stock L2
# kernel (the smoke and display tests) with guest RAM from the hugetlb pool, prefaulted,
# QXL graphics served over VNC, ended by SIGTERM (an orderly shutdown); then an empty
# pool, which must fail with the sysctl to run. Kept apart from ringvisor-boot.sh: every
# extra minute of a nested-lab run is one more chance for TCG's nested SVM to lose L1.
# The vCPU pinning, which needs two L1 cores, is ringvisor-pinning.sh's.
. /lib/lab/measure.sh
MEMORY=${MEMORY:-384M}

echo 200 >/proc/sys/vm/nr_hugepages
total=$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)
(
  least=$total
  while [ ! -e /tmp/huge.done ]; do
    free=$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages)
    [ "$free" -lt "$least" ] && least=$free
    echo "$least" >/tmp/huge.least
    sleep 0.2
  done
) &
# The display (tests/lab/l2-tests/display.sh): once L2 has drawn on its console, a
# screenshot through the API and a frame through VNC, which must be the same picture;
# then "rv-typed" and Return typed through VNC, which L2 reads from its console.
(
  for i in $(seq 1 1200); do grep -q '^L2: display drawn' /tmp/huge.out && break; sleep 0.1; done
  ringvisor ctl --socket /tmp/knobs.sock screenshot /tmp/shot.png >/tmp/shot.json 2>&1
  echo "L1: display screenshot exit=$? $(tr -d ' \n' </tmp/shot.json)"
  ringvisor ctl --socket /tmp/knobs.sock display >/tmp/display.json 2>&1
  echo "L1: display status exit=$? $(tr -d ' \n' </tmp/display.json)"
  vnc-grab 127.0.0.1:5900 /tmp/vnc.png --type "rv-typed" --enter >/tmp/vnc.out 2>&1
  echo "L1: display vnc exit=$? $(tr '\n' ' ' </tmp/vnc.out)"
  cmp /tmp/shot.png /tmp/vnc.png >/dev/null 2>&1
  echo "L1: display same-png exit=$?"
) >/tmp/display.facts 2>&1 &
# Mid-stream, SIGTERM: ringvisor presses the power button, L2's acpid powers the guest
# off, ringvisor flushes the disk and exits 0.
(
  # Mid-stream: L2 is writing durable blocks (l2-tests/durable.sh) when SIGTERM comes.
  for i in $(seq 1 6000); do grep -q '^L2: durable flushed=24' /tmp/huge.out && break; sleep 0.1; done
  # Huge-page RAM is registered with the reactors: the durable writes went through it.
  echo "L1: knobs registered $(registered_ram /tmp/knobs.sock)" >/tmp/knobs-registered.facts
  kill -TERM "$(pidof ringvisor)"
) &
dd if=/dev/zero of=/tmp/knobs.img bs=1M count=0 seek=16 2>/dev/null
# The guest's console (stdout) and ringvisor's own log (stderr) go to separate files: on one
# file, a log line written while L2 is halfway through a console line splits that line.
ringvisor --log-level info run --no-reboot --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz \
  --cpus 2 \
  --memory "$MEMORY",hugepages=on,prefault=on --disk path=/tmp/knobs.img \
  --display qxl,vnc=127.0.0.1:5900 --api-socket /tmp/knobs.sock \
  --cmdline "console=ttyS0 reboot=k panic=-1 rv.test=smoke,display,durable" </dev/null >/tmp/huge.out 2>/tmp/huge.err
huge=$?
touch /tmp/huge.done
sleep 0.5
grep -E '^L2: (display|test display)' /tmp/huge.out | tr -d '\r'
cat /tmp/display.facts
cat /tmp/knobs-registered.facts
echo "L1: hugepages boot exit=$huge smoke=$(grep -c 'L2: test smoke exit=0' /tmp/huge.out) memtotal_kb=$(sed -n 's/^L2: memtotal_kb=//p' /tmp/huge.out | tr -d '\r') pages_used=$((total - $(cat /tmp/huge.least)))"
[ $huge -eq 0 ] || tail -n 20 /tmp/huge.out /tmp/huge.err
grep -h 'made a forbidden system call' /tmp/huge.err
echo "L1: sigterm $(grep -c 'SIGTERM: pressing the power button' /tmp/huge.err) button=$(grep -c '^L2: power button pressed' /tmp/huge.out) $(grep -o 'orderly shutdown: [0-9]* disk(s) flushed' /tmp/huge.err)"
# Every block the guest reported durable must be in the file, byte for byte.
last=$(sed -n 's/^L2: durable flushed=\([0-9]*\).*/\1/p' /tmp/huge.out | tail -n 1)
bad=0
for i in $(seq 0 "${last:--1}"); do
  want=$(yes "rv-block $i" | head -c 65536 | md5sum)
  got=$(dd if=/tmp/knobs.img bs=65536 skip="$i" count=1 2>/dev/null | md5sum)
  [ "$want" = "$got" ] || bad=$((bad + 1))
done
echo "L1: durable flushed=${last:-none} bad=$bad"
echo 0 >/proc/sys/vm/nr_hugepages

ringvisor run --kernel /l2/vmlinuz --memory "$MEMORY",hugepages=on >/tmp/neg.out 2>&1
echo "L1: negative hugepages-empty-pool exit=$? out=$(head -c 300 /tmp/neg.out | tr '\n' '|')"
exit "$huge"
