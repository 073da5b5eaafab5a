# The direct branch of `lab.sh boot`: sourced by lab.sh (bash) on the user's host, and in
# L1 (busybox sh, as /lib/lab/boot-direct.sh) by tests/lab/scenarios/bench-direct.sh,
# where /dev/kvm is a real KVM (nested SVM): the same lines a user's host runs are run
# there. POSIX sh.

# True when this host can run a guest directly: the CPU exposes VT-x/AMD-V and /dev/kvm
# opens read-write. (Software KVM without them cannot boot a stock kernel: see LAB.md.)
has_hardware_kvm() {
  grep -qE '^flags.*[[:space:]](vmx|svm)([[:space:]]|$)' /proc/cpuinfo && [ -r /dev/kvm ] && [ -w /dev/kvm ]
}

# boot_direct VMM KERNEL INITRAMFS DISK CMDLINE: the default guest (2 vCPUs, 1 GiB, DISK
# as its /dev/vda, created at 256 MiB and kept between boots) on /dev/kvm, its console
# on this terminal. Replaces the calling shell: run it in a subshell to go on afterwards.
boot_direct() {
  [ -e "$4" ] || truncate -s 256M "$4"
  exec "$1" run --kernel "$2" --initramfs "$3" --cpus 2 --memory 1G --disk "path=$4,queues=2" \
    --cmdline "$5"
}
