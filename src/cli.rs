//! The command line: `ringvisor run ...`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use log::LevelFilter;

use crate::machine::MachineConfig;
use crate::options::{
    parse_balloon, parse_console, parse_cpu_list_arg, parse_cpus, parse_disk, parse_display,
    parse_memory, parse_net, parse_scsi, parse_scsi_disk, parse_serial_port, CpuList, CpuSpec,
    DiskSpec, DisplaySpec, MemorySpec, ScsiSpec,
};
use crate::seccomp::SeccompMode;
use ringvisor_devices::virtio::balloon::BalloonConfig;
use ringvisor_devices::virtio::console::{ConsoleConfig, NamedPort, PortBackend};
use ringvisor_devices::virtio::net::NetConfig;
use ringvisor_devices::virtio::scsi::{ScsiConfig, ScsiDiskConfig};

pub const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=1";

#[derive(Debug, Parser)]
#[command(
    name = "ringvisor",
    version,
    about = "A KVM virtual machine monitor whose I/O plane is io_uring",
    long_about = "ringvisor runs Linux guests under KVM. Start one with `ringvisor run --kernel \
                  bzImage`: the guest's serial console (ttyS0) is this terminal, and ringvisor \
                  exits with status 0 when the guest powers off or reboots. Other exit \
                  statuses: 1 a failure, 2 bad input, 3 the guest ignored the power button \
                  for --shutdown-timeout, 4 an I/O reactor's io_uring failed (its devices \
                  marked for a reset, the machine stopped in order, disks flushed), 159 a \
                  system call off the seccomp allowlists."
)]
pub struct Cli {
    /// How much ringvisor itself says on stderr: error, warn, info or debug.
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL", value_parser = parse_level)]
    pub log_level: LevelFilter,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a guest kernel and attach its serial console to this terminal.
    Run(Box<RunArgs>),
    /// Ask a running ringvisor (started with --api-socket): info, stats, pause, resume,
    /// shutdown, balloon [SIZE], display, screenshot FILE.png.
    Ctl(CtlArgs),
    /// The fio-in-guest benchmark suite: a job matrix in a stock guest under ringvisor,
    /// fio on the same disk on the host, and QEMU-KVM; reports and comparisons.
    Bench(ringvisor_bench::cli::BenchArgs),
}

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The running VMM's --api-socket.
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// The command: info, stats, pause, resume, shutdown (presses the power button; with
    /// --force, stops at once in order: disks flushed),
    /// balloon [SIZE] (the balloon's state; with SIZE, its new target), display (mode and
    /// counters), screenshot FILE (the screen as a PNG).
    #[arg(value_name = "COMMAND")]
    pub command: String,
    /// balloon: the new target, e.g. 256M (0 empties it); screenshot: the PNG file.
    #[arg(value_name = "SIZE|FILE")]
    pub argument: Option<String>,
    /// shutdown: stop the guest at once (in order, disks flushed) instead of pressing
    /// its power button.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The guest kernel: an x86_64 bzImage such as /boot/vmlinuz-*.
    #[arg(long, value_name = "PATH")]
    pub kernel: PathBuf,

    /// An initramfs (cpio archive, compressed or not) handed to the kernel.
    #[arg(long, value_name = "PATH")]
    pub initramfs: Option<PathBuf>,

    /// The kernel command line; replaces the default entirely.
    #[arg(long, value_name = "STR", default_value = DEFAULT_CMDLINE)]
    pub cmdline: String,

    /// Number of virtual CPUs (1..=254), optionally pinned:
    /// N[,affinity=VCPU@CPULIST,...], e.g. 4,affinity=0@2,1@3,2@4-5 (unpinned vCPUs may
    /// run on any allowed core). Checked against --reactor-cores and the allowed cores.
    #[arg(long, value_name = "N[,affinity=...]", default_value = "1", value_parser = parse_cpus)]
    pub cpus: CpuSpec,

    /// Guest RAM, with a unit: 512M, 2G, 1536MiB (a bare number means MiB), and how it is
    /// backed: SIZE[,hugepages=on][,hugepage-size=2M|1G][,prefault=on][,shared=on].
    /// hugepages comes from the host's hugetlb pool (an error says how to grow it);
    /// otherwise transparent huge pages are advised. prefault faults every page in at
    /// start; shared maps it MAP_SHARED (for vhost-user backends).
    #[arg(long, value_name = "SIZE[,...]", default_value = "512M", value_parser = parse_memory)]
    pub memory: MemorySpec,

    /// Read run flags from a TOML file (keys are flag names: kernel = "...",
    /// memory = "2G", [[disk]] tables, ...); flags on the command line replace its values.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print where each thread would run (reactors, vCPUs, background threads), after
    /// checking the placement, and exit without booting.
    #[arg(long)]
    pub print_topology: bool,

    /// A virtio-blk disk backed by a raw file or block device; repeat for more disks.
    /// path=FILE[,readonly=on][,direct=on|off][,queues=N][,serial=ID]: direct (O_DIRECT,
    /// the default) falls back to the page cache with a warning where the file system
    /// refuses it; queues (1..=64) are spread over the I/O reactors. An NVMe namespace's
    /// generic device (path=/dev/ngXnY) is served by NVMe passthrough: requests go to
    /// the controller as NVMe commands through io_uring, with no host block layer.
    #[arg(long = "disk", value_name = "OPTIONS", value_parser = parse_disk)]
    pub disks: Vec<DiskSpec>,

    /// A logical unit on the virtio-scsi controller, backed by a raw file or block device;
    /// repeat for more (thousands work). path=FILE[,target=T][,lun=L][,readonly=on]
    /// [,direct=on|off][,serial=ID]: target (0..=255) and lun (0..=16383) are assigned
    /// when omitted (a free target's LUN 0 first), duplicates are refused.
    #[arg(long = "scsi-disk", value_name = "OPTIONS", value_parser = parse_scsi_disk)]
    pub scsi_disks: Vec<ScsiDiskConfig>,

    /// The virtio-scsi controller: queues=N request queues (1..=64, default 1), spread
    /// over the I/O reactors. Present whenever --scsi-disk is given.
    #[arg(long, value_name = "OPTIONS", value_parser = parse_scsi)]
    pub scsi: Option<ScsiSpec>,

    /// A virtio-net NIC on a TAP interface; repeat for more NICs.
    /// tap=NAME[,mac=MAC][,queues=N][,mtu=M]: the TAP is created when missing and
    /// ringvisor may (CAP_NET_ADMIN), multi-queue when queues (pairs, 1..=16) > 1; the MAC
    /// defaults to a locally administered one derived from the TAP name.
    #[arg(long = "net", value_name = "OPTIONS", value_parser = parse_net)]
    pub nets: Vec<NetConfig>,

    /// A virtio console (hvc0 in the guest) on stdio, socket=PATH (a Unix socket that one
    /// client at a time connects to), file=PATH (output only) or pipe=PATH (the FIFOs
    /// PATH.in and PATH.out). On stdio it takes stdin from the serial port. Output with
    /// no client connected is dropped, as a real UART's would be.
    #[arg(long, value_name = "HOST_END", value_parser = parse_console)]
    pub virtio_console: Option<PortBackend>,

    /// A named virtio-serial port (/dev/virtio-ports/NAME in the guest); repeat for more.
    /// name=NAME,socket=PATH|file=PATH|pipe=PATH. The guest's output waits (it sees
    /// backpressure) while a socket has no client; connects and hangups reach the guest.
    /// Adds the virtio console (on stdio unless --virtio-console says otherwise).
    #[arg(long = "serial-port", value_name = "OPTIONS", value_parser = parse_serial_port)]
    pub serial_ports: Vec<NamedPort>,

    /// A virtio memory balloon: size=SIZE[,deflate-on-oom=on][,free-page-reporting=off]
    /// [,stats-interval=SECS]. The guest hands back SIZE of its RAM (released to the
    /// host); the target moves at run time with `ringvisor ctl balloon SIZE`. Free page
    /// reporting (the guest returns free memory as it frees it) is on by default.
    #[arg(long, value_name = "OPTIONS", value_parser = parse_balloon)]
    pub balloon: Option<BalloonConfig>,

    /// QXL paravirtual graphics: qxl[,vnc=ADDR:PORT|off][,vram=SIZE][,input=on|off]. The
    /// screen is served over VNC (no authentication: 127.0.0.1:5900 unless vnc= says
    /// otherwise) with a virtio keyboard and tablet for its input; `ringvisor ctl
    /// screenshot FILE` saves it as a PNG. vram (default 64M) holds the guest's surfaces.
    #[arg(long, value_name = "OPTIONS", value_parser = parse_display)]
    pub display: Option<DisplaySpec>,

    /// Serve the control API (line-delimited JSON; `ringvisor ctl`) on this Unix socket,
    /// created with owner-only permissions.
    #[arg(long, value_name = "PATH")]
    pub api_socket: Option<PathBuf>,

    /// Host cores for the io_uring reactors, one single-threaded reactor pinned to each,
    /// e.g. 2-3 or 1,3 (default: every core this process may run on).
    #[arg(long, value_name = "LIST", value_parser = parse_cpu_list_arg)]
    pub reactor_cores: Option<CpuList>,

    /// Adaptive polling: a reactor out of work spins on its queues for up to N
    /// microseconds before it sleeps, saving guest kicks (VM exits) under load at the cost
    /// of CPU time (like QEMU's poll-max-ns). 0, the default, never spins.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub poll_us: u64,

    /// The most io-wq workers (the kernel threads that run the blocking part of a
    /// reactor's I/O: buffered writes that would block, flushes) each reactor may start,
    /// 1..=1024; they run on the reactor's own cores. Default: four per virtio queue of
    /// the busiest I/O reactor (disk, SCSI request and NIC queues), and 1 for the
    /// low-priority reactor.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::iowq::MAX_IOWQ_WORKERS)))]
    pub iowq_workers: Option<u32>,

    /// How many I/O requests a reactor gathers before it hands them to the kernel in one
    /// io_uring_enter while it drains a guest queue, 1..=256 (it always hands over what it
    /// has before it waits). 1, the default, submits each request as soon as it is
    /// popped, which keeps the disk busy while the rest of the queue is drained; larger
    /// batches save system calls where the CPU, not the disk, is the limit.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub submit_batch: u16,

    /// How long a graceful shutdown (`ringvisor ctl shutdown`, SIGTERM: the guest's ACPI
    /// power button) waits for the guest to power off before stopping it by force, in
    /// order; ringvisor then exits with status 3 instead of 0.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub shutdown_timeout: u64,

    /// A guest reset (`reboot`, a triple fault) ends ringvisor with status 0, after the
    /// disks are flushed, instead of rebooting the guest in place (QEMU's -no-reboot).
    /// A triple fault is then a failure (status 1, with the vCPU that faulted).
    #[arg(long)]
    pub no_reboot: bool,

    /// Confine each VMM thread to the system calls its kind needs (seccomp-bpf): on (a
    /// call off the list stops the VMM with a report naming the thread and the call), log
    /// (allowed, left to the kernel's audit log where audit is enabled) or off.
    #[arg(long, value_name = "MODE", default_value = "on")]
    pub seccomp: SeccompMode,
}

