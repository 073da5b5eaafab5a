#!/usr/bin/env bash
# Nested lab driver: boots a stock Linux guest (L2) under a VMM that runs inside a
# TCG-emulated AMD-V machine (L1), because the build/CI machines have no usable hardware
# virtualization. See tests/lab/README.md.
#
#   lab.sh deps                      install the host tools the lab needs (root) and unpack
#                                    its kernels and QEMUs into the cache (never /boot)
#   lab.sh deps-report               install what renders the fio suite's report (chromium;
#                                    root): only the test that renders it asks for it
#   lab.sh ready                     succeeds when `deps` has run
#   lab.sh images                    build (or reuse) the cached L2 and L1-base initramfs
#   lab.sh run --scenario FILE [--vmm BIN] [--timeout SECS] [--extra SRC:DEST]...
#              [--collect FILE]     FILE (a raw image) is L1's /dev/vda: what a scenario
#                                   writes there comes back (fio-suite: a tar archive)
#              [--disk FILE]        FILE (a raw image) is L1's next virtio disk (/dev/vdb
#                                   after a --collect, /dev/vda without)
#              [--pidfile FILE]     L1's QEMU writes its pid there (a caller that stops
#                                   the run early ends QEMU with it)
#              [--l1-cpus N]        L1's vCPUs (default 1, RINGVISOR_LAB_L1_CPUS)
#              [--nvme MIB]         an emulated NVMe namespace of MIB MiB for L1
#                                   (/dev/nvme0n1, generic device /dev/ng0n1)
#   lab.sh kernels                   print the L1 and L2 kernels and QEMUs in use
#   lab.sh debian-root               build (or reuse) the Debian root image, print its path
#   lab.sh ledger FILE               summarise the runs logged to $RINGVISOR_LAB_LEDGER;
#                                    fails when more than 25 % were lost to the lab
#   lab.sh boot [--shell]            build ringvisor and boot the default guest on this
#                                    terminal: on /dev/kvm with hardware virtualization,
#                                    through the nested lab otherwise
# A run the lab lost with evidence (L1 kernel fault, L1 QEMU abort) exits 75. RINGVISOR_LAB_L1
# picks L1: new (QEMU 10 + kernel 6.12, the default) or old (QEMU 7.2 + kernel 6.1).
set -euo pipefail
# kmod's modinfo and depmod, blkdiscard: a user's PATH often lacks the sbin directories.
PATH=$PATH:/usr/sbin:/sbin

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$LAB_DIR/../.." && pwd)
CACHE=${RINGVISOR_LAB_CACHE:-$REPO/target/lab}

# The host gets only tools and libraries from Debian: busybox, fio and iperf3 go into the
# images, kmod/cpio/gzip/zstd/xz build them; acpica-tools (iasl) disassembles ringvisor's
# ACPI tables for their check; mmdebstrap and e2fsprogs make the Debian root image
# (debian-root.sh) and check it. Kernels and QEMU are never installed on the host: see
# "sources" below.
HOST_PACKAGES=(busybox-static fio iperf3 cpio kmod gzip coreutils zstd xz-utils
  acpica-tools mmdebstrap e2fsprogs)
# Only for the one test that renders the fio suite's HTML report (`lab.sh deps-report`,
# which tests/bench_lab.rs runs): a browser is no part of the lab.
REPORT_PACKAGES=(chromium)
# Packages whose files end up in the images: their versions are part of the cache key.
IMAGE_PACKAGES=(busybox-static fio iperf3 coreutils util-linux)

# Which L1 the lab runs (tests/lab/README.md has the loss rates measured for each):
#   new  QEMU 10.0 as L1's software CPU, L1 kernel 6.12 (bookworm-backports)
#   old  QEMU 7.2, L1 kernel 6.1 (bookworm)
# The L2 kernel (bookworm's generic 6.1) and the reference VMM inside L1 (QEMU 10) are the
# same for both, so that a comparison run under either L1 measures the same guest.
LAB_L1=${RINGVISOR_LAB_L1:-new}
case $LAB_L1 in old | new) ;; *) echo "lab: RINGVISOR_LAB_L1 is old or new, not '$LAB_L1'" >&2; exit 2 ;; esac
# How TCG runs L1's two vCPUs: multi (a host thread each, the default) or single (one host
# thread taking turns), for measuring whether the lab's faults depend on it.
LAB_TCG_THREAD=${RINGVISOR_LAB_TCG_THREAD:-multi}
# How many vCPUs L1 has: 1 by default. With 2, TCG runs L1's vCPUs on two host threads and
# the lab lost most runs (tests/lab/README.md has the rates); `run --l1-cpus 2` for a
# scenario that needs two cores.
LAB_L1_CPUS=${RINGVISOR_LAB_L1_CPUS:-1}
case $LAB_L1_CPUS in [1-9]) ;; *) echo "lab: RINGVISOR_LAB_L1_CPUS is a count of 1 to 9, not '$LAB_L1_CPUS'" >&2; exit 2 ;; esac
case $LAB_TCG_THREAD in single | multi) ;; *) echo "lab: RINGVISOR_LAB_TCG_THREAD is single or multi, not '$LAB_TCG_THREAD'" >&2; exit 2 ;; esac

