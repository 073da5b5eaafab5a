//! Parsers for the structured CLI values: `key=value,...` option lists such as
//! `--disk path=FILE,readonly=on`, and CPU lists such as `0-3,8`.

use std::path::PathBuf;

use ringvisor_devices::virtio::balloon::{self, BalloonConfig};

use crate::memory::{HugePageSize, MemoryOptions};
use ringvisor_devices::virtio::console::{self, NamedPort, PortBackend};
use ringvisor_devices::virtio::net::{self, NetConfig};
use ringvisor_devices::virtio::scsi::{self, ScsiDiskConfig};

mod size;
pub use size::parse_size;

/// A `key=value,key=value` list with each key allowed at most once.
struct OptionList<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> OptionList<'a> {
    fn parse(text: &'a str, known: &[&str]) -> Result<Self, String> {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for item in text.split(',') {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("'{item}' is not key=value"))?;
            if !known.contains(&key) {
                return Err(format!(
                    "unknown option '{key}' (known: {})",
                    known.join(", ")
                ));
            }
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(format!("option '{key}' given twice"));
            }
            pairs.push((key, value));
        }
        Ok(Self { pairs })
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// The number at `key`, which must lie in `min..=max`; `None` when absent.
    fn number<T>(&self, key: &str, min: T, max: T) -> Result<Option<T>, String>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(text) = self.get(key) else {
            return Ok(None);
        };
        match text.parse::<T>() {
            Ok(n) if n >= min && n <= max => Ok(Some(n)),
            _ => Err(format!("{key}={text}: want {min}..={max}")),
        }
    }

    fn switch(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(default),
            Some("on" | "true" | "yes" | "1") => Ok(true),
            Some("off" | "false" | "no" | "0") => Ok(false),
            Some(other) => Err(format!("{key}={other}: use on or off")),
        }
    }
}

/// Largest queue count a disk accepts: one queue per vCPU is the useful maximum.
pub const MAX_DISK_QUEUES: u16 = 64;
/// virtio-blk GET_ID returns 20 bytes.
pub const MAX_DISK_SERIAL: usize = 20;

/// One `--disk` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: PathBuf,
    pub read_only: bool,
    pub direct: bool,
    pub queues: u16,
    pub serial: Option<String>,
}

/// Parses `path=FILE[,readonly=on][,direct=on|off][,queues=N][,serial=ID]`.
pub fn parse_disk(text: &str) -> Result<DiskSpec, String> {
    let options = OptionList::parse(text, &["path", "readonly", "direct", "queues", "serial"])?;
    let path = options
        .get("path")
        .filter(|p| !p.is_empty())
        .ok_or("path=FILE is required")?;
    let queues = options.number("queues", 1, MAX_DISK_QUEUES)?.unwrap_or(1);
    let serial = options.get("serial").map(str::to_owned);
    if let Some(serial) = &serial {
        if serial.len() > MAX_DISK_SERIAL || !serial.is_ascii() {
            return Err(format!(
                "serial={serial}: at most {MAX_DISK_SERIAL} ASCII characters"
            ));
        }
    }
    Ok(DiskSpec {
        path: PathBuf::from(path),
        read_only: options.switch("readonly", false)?,
        direct: options.switch("direct", true)?,
        queues,
        serial,
    })
}

/// Parses `--scsi-disk path=FILE[,target=T][,lun=L][,readonly=on][,direct=on|off]
/// [,serial=ID]`; target and LUN are assigned when omitted.
pub fn parse_scsi_disk(text: &str) -> Result<ScsiDiskConfig, String> {
    let options = OptionList::parse(
        text,
        &["path", "target", "lun", "readonly", "direct", "serial"],
    )?;
    let path = options
        .get("path")
        .filter(|p| !p.is_empty())
        .ok_or("path=FILE is required")?;
    let target = options.number("target", 0, scsi::protocol::MAX_TARGET)?;
    let lun = options.number("lun", 0, scsi::protocol::MAX_LUN)?;
    let serial = options.get("serial").map(str::to_owned);
    if let Some(serial) = &serial {
        if !scsi::valid_serial(serial) {
            return Err(format!(
                "serial={serial}: 1 to 64 printable ASCII characters"
            ));
        }
    }
    Ok(ScsiDiskConfig {
        path: PathBuf::from(path),
        target,
        lun,
        read_only: options.switch("readonly", false)?,
        direct: options.switch("direct", true)?,
        serial,
    })
}