impl RunArgs {
    pub fn machine_config(&self) -> MachineConfig {
        MachineConfig {
            kernel: self.kernel.clone(),
            initramfs: self.initramfs.clone(),
            cmdline: self.cmdline.clone(),
            cpus: self.cpus.count,
            vcpu_affinity: self.cpus.affinity.clone(),
            memory_bytes: self.memory.bytes,
            memory_options: self.memory.options,
            disks: self.disks.clone(),
            scsi: (self.scsi.is_some() || !self.scsi_disks.is_empty()).then(|| ScsiConfig {
                queues: self.scsi.map_or(1, |spec| spec.queues),
                disks: self.scsi_disks.clone(),
            }),
            nets: self.nets.clone(),
            console: (self.virtio_console.is_some() || !self.serial_ports.is_empty()).then(|| {
                ConsoleConfig {
                    console: self.virtio_console.clone().unwrap_or(PortBackend::Stdio),
                    ports: self.serial_ports.clone(),
                }
            }),
            balloon: self.balloon.clone(),
            display: self.display.clone(),
            api_socket: self.api_socket.clone(),
            reactor_cores: self.reactor_cores.clone().map(|list| list.0),
            poll_us: self.poll_us,
            iowq_workers: self.iowq_workers.and_then(std::num::NonZeroU32::new),
            submit_batch: std::num::NonZeroUsize::new(usize::from(self.submit_batch)),
            shutdown_timeout: std::time::Duration::from_secs(self.shutdown_timeout),
            no_reboot: self.no_reboot,
            seccomp: self.seccomp,
        }
    }
}

