#!/bin/sh
# L1 scenario: boot the stock L2 kernel under ringvisor inside L1 with three virtio-blk
# disks, a virtio-scsi controller with 64 logical units, a virtio-net NIC on a TAP, a
# virtio console with three named ports and a balloon; run the smoke, blk, scsi, net and
# lowprio tests in L2, shut the VMM down through the API, check the disks from the host
# side, then try bad input. The L2 guest
# prints its own "L2: ..." facts; tests/lab_boot.rs checks them.
. /lib/lab/measure.sh
CPUS=${CPUS:-2}
MEMORY=${MEMORY:-384M}

# Backing files on L1's tmpfs (no O_DIRECT there: ringvisor falls back and says so).
dd if=/dev/zero of=/tmp/data.img bs=1M count=0 seek=64 2>/dev/null
dd if=/dev/urandom of=/tmp/ro.img bs=1M count=4 2>/dev/null
dd if=/dev/zero of=/tmp/scratch.img bs=1M count=0 seek=16 2>/dev/null
ro_before=$(md5sum </tmp/ro.img)
dd if=/dev/zero of=/tmp/scsi-data.img bs=1M count=0 seek=32 2>/dev/null
dd if=/dev/urandom of=/tmp/scsi-ro.img bs=1M count=2 2>/dev/null
dd if=/dev/zero of=/tmp/scsi-lun5.img bs=1M count=0 seek=4 2>/dev/null
# 61 more logical units (sparse, on L1's tmpfs): 64 in all, auto-assigned to targets 2,
# 4, 5, ... (the first of them gets a second fio pattern).
extra=""
for i in $(seq 1 61); do
  dd if=/dev/zero of=/tmp/scsi-extra-$i.img bs=1M count=0 seek=16 2>/dev/null
  extra="$extra --scsi-disk path=/tmp/scsi-extra-$i.img"
done

# The helpers below that run beside the guest write their "L1: ..." facts to
# /tmp/l1-facts.log, printed once ringvisor has exited.
: >/tmp/l1-facts.log

# The NIC's L1 side: ringvisor creates TAP rvtap0; once it exists, L1 takes 169.254.100.1.
# Port 5000 (nc) keeps what L2 sends, its input held open so that it never half-closes
# first; port 8080 (busybox httpd) serves L2 a file.
mkdir -p /tmp/www/cgi-bin
# /cgi-bin/now: L1's wall clock (the one ringvisor's RTC reads), for L2 to compare with.
printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n%%s\\n" "$(date +%%s)"\n' \
  >/tmp/www/cgi-bin/now