/// Parses `--net tap=NAME[,mac=MAC][,queues=N][,mtu=M]` (queues: queue pairs).
pub fn parse_net(text: &str) -> Result<NetConfig, String> {
    let options = OptionList::parse(text, &["tap", "mac", "queues", "mtu"])?;
    let tap = options
        .get("tap")
        .filter(|t| !t.is_empty())
        .ok_or("tap=NAME is required")?;
    if !net::valid_interface_name(tap) {
        return Err(format!(
            "tap={tap}: an interface name of at most 15 characters (no '/' or ':')"
        ));
    }
    let mac = match options.get("mac") {
        None => None,
        Some(text) => Some(parse_mac(text)?),
    };
    let queue_pairs = options
        .number("queues", 1, net::MAX_QUEUE_PAIRS)?
        .unwrap_or(1);
    let mtu = options.number("mtu", net::MIN_MTU, net::MAX_MTU)?;
    Ok(NetConfig {
        tap: tap.to_owned(),
        mac,
        queue_pairs,
        mtu,
    })
}

/// `52:54:00:12:34:56`: six hex bytes, a unicast address.
fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let bad = || format!("mac={text}: want six hex bytes like 52:54:00:12:34:56");
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    if mac[0] & 1 != 0 {
        return Err(format!("mac={text}: a multicast address cannot name a NIC"));
    }
    Ok(mac)
}

/// The host end among `options`: exactly one of socket=PATH, file=PATH, pipe=PATH (and,
/// where `stdio_allowed`, the bare word `stdio`, handled by the caller).
fn port_backend(options: &OptionList<'_>) -> Result<PortBackend, String> {
    let mut chosen = Vec::new();
    for (key, make) in [
        ("socket", PortBackend::Socket as fn(PathBuf) -> PortBackend),
        ("file", PortBackend::File),
        ("pipe", PortBackend::Pipe),
    ] {
        if let Some(path) = options.get(key) {
            if path.is_empty() {
                return Err(format!("{key}=PATH needs a path"));
            }
            chosen.push(make(PathBuf::from(path)));
        }
    }
    match chosen.len() {
        1 => Ok(chosen.remove(0)),
        0 => Err("give the host end: socket=PATH, file=PATH or pipe=PATH".into()),
        _ => Err("give only one host end: socket=PATH, file=PATH or pipe=PATH".into()),
    }
}

/// Parses `--virtio-console stdio|socket=PATH|file=PATH|pipe=PATH`: port 0's host end.
pub fn parse_console(text: &str) -> Result<PortBackend, String> {
    if text == "stdio" {
        return Ok(PortBackend::Stdio);
    }
    let options = OptionList::parse(text, &["socket", "file", "pipe"])
        .map_err(|e| format!("{e}; or use the word stdio"))?;
    port_backend(&options)
}

/// Parses `--serial-port name=NAME,socket=PATH|file=PATH|pipe=PATH`.
pub fn parse_serial_port(text: &str) -> Result<NamedPort, String> {
    let options = OptionList::parse(text, &["name", "socket", "file", "pipe"])?;
    let name = options.get("name").ok_or("name=NAME is required")?;
    if !console::valid_port_name(name) {
        return Err(format!(
            "name={name}: 1 to {} letters, digits, '.', '-' or '_'",
            console::MAX_NAME_LEN
        ));
    }
    Ok(NamedPort {
        name: name.to_owned(),
        backend: port_backend(&options)?,
    })
}

/// Longest statistics refresh period accepted, in seconds.
pub const MAX_BALLOON_STATS_INTERVAL_S: u64 = 3600;

