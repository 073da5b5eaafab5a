#!/usr/bin/env bash
# Nested lab driver: boots a stock Linux guest (L2) under a VMM that runs inside a
# TCG-emulated AMD-V machine (L1), because the build/CI machines have no usable hardware
# virtualization. See tests/lab/README.md.
#
#   lab.sh deps                      install the Debian packages the lab needs (root)
#   lab.sh images                    build (or reuse) the cached L2 and L1-base initramfs
#   lab.sh run --scenario FILE [--vmm BIN] [--timeout SECS] [--extra SRC:DEST]...
#              [--collect FILE]     FILE (a raw image) is L1's /dev/vda: what a scenario
#                                   writes there comes back (fio-suite: a tar archive)
#              [--pidfile FILE]     L1's QEMU writes its pid there (a caller that stops
#                                   the run early ends QEMU with it)
#   lab.sh kernels                   print the discovered L1 and L2 kernels
#   lab.sh boot [--shell]            build ringvisor and boot the default guest on this
#                                    terminal: on /dev/kvm with hardware virtualization,
#                                    through the nested lab otherwise
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$LAB_DIR/../.." && pwd)
CACHE=${RINGVISOR_LAB_CACHE:-$REPO/target/lab}

# Everything the lab uses comes from these packages (qemu-system-x86 is L1's software CPU
# and the reference VMM inside L1, never the VMM under test; chromium renders the fio
# suite's HTML report for its check).
PACKAGES=(qemu-system-x86 linux-image-cloud-amd64 linux-image-amd64 busybox-static fio
  iperf3 cpio kmod gzip coreutils chromium)
# Packages whose files end up in the images: their versions are part of the cache key.
IMAGE_PACKAGES=(busybox-static fio iperf3 qemu-system-x86 qemu-system-data seabios
  ipxe-qemu coreutils)

# Stock guest drivers the L2 guest must be able to bind (their depends closure is added).
L2_MODULES=(virtio_pci virtio_blk virtio_scsi sd_mod virtio_net virtio_console
  virtio_balloon qxl virtio_input ptp_kvm)
# L1 needs KVM (nested SVM on the emulated EPYC) and TUN for L1<->L2 networking.
L1_MODULES=(irqbypass kvm kvm-amd tun virtio_pci virtio_blk)

# QEMU data files needed inside L1 for `-M pc`/`-M q35 -nographic -kernel` (found with
# strace: qemu opens exactly these), plus the virtio-net option ROM so a side-by-side
# `-device virtio-net-pci` works without romfile=. QEMU looks them up relative to its
# binary (/usr/bin/../share/...), so they keep their installed paths.
QEMU_DATA=(
  /usr/share/qemu/kvmvapic.bin
  /usr/share/qemu/linuxboot.bin
  /usr/share/qemu/linuxboot_dma.bin
  /usr/share/qemu/pvh.bin
  /usr/share/seabios/bios-256k.bin
  /usr/share/seabios/vgabios-stdvga.bin
  /usr/share/seabios/vgabios-qxl.bin
  /usr/share/seabios/vgabios-virtio.bin
  /usr/lib/ipxe/qemu/efi-virtio.rom
)

# Markers printed by l1-init.sh; `run` fails if the end marker never shows up.
L1_END_MARKER='L1: end'

