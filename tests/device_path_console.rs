//! Tier 2: virtio-console (MULTIPORT) through the real reactors and io_uring, with real
//! host ends: an output file, a FIFO pair and Unix sockets a client connects to.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringvisor_devices::virtio::console::{ConsoleConfig, NamedPort, PortBackend};
use ringvisor_rig::devpath::{port_rx_queue, ConsoleRig, ControlEvent};
use ringvisor_rig::virtq_driver::Buffer;
use vm_memory::{Bytes, GuestAddress};

const QUEUE_SIZE: u16 = 64;
const DEVICE_READY: u16 = 0;
const DEVICE_ADD: u16 = 1;
const PORT_READY: u16 = 3;
const CONSOLE_PORT: u16 = 4;
const PORT_OPEN: u16 = 6;
const PORT_NAME: u16 = 7;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rv-console-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn event(id: u32, event: u16, value: u16) -> ControlEvent {
    ControlEvent {
        id,
        event,
        value,
        payload: Vec::new(),
    }
}

fn named(id: u32, name: &str) -> ControlEvent {
    ControlEvent {
        payload: name.as_bytes().to_vec(),
        ..event(id, PORT_NAME, 1)
    }
}

fn tx(port: usize) -> usize {
    port_rx_queue(port) + 1
}

/// Reads exactly `len` bytes from `stream` within a few seconds.
fn read_exact(stream: &mut impl Read, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    stream.read_exact(&mut data).unwrap();
    data
}

fn counter(rig: &ConsoleRig, queue: &str, name: &str) -> u64 {
    rig.stats()
        .iter()
        .flat_map(|r| r.queues.iter())
        .find(|q| q.name == queue)
        .and_then(|q| q.device.iter().find(|(n, _)| *n == name).map(|&(_, v)| v))
        .unwrap_or_else(|| panic!("no counter {name} on {queue}"))
}