# Stock guest drivers the L2 guest must be able to bind (their depends closure is added).
# button (the ACPI power button) and evdev (its /dev/input node, which busybox acpid
# reads) make `ringvisor ctl shutdown` reach the guest. ext4 mounts the Debian root image
# (debian-root.sh); it asks the crypto API for crc32c, which modprobe would have loaded.
L2_MODULES=(virtio_pci virtio_blk virtio_scsi sd_mod virtio_net virtio_console
  virtio_balloon qxl virtio_input ptp_kvm evdev button crc32c_generic ext4)
# L1 needs KVM (nested SVM on the emulated EPYC), TUN for L1<->L2 networking and vhost-net
# for the reference VMM's kernel fast path.
L1_MODULES=(irqbypass kvm kvm-amd tun vhost_net virtio_pci virtio_blk)

# QEMU data files needed inside L1 for `-M pc`/`-M q35 -nographic -kernel` (found with
# strace: qemu opens exactly these), plus the virtio-net option ROM so a side-by-side
# `-device virtio-net-pci` works without romfile=. Paths are those of the installed
# packages (QEMU's compiled-in firmware path), taken from the reference QEMU's tree.
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
# `run` exits with this status when the lab, not the VMM under test, lost the run and it
# has the evidence to show for it (see classify_loss): the only failure a caller may retry.
LAB_LOST_STATUS=75
# L1's /init writes a kernel message every 5 s (l1-init.sh). After LAB_POKE_S seconds
# of silence (one beat late) the watcher sends a byte to L1's kernel-log port (QEMU 10's
# input-path; an interrupt for L1, which ends a wait for one that TCG lost) before the
# guest's own timeouts (a driver's 5 s wait for its device) run out; after LAB_FROZEN_S
# it counts L1 as stopped as a whole. A busy L1 still schedules a process every few ms.
LAB_POKE_S=8
LAB_FROZEN_S=60

