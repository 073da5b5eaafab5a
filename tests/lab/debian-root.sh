# Sourced by tests/lab/lab.sh: `lab.sh debian-root` builds (or reuses) a Debian bookworm
# root file system image for the L2 guest: systemd, udev, dbus (for logind, which turns
# the ACPI power button into a shutdown), systemd-networkd, iproute2, ping, fio and
# iperf3, made with mmdebstrap from the machine's Debian mirror into a directory and
# turned into a raw ext4 image by mke2fs -d. Nothing is installed on the host. The image boots
# with the lab's L2 kernel and initramfs: `rv.root=/dev/vda` on the command line makes the
# initramfs (l2-init.sh) load the stock drivers, mount the disk and hand over to systemd,
# as a distribution's own initramfs does. tests/lab/debian/ has what the image adds: the
# network file and the lab's checks (rv-lab.sh, run by rv-lab.service on every boot), and
# the fio suite's guest side (l2-tests/fio-suite.sh, for `ringvisor bench --guest-root`).

DEBIAN_PACKAGES=(systemd systemd-sysv udev dbus iproute2 iputils-ping fio iperf3 kmod procps)
DEBIAN_IMAGE_SIZE=1G

# The inputs of the image; their hash is its cache key.
debian_root_inputs() {
  local f
  printf 'pkgs %s size %s\n' "${DEBIAN_PACKAGES[*]}" "$DEBIAN_IMAGE_SIZE"
  for f in "$LAB_DIR/debian-root.sh" "$LAB_DIR"/debian/* "$LAB_DIR/l2-tests/fio-suite.sh"; do
    printf 'file %s %s\n' "${f#"$LAB_DIR"/}" "$(sha256sum <"$f" | cut -d' ' -f1)"
  done
}

# lab.sh debian-root: prints the path of the pristine image (callers boot a copy).
cmd_debian_root() {
  local dir=$CACHE/debian-root want tmp start
  mkdir -p "$dir"
  exec {lock}>"$dir/.lock"
  flock "$lock"
  want=$(debian_root_inputs | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$dir/stamp" 2>/dev/null)" = "$want" ] && [ -s "$dir/root.img" ]; then
    printf '%s\n' "$dir/root.img"
    return 0
  fi
  command -v mmdebstrap >/dev/null || die "debian-root: mmdebstrap is missing (bash tests/lab/lab.sh deps)"
  [ "$(id -u)" -eq 0 ] || die "debian-root: mmdebstrap's root mode needs root"
  start=$(date +%s)
  log "debian-root: building a bookworm root image (${DEBIAN_PACKAGES[*]})"
  tmp=$(mktemp -d "$dir/build.XXXXXX")
  # shellcheck disable=SC2064 # expand $tmp now
  trap "rm -rf '$tmp'" EXIT
  # The hooks run on the host with the new root as $1.
  mmdebstrap --quiet --mode=root --variant=minbase --include="$(IFS=,; echo "${DEBIAN_PACKAGES[*]}")" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='echo rv-debian >"$1/etc/hostname"' \
    --customize-hook='echo "LABEL=rv-root / ext4 errors=remount-ro 0 1" >"$1/etc/fstab"' \
    --customize-hook='mkdir -p "$1/var/log/journal"' \
    --customize-hook="install -m 0644 '$LAB_DIR/debian/20-lab.network' \"\$1/etc/systemd/network/\"" \
    --customize-hook="install -m 0755 '$LAB_DIR/debian/rv-lab.sh' \"\$1/usr/local/sbin/rv-lab\"" \
    --customize-hook="install -m 0644 '$LAB_DIR/debian/rv-lab.service' \"\$1/etc/systemd/system/\"" \
    --customize-hook="install -m 0755 '$LAB_DIR/l2-tests/fio-suite.sh' \"\$1/usr/local/sbin/rv-fio-suite\"" \
    --customize-hook='chroot "$1" systemctl enable systemd-networkd rv-lab.service' \
    --customize-hook='chroot "$1" passwd --delete root' \
    bookworm "$tmp/root" "$(debian_mirror)" >&2 ||
    die "debian-root: mmdebstrap failed"
  truncate -s "$DEBIAN_IMAGE_SIZE" "$tmp/root.img"
  mke2fs -q -F -t ext4 -L rv-root -d "$tmp/root" "$tmp/root.img" ||
    die "debian-root: mke2fs failed"
  mv "$tmp/root.img" "$dir/root.img"
  printf '%s\n' "$want" >"$dir/stamp"
  rm -rf "$tmp"
  trap - EXIT
  log "debian-root: built in $(($(date +%s) - start)) s: $(du -h "$dir/root.img" | cut -f1) used of $DEBIAN_IMAGE_SIZE"
  printf '%s\n' "$dir/root.img"
}