fn socket_mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn ports_are_announced_carry_bytes_both_ways_and_hold_output_without_a_client() {
    let dir = TempDir::new("ports");
    let config = ConsoleConfig {
        console: PortBackend::Socket(dir.path("console.sock")),
        ports: vec![
            NamedPort {
                name: "data".into(),
                backend: PortBackend::File(dir.path("data.out")),
            },
            NamedPort {
                name: "chat".into(),
                backend: PortBackend::Socket(dir.path("chat.sock")),
            },
            NamedPort {
                name: "fifo".into(),
                backend: PortBackend::Pipe(dir.path("fifo")),
            },
        ],
    };
    let mut rig = ConsoleRig::console(config, QUEUE_SIZE).unwrap();
    assert_eq!(socket_mode(&dir.path("chat.sock")), 0o600);
    let control = rig.post_control_buffers(48).unwrap();

    // The handshake Linux's virtio_console does.
    rig.send_control(0, DEVICE_READY, 1).unwrap();
    let added = rig.receive_control(&control, 4).unwrap();
    assert_eq!(
        added,
        (0..4)
            .map(|id| event(id, DEVICE_ADD, 1))
            .collect::<Vec<_>>()
    );
    for id in 0..4 {
        rig.send_control(id, PORT_READY, 1).unwrap();
    }
    let setup = rig.receive_control(&control, 6).unwrap();
    assert_eq!(
        setup,
        vec![
            event(0, CONSOLE_PORT, 1),
            named(1, "data"),
            event(1, PORT_OPEN, 1),
            named(2, "chat"),
            named(3, "fifo"),
            event(3, PORT_OPEN, 1),
        ],
        "the console is announced, every named port named, file and FIFO ports open"
    );

    // Console output with no client is consumed (a kernel spins on hvc0 otherwise).
    let queue = rig.queue(tx(0)).unwrap();
    queue.post_bytes(b"early console line\n").unwrap();
    queue.kick().unwrap();
    rig.wait_used(tx(0), 1).unwrap();
    assert_eq!(counter(&rig, "console/q1", "dropped_bytes"), 19);

    // 1 MiB to the output file, in order.
    let pattern: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + i / 4096) as u8).collect();
    let queue = rig.queue(tx(1)).unwrap();
    for chunk in pattern.chunks(64 << 10) {
        queue.post_bytes(chunk).unwrap();
    }
    queue.kick().unwrap();
    rig.wait_used(tx(1), 16).unwrap();
    assert!(std::fs::read(dir.path("data.out")).unwrap() == pattern);

    // A broken chain on that queue is returned and counted; the port keeps working.
    let queue = rig.queue(tx(1)).unwrap();
    queue
        .post_chain(&[Buffer::readable(GuestAddress(1 << 40), 512)])
        .unwrap();
    queue.post_bytes(b"after").unwrap();
    queue.kick().unwrap();
    rig.wait_used(tx(1), 2).unwrap();
    assert_eq!(counter(&rig, "console/q5", "bad_chains"), 1);
    assert!(std::fs::read(dir.path("data.out"))
        .unwrap()
        .ends_with(b"after"));

    // Guest output to a named socket port waits for a client: backpressure, no loss.
    let queue = rig.queue(tx(2)).unwrap();
    queue.post_bytes(b"held until ").unwrap();
    queue.post_bytes(b"someone listens").unwrap();
    queue.kick().unwrap();
    assert!(!rig.used_within(tx(2), Duration::from_millis(300)).unwrap());
    let mut client = UnixStream::connect(dir.path("chat.sock")).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        rig.receive_control(&control, 1).unwrap(),
        vec![event(2, PORT_OPEN, 1)]
    );
    assert_eq!(read_exact(&mut client, 26), b"held until someone listens");
    rig.wait_used(tx(2), 2).unwrap();

    // Host to guest once the guest opened the port.
    rig.send_control(2, PORT_OPEN, 1).unwrap();
    let queue = rig.queue(port_rx_queue(2)).unwrap();
    let (head, at) = queue.post_rx_buffer(64).unwrap();
    queue.kick().unwrap();
    client.write_all(b"hello guest").unwrap();
    let used = rig.wait_used(port_rx_queue(2), 1).unwrap();
    assert_eq!(used, vec![(head, 11)]);
    let mut got = [0u8; 11];
    rig.mem().read_slice(&mut got, at).unwrap();
    assert_eq!(&got, b"hello guest");

    // The client leaves, another comes: the guest is told both.
    drop(client);
    assert_eq!(
        rig.receive_control(&control, 1).unwrap(),
        vec![event(2, PORT_OPEN, 0)]
    );
    let mut client = UnixStream::connect(dir.path("chat.sock")).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        rig.receive_control(&control, 1).unwrap(),
        vec![event(2, PORT_OPEN, 1)]
    );
    let queue = rig.queue(port_rx_queue(2)).unwrap();
    queue.post_rx_buffer(64).unwrap();
    queue.kick().unwrap();
    client.write_all(b"again").unwrap();
    let used = rig.wait_used(port_rx_queue(2), 1).unwrap();
    assert_eq!(used.len(), 1);
    assert_eq!(used[0].1, 5);

    // The FIFO pair: both directions. As Linux does, the receive buffer is posted long
    // before a program opens the port.
    let queue = rig.queue(port_rx_queue(3)).unwrap();
    let (_, at) = queue.post_rx_buffer(64).unwrap();
    queue.kick().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    rig.send_control(3, PORT_OPEN, 1).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path("fifo.in"))
        .unwrap()
        .write_all(b"via fifo")
        .unwrap();
    assert_eq!(rig.wait_used(port_rx_queue(3), 1).unwrap()[0].1, 8);
    let mut got = [0u8; 8];
    rig.mem().read_slice(&mut got, at).unwrap();
    assert_eq!(&got, b"via fifo");
    let queue = rig.queue(tx(3)).unwrap();
    queue.post_bytes(b"out of fifo").unwrap();
    queue.kick().unwrap();
    rig.wait_used(tx(3), 1).unwrap();
    let mut out = std::fs::OpenOptions::new()
        .read(true)
        .open(dir.path("fifo.out"))
        .unwrap();
    assert_eq!(read_exact(&mut out, 11), b"out of fifo");

    // Control messages about ports that do not exist are consumed and counted.
    rig.send_control(99, PORT_READY, 1).unwrap();
    rig.send_control(1, 0x7777, 1).unwrap();
    assert_eq!(counter(&rig, "console/q3", "bad_messages"), 2);
    assert_eq!(
        counter(&rig, "console/q5", "from_guest_bytes"),
        (1 << 20) + 5
    );
    assert!(rig.faults().is_empty(), "{:?}", rig.faults());
    rig.shutdown().unwrap();
}

#[test]
fn bad_port_configurations_are_refused() {
    let dir = TempDir::new("bad");
    let config = |ports: Vec<NamedPort>| ConsoleConfig {
        console: PortBackend::File(dir.path("console.out")),
        ports,
    };
    let port = |name: &str, backend: PortBackend| NamedPort {
        name: name.into(),
        backend,
    };
    let file = PortBackend::File(dir.path("x"));
    for (ports, want) in [
        (vec![port("a/b", file.clone())], "port name"),
        (vec![port("", file.clone())], "port name"),
        (
            vec![port("same", file.clone()), port("same", file.clone())],
            "used twice",
        ),
        (
            vec![port("sock", PortBackend::Socket(dir.path("console.out")))],
            "not a socket",
        ),
        (
            vec![port("nodir", PortBackend::File(dir.path("no/such/dir")))],
            "cannot open",
        ),
    ] {
        std::fs::write(dir.path("console.out"), b"").unwrap();
        let err = ringvisor_devices::virtio::console::ConsoleDevice::new(config(ports))
            .err()
            .expect("refused");
        assert!(err.to_string().contains(want), "{err}");
    }
}
