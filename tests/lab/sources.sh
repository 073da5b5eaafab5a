# Sourced by tests/lab/lab.sh: where the lab's kernels and QEMUs come from (Debian
# packages downloaded and unpacked into the cache, never installed), `deps`, `ready`, and
# the kernels of each level. Uses lab.sh's CACHE, LAB_L1, log, die and apt_install.

# --------------------------------------------------------------------------------- sources

# Kernels and QEMU come from Debian packages that are downloaded (`apt-get download`) and
# unpacked (`dpkg -x`) into $CACHE/roots/NAME, never installed: nothing lands in the host's
# /boot, its bootloader or its /usr. Each suite has its own apt lists under $CACHE/apt, so
# the host's apt state is only read. A root is fetched once; delete it to fetch anew.
#   l2-kernel   bookworm linux-image-amd64 (the stock generic kernel the guest runs)
#   l1-old      bookworm qemu-system-x86 7.2 + linux-image-cloud-amd64 6.1
#   l1-new      bookworm-backports qemu-system-x86 10.0 + linux-image-cloud-amd64 6.12
# (ipxe-qemu is bookworm's in both: backports has none.)

# The machine's own Debian mirror, as its apt sources name it.
debian_mirror() {
  local uri
  uri=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{ print $2 }' |
    grep -v security | head -n 1 || true)
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
  [ -n "$uri" ] || die "sources: no bookworm mirror in /etc/apt/sources.list*"
  printf '%s\n' "$uri"
}

# APT_OPTS for SUITE, its lists updated once a day at most.
APT_OPTS=()
apt_suite() {
  local suite=$1 dir=$CACHE/apt/$1
  # bookworm itself is what the host's sources already carry, with its updates and
  # security suites (where the current kernels are): read the host's lists.
  if [ "$suite" = bookworm ]; then
    APT_OPTS=()
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mtime -1 2>/dev/null)" ]; then
      apt-get update -qq >/dev/null || die "sources: apt-get update failed"
    fi
    return 0
  fi
  mkdir -p "$dir/lists/partial"
  printf 'deb %s %s main\n' "$(debian_mirror)" "$suite" >"$dir/sources.list"
  APT_OPTS=(-o "Dir::Etc::sourcelist=$dir/sources.list" -o Dir::Etc::sourceparts=-
    -o "Dir::State::Lists=$dir/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
    -o APT::Get::List-Cleanup=0)
  if [ -z "$(find "$dir/lists" -maxdepth 1 -name '*_Packages*' -mtime -1 2>/dev/null)" ]; then
    apt-get "${APT_OPTS[@]}" update -qq >/dev/null ||
      die "sources: apt-get update of $suite failed"
  fi
}

# The versioned package a metapackage such as linux-image-amd64 stands for.
resolve_meta() {
  local name
  name=$(apt-cache "${APT_OPTS[@]}" depends "$1" 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
  [ -n "$name" ] || die "sources: cannot resolve $1"
  printf '%s\n' "$name"
}

# fetch_debs SUITE DIR PACKAGE...: downloads the packages of SUITE into DIR.
fetch_debs() {
  local suite=$1 dir=$2 p pkgs=()
  shift 2
  apt_suite "$suite"
  for p in "$@"; do
    case $p in linux-image-*amd64) [[ $p =~ ^linux-image-[0-9] ]] || p=$(resolve_meta "$p") ;; esac
    pkgs+=("$p")
  done
  mkdir -p "$dir"
  # apt drops privileges to _apt for downloads where it can; a root-owned cache folder
  # makes it warn and download as root, which is what we want here.
  (cd "$dir" && apt-get "${APT_OPTS[@]}" download -q "${pkgs[@]}" 2>&1 | grep -v -e '^Get:' -e '^Fetched' -e unsandboxed >&2) || true
  for p in "${pkgs[@]}"; do
    compgen -G "$dir/${p}_*.deb" >/dev/null || die "sources: $p ($suite) was not downloaded"
  done
}