log() { printf 'lab: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

usage() {
  sed -n '2,30s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

# ---------------------------------------------------------------------------------- deps

pkg_installed() {
  # `dpkg -s` alone also succeeds for removed-but-not-purged packages, so check the state.
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

# return_to_sudo_user PATH...: under sudo, what the set-up created goes back to the user
# who ran sudo, so that later runs as that user (in the kvm group) can rebuild and write.
return_to_sudo_user() {
  [ "$(id -u)" -eq 0 ] && [ -n "${SUDO_UID:-}" ] && [ "$SUDO_UID" != 0 ] || return 0
  chown -R "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$@" 2>/dev/null || true
}

# apt_install PACKAGE...: installs those not installed yet (root).
apt_install() {
  local missing=() p
  for p in "$@"; do
    pkg_installed "$p" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  [ "$(id -u)" -eq 0 ] || die "deps: need root to install: ${missing[*]}"
  log "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Recommends would pull GUI/firmware packages the lab never uses.
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" \
    </dev/null >/dev/null
}

# Kernels, QEMUs, `deps` and `ready`: tests/lab/sources.sh.
# shellcheck source=tests/lab/sources.sh
. "$LAB_DIR/sources.sh"
# The Debian root image (`debian-root`): tests/lab/debian-root.sh.
# shellcheck source=tests/lab/debian-root.sh
. "$LAB_DIR/debian-root.sh"

# -------------------------------------------------------------------------------- images

# Appends to MOD_ORDER the files of module $3 and its `depends` closure for kernel $2
# unpacked under $1, dependencies first, so that busybox insmod (which does no dependency
# resolution) can load them in list order.
declare -A MOD_SEEN=()
MOD_ORDER=()
mod_visit() {
  local base=$1 kver=$2 name=${3//-/_} file deps dep
  [ -z "${MOD_SEEN[$name]:-}" ] || return 0
  MOD_SEEN[$name]=1
  file=$(modinfo -b "$base" -k "$kver" -F filename "$name" | head -n 1) ||
    die "module $name not found for kernel $kver"
  [ -n "$file" ] || die "module $name not found for kernel $kver"
  deps=$(modinfo -b "$base" -k "$kver" -F depends "$name" | head -n 1)
  for dep in ${deps//,/ }; do
    mod_visit "$base" "$kver" "$dep"
  done
  # Built into the kernel: nothing to load.
  case $file in "(builtin)" | builtin*) return 0 ;; esac
  MOD_ORDER+=("$file")
}

# install_modules ROOT BASE KVER NAME...: copies the closure of kernel KVER unpacked under
# BASE into ROOT/lib/modules/KVER
# (decompressed: busybox insmod cannot read .ko.xz/.ko.zst) and writes the load order to
# ROOT/etc/lab/modules as "PATH NAME" lines.
install_modules() {
  local root=$1 base=$2 kver=$3 file rel dest
  shift 3
  MOD_SEEN=()
  MOD_ORDER=()
  local m
  for m in "$@"; do
    mod_visit "$base" "$kver" "$m"
  done
  mkdir -p "$root/etc/lab"
  : >"$root/etc/lab/modules"
  for file in "${MOD_ORDER[@]}"; do
    rel=${file#"$base"/lib/modules/"$kver"/}
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
  install_modules "$root" "$CACHE/roots/l2-kernel" "$kver" "${L2_MODULES[@]}"
  copy_with_libs "$root" /usr/bin/fio /usr/bin/fio
  copy_with_libs "$root" /usr/bin/iperf3 /usr/bin/iperf3
  # util-linux's blkdiscard, beside busybox's: only it zeroes (-z, a virtio WRITE_ZEROES).
  copy_with_libs "$root" /sbin/blkdiscard /opt/util-linux/blkdiscard
  # busybox acpid runs /etc/acpi/PWRF/00000080 when the power button is pressed.
  install -D -m 0755 "$LAB_DIR/l2-power-button.sh" "$root/etc/acpi/PWRF/00000080"
  mkdir -p "$root/l2-tests"
  for t in "$LAB_DIR"/l2-tests/*.sh; do
    [ -e "$t" ] && install -m 0755 "$t" "$root/l2-tests/"
  done
  make_cpio "$root" "$out"
}

build_l1() {
  local root=$1 out=$2 kver=$3 l2kernel=$4 l2initrd=$5 f reference
  reference=$(reference_root)
  make_skeleton "$root"
  install -m 0755 "$LAB_DIR/l1-init.sh" "$root/init"
  install -D -m 0644 "$LAB_DIR/l1-measure.sh" "$root/lib/lab/measure.sh"
  install -D -m 0644 "$LAB_DIR/boot-direct.sh" "$root/lib/lab/boot-direct.sh"
  install_modules "$root" "$(l1_root)" "$kver" "${L1_MODULES[@]}"
  install -D -m 0644 "$l2kernel" "$root/l2/vmlinuz"
  install -D -m 0644 "$l2initrd" "$root/l2/initramfs.cpio.gz"
  # The reference VMM: QEMU 10 with KVM, which needs none of its loadable modules.
  copy_with_libs "$root" "$reference/usr/bin/qemu-system-x86_64" /usr/bin/qemu-system-x86_64
  # Checks on the host side of guest disks (fio --verify_only on the backing file).
  copy_with_libs "$root" /usr/bin/fio /usr/bin/fio
  copy_with_libs "$root" /usr/bin/iperf3 /usr/bin/iperf3
  # Checks of a guest's file system after it shut down (the Debian root image).
  copy_with_libs "$root" "$(command -v e2fsck)" /sbin/e2fsck
  for f in "${QEMU_DATA[@]}"; do
    install -D -m 0644 "$(readlink -f "$reference$f")" "$root$f"
  done
  make_cpio "$root" "$out"
}

# Everything the images depend on; its hash is the cache key.
stamp_inputs() {
  local p f name
  printf 'l1 %s\n' "$LAB_L1"
  for name in l2-kernel "l1-$LAB_L1" l1-new; do
    printf 'root %s %s\n' "$name" "$(tr '\n' ' ' <"$CACHE/roots/$name/.complete")"
  done
  for p in "${IMAGE_PACKAGES[@]}"; do
    printf 'pkg %s %s\n' "$p" "$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || true)"
  done
  for f in "$LAB_DIR/lab.sh" "$LAB_DIR/sources.sh" "$LAB_DIR/init-common.sh" "$LAB_DIR/l1-init.sh" "$LAB_DIR/l1-measure.sh" "$LAB_DIR/boot-direct.sh" "$LAB_DIR/l2-init.sh" "$LAB_DIR/l2-power-button.sh" "$LAB_DIR"/l2-tests/*.sh; do
    [ -e "$f" ] && printf 'file %s %s\n' "${f#"$LAB_DIR"/}" "$(sha256sum <"$f" | cut -d' ' -f1)"
  done
  # Building as non-root gives images without /dev/console (the inits take it later):
  # root rebuilds those, a user takes root's as they are.
  printf 'uid0 %s\n' "${1:-$([ "$(id -u)" -eq 0 ] && echo yes || echo no)}"
}

cmd_images() {
  mkdir -p "$CACHE"
  # make_cpio writes from inside the tree it archives: the cache path must be absolute.
  CACHE=$(cd "$CACHE" && pwd)
  # Parallel `run`s (e.g. cargo test threads) share the cache: build under a lock.
  exec 9>"$CACHE/.lock"
  flock 9
  cmd_ready || die "images: the lab is not set up (run as root: bash tests/lab/lab.sh deps)"
  # One set of images for each L1 (its kernel's modules differ).
  find_kernels
  local want have start tmp images=$CACHE/images-$LAB_L1
  want=$(stamp_inputs | sha256sum | cut -d' ' -f1)
  have=$(cat "$images/stamp" 2>/dev/null || true)
  if [ "$have" != "$want" ] && [ "$(id -u)" -ne 0 ] &&
    [ "$have" = "$(stamp_inputs yes | sha256sum | cut -d' ' -f1)" ]; then
    want=$have
  fi
  if [ "$want" = "$have" ] && [ -s "$images/l1-base.cpio.gz" ] && [ -s "$images/l2-initramfs.cpio.gz" ]; then
    log "images: up to date ($images)"
    exec 9>&-
    return 0
  fi
  start=$(date +%s)
  log "images: building (L1 kernel $L1_KVER, L2 kernel $L2_KVER) in $images"
  tmp=$(mktemp -d "$CACHE/build.XXXXXX")
  # shellcheck disable=SC2064 # expand $tmp now: it is local to this function
  trap "rm -rf '$tmp'" EXIT
  build_l2 "$tmp/l2" "$tmp/l2-initramfs.cpio.gz" "$L2_KVER"
  build_l1 "$tmp/l1" "$tmp/l1-base.cpio.gz" "$L1_KVER" "$L2_KERNEL" "$tmp/l2-initramfs.cpio.gz"
  mkdir -p "$images"
  mv "$tmp/l2-initramfs.cpio.gz" "$tmp/l1-base.cpio.gz" "$images/"
  stamp_inputs >"$images/stamp.inputs"
  # The stamp goes last: an interrupted build is never taken for a complete one.
  printf '%s\n' "$want" >"$images/stamp"
  rm -rf "$tmp"
  trap - EXIT
  log "images: built in $(($(date +%s) - start)) s:" \
    "l2-initramfs $(du -h "$images/l2-initramfs.cpio.gz" | cut -f1)," \
    "l1-base $(du -h "$images/l1-base.cpio.gz" | cut -f1)"
  exec 9>&-
}

# ----------------------------------------------------------------------------------- run

cmd_run() {
  local scenario="" vmm="" timeout_s=600 extras=() e src dest stdin=/dev/null collect=() pidfile=()
  local nvme_mib="" nvme=()
  while [ $# -gt 0 ]; do
    case $1 in
      # The terminal goes to L1's serial console, and from there to the VMM's.
      --interactive) stdin=/dev/stdin; shift ;;
      --scenario) scenario=${2:?--scenario needs a file}; shift 2 ;;
      --vmm) vmm=${2:?--vmm needs a binary}; shift 2 ;;
      --timeout) timeout_s=${2:?--timeout needs seconds}; shift 2 ;;
      --extra) extras+=("${2:?--extra needs SRC:DEST}"); shift 2 ;;
      --collect) collect=(-drive "file=${2:?--collect needs a file},format=raw,if=virtio" ${collect[@]+"${collect[@]}"}); shift 2 ;;
      --disk) collect+=(-drive "file=${2:?--disk needs a file},format=raw,if=virtio"); shift 2 ;;
      --pidfile) pidfile=(-pidfile "${2:?--pidfile needs a file}"); shift 2 ;;
      # An emulated NVMe controller for L1 with one namespace of MIB MiB (a sparse file
      # of the run's own): /dev/nvme0n1 and its generic device /dev/ng0n1 in L1.
      --nvme) nvme_mib=${2:?--nvme needs a size in MiB}; shift 2 ;;
      --l1-cpus) LAB_L1_CPUS=${2:?--l1-cpus needs a count}; shift 2 ;;
      *) usage ;;
    esac
  done
  [ -n "$scenario" ] || usage
  [ -f "$scenario" ] || die "no such scenario: $scenario"
  [ -z "$vmm" ] || [ -x "$vmm" ] || die "VMM binary not executable: $vmm"
  case $timeout_s in '' | *[!0-9]*) die "--timeout wants whole seconds" ;; esac
  case $LAB_L1_CPUS in [1-9]) ;; *) die "--l1-cpus wants a count of 1 to 9" ;; esac
  case $nvme_mib in '' | [1-9] | [1-9][0-9] | [1-9][0-9][0-9] | [1-9][0-9][0-9][0-9]) ;;
    *) die "--nvme wants a size of 1 to 9999 MiB" ;; esac

  cmd_images
  local workdir root start rc
  workdir=$(mktemp -d "$CACHE/run.XXXXXX")
  # shellcheck disable=SC2064 # expand $workdir now: it is local to this function
  trap "rm -rf '$workdir'" EXIT
  root=$workdir/root
  if [ -n "$nvme_mib" ]; then
    truncate -s "${nvme_mib}M" "$workdir/nvme.img"
    # discard=unmap: the namespace deallocates (punches holes) when told to, so
    # deallocated blocks read back as zeros, as its Identify data says (DLFEAT).
    nvme=(-drive "file=$workdir/nvme.img,format=raw,if=none,id=lab-nvme,discard=unmap"
      -device "nvme,serial=ringvisor-lab,drive=lab-nvme")
  fi

  # The per-run archive: small, so a new VMM build costs seconds, not an image rebuild.
  mkdir -p "$root"
  [ -z "$vmm" ] || copy_with_libs "$root" "$vmm" /usr/bin/ringvisor
  install -m 0755 "$scenario" "$root/scenario.sh"
  # RINGVISOR_LAB_KVM_AMD: parameters for L1's kvm_amd (e.g. "npt=0"), for measuring
  # whether the lab's faults depend on them.
  if [ -n "${RINGVISOR_LAB_KVM_AMD:-}" ]; then
    mkdir -p "$root/etc/lab"
    printf 'kvm_amd %s\n' "$RINGVISOR_LAB_KVM_AMD" >"$root/etc/lab/module-params"
  fi
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
  cat "$CACHE/images-$LAB_L1/l1-base.cpio.gz" "$workdir/run.cpio.gz" >"$workdir/initrd.cpio.gz"

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
  # QEMU's pid, for the heartbeat watcher (and the caller's own --pidfile, if given).
  [ ${#pidfile[@]} -gt 0 ] || pidfile=(-pidfile "$workdir/qemu.pid")
  # L1's kernel log: a file, and (QEMU 10) a FIFO as the port's input for the watcher's
  # pokes, held open here so that QEMU's open of it does not wait for a writer.
  local kernel_log=(-serial "file:$workdir/l1-kernel.log") poke_fd=""
  : >"$workdir/l1-kernel.log"
  if [ "$LAB_L1" = new ]; then
    mkfifo "$workdir/l1-kernel.in"
    exec {poke_fd}<>"$workdir/l1-kernel.in"
    kernel_log=(-chardev "file,id=l1log,path=$workdir/l1-kernel.log,input-path=$workdir/l1-kernel.in"
      -serial chardev:l1log)
  fi
  watch_heartbeat "$workdir" "${pidfile[1]}" "$poke_fd" &
  local watcher=$!
  local timeout_args=(--kill-after=10)
  [ "$stdin" = /dev/null ] || timeout_args=(--foreground)
  # -xsave: with XSAVE, L2 guests crashed (and took L1 down with a kernel stack overflow
  # in KVM's vCPU thread) when their first AVX user started, under QEMU-KVM as well as
  # ringvisor: TCG's nested SVM does not trap the L2 guest's XSETBV, so L1's KVM and the
  # L2 guest disagree about XCR0. Without XSAVE both levels use FXSAVE and that is gone.
  # L1's kernel logs to its second serial port, a file of its own, so that its messages
  # cannot be confused with L2's (which reach L1's first port through the VMM); L1's /init
  # talks on the first. QEMU's own complaints go to a file too, and so do L1's CPU resets
  # (a triple fault of L1 itself is logged there, and nowhere else). They are the evidence
  # classify_loss reads.
  set +e
  timeout "${timeout_args[@]}" "$timeout_s" \
    env QEMU_MODULE_DIR="$(l1_root)/usr/lib/x86_64-linux-gnu/qemu" \
    "$(l1_root)/usr/bin/qemu-system-x86_64" -L "$(l1_root)/usr/share/qemu" \
    -L "$(l1_root)/usr/share/seabios" -L "$(l1_root)/usr/lib/ipxe/qemu" \
    -accel "tcg,thread=$LAB_TCG_THREAD" -cpu EPYC,+svm,+npt,-xsave -smp "$LAB_L1_CPUS" -m 3072 \
    -d cpu_reset -D "$workdir/l1-resets.log" \
    -display none -serial mon:stdio "${kernel_log[@]}" \
    -no-reboot -nic none ${collect[@]+"${collect[@]}"} ${nvme[@]+"${nvme[@]}"} \
    ${pidfile[@]+"${pidfile[@]}"} \
    -kernel "$L1_KERNEL" -initrd "$workdir/initrd.cpio.gz" \
    -append "console=ttyS1 panic=-1 tsc=reliable" <"$stdin" 2>"$workdir/qemu.err" |
    sed -u -e 's/\r//g' -e 's/\x1bc/\n/g' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' |
    tee "$workdir/l1.log"
  rc=${PIPESTATUS[0]}
  kill "$watcher" 2>/dev/null
  wait "$watcher" 2>/dev/null
  [ -z "$poke_fd" ] || exec {poke_fd}>&-
  set -e
  # Every poke is printed, and so is whether L1 answered it.
  [ ! -s "$workdir/l1-pokes" ] || sed 's/^/lab: run: /' "$workdir/l1-pokes" >&2
  local took_ms=$((($(date +%s%N) - start) / 1000000)) failure=""
  log "run: L1 took $took_ms ms, qemu exit $rc"

  if [ -s "$workdir/l1-frozen" ]; then
    failure="L1 stopped: QEMU ended after $LAB_FROZEN_S s without a heartbeat"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    failure="timed out after ${timeout_s}s"
  elif ! grep -q "^$L1_END_MARKER" "$workdir/l1.log"; then
    failure="L1 never printed '$L1_END_MARKER'"
  elif grep -q '^L1: scenario exit=' "$workdir/l1.log" &&
    ! grep -q '^L1: scenario exit=0$' "$workdir/l1.log"; then
    failure="scenario failed: $(grep '^L1: scenario exit=' "$workdir/l1.log")"
  elif [ "$rc" -ne 0 ]; then
    failure="L1 qemu exited with $rc"
  fi
  # The VMM's one-line report of a guest that shut its CPU down says what was lost.
  if [ -n "$failure" ] && grep -q 'triple fault' "$workdir/l1.log"; then
    failure="$failure; L2 triple fault"
  fi
  if [ -z "$failure" ]; then
    local woken
    woken=$(grep -c 'L1 beat again' "$workdir/l1-pokes" 2>/dev/null || true)
    ledger ok "$scenario" "$took_ms" "$([ "${woken:-0}" -eq 0 ] && echo - || echo "L1 woken by a poke ${woken}x")"
    return 0
  fi
  # The logs of every run that did not pass stay for a look (the console, L1's kernel log
  # and QEMU's stderr), the newest ten of them.
  local kept=$CACHE/kept/$(date -u +%Y%m%dT%H%M%S)-$(basename "$scenario" .sh)-$$ evidence
  mkdir -p "$kept"
  cp "$workdir/l1.log" "$workdir/l1-kernel.log" "$workdir/qemu.err" "$workdir/l1-resets.log" \
    "$workdir/l1-pokes" "$kept/" 2>/dev/null || true
  find "$CACHE/kept" -mindepth 1 -maxdepth 1 -type d | sort | head -n -10 | xargs -r rm -rf
  log "run: logs kept in $kept"
  evidence=$(classify_loss "$workdir")
  if [ -n "$evidence" ]; then
    ledger lost "$scenario" "$took_ms" "$evidence"
    log "run: $failure"
    log "run: lost to the lab: $evidence"
    log "run: L1 kernel log (tail):"
    tail -n 30 "$workdir/l1-kernel.log" | sed 's/^/  | /' >&2
    exit "$LAB_LOST_STATUS"
  fi
  ledger failed "$scenario" "$took_ms" "$failure"
  # No evidence that the lab lost it: the VMM under test (or the scenario) did.
  log "run: the last 50 lines of the console (L1, the VMM and L2):"
  tail -n 50 "$workdir/l1.log" | sed 's/^/  | /' >&2
  [ ! -s "$workdir/qemu.err" ] || { log "run: L1's QEMU said:"; sed 's/^/  | /' "$workdir/qemu.err" >&2; }
  die "run: $failure (no sign of a lab fault in L1's kernel log or QEMU's stderr)"
}

# classify_loss WORKDIR: prints the first sign that the lab itself broke, or nothing.
# Signs: L1's kernel oopsed, panicked, overflowed a stack, locked up or stalled in RCU
# (the known fault of TCG's nested SVM shows as a stack overflow in KVM's vCPU thread),
# L1's CPU triple-faulted (QEMU's reset log), L1's QEMU (the software CPU) failed an
# assertion or aborted, or L1 stopped as a whole (its heartbeat went silent while QEMU
# ran: watch_heartbeat). An L2 fault, a hang of L2 or of the VMM while L1 still beats, or
# a VMM error without one of these is not the lab's: it fails the run.
classify_loss() {
  local dir=$1 line
  line=$(grep -a -m 1 -E 'Assertion|assertion failed|qemu: fatal|tcg fatal|(^| )Aborted|core dumped|Segmentation fault' \
    "$dir/qemu.err" 2>/dev/null || true)
  [ -z "$line" ] || { printf 'L1 QEMU: %s\n' "$line" | tr -s '\t' ' ' | cut -c1-300; return 0; }
  line=$(grep -a -m 1 'Triple fault' "$dir/l1-resets.log" 2>/dev/null || true)
  [ -z "$line" ] || { printf 'L1 CPU: %s (L1 itself triple-faulted)\n' "$line"; return 0; }
  line=$(tr -d '\r' <"$dir/l1-kernel.log" 2>/dev/null | grep -a -m 1 -E \
    'BUG:|Oops|kernel BUG at|general protection fault|Kernel panic|stack overflow|stack guard page|double fault|soft lockup|hard LOCKUP|rcu: INFO|rcu_(sched|preempt) (self-)?detected stall|Unable to handle kernel|unable to handle (page fault|kernel)' || true)
  [ -z "$line" ] || { printf 'L1 kernel: %s\n' "$line" | cut -c1-300; return 0; }
  [ ! -s "$dir/l1-frozen" ] || cat "$dir/l1-frozen"
}

# watch_heartbeat DIR PIDFILE [POKE_FD]: watches L1's kernel log (DIR/l1-kernel.log), where L1's
# /init beats every 5 s. After LAB_POKE_S s of silence it pokes L1 (a byte on the log
# port's input, POKE_FD, every 5 s; QEMU 10 only) and notes each poke, and whether L1 beat again,
# in DIR/l1-pokes. After LAB_FROZEN_S s it ends L1's QEMU (pid in PIDFILE) and says why
# in DIR/l1-frozen: a stopped L1 would otherwise hold the run until its timeout. Returns
# when QEMU is gone. Before the first beat (L1 still booting) it waits.
watch_heartbeat() {
  local dir=$1 pidfile=$2 poke_fd=${3:-} pid="" age last poked=""
  while sleep 5; do
    [ -n "$pid" ] || pid=$(cat "$pidfile" 2>/dev/null) || continue
    kill -0 "$pid" 2>/dev/null || return 0
    grep -q 'lab: heartbeat' "$dir/l1-kernel.log" || continue
    age=$(($(date +%s) - $(stat -c %Y "$dir/l1-kernel.log")))
    last=$(grep -a 'lab: heartbeat' "$dir/l1-kernel.log" | tail -n 1 | sed -n 's/^\[ *\([0-9.]*\)\].*/\1/p')
    if [ "$age" -lt "$LAB_POKE_S" ]; then
      [ -z "$poked" ] || echo "L1 beat again at L1 uptime $last s after $poked" >>"$dir/l1-pokes"
      poked=""
      continue
    fi
    if [ "$age" -lt "$LAB_FROZEN_S" ]; then
      [ -n "$poke_fd" ] || continue
      printf '\n' >&"$poke_fd"
      poked="a poke (L1 silent ${age}s after its beat at uptime $last s)"
      echo "poked L1: silent ${age}s after its beat at L1 uptime $last s" >>"$dir/l1-pokes"
      continue
    fi
    printf 'L1 stopped as a whole: its heartbeat (every 5 s) went silent at L1 uptime %s s and stayed so for %s s while QEMU ran%s\n' \
      "$last" "$age" "${poked:+, pokes unanswered}" >"$dir/l1-frozen"
    log "run: L1's heartbeat has been silent for ${age}s: ending L1's QEMU"
    kill -TERM "$pid" 2>/dev/null
    return 0
  done
}

# ledger OUTCOME SCENARIO MS DETAIL: one line per run in $RINGVISOR_LAB_LEDGER, if set
# (tests/run.sh sets it and reports the loss rate from it with `lab.sh ledger`).
ledger() {
  [ -n "${RINGVISOR_LAB_LEDGER:-}" ] || return 0
  printf '%s %s L1=%s tcg=%s kvm_amd=%s cpus=%s %s %s ms %s\n' "$(date -u +%FT%TZ)" "$1" "$LAB_L1" "$LAB_TCG_THREAD" \
    "$(printf '%s' "${RINGVISOR_LAB_KVM_AMD:--}" | tr ' ' ,)" "$LAB_L1_CPUS" "$(basename "$2" .sh)" "$3" "$4" \
    >>"$RINGVISOR_LAB_LEDGER"
}

# The highest share of lab runs that may be lost before the instrument counts as broken.
MAX_LOSS_PERCENT=25

# lab.sh ledger FILE: the runs, the losses with their evidence, the loss rate; fails when
# more than MAX_LOSS_PERCENT of the runs were lost.
cmd_ledger() {
  local file=${1:?ledger FILE} runs lost failed
  [ -s "$file" ] || { echo "lab runs: none"; return 0; }
  runs=$(wc -l <"$file")
  lost=$(grep -c '^[^ ]* lost ' "$file" || true)
  failed=$(grep -c '^[^ ]* failed ' "$file" || true)
  echo "lab runs: $runs, ok $((runs - lost - failed)), lost to the lab $lost ($((lost * 100 / runs)) %), failed $failed"
  grep '^[^ ]* lost ' "$file" | sed 's/^/  lost: /' || true
  grep '^[^ ]* failed ' "$file" | sed 's/^/  failed: /' || true
  grep '^[^ ]* ok .*L1 woken by a poke' "$file" | sed 's/^/  passed after a poke woke L1: /' || true
  if [ $((lost * 100)) -gt $((runs * MAX_LOSS_PERCENT)) ]; then
    echo "lab: more than $MAX_LOSS_PERCENT % of the lab runs were lost: the instrument is broken" >&2
    return 1
  fi
}

# ---------------------------------------------------------------------------------- boot

# has_hardware_kvm and boot_direct: the direct branch, shared with L1 (boot-direct.sh).
# shellcheck source=tests/lab/boot-direct.sh
. "$LAB_DIR/boot-direct.sh"

cmd_boot() {
  local shell="" cmdline vmm
  while [ $# -gt 0 ]; do
    case $1 in
      --shell) shell=1; shift ;;
      *) usage ;;
    esac
  done
  # What is missing (toolchain, root, io_uring, /dev/kvm) is said before anything installs;
  # once the lab is set up, a user in the kvm group boots without root.
  RINGVISOR_LAB_READY=$(cmd_ready && echo 1) bash "$REPO/tests/preflight.sh" boot || exit 2
  cmd_deps
  log "boot: building ringvisor (release)"
  cargo build --release --quiet --manifest-path "$REPO/Cargo.toml" --bin ringvisor
  vmm=$REPO/target/release/ringvisor
  cmd_images
  return_to_sudo_user "$REPO/target" "$CACHE"
  cmdline="console=ttyS0 reboot=k panic=-1 rv.test=smoke${shell:+ rv.shell=1}"
  if has_hardware_kvm; then
    log "boot: hardware virtualization found: ringvisor runs the guest on /dev/kvm"
    boot_direct "$vmm" "$L2_KERNEL" "$CACHE/images-$LAB_L1/l2-initramfs.cpio.gz" \
      "$CACHE/demo-disk.img" "$cmdline"
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
  deps-report) apt_install "${REPORT_PACKAGES[@]}" ;;
  images) cmd_images "$@" ;;
  run) cmd_run "$@" ;;
  kernels) cmd_kernels "$@" ;;
  ready) cmd_ready "$@" ;;
  ledger) cmd_ledger "$@" ;;
  debian-root) cmd_images >/dev/null && cmd_debian_root "$@" ;;
  boot) cmd_boot "$@" ;;
  *) usage ;;
esac