fn parse_level(text: &str) -> Result<LevelFilter, String> {
    text.parse()
        .map_err(|_| format!("'{text}' is not a log level: use error, warn, info or debug"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_flags_parse_into_a_machine_config() {
        let cli = Cli::try_parse_from([
            "ringvisor",
            "run",
            "--kernel",
            "/k",
            "--initramfs",
            "/i",
            "--cpus",
            "4",
            "--memory",
            "1G",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not a run command")
        };
        let config = args.machine_config();
        assert_eq!(config.cpus, 4);
        assert_eq!(config.memory_bytes, 1 << 30);
        assert_eq!(config.cmdline, DEFAULT_CMDLINE);
        assert_eq!(
            config.initramfs.as_deref(),
            Some(std::path::Path::new("/i"))
        );
    }

    #[test]
    fn zero_cpus_and_zero_memory_are_rejected_by_the_parser() {
        for args in [
            ["ringvisor", "run", "--kernel", "/k", "--cpus", "0"],
            ["ringvisor", "run", "--kernel", "/k", "--memory", "0"],
        ] {
            assert!(Cli::try_parse_from(args).is_err());
        }
    }

    #[test]
    fn disks_repeat_and_reactor_cores_are_a_list() {
        let cli = Cli::try_parse_from([
            "ringvisor",
            "run",
            "--kernel",
            "/k",
            "--disk",
            "path=/a,queues=2",
            "--disk",
            "path=/b,readonly=on",
            "--reactor-cores",
            "0-1,3",
            "--poll-us",
            "50",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not a run command")
        };
        let config = args.machine_config();
        assert_eq!(config.disks.len(), 2);
        assert_eq!(
            (config.disks[0].queues, config.disks[1].read_only),
            (2, true)
        );
        assert_eq!(config.reactor_cores, Some(vec![0, 1, 3]));
        assert_eq!(config.poll_us, 50);
        assert_eq!(config.iowq_workers, None, "the default is derived later");
        assert_eq!(config.submit_batch.map(|n| n.get()), Some(1));
    }

    #[test]
    fn submit_batch_takes_a_count_up_to_the_ring() {
        let parse = |value: &str| {
            let flag = format!("--submit-batch={value}");
            Cli::try_parse_from(["ringvisor", "run", "--kernel", "/k", flag.as_str()])
        };
        let Command::Run(args) = parse("32").unwrap().command else {
            panic!("not a run command")
        };
        assert_eq!(
            args.machine_config().submit_batch.map(|n| n.get()),
            Some(32)
        );
        for bad in ["0", "257", "-1", "all"] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
            assert!(err.to_string().contains("--submit-batch"), "{bad}: {err}");
        }
    }

    #[test]
    fn iowq_workers_take_a_positive_count() {
        let parse = |value: &str| {
            let flag = format!("--iowq-workers={value}");
            Cli::try_parse_from(["ringvisor", "run", "--kernel", "/k", flag.as_str()])
        };
        let Command::Run(args) = parse("3").unwrap().command else {
            panic!("not a run command")
        };
        assert_eq!(args.machine_config().iowq_workers.map(|n| n.get()), Some(3));
        for bad in ["0", "-1", "many", "1025", ""] {
            let err = parse(bad).unwrap_err();
            assert_eq!(
                err.exit_code(),
                2,
                "{bad}: bad input exits 2, as clap's other errors"
            );
            let message = err.to_string();
            assert!(message.contains("--iowq-workers"), "{bad}: {message}");
        }
    }

    #[test]
    fn scsi_disks_bring_the_controller() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["ringvisor", "run", "--kernel", "/k"];
            args.extend_from_slice(extra);
            let Command::Run(args) = Cli::try_parse_from(args).unwrap().command else {
                panic!("not a run command")
            };
            args.machine_config()
        };
        assert!(parse(&[]).scsi.is_none());
        let config = parse(&["--scsi-disk", "path=/a", "--scsi-disk", "path=/b,lun=3"]);
        let scsi = config.scsi.unwrap();
        assert_eq!(
            (scsi.queues, scsi.disks.len(), scsi.disks[1].lun),
            (1, 2, Some(3))
        );
        let config = parse(&["--scsi", "queues=4"]);
        assert_eq!(config.scsi.unwrap().queues, 4);
    }

    #[test]
    fn duplicate_scsi_addresses_fail_validation() {
        let image = std::env::temp_dir().join(format!("rv-cli-scsi-{}", std::process::id()));
        std::fs::write(&image, [0u8; 4096]).unwrap();
        let disk = format!("path={},target=1,lun=2", image.display());
        let Command::Run(args) = Cli::try_parse_from([
            "ringvisor",
            "run",
            "--kernel",
            "/proc/self/exe",
            "--scsi-disk",
            &disk,
            "--scsi-disk",
            &disk,
        ])
        .unwrap()
        .command
        else {
            panic!("not a run command")
        };
        let err = args.machine_config().validate().unwrap_err().to_string();
        std::fs::remove_file(&image).unwrap();
        assert!(err.contains("target 1 lun 2 is already taken"), "{err}");
    }

    #[test]
    fn ctl_takes_a_socket_and_a_command() {
        let cli = Cli::try_parse_from(["ringvisor", "ctl", "--socket", "/tmp/s", "stats"]).unwrap();
        let Command::Ctl(args) = cli.command else {
            panic!("not ctl")
        };
        assert_eq!(
            (args.socket.to_str(), args.command.as_str()),
            (Some("/tmp/s"), "stats")
        );
        assert!(Cli::try_parse_from(["ringvisor", "ctl", "stats"]).is_err());
    }
}