chmod 755 /tmp/www/cgi-bin/now
dd if=/dev/urandom of=/tmp/www/to-l2 bs=1M count=4 2>/dev/null
echo "L1: net to-l2-md5=$(md5sum </tmp/www/to-l2 | cut -d' ' -f1)"
(
  for i in $(seq 1 600); do [ -d /sys/class/net/rvtap0 ] && break; sleep 0.1; done
  ip addr add 169.254.100.1/24 dev rvtap0 && ip link set rvtap0 up
) &
(sleep 900 | nc -l -p 5000 >/tmp/from-l2) &
# The control API, asked while the guest runs: once L2 has sent its file (the blk and
# scsi tests are done by then), `ringvisor ctl` reads info and stats. The wait is bounded
# by the run's own timeout, not by a guess at how long blk and scsi take: a debug build
# on a busy 2-core machine took more than the 120 s this once waited, and the stats then
# came before the NIC was up.
(
  for i in $(seq 1 9000); do [ -s /tmp/from-l2 ] && break; sleep 0.1; done
  ringvisor ctl --socket /tmp/rv.sock info >/tmp/api-info.json 2>&1
  echo "L1: api info exit=$? devices=$(grep -c '"kind"' /tmp/api-info.json) mode=$(stat -c %a /tmp/rv.sock)"
  ringvisor ctl --socket /tmp/rv.sock stats >/tmp/api-stats.json 2>&1
  echo "L1: api stats exit=$? blk0q0=$(grep -c '"blk0/q0"' /tmp/api-stats.json) net0q1=$(grep -c '"net0/q1"' /tmp/api-stats.json) frames=$(grep -c '"frames"' /tmp/api-stats.json) histograms=$(grep -c '"submit_to_complete_ns"' /tmp/api-stats.json)"
  ringvisor ctl --socket /tmp/rv.sock bogus >/tmp/api-bad.out 2>&1
  echo "L1: api bad exit=$? out=$(head -c 200 /tmp/api-bad.out)"
  # A 5 s pause; L2 waits for /paused-ms (served once the guest runs again).
  ringvisor ctl --socket /tmp/rv.sock pause >/tmp/api-pause.out 2>&1
  echo "L1: api pause exit=$? out=$(tr -d ' \n' </tmp/api-pause.out)"
  t0=$(/bin/date +%s%N)
  sleep 5
  ringvisor ctl --socket /tmp/rv.sock resume >/tmp/api-resume.out 2>&1
  echo "L1: api resume exit=$? out=$(tr -d ' \n' </tmp/api-resume.out)"
  t1=$(/bin/date +%s%N)
  # Written aside and renamed: L2 polls for the file and must never fetch it half-written.
  echo $(((t1 - t0) / 1000000)) >/tmp/paused-ms.tmp && mv /tmp/paused-ms.tmp /tmp/www/paused-ms
) >>/tmp/l1-facts.log 2>&1 &
api_pid=$!
httpd -p 8080 -h /tmp/www

# The low-priority devices (tests/lab/l2-tests/lowprio.sh): L2 writes an event line to
# the file port rv.events, L1 answers with one line into the FIFO behind port rv.in.
mkfifo /tmp/rvpipe.in /tmp/rvpipe.out
: >/tmp/l2-events
token=$(head -c 6 /dev/urandom | md5sum | cut -c1-12)
echo "L1: ports token=$token"
wait_event() { # wait_event WORD [TENTHS]: until L2 wrote it (at most 120 s by default)
  for i in $(seq 1 "${2:-1200}"); do grep -qx "$1" /tmp/l2-events && return 0; sleep 0.1; done
  echo "L1: ports no event $1"
  return 1
}
rss_kb() { # the VMM's RSS: not that of a `ringvisor ctl` the API checks may be running
  for pid in $(pidof ringvisor); do
    case " $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" in
      *" run "*) awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; return ;;
    esac
  done
  return 1
}
balloon_field() { # balloon_field NAME: from `ringvisor ctl balloon`
  ringvisor ctl --socket /tmp/rv.sock balloon | sed -n "s/^ *\"$1\": \([0-9]*\),*$/\1/p"
}
balloon_settle() { # balloon_settle SIZE BYTES: set the target, wait until the guest got there
  ringvisor ctl --socket /tmp/rv.sock balloon "$1" >/dev/null || return 1
  for i in $(seq 1 600); do [ "$(balloon_field actual_bytes)" = "$2" ] && return 0; sleep 0.1; done
  return 1
}
(
  wait_event hello && echo "hello-from-l1 $token" >/tmp/rvpipe.in
  # L2 waits for the answer: it goes even when the RSS could not be read (the check of
  # rss_filled_kb then fails, instead of a guest left holding its fill while L1 inflates).
  wait_event filled && { rss_filled=$(rss_kb); echo measured >/tmp/rvpipe.in; }
  wait_event freed
  t0=$(/bin/date +%s%N)
  balloon_settle 192M 201326592
  echo "L1: balloon inflate exit=$? ms=$((($(/bin/date +%s%N) - t0) / 1000000))"
  sleep 1
  rss_inflated=$(rss_kb)
  echo "L1: balloon rss_filled_kb=$rss_filled rss_inflated_kb=$rss_inflated inflated_pages=$(balloon_field inflated_pages) ignored_pages=$(balloon_field ignored_pages) reported_bytes=$(balloon_field reported_bytes) guest_stats_updates=$(balloon_field guest_stats_updates)"
  echo inflated >/tmp/rvpipe.in
  wait_event inflated-seen
  balloon_settle 0 0
  echo "L1: balloon deflate exit=$? deflated_pages=$(balloon_field deflated_pages)"
  echo deflated >/tmp/rvpipe.in
  wait_event shutdown 3000
  ringvisor ctl --socket /tmp/rv.sock stats >/tmp/api-stats-end.json 2>&1
  echo "L1: api lowprio reactors=$(grep -c '"low_priority_reactors"' /tmp/api-stats-end.json) console_queues=$(grep -c '"console0/q' /tmp/api-stats-end.json) balloon_queues=$(grep -c '"balloon0/q' /tmp/api-stats-end.json)"
  # Graceful: the power button; L2's acpid powers it off, ringvisor flushes and exits 0.
  ringvisor ctl --socket /tmp/rv.sock shutdown >/tmp/api-shutdown.out 2>&1
  echo "L1: api shutdown exit=$? pressed=$(grep -c '"pressed"' /tmp/api-shutdown.out)"
) >>/tmp/l1-facts.log 2>&1 &
lowprio_pid=$!