log() { printf 'lab: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

usage() {
  sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

# ---------------------------------------------------------------------------------- deps

pkg_installed() {
  # `dpkg -s` alone also succeeds for removed-but-not-purged packages, so check the state.
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

cmd_deps() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    pkg_installed "$p" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "deps: all installed"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "deps: need root to install: ${missing[*]}"
  log "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Recommends would pull GUI/firmware packages the lab never uses.
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" \
    </dev/null >/dev/null
}

# ------------------------------------------------------------------------------- kernels

# Prints the newest installed kernel version for "l1" (Debian cloud flavour: small, has
# kvm-amd/tun as modules) or "l2" (generic flavour: has the stock virtio/qxl drivers).
# Versions change with every Debian kernel upload, so they are discovered, never written.
find_kernel() {
  local which=$1 f v found=()
  for f in /boot/vmlinuz-*; do
    [ -e "$f" ] || continue
    v=${f#/boot/vmlinuz-}
    case "$which:$v" in
      l1:*-cloud-amd64) ;;
      l2:*-cloud-amd64 | l2:*-rt-amd64) continue ;;
      l2:*-amd64) ;;
      *) continue ;;
    esac
    # A kernel without its modules tree is half-removed; the images need the modules.
    [ -d "/lib/modules/$v" ] && found+=("$v")
  done
  [ ${#found[@]} -gt 0 ] || die "no $which kernel in /boot (run: lab.sh deps)"
  printf '%s\n' "${found[@]}" | sort -V | tail -n 1
}

cmd_kernels() {
  printf 'L1_KERNEL=/boot/vmlinuz-%s\n' "$(find_kernel l1)"
  printf 'L2_KERNEL=/boot/vmlinuz-%s\n' "$(find_kernel l2)"
}

# -------------------------------------------------------------------------------- images

# Appends to MOD_ORDER the files of module $2 and its `depends` closure for kernel $1,
# dependencies first, so that busybox insmod (which does no dependency resolution) can
# load them in list order.
declare -A MOD_SEEN=()
MOD_ORDER=()
mod_visit() {
  local kver=$1 name=${2//-/_} file deps dep
  [ -z "${MOD_SEEN[$name]:-}" ] || return 0
  MOD_SEEN[$name]=1
  file=$(modinfo -k "$kver" -F filename "$name" | head -n 1) ||
    die "module $name not found for kernel $kver"
  [ -n "$file" ] || die "module $name not found for kernel $kver"
  deps=$(modinfo -k "$kver" -F depends "$name" | head -n 1)
  for dep in ${deps//,/ }; do
    mod_visit "$kver" "$dep"
  done
  # Built into the kernel: nothing to load.
  case $file in "(builtin)" | builtin*) return 0 ;; esac
  MOD_ORDER+=("$file")
}

# install_modules ROOT KVER NAME...: copies the closure into ROOT/lib/modules/KVER
# (decompressed: busybox insmod cannot read .ko.xz/.ko.zst) and writes the load order to
# ROOT/etc/lab/modules as "PATH NAME" lines.
install_modules() {
  local root=$1 kver=$2 file rel dest
  shift 2
  MOD_SEEN=()
  MOD_ORDER=()
  local m
  for m in "$@"; do
    mod_visit "$kver" "$m"
  done
  mkdir -p "$root/etc/lab"
  : >"$root/etc/lab/modules"
  for file in "${MOD_ORDER[@]}"; do
    rel=${file#/lib/modules/"$kver"/}
    rel=${rel#/usr/lib/modules/"$kver"/}
    dest=/lib/modules/$kver/${rel%.*}
    case $file in
      *.ko) dest=/lib/modules/$kver/$rel ;;
    esac
    mkdir -p "$(dirname "$root$dest")"
    case $file in
      *.ko) cp "$file" "$root$dest" ;;
      *.ko.xz) xz -dc "$file" >"$root$dest" ;;
      *.ko.zst) zstd -q -dc "$file" >"$root$dest" ;;
      *.ko.gz) gzip -dc "$file" >"$root$dest" ;;
      *) die "unknown module format: $file" ;;
    esac
    printf '%s %s\n' "$dest" "$(basename "${dest%.ko}")" >>"$root/etc/lab/modules"
  done
}