/// Parses `--balloon size=SIZE[,deflate-on-oom=on][,free-page-reporting=off]
/// [,stats-interval=SECS]`; size=0 starts with an empty balloon, to be set through the API.
pub fn parse_balloon(text: &str) -> Result<BalloonConfig, String> {
    let options = OptionList::parse(
        text,
        &[
            "size",
            "deflate-on-oom",
            "free-page-reporting",
            "stats-interval",
        ],
    )?;
    let size = options
        .get("size")
        .ok_or("size=SIZE is required (0 for none yet)")?;
    let initial_target_bytes = if size == "0" {
        0
    } else {
        parse_size(size).map_err(|e| format!("size={size}: {e}"))?
    };
    let stats_interval = options
        .number("stats-interval", 0, MAX_BALLOON_STATS_INTERVAL_S)?
        .map_or(
            balloon::DEFAULT_STATS_INTERVAL,
            std::time::Duration::from_secs,
        );
    Ok(BalloonConfig {
        initial_target_bytes,
        deflate_on_oom: options.switch("deflate-on-oom", false)?,
        free_page_reporting: options.switch("free-page-reporting", true)?,
        stats_interval,
        protected: Vec::new(),
    })
}

/// `--scsi queues=N`: the controller's request queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiSpec {
    pub queues: u16,
}

/// Parses `queues=N`.
pub fn parse_scsi(text: &str) -> Result<ScsiSpec, String> {
    let options = OptionList::parse(text, &["queues"])?;
    let queues = options
        .number("queues", 1, scsi::MAX_REQUEST_QUEUES)?
        .unwrap_or(1);
    Ok(ScsiSpec { queues })
}

/// A parsed CPU list (one CLI value, so clap does not take it for repeated values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// [`parse_cpu_list`] for clap.
pub fn parse_cpu_list_arg(text: &str) -> Result<CpuList, String> {
    parse_cpu_list(text).map(CpuList)
}

/// Parses a CPU list such as `0-3,8,10-11` into sorted, distinct CPU numbers.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for item in text.split(',') {
        let number = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("'{s}' is not a CPU number"))
        };
        match item.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (number(first)?, number(last)?);
                if first > last {
                    return Err(format!("'{item}' is an empty range"));
                }
                if last - first >= 4096 {
                    return Err(format!("'{item}' spans more CPUs than any host has"));
                }
                cpus.extend(first..=last);
            }
            None => cpus.push(number(item)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Most vCPUs a guest may have (the APIC ID limit, see `crate::acpi`).
pub use crate::acpi::MAX_VCPUS;

/// `--cpus N[,affinity=VCPU@CPULIST,...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSpec {
    pub count: u8,
    /// vCPU index and the host cores it is pinned to.
    pub affinity: Vec<(u8, Vec<usize>)>,
}

