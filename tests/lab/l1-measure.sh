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

# Cost counts of a VMM over a window (a fio job), the figures that carry over from the lab
# to real hardware where its timings do not:
#   exits, io_exits, mmio_exits, halt_exits, irq_injections: L1's KVM statistics of the
#     VMM's VM (debugfs kvm/PID-FD, summed over its vCPUs);
#   syscalls: system calls made by the VMM's threads, counted in the kernel by a histogram
#     trigger on the raw_syscalls:sys_enter tracepoint (no tracer process; the tracepoint
#     puts every system call of L1 on the slow entry path, for both VMMs alike);
#   ctxsw: voluntary and involuntary context switches of its threads;
#   cpu_ms: its user and system CPU time.
# costs_setup once, then costs_snapshot PID > FILE before and after the window, and
# costs_diff BEFORE AFTER prints "key=value ..." of the differences.
costs_setup() {
  mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug
  mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing
  trigger=/sys/kernel/tracing/events/raw_syscalls/sys_enter/trigger
  costs_trigger_ours=0
  if ! grep -q '^hist:keys=common_pid' "$trigger" 2>/dev/null; then
    echo 'hist:keys=common_pid:vals=hitcount:size=8192' >"$trigger" && costs_trigger_ours=1
  fi
}

# costs_teardown: removes the syscall trigger costs_setup installed (on a real host it
# would otherwise slow every system call until reboot).
costs_teardown() {
  [ "${costs_trigger_ours:-0}" = 1 ] &&
    echo '!hist:keys=common_pid:vals=hitcount:size=8192' >/sys/kernel/tracing/events/raw_syscalls/sys_enter/trigger
  costs_trigger_ours=0
}

costs_snapshot() {
  pid=$1
  vm=$(ls -d /sys/kernel/debug/kvm/"$pid"-* 2>/dev/null | head -n 1)
  for stat in exits io_exits mmio_exits halt_exits irq_injections; do
    echo "$stat $(cat "$vm/$stat" 2>/dev/null || echo 0)"
  done
  tids=$(ls /proc/"$pid"/task 2>/dev/null | tr '\n' ' ')
  awk -v tids=" $tids" '
    /common_pid:/ { gsub(/[{}]/, ""); if (index(tids, " " $2 " ")) n += $4 }
    END { print "syscalls", n + 0 }' /sys/kernel/tracing/events/raw_syscalls/sys_enter/hist
  cat /proc/"$pid"/task/*/status 2>/dev/null |
    awk '/^(non)?voluntary_ctxt_switches:/ { n += $2 } END { print "ctxsw", n + 0 }'
  # utime and stime (fields 14 and 15 after the command name) in clock ticks of 10 ms.
  sed 's/.*) //' /proc/"$pid"/stat 2>/dev/null | awk '{ print "cpu_ms", ($12 + $13) * 10 }'
}

costs_diff() {
  awk 'NR == FNR { before[$1] = $2; next } { printf "%s%s=%d", sep, $1, $2 - before[$1]; sep = " " }
    END { print "" }' "$1" "$2"
}

# run_rounds: the comparison scenarios' loop. Each VMM of $VMMS in turn, $PAIRS times
# (A B A B ...: every round sees the machine as it is then), each run announced with
# "L1: begin vmm=NAME pair=N". The scenario defines run_vmm NAME (one boot of the guest
# under that VMM) and after_vmm (tidying between runs). Fails if any run failed.
run_rounds() {
  rounds_status=0
  for pair in $(seq 1 "$PAIRS"); do
    for vmm in $VMMS; do
      echo "L1: begin vmm=$vmm pair=$pair"
      run_vmm "$vmm" || rounds_status=1
      after_vmm
    done
  done
  return "$rounds_status"
}

# registered_ram SOCKET: "fixed_buffers=N fixed_buffer_ops=M" from ringvisor's API: the most
# guest RAM pieces any reactor holds as registered buffers, and the fixed reads and writes
# of every queue; what the API said instead when it has no such field.
registered_ram() {
  ringvisor ctl --socket "$1" stats >/tmp/registered-stats.json 2>&1
  flat=$(tr -d ' \n' </tmp/registered-stats.json)
  case $flat in
    *'"fixed_buffers":'*) ;;
    *) echo "stats-said=$(echo "$flat" | head -c 200)"; return 1 ;;
  esac
  pieces=$(echo "$flat" | grep -o '"fixed_buffers":[0-9]*' | cut -d: -f2 | sort -n | tail -n 1)
  fixed_ops=$(echo "$flat" | grep -o '"fixed_buffer_ops":[0-9]*' | cut -d: -f2 | awk '{ s += $1 } END { print s + 0 }')
  echo "fixed_buffers=$pieces fixed_buffer_ops=$fixed_ops"
}

# stat_sum FILE KEY: the sum of every "KEY":N in a saved `ringvisor ctl stats` document.
stat_sum() {
  tr -d ' \n' <"$1" | grep -o "\"$2\":[0-9]*" | cut -d: -f2 | awk '{ s += $1 } END { print s + 0 }'
}