# The console, the ports and the balloon come from a config file (--config). Free page
# reporting stays off: the RSS the balloon gives back is then the balloon's alone (the
# device-path test covers reporting), and L1's nested paging churns less.
cat >/tmp/rv.toml <<'TOML'
virtio-console = "file=/tmp/hvc0.out"
balloon = "size=0,stats-interval=1,free-page-reporting=off"
[[serial-port]]
name = "rv.out"
file = "/tmp/port-out.bin"
[[serial-port]]
name = "rv.events"
file = "/tmp/l2-events"
[[serial-port]]
name = "rv.in"
pipe = "/tmp/rvpipe"
TOML

# --no-reboot: a guest reset (a triple fault) fails the run instead of rebooting, as QEMU's
# -no-reboot does for the reference.
measure_vmm ringvisor ringvisor run --no-reboot --kernel /l2/vmlinuz --initramfs /l2/initramfs.cpio.gz \
  --cpus "$CPUS" --memory "$MEMORY" \
  --disk path=/tmp/data.img,queues=2,serial=rv-data \
  --disk path=/tmp/ro.img,readonly=on \
  --disk path=/tmp/scratch.img \
  --scsi queues=2 \
  --scsi-disk path=/tmp/scsi-data.img,serial=rv-scsi-data \
  --scsi-disk path=/tmp/scsi-ro.img,readonly=on \
  --scsi-disk path=/tmp/scsi-lun5.img,target=3,lun=5 $extra \
  --net tap=rvtap0,mac=52:54:00:12:34:56 --api-socket /tmp/rv.sock \
  --config /tmp/rv.toml \
  --cmdline "console=ttyS0 reboot=k panic=-1 rv.test=smoke,lowprio,blk,scsi,net,shutdown"
status=$?
# The facts L1's helpers gathered while the guest ran: kept in a file until now, so that
# they never interleave with the guest's console lines.
# They end with the guest; a helper still waiting for a guest that died is stopped.
for i in $(seq 1 50); do
  kill -0 "$api_pid" 2>/dev/null || kill -0 "$lowprio_pid" 2>/dev/null || break
  sleep 0.1
done
kill "$api_pid" "$lowprio_pid" 2>/dev/null
cat /tmp/l1-facts.log

echo "L1: net from-l2-md5=$(md5sum </tmp/from-l2 | cut -d' ' -f1)"
echo "L1: ports out-md5=$(md5sum </tmp/port-out.bin | cut -d' ' -f1) bytes=$(wc -c </tmp/port-out.bin)"
echo "L1: ports hvc0=$(grep -c 'hvc0 says hello' /tmp/hvc0.out)"

