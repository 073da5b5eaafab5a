# Sourced by L1 scenarios (installed at /lib/lab/measure.sh): runs a VMM to completion and
# prints what the side-by-side comparisons need, as "L1: vmm=NAME key=value" lines.
# /bin/date is coreutils (busybox date has no %N).

# measure_vmm NAME COMMAND...: wall time, peak resident set (sampled every 0.2 s, since the
# process is gone at the end) and exit status of COMMAND; returns that status.
measure_vmm() {
  name=$1
  shift
  start=$(/bin/date +%s%N)
  "$@" </dev/null &
  pid=$!
  peak_kb=0
  while kill -0 "$pid" 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
    [ -n "$rss" ] && [ "$rss" -gt "$peak_kb" ] && peak_kb=$rss
    sleep 0.2
  done
  wait "$pid"
  status=$?
  end=$(/bin/date +%s%N)
  echo "L1: vmm=$name wall_ms=$(((end - start) / 1000000))"
  echo "L1: vmm=$name rss_peak_kb=$peak_kb"
  echo "L1: vmm=$name exit=$status"
  return "$status"
}

# qemu_iothreads: QEMU 10 at its best for disks, one iothread per L1 core. Sets
# QEMU_IOTHREAD_OBJECTS (the -object arguments, one word each) and QEMU_VQ_MAPPING (the JSON
# list for a controller's iothread-vq-mapping, which spreads its queues over them).
qemu_iothreads() {
  QEMU_IOTHREAD_OBJECTS=""
  QEMU_VQ_MAPPING=""
  i=0
  while [ "$i" -lt "$(nproc)" ]; do
    QEMU_IOTHREAD_OBJECTS="$QEMU_IOTHREAD_OBJECTS -object iothread,id=io$i"
    QEMU_VQ_MAPPING="$QEMU_VQ_MAPPING${QEMU_VQ_MAPPING:+,}{\"iothread\":\"io$i\"}"
    i=$((i + 1))
  done
  QEMU_VQ_MAPPING="[$QEMU_VQ_MAPPING]"
}