# copy_with_libs ROOT SRC DEST: installs binary SRC at ROOT/DEST plus the shared libraries
# and dynamic loader `ldd` reports, at the paths ldd prints (the loader's default search
# path and the libraries' RUNPATHs then find them without an ld.so.cache).
copy_with_libs() {
  local root=$1 src=$2 dest=$3 out lib
  install -D -m 0755 "$src" "$root$dest"
  # A static binary makes ldd fail with "not a dynamic executable": nothing to add then.
  out=$(ldd "$src" 2>/dev/null) || return 0
  if grep -q 'not found' <<<"$out"; then
    die "$src: missing libraries: $(grep 'not found' <<<"$out" | tr -s ' \t\n' ' ')"
  fi
  while read -r lib; do
    [ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out")
}

# Common skeleton of both initramfs images: busybox with all applet links.
make_skeleton() {
  local root=$1 applet
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,etc,root,var/tmp}
  install -D -m 0644 "$LAB_DIR/init-common.sh" "$root/lib/lab/init-common.sh"
  install -m 0755 /bin/busybox "$root/bin/busybox"
  while read -r applet; do
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
  done < <(/bin/busybox --list-full)
  # busybox date has no %N: ship coreutils date for `/bin/date +%s%N` timings. The full
  # path matters: this busybox's ash runs its own applet for a bare `date`.
  rm -f "$root/bin/date"
  copy_with_libs "$root" /bin/date /bin/date
  # The kernel opens /dev/console for /init before anything can mount devtmpfs; without
  # the node /init starts with no stdio (the init scripts also re-open it to be safe).
  if [ "$(id -u)" -eq 0 ]; then
    mknod -m 0600 "$root/dev/console" c 5 1
  fi
}

# make_cpio ROOT OUT: newc cpio, gzip -1 (fast to unpack under TCG), root-owned, sorted
# so identical inputs give identical archives.
make_cpio() {
  local root=$1 out=$2
  (cd "$root" && find . -print0 | LC_ALL=C sort -z |
    cpio -o -0 -H newc -R 0:0 --quiet | gzip -1 >"$out.tmp")
  mv "$out.tmp" "$out"
}