# What the guest acknowledged must be in the file: the same fio job, verifying only.
fio --name=pattern --filename=/tmp/data.img --ioengine=psync --rw=randwrite \
  --bs=4k --numjobs=2 --size=8M --offset_increment=8M --randrepeat=1 \
  --verify=crc32c --verify_fatal=1 --verify_only --group_reporting \
  --output=/tmp/fio-host.out >/dev/null 2>&1
verify=$?
[ $verify -eq 0 ] || tail -n 20 /tmp/fio-host.out
echo "L1: host verify data.img exit=$verify"
[ "$(md5sum </tmp/ro.img)" = "$ro_before" ]
echo "L1: host ro.img unchanged exit=$?"
fio --name=pattern --filename=/tmp/scsi-data.img --ioengine=psync --rw=randwrite \
  --bs=4k --numjobs=2 --size=8M --offset_increment=8M --randrepeat=1 \
  --verify=crc32c --verify_fatal=1 --verify_only --group_reporting \
  --output=/tmp/fio-host-scsi.out >/dev/null 2>&1
verify=$?
[ $verify -eq 0 ] || tail -n 20 /tmp/fio-host-scsi.out
echo "L1: host verify scsi-data.img exit=$verify"
fio --name=extra --filename=/tmp/scsi-extra-1.img --ioengine=psync --rw=randwrite \
  --bs=4k --size=8M --randrepeat=1 --verify=crc32c --verify_fatal=1 --verify_only \
  --output=/tmp/fio-host-extra.out >/dev/null 2>&1
verify=$?
[ $verify -eq 0 ] || tail -n 20 /tmp/fio-host-extra.out
echo "L1: host verify scsi-extra-1.img exit=$verify"

# Bad input must give one clear line and a non-zero status, never a panic.
ringvisor run --kernel /nonexistent/vmlinuz >/tmp/neg.out 2>&1
echo "L1: negative missing-kernel exit=$? out=$(head -c 300 /tmp/neg.out | tr '\n' '|')"
ringvisor run --kernel /l2/initramfs.cpio.gz >/tmp/neg.out 2>&1
echo "L1: negative not-bzimage exit=$? out=$(head -c 300 /tmp/neg.out | tr '\n' '|')"
ringvisor run --kernel /l2/vmlinuz --cpus 255 >/tmp/neg.out 2>&1
echo "L1: negative too-many-cpus exit=$? out=$(head -c 300 /tmp/neg.out | tr '\n' '|')"
ringvisor run --kernel /l2/vmlinuz --cpus 0 >/tmp/neg.out 2>&1
echo "L1: negative zero-cpus exit=$? out=$(head -c 300 /tmp/neg.out | tr '\n' '|')"
ringvisor run --kernel /l2/vmlinuz --shutdown-timeout soon >/tmp/neg.out 2>&1
echo "L1: negative shutdown-timeout exit=$? out=$(head -c 300 /tmp/neg.out | tr '\n' '|')"
ringvisor run --kernel /l2/vmlinuz --memory 0 >/tmp/neg.out 2>&1
echo "L1: negative zero-memory exit=$? out=$(head -c 300 /tmp/neg.out | tr '\n' '|')"
ringvisor run --kernel /l2/vmlinuz --disk path=/nonexistent.img >/tmp/neg.out 2>&1
echo "L1: negative missing-disk exit=$? out=$(head -c 300 /tmp/neg.out | tr '\n' '|')"
ringvisor run --kernel /l2/vmlinuz --net tap=no/such >/tmp/neg.out 2>&1
echo "L1: negative bad-tap exit=$? out=$(head -c 300 /tmp/neg.out | tr '\n' '|')"
ringvisor run --kernel /l2/vmlinuz --scsi-disk path=/tmp/scsi-ro.img,target=1,lun=0 \
  --scsi-disk path=/tmp/scsi-lun5.img,target=1,lun=0 >/tmp/neg.out 2>&1
echo "L1: negative duplicate-lun exit=$? out=$(head -c 300 /tmp/neg.out | tr '\n' '|')"
exit "$status"