/// Parses `N[,affinity=VCPU@CPULIST,...]`, e.g. `4,affinity=0@2,1@3,2@4-5,8`: a CPU list
/// may hold commas, so each `VCPU@` starts a new entry and bare items extend the last one.
pub fn parse_cpus(text: &str) -> Result<CpuSpec, String> {
    let (count, rest) = text.split_once(',').unwrap_or((text, ""));
    let count: u8 = match count.trim().parse() {
        Ok(n) if (1..=MAX_VCPUS).contains(&n) => n,
        _ => return Err(format!("'{count}' is not a vCPU count in 1..={MAX_VCPUS}")),
    };
    let mut affinity: Vec<(u8, String)> = Vec::new();
    if !rest.is_empty() {
        let list = rest
            .strip_prefix("affinity=")
            .ok_or_else(|| format!("'{rest}': after the count only affinity=VCPU@CPULIST,..."))?;
        for item in list.split(',') {
            match item.split_once('@') {
                Some((vcpu, cores)) => {
                    let vcpu: u8 = vcpu
                        .trim()
                        .parse()
                        .map_err(|_| format!("affinity: '{vcpu}' is not a vCPU number"))?;
                    if vcpu >= count {
                        return Err(format!(
                            "affinity: there is no vCPU {vcpu} (the guest has {count})"
                        ));
                    }
                    if affinity.iter().any(|(v, _)| *v == vcpu) {
                        return Err(format!("affinity: vCPU {vcpu} given twice"));
                    }
                    affinity.push((vcpu, cores.to_owned()));
                }
                None => match affinity.last_mut() {
                    Some((_, cores)) => {
                        cores.push(',');
                        cores.push_str(item);
                    }
                    None => return Err(format!("affinity: '{item}' is not VCPU@CPULIST")),
                },
            }
        }
        if affinity.is_empty() {
            return Err("affinity= needs at least one VCPU@CPULIST".into());
        }
    }
    let affinity = affinity
        .into_iter()
        .map(|(vcpu, cores)| {
            parse_cpu_list(&cores)
                .map(|list| (vcpu, list))
                .map_err(|e| format!("affinity of vCPU {vcpu}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    Ok(CpuSpec { count, affinity })
}

/// A memory size with its backing options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySpec {
    pub bytes: u64,
    pub options: MemoryOptions,
}

/// Parses `SIZE[,hugepages=on][,hugepage-size=2M|1G][,prefault=on][,shared=on]`.
pub fn parse_memory(text: &str) -> Result<MemorySpec, String> {
    let (size, rest) = text.split_once(',').unwrap_or((text, ""));
    let bytes = parse_size(size)?;
    let mut options = MemoryOptions::default();
    if !rest.is_empty() {
        let list = OptionList::parse(rest, &["hugepages", "hugepage-size", "prefault", "shared"])?;
        let page = match list.get("hugepage-size") {
            None | Some("2M" | "2MiB" | "2m") => HugePageSize::TwoMiB,
            Some("1G" | "1GiB" | "1g") => HugePageSize::OneGiB,
            Some(other) => return Err(format!("hugepage-size={other}: use 2M or 1G")),
        };
        if list.switch("hugepages", false)? {
            options.hugepages = Some(page);
        } else if list.get("hugepage-size").is_some() {
            return Err("hugepage-size= needs hugepages=on".into());
        }
        options.prefault = list.switch("prefault", false)?;
        options.shared = list.switch("shared", false)?;
    }
    Ok(MemorySpec { bytes, options })
}

/// `--display qxl[,vnc=ADDR:PORT|off][,vram=SIZE][,input=on|off]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplaySpec {
    pub qxl: ringvisor_devices::qxl::QxlConfig,
    /// Where the VNC server listens; None: no VNC.
    pub vnc: Option<std::net::SocketAddr>,
    /// A virtio keyboard and tablet fed by VNC clients.
    pub input: bool,
}

/// Loopback only unless the user names another address: VNC here has no authentication.
pub const DEFAULT_VNC_ADDR: &str = "127.0.0.1:5900";

pub fn parse_display(text: &str) -> Result<DisplaySpec, String> {
    use ringvisor_devices::qxl::{QxlConfig, MAX_BAR_SIZE, MIN_BAR_SIZE};
    let (kind, rest) = text.split_once(',').unwrap_or((text, ""));
    if kind != "qxl" {
        return Err(format!(
            "{kind:?}: the display device must be qxl (qxl[,vnc=ADDR:PORT|off][,vram=SIZE][,input=on|off])"
        ));
    }
    let options = if rest.is_empty() {
        OptionList { pairs: Vec::new() }
    } else {
        OptionList::parse(rest, &["vnc", "vram", "input"])?
    };
    let mut qxl = QxlConfig::default();
    if let Some(vram) = options.get("vram") {
        let size = parse_size(vram).map_err(|e| format!("vram={vram}: {e}"))?;
        if !size.is_power_of_two() || !(MIN_BAR_SIZE..=MAX_BAR_SIZE).contains(&size) {
            return Err(format!(
                "vram={vram}: a power of two from {} MiB to {} MiB",
                MIN_BAR_SIZE >> 20,
                MAX_BAR_SIZE >> 20
            ));
        }
        qxl.vram_size = size;
    }
    let vnc =
        match options.get("vnc").unwrap_or(DEFAULT_VNC_ADDR) {
            "off" => None,
            addr => Some(addr.parse::<std::net::SocketAddr>().map_err(|e| {
                format!("vnc={addr}: {e} (an IP:PORT such as 127.0.0.1:5901, or off)")
            })?),
        };
    let input = options.switch("input", vnc.is_some())?;
    Ok(DisplaySpec { qxl, vnc, input })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_spec_parses() {
        let disk =
            parse_disk("path=/tmp/d.img,readonly=on,direct=off,queues=4,serial=abc").unwrap();
        assert_eq!(
            disk,
            DiskSpec {
                path: "/tmp/d.img".into(),
                read_only: true,
                direct: false,
                queues: 4,
                serial: Some("abc".into()),
            }
        );
        let plain = parse_disk("path=disk.raw").unwrap();
        assert!(!plain.read_only && plain.direct && plain.queues == 1 && plain.serial.is_none());
    }

    #[test]
    fn net_specs_parse_and_bad_ones_say_why() {
        let net = parse_net("tap=tap0,mac=52:54:00:ab:cd:ef,queues=2,mtu=9000").unwrap();
        assert_eq!(
            net,
            NetConfig {
                tap: "tap0".into(),
                mac: Some([0x52, 0x54, 0, 0xab, 0xcd, 0xef]),
                queue_pairs: 2,
                mtu: Some(9000),
            }
        );
        assert_eq!(parse_net("tap=t").unwrap().queue_pairs, 1);
        for (spec, want) in [
            ("mac=52:54:00:00:00:01", "tap=NAME is required"),
            ("tap=averyveryverylongname", "at most 15"),
            ("tap=t,mac=52:54:00:00:00", "six hex bytes"),
            ("tap=t,mac=52:54:00:00:00:zz", "six hex bytes"),
            ("tap=t,mac=01:00:5e:00:00:01", "multicast"),
            ("tap=t,queues=0", "queues=0"),
            ("tap=t,queues=17", "queues=17"),
            ("tap=t,mtu=20", "mtu=20"),
        ] {
            let err = parse_net(spec).unwrap_err();
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    #[test]
    fn scsi_disks_and_the_controller_parse() {
        let disk =
            parse_scsi_disk("path=a.img,target=3,lun=7,readonly=on,direct=off,serial=X1").unwrap();
        assert_eq!(
            disk,
            ScsiDiskConfig {
                path: PathBuf::from("a.img"),
                target: Some(3),
                lun: Some(7),
                read_only: true,
                direct: false,
                serial: Some("X1".into()),
            }
        );
        let plain = parse_scsi_disk("path=b.img").unwrap();
        assert_eq!((plain.target, plain.lun, plain.direct), (None, None, true));
        for (spec, want) in [
            ("target=1", "path=FILE is required"),
            ("path=a,target=256", "target=256: want 0..=255"),
            ("path=a,lun=16384", "lun=16384: want 0..=16383"),
            ("path=a,lun=x", "lun=x"),
            ("path=a,serial=a b", "printable ASCII"),
            ("path=a,queues=2", "unknown option 'queues'"),
        ] {
            let err = parse_scsi_disk(spec).unwrap_err();
            assert!(err.contains(want), "{spec}: {err}");
        }
        assert_eq!(parse_scsi("queues=4").unwrap().queues, 4);
        assert!(parse_scsi("queues=0").unwrap_err().contains("want 1..=64"));
        assert!(parse_scsi("lun=1").is_err());
    }

    #[test]
    fn bad_disk_specs_say_what_is_wrong() {
        for (spec, needle) in [
            ("readonly=on", "path=FILE is required"),
            ("path=", "path=FILE is required"),
            ("path=a,queues=0", "queues=0"),
            ("path=a,queues=65", "queues=65"),
            ("path=a,queues=x", "queues=x"),
            ("path=a,readonly=maybe", "use on or off"),
            ("path=a,speed=9", "unknown option 'speed'"),
            ("path=a,path=b", "given twice"),
            ("path=a,serial=012345678901234567890", "at most 20"),
            ("path=a,direct", "not key=value"),
        ] {
            let err = parse_disk(spec).unwrap_err();
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }

    #[test]
    fn console_ports_parse_and_bad_ones_say_why() {
        assert_eq!(parse_console("stdio"), Ok(PortBackend::Stdio));
        assert_eq!(
            parse_console("socket=/run/c.sock"),
            Ok(PortBackend::Socket("/run/c.sock".into()))
        );
        assert_eq!(
            parse_serial_port("name=org.test.0,pipe=/tmp/p"),
            Ok(NamedPort {
                name: "org.test.0".into(),
                backend: PortBackend::Pipe("/tmp/p".into()),
            })
        );
        for (spec, want) in [
            ("file=/tmp/x", "name=NAME is required"),
            ("name=a/b,file=x", "letters, digits"),
            ("name=a", "give the host end"),
            ("name=a,file=x,socket=y", "only one host end"),
            ("name=a,file=", "needs a path"),
            ("name=a,tcp=1", "unknown option 'tcp'"),
        ] {
            let err = parse_serial_port(spec).unwrap_err();
            assert!(err.contains(want), "{spec}: {err}");
        }
        assert!(parse_console("stdin").unwrap_err().contains("stdio"));
    }

    #[test]
    fn display_specs_parse_and_bad_ones_say_why() {
        let plain = parse_display("qxl").unwrap();
        assert_eq!(plain.vnc, Some("127.0.0.1:5900".parse().unwrap()));
        assert!(plain.input);
        assert_eq!(plain.qxl.vram_size, 64 << 20);
        let custom = parse_display("qxl,vnc=0.0.0.0:5905,vram=16M,input=off").unwrap();
        assert_eq!(custom.vnc, Some("0.0.0.0:5905".parse().unwrap()));
        assert_eq!((custom.qxl.vram_size, custom.input), (16 << 20, false));
        let headless = parse_display("qxl,vnc=off").unwrap();
        assert_eq!((headless.vnc, headless.input), (None, false));
        for (bad, why) in [
            ("vga", "must be qxl"),
            ("qxl,vram=3M", "power of two"),
            ("qxl,vram=4G", "power of two"),
            ("qxl,vnc=localhost", "IP:PORT"),
            ("qxl,colour=on", "unknown option"),
        ] {
            let err = parse_display(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn balloon_specs_parse_and_bad_ones_say_why() {
        let spec = parse_balloon("size=256M,deflate-on-oom=on,stats-interval=5").unwrap();
        assert_eq!(spec.initial_target_bytes, 256 << 20);
        assert!(spec.deflate_on_oom && spec.free_page_reporting);
        assert!(
            !parse_balloon("size=0,free-page-reporting=off")
                .unwrap()
                .free_page_reporting
        );
        assert_eq!(spec.stats_interval, std::time::Duration::from_secs(5));
        assert_eq!(parse_balloon("size=0").unwrap().initial_target_bytes, 0);
        for (spec, want) in [
            ("deflate-on-oom=on", "size=SIZE is required"),
            ("size=12Q", "unknown unit"),
            ("size=1G,stats-interval=-1", "stats-interval=-1"),
            ("size=1G,deflate-on-oom=perhaps", "use on or off"),
        ] {
            let err = parse_balloon(spec).unwrap_err();
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8,2").unwrap(), vec![0, 1, 2, 3, 8]);
        assert_eq!(parse_cpu_list("5").unwrap(), vec![5]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("0-100000").is_err());
    }

    #[test]
    fn cpus_with_affinity_parse_and_bad_ones_say_why() {
        assert_eq!(
            parse_cpus("2"),
            Ok(CpuSpec {
                count: 2,
                affinity: vec![]
            })
        );
        assert_eq!(
            parse_cpus("4,affinity=0@2,1@3,2@4-5,8").unwrap().affinity,
            vec![(0, vec![2]), (1, vec![3]), (2, vec![4, 5, 8])]
        );
        for (spec, want) in [
            ("0", "not a vCPU count"),
            ("255", "not a vCPU count"),
            ("2,pin=1", "only affinity="),
            ("2,affinity=2@1", "no vCPU 2"),
            ("2,affinity=0@1,0@2", "given twice"),
            ("2,affinity=3", "not VCPU@CPULIST"),
            ("2,affinity=0@x", "affinity of vCPU 0"),
            ("2,affinity=", "not VCPU@CPULIST"),
        ] {
            let err = parse_cpus(spec).unwrap_err();
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    #[test]
    fn memory_with_backing_options() {
        assert_eq!(
            parse_memory("512M"),
            Ok(MemorySpec {
                bytes: 512 << 20,
                options: MemoryOptions::default()
            })
        );
        let spec = parse_memory("2G,hugepages=on,hugepage-size=1G,prefault=on,shared=on").unwrap();
        assert_eq!(spec.bytes, 2 << 30);
        assert_eq!(spec.options.hugepages, Some(HugePageSize::OneGiB));
        assert!(spec.options.prefault && spec.options.shared);
        assert_eq!(
            parse_memory("1G,hugepages=on").unwrap().options.hugepages,
            Some(HugePageSize::TwoMiB)
        );
        for (spec, want) in [
            ("1G,hugepage-size=1G", "needs hugepages=on"),
            ("1G,hugepages=on,hugepage-size=4M", "use 2M or 1G"),
            ("1G,thp=off", "unknown option 'thp'"),
            ("0,prefault=on", "greater than zero"),
        ] {
            let err = parse_memory(spec).unwrap_err();
            assert!(err.contains(want), "{spec}: {err}");
        }
    }
}