build_l2() {
  local root=$1 out=$2 kver=$3 t
  make_skeleton "$root"
  install -m 0755 "$LAB_DIR/l2-init.sh" "$root/init"
  install_modules "$root" "$kver" "${L2_MODULES[@]}"
  copy_with_libs "$root" /usr/bin/fio /usr/bin/fio
  copy_with_libs "$root" /usr/bin/iperf3 /usr/bin/iperf3
  mkdir -p "$root/l2-tests"
  for t in "$LAB_DIR"/l2-tests/*.sh; do
    [ -e "$t" ] && install -m 0755 "$t" "$root/l2-tests/"
  done
  make_cpio "$root" "$out"
}

build_l1() {
  local root=$1 out=$2 kver=$3 l2kernel=$4 l2initrd=$5 f
  make_skeleton "$root"
  install -m 0755 "$LAB_DIR/l1-init.sh" "$root/init"
  install -D -m 0644 "$LAB_DIR/l1-measure.sh" "$root/lib/lab/measure.sh"
  install_modules "$root" "$kver" "${L1_MODULES[@]}"
  install -D -m 0644 "$l2kernel" "$root/l2/vmlinuz"
  install -D -m 0644 "$l2initrd" "$root/l2/initramfs.cpio.gz"
  copy_with_libs "$root" /usr/bin/qemu-system-x86_64 /usr/bin/qemu-system-x86_64
  # Checks on the host side of guest disks (fio --verify_only on the backing file).
  copy_with_libs "$root" /usr/bin/fio /usr/bin/fio
  copy_with_libs "$root" /usr/bin/iperf3 /usr/bin/iperf3
  for f in "${QEMU_DATA[@]}"; do
    install -D -m 0644 "$(readlink -f "$f")" "$root$f"
  done
  make_cpio "$root" "$out"
}

# Everything the images depend on; its hash is the cache key.
stamp_inputs() {
  local l1 l2 p f
  l1=$(find_kernel l1)
  l2=$(find_kernel l2)
  printf 'l1-kernel %s %s\n' "$l1" "$(dpkg-query -W -f='${Version}' "linux-image-$l1" 2>/dev/null || true)"
  printf 'l2-kernel %s %s\n' "$l2" "$(dpkg-query -W -f='${Version}' "linux-image-$l2" 2>/dev/null || true)"
  for p in "${IMAGE_PACKAGES[@]}"; do
    printf 'pkg %s %s\n' "$p" "$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || true)"
  done
  for f in "$LAB_DIR/lab.sh" "$LAB_DIR/init-common.sh" "$LAB_DIR/l1-init.sh" "$LAB_DIR/l1-measure.sh" "$LAB_DIR/l2-init.sh" "$LAB_DIR"/l2-tests/*.sh; do
    [ -e "$f" ] && printf 'file %s %s\n' "${f#"$LAB_DIR"/}" "$(sha256sum <"$f" | cut -d' ' -f1)"
  done
  # Building as non-root gives images without /dev/console.
  printf 'uid0 %s\n' "$([ "$(id -u)" -eq 0 ] && echo yes || echo no)"
}

cmd_images() {
  mkdir -p "$CACHE"
  # make_cpio writes from inside the tree it archives: the cache path must be absolute.
  CACHE=$(cd "$CACHE" && pwd)
  # Parallel `run`s (e.g. cargo test threads) share the cache: build under a lock.
  exec 9>"$CACHE/.lock"
  flock 9
  local want have start tmp l1 l2
  want=$(stamp_inputs | sha256sum | cut -d' ' -f1)
  have=$(cat "$CACHE/stamp" 2>/dev/null || true)
  if [ "$want" = "$have" ] && [ -s "$CACHE/l1-base.cpio.gz" ] && [ -s "$CACHE/l2-initramfs.cpio.gz" ]; then
    log "images: up to date ($CACHE)"
    exec 9>&-
    return 0
  fi
  start=$(date +%s)
  l1=$(find_kernel l1)
  l2=$(find_kernel l2)
  log "images: building (L1 kernel $l1, L2 kernel $l2) in $CACHE"
  tmp=$(mktemp -d "$CACHE/build.XXXXXX")
  # shellcheck disable=SC2064 # expand $tmp now: it is local to this function
  trap "rm -rf '$tmp'" EXIT
  build_l2 "$tmp/l2" "$tmp/l2-initramfs.cpio.gz" "$l2"
  build_l1 "$tmp/l1" "$tmp/l1-base.cpio.gz" "$l1" "/boot/vmlinuz-$l2" "$tmp/l2-initramfs.cpio.gz"
  mv "$tmp/l2-initramfs.cpio.gz" "$tmp/l1-base.cpio.gz" "$CACHE/"
  stamp_inputs >"$CACHE/stamp.inputs"
  # The stamp goes last: an interrupted build is never taken for a complete one.
  printf '%s\n' "$want" >"$CACHE/stamp"
  rm -rf "$tmp"
  trap - EXIT
  log "images: built in $(($(date +%s) - start)) s:" \
    "l2-initramfs $(du -h "$CACHE/l2-initramfs.cpio.gz" | cut -f1)," \
    "l1-base $(du -h "$CACHE/l1-base.cpio.gz" | cut -f1)"
  exec 9>&-
}

# ----------------------------------------------------------------------------------- run

cmd_run() {
  local scenario="" vmm="" timeout_s=600 extras=() e src dest stdin=/dev/null collect=() pidfile=()
  while [ $# -gt 0 ]; do
    case $1 in
      # The terminal goes to L1's serial console, and from there to the VMM's.
      --interactive) stdin=/dev/stdin; shift ;;
      --scenario) scenario=${2:?--scenario needs a file}; shift 2 ;;
      --vmm) vmm=${2:?--vmm needs a binary}; shift 2 ;;
      --timeout) timeout_s=${2:?--timeout needs seconds}; shift 2 ;;
      --extra) extras+=("${2:?--extra needs SRC:DEST}"); shift 2 ;;
      --collect) collect=(-drive "file=${2:?--collect needs a file},format=raw,if=virtio"); shift 2 ;;
      --pidfile) pidfile=(-pidfile "${2:?--pidfile needs a file}"); shift 2 ;;
      *) usage ;;
    esac
  done
  [ -n "$scenario" ] || usage
  [ -f "$scenario" ] || die "no such scenario: $scenario"
  [ -z "$vmm" ] || [ -x "$vmm" ] || die "VMM binary not executable: $vmm"
  case $timeout_s in '' | *[!0-9]*) die "--timeout wants whole seconds" ;; esac

  cmd_images
  local workdir root l1 start rc
  l1=$(find_kernel l1)
  workdir=$(mktemp -d "$CACHE/run.XXXXXX")
  # shellcheck disable=SC2064 # expand $workdir now: it is local to this function
  trap "rm -rf '$workdir'" EXIT
  root=$workdir/root

  # The per-run archive: small, so a new VMM build costs seconds, not an image rebuild.
  mkdir -p "$root"
  [ -z "$vmm" ] || copy_with_libs "$root" "$vmm" /usr/bin/ringvisor
  install -m 0755 "$scenario" "$root/scenario.sh"
  for e in ${extras[@]+"${extras[@]}"}; do
    src=${e%%:*}
    dest=${e#*:}
    if [ "$src" = "$e" ] || [ ! -e "$src" ]; then
      die "bad --extra $e (want SRC:DEST with an existing SRC)"
    fi
    case $dest in /*) ;; *) die "--extra DEST must be absolute: $e" ;; esac
    mkdir -p "$(dirname "$root$dest")"
    cp -a "$src" "$root$dest"
  done
  make_cpio "$root" "$workdir/run.cpio.gz"
  # Linux unpacks concatenated (compressed) cpio archives as one initramfs, later files
  # replacing earlier ones, so the cached base never has to be rewritten.
  cat "$CACHE/l1-base.cpio.gz" "$workdir/run.cpio.gz" >"$workdir/initrd.cpio.gz"

  log "run: $(basename "$scenario")${vmm:+ with $vmm}, timeout ${timeout_s}s"
  start=$(date +%s%N)
  # tsc=reliable: under TCG the L1 TSC comes from one host clock for all vCPUs, but L1
  # would mark it unstable and fall back to hpet; KVM then refuses KVM_HC_CLOCK_PAIRING
  # (no TSC-based host clock), and the L2 ptp_kvm driver fails with EOPNOTSUPP.
  # stdin from /dev/null: no tty to put in raw mode (and none in CI). The serial console
  # adds \r at every nesting level and SeaBIOS prints terminal resets (ESC c, ESC [2J)
  # in front of the next line; drop them (a reset becomes a line break) so callers can
  # match whole "^L2: " lines.
  # `timeout` puts its child in a new process group, which a terminal stops (SIGTTIN) as
  # soon as it reads: an interactive run keeps the terminal's group (--foreground).
  local timeout_args=(--kill-after=10)
  [ "$stdin" = /dev/null ] || timeout_args=(--foreground)
  # -xsave: with XSAVE, L2 guests crashed (and took L1 down with a kernel stack overflow
  # in KVM's vCPU thread) when their first AVX user started, under QEMU-KVM as well as
  # ringvisor: TCG's nested SVM does not trap the L2 guest's XSETBV, so L1's KVM and the
  # L2 guest disagree about XCR0. Without XSAVE both levels use FXSAVE and that is gone.
  set +e
  timeout "${timeout_args[@]}" "$timeout_s" \
    qemu-system-x86_64 -accel tcg,thread=multi -cpu EPYC,+svm,+npt,-xsave -smp 2 -m 3072 \
    -nographic -no-reboot -nic none ${collect[@]+"${collect[@]}"} ${pidfile[@]+"${pidfile[@]}"} \
    -kernel "/boot/vmlinuz-$l1" -initrd "$workdir/initrd.cpio.gz" \
    -append "console=ttyS0 panic=-1 quiet tsc=reliable" <"$stdin" 2>&1 |
    sed -u -e 's/\r//g' -e 's/\x1bc/\n/g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' |
    tee "$workdir/l1.log"
  rc=${PIPESTATUS[0]}
  set -e
  log "run: L1 took $((($(date +%s%N) - start) / 1000000)) ms, qemu exit $rc"

  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    die "run: timed out after ${timeout_s}s"
  fi
  grep -q "^$L1_END_MARKER" "$workdir/l1.log" || die "run: L1 never printed '$L1_END_MARKER'"
  if grep -q '^L1: scenario exit=' "$workdir/l1.log" &&
    ! grep -q '^L1: scenario exit=0$' "$workdir/l1.log"; then
    die "run: scenario failed: $(grep '^L1: scenario exit=' "$workdir/l1.log")"
  fi
  [ "$rc" -eq 0 ] || die "run: L1 qemu exited with $rc"
}

# ---------------------------------------------------------------------------------- boot

# True when this host can run a guest directly: the CPU exposes VT-x/AMD-V and /dev/kvm
# opens read-write. (Software KVM without them cannot boot a stock kernel: see LAB.md.)
has_hardware_kvm() {
  grep -qE '\b(vmx|svm)\b' /proc/cpuinfo && [ -r /dev/kvm ] && [ -w /dev/kvm ]
}

cmd_boot() {
  local shell="" cmdline l2 vmm
  while [ $# -gt 0 ]; do
    case $1 in
      --shell) shell=1; shift ;;
      *) usage ;;
    esac
  done
  cmd_deps
  log "boot: building ringvisor (release)"
  cargo build --release --quiet --manifest-path "$REPO/Cargo.toml" --bin ringvisor
  vmm=$REPO/target/release/ringvisor
  cmd_images
  cmdline="console=ttyS0 reboot=k panic=-1 rv.test=smoke${shell:+ rv.shell=1}"
  if has_hardware_kvm; then
    l2=$(find_kernel l2)
    log "boot: hardware virtualization found: ringvisor runs the guest on /dev/kvm"
    # A scratch disk for the guest (/dev/vda), kept between boots.
    [ -e "$CACHE/demo-disk.img" ] || truncate -s 256M "$CACHE/demo-disk.img"
    exec "$vmm" run --kernel "/boot/vmlinuz-$l2" --initramfs "$CACHE/l2-initramfs.cpio.gz" \
      --cpus 2 --memory 1G --disk "path=$CACHE/demo-disk.img,queues=2" --cmdline "$cmdline"
  fi
  log "boot: no hardware virtualization on this host: booting through the nested lab" \
    "(ringvisor inside an L1 machine with emulated AMD-V; expect it to be slow)"
  local env_file
  env_file=$(mktemp)
  printf 'CMDLINE="%s"\n' "$cmdline" >"$env_file"
  local args=(--scenario "$LAB_DIR/scenarios/boot-guest.sh" --vmm "$vmm"
    --extra "$env_file:/etc/lab/boot.env")
  # Interactive only with a terminal: a shell needs keystrokes, CI has none.
  [ -z "$shell" ] || [ ! -t 0 ] || args+=(--interactive)
  # No timeout worth the name for someone typing in the guest's shell.
  [ -z "$shell" ] || args+=(--timeout 86400)
  cmd_run "${args[@]}"
  rm -f "$env_file"
}

# ---------------------------------------------------------------------------------- main

[ $# -gt 0 ] || usage
cmd=$1
shift
case $cmd in
  deps) cmd_deps "$@" ;;
  images) cmd_images "$@" ;;
  run) cmd_run "$@" ;;
  kernels) cmd_kernels "$@" ;;
  boot) cmd_boot "$@" ;;
  *) usage ;;
esac