# fetch_root NAME: builds $CACHE/roots/NAME (see above) unless it is there.
fetch_root() {
  local name=$1 root=$CACHE/roots/$1 debs deb
  [ -e "$root/.complete" ] && return 0
  debs=$CACHE/debs/$name
  rm -rf "$root" "$debs"
  case $name in
    l2-kernel) fetch_debs bookworm "$debs" linux-image-amd64 ;;
    l1-old)
      fetch_debs bookworm "$debs" linux-image-cloud-amd64 qemu-system-x86 qemu-system-common \
        qemu-system-data seabios ipxe-qemu
      ;;
    l1-new)
      fetch_debs bookworm-backports "$debs" linux-image-cloud-amd64 qemu-system-x86 \
        qemu-system-common qemu-system-data seabios
      fetch_debs bookworm "$debs" ipxe-qemu
      ;;
    *) die "sources: no root called $name" ;;
  esac
  log "sources: unpacking $(find "$debs" -name '*.deb' | wc -l) packages into $root"
  mkdir -p "$root"
  for deb in "$debs"/*.deb; do
    dpkg -x "$deb" "$root"
  done
  # dpkg -x runs no maintainer scripts: the module index the kernel package's postinst
  # would make is made here, inside the root.
  for deb in "$root"/lib/modules/*; do
    [ -d "$deb" ] && depmod -b "$root" "$(basename "$deb")"
  done
  (cd "$debs" && ls ./*.deb) >"$root/.complete"
}

# The tree of the QEMU that runs L1 (the software CPU), and of the reference VMM in L1.
l1_root() { printf '%s\n' "$CACHE/roots/l1-$LAB_L1"; }
reference_root() { printf '%s\n' "$CACHE/roots/l1-new"; }

# lab_qemu ROOT ARGS...: runs the QEMU unpacked in ROOT, with its own firmware and modules
# (QEMU 7.2 has TCG as a loadable module).
lab_qemu() {
  local root=$1
  shift
  QEMU_MODULE_DIR=$root/usr/lib/x86_64-linux-gnu/qemu "$root/usr/bin/qemu-system-x86_64" \
    -L "$root/usr/share/qemu" -L "$root/usr/share/seabios" -L "$root/usr/lib/ipxe/qemu" "$@"
}

cmd_deps() {
  mkdir -p "$CACHE"
  CACHE=$(cd "$CACHE" && pwd)
  apt_install "${HOST_PACKAGES[@]}"
  local name libs
  for name in l2-kernel l1-old l1-new; do
    fetch_root "$name"
  done
  # The unpacked QEMUs link against bookworm's shared libraries: those are installed.
  libs=$(for deb in "$CACHE"/debs/l1-*/qemu-system-x86_*.deb; do
    dpkg-deb -f "$deb" Depends
  done | tr ',' '\n' | sed -e 's/[(|].*//' -e 's/ //g' | grep '^lib' | sort -u)
  # shellcheck disable=SC2086 # one package a word
  apt_install $libs
  local bin
  for name in l1-old l1-new; do
    bin=$CACHE/roots/$name/usr/bin/qemu-system-x86_64
    if ldd "$bin" | grep -q 'not found'; then
      die "deps: $bin: missing libraries: $(ldd "$bin" | grep 'not found' | tr -s ' \t\n' ' ')"
    fi
  done
  log "deps: ready (L1 $LAB_L1: $(lab_qemu "$(l1_root)" --version | head -n 1))"
}

# True when the lab can run: the host tools are installed and every root is unpacked.
cmd_ready() {
  local p name
  for p in "${HOST_PACKAGES[@]}"; do
    pkg_installed "$p" || return 1
  done
  for name in l2-kernel l1-old l1-new; do
    [ -e "$CACHE/roots/$name/.complete" ] || return 1
  done
}

# ------------------------------------------------------------------------------- kernels

# root_kernel ROOT VAR: sets VAR to the version of the kernel unpacked in ROOT (each root
# holds exactly one; a kernel without its modules tree is half-unpacked).
root_kernel() {
  local root=$1 f found=()
  for f in "$root"/boot/vmlinuz-*; do
    [ -e "$f" ] && [ -d "$root/lib/modules/${f##*/vmlinuz-}" ] && found+=("${f##*/vmlinuz-}")
  done
  [ ${#found[@]} -eq 1 ] || die "expected one kernel in $root/boot, found ${#found[@]} (run: lab.sh deps)"
  printf -v "$2" '%s' "${found[0]}"
}

# Sets L1_KVER and L2_KVER, and L1_KERNEL and L2_KERNEL (their images): L1's is the Debian
# cloud flavour (small, kvm-amd and tun as modules), L2's the generic flavour (the stock
# virtio and qxl drivers).
L1_KVER="" L2_KVER="" L1_KERNEL="" L2_KERNEL=""
find_kernels() {
  root_kernel "$(l1_root)" L1_KVER
  root_kernel "$CACHE/roots/l2-kernel" L2_KVER
  L1_KERNEL=$(l1_root)/boot/vmlinuz-$L1_KVER
  L2_KERNEL=$CACHE/roots/l2-kernel/boot/vmlinuz-$L2_KVER
}

cmd_kernels() {
  find_kernels
  printf 'L1_KERNEL=%s\nL2_KERNEL=%s\n' "$L1_KERNEL" "$L2_KERNEL"
  printf 'L1_QEMU=%s\n' "$(lab_qemu "$(l1_root)" --version | head -n 1)"
  printf 'REFERENCE_QEMU=%s\n' "$(lab_qemu "$(reference_root)" --version | head -n 1)"
}
