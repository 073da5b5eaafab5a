//! Tier 2: virtio-net through the real reactors and io_uring on a real TAP device, in a
//! network namespace of the test's own (it needs CAP_SYS_ADMIN and CAP_NET_ADMIN: root,
//! as in CI). The host side of the TAP is an AF_PACKET socket bound to it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use ringvisor_devices::virtio::net::NetConfig;
use ringvisor_rig::devpath::NetRig as Rig;
use ringvisor_rig::virtq_driver::Buffer;
use vm_memory::{Bytes, GuestAddress};

const QUEUE_SIZE: u16 = 256;
/// An IEEE "local experimental" EtherType: nothing else on the link uses it.
const ETHERTYPE: u16 = 0x88b5;

/// Moves this test's thread into a fresh network namespace; false (and a message) when
/// that is not allowed outside CI.
fn private_netns() -> bool {
    // SAFETY: unshare takes flags only; it changes the calling thread's namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
        return true;
    }
    let err = std::io::Error::last_os_error();
    ringvisor_test_support::skip(format!("a private network namespace needs root: {err}"));
    false
}

/// `ip link set NAME up`, without ip(8).
fn link_up(name: &str) {
    // SAFETY: a plain datagram socket for interface ioctls.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    assert!(sock >= 0);
    // SAFETY: `sock` was just opened and is owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: ifreq is plain data; zeroed is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq passed, a live one.
    unsafe {
        assert_eq!(
            libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req),
            0
        );
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(
            libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req),
            0
        );
    }
    // No IPv6 autoconfiguration chatter on the link.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
}

/// The host side of the TAP: raw frames of our EtherType, both directions.
struct HostSide {
    sock: OwnedFd,
    ifindex: i32,
}

impl HostSide {
    fn bind(name: &str) -> Self {
        let cname = std::ffi::CString::new(name).unwrap();
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) } as i32;
        assert!(ifindex > 0, "no interface {name}");
        let proto = (ETHERTYPE).to_be() as i32;
        // SAFETY: a packet socket for one EtherType.
        let fd =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, proto) };
        assert!(fd >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just opened and is owned here.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain data.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETHERTYPE.to_be();
        addr.sll_ifindex = ifindex;
        // SAFETY: binds to a live sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                sock.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        Self { sock, ifindex }
    }

    /// Sends `frame` out of the TAP: the device reads it as a received frame.
    fn send(&self, frame: &[u8]) {
        // SAFETY: sockaddr_ll is plain data.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: sends `frame` (live for the call) to a live address of the size passed.
        let n = unsafe {
            libc::sendto(
                self.sock.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(
            n,
            frame.len() as isize,
            "sendto: {}",
            std::io::Error::last_os_error()
        );
    }

    /// The next frame the device transmitted (arriving from the TAP), waiting up to 10 s.
    fn recv(&self) -> Option<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: sockaddr_ll is plain data; zeroed is valid.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: receives into `buf` and `from`, both live and of the sizes passed.
            let n = unsafe {
                libc::recvfrom(
                    self.sock.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            // Frames we sent ourselves come back as "outgoing"; skip them.
            if n > 0 && from.sll_pkttype != libc::PACKET_OUTGOING {
                return Some(buf[..n as usize].to_vec());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn frame(dst: [u8; 6], tag: u16, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 9]);
    f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    f[14..16].copy_from_slice(&tag.to_be_bytes());
    for (i, b) in f.iter_mut().enumerate().skip(16) {
        *b = (i as u8).wrapping_mul(3) ^ tag as u8;
    }
    f
}

/// An IPv4/UDP frame of flow `port` (for queue steering by flow hash).
fn udp_frame(dst: [u8; 6], port: u16) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 9]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&46u16.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&port.to_be_bytes());
    f[36..38].copy_from_slice(&9u16.to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    f
}

fn config(tap: &str, pairs: u16) -> NetConfig {
    NetConfig {
        tap: tap.into(),
        mac: Some([0x02, 0x72, 0, 0, 0, 1]),
        queue_pairs: pairs,
        mtu: None,
    }
}

/// A NIC on TAP `tap` with `pairs` queue pairs, each on a reactor of its own, the link up
/// and the host side bound; None where the test cannot have a private network namespace.
fn nic_on_tap(tap: &str, pairs: u16) -> Option<(Rig, HostSide, [u8; 6])> {
    if !private_netns() {
        return None;
    }
    let reactors = vec![None; usize::from(pairs)];
    let rig = Rig::net(config(tap, pairs), &reactors, QUEUE_SIZE).unwrap();
    link_up(tap);
    let host = HostSide::bind(tap);
    let mac = rig.device().mac();
    Some((rig, host, mac))
}

#[test]
fn frames_cross_a_real_tap_both_ways() {
    let Some((mut rig, host, mac)) = nic_on_tap("rvtap0", 1) else {
        return;
    };

    // Guest → host: frames come out of the TAP byte for byte.
    let (rx, tx) = (0, 1);
    let sizes = [60usize, 61, 512, 1514];
    for (i, &len) in sizes.iter().enumerate() {
        let f = frame([0xff; 6], i as u16, len);
        rig.queue(tx).unwrap().post_frame(&[0; 12], &f).unwrap();
    }
    rig.kick(tx).unwrap();
    assert_eq!(rig.wait_used(tx, sizes.len()).unwrap().len(), sizes.len());
    for (i, &len) in sizes.iter().enumerate() {
        assert_eq!(
            host.recv().expect("a transmitted frame"),
            frame([0xff; 6], i as u16, len)
        );
    }
    // A nonsense GSO header and an oversized frame are dropped; the queue keeps working.
    let mut bad = [0u8; 12];
    bad[1] = 3; // GSO_UDP, never negotiable here
    rig.queue(tx)
        .unwrap()
        .post_frame(&bad, &frame([0xff; 6], 90, 200))
        .unwrap();
    rig.queue(tx)
        .unwrap()
        .post_frame(&[0; 12], &frame([0xff; 6], 91, 3000))
        .unwrap();
    rig.queue(tx)
        .unwrap()
        .post_frame(&[0; 12], &frame([0xff; 6], 92, 100))
        .unwrap();
    rig.kick(tx).unwrap();
    rig.wait_used(tx, 3).unwrap();
    assert_eq!(
        host.recv().unwrap(),
        frame([0xff; 6], 92, 100),
        "only the good frame"
    );
    rig.queue(tx).unwrap().reset_scratch();

    // Host → guest: frames land in the receive buffers after a 12-byte header.
    let mut buffers = Vec::new();
    for _ in 0..4 {
        buffers.push(rig.queue(rx).unwrap().post_rx_buffer(2048).unwrap());
    }
    rig.kick(rx).unwrap();
    let sent: Vec<Vec<u8>> = (0..3)
        .map(|i| frame(mac, 100 + i, 100 + 300 * i as usize))
        .collect();
    for f in &sent {
        host.send(f);
    }
    let used = rig.wait_used(rx, 3).unwrap();
    for ((head, len), f) in used.iter().zip(&sent) {
        let (_, at) = buffers.iter().find(|(h, _)| h == head).unwrap();
        assert_eq!(*len as usize, 12 + f.len());
        let mut got = vec![0u8; *len as usize];
        rig.mem().read_slice(&mut got, *at).unwrap();
        assert_eq!(u16::from_le_bytes([got[10], got[11]]), 1, "num_buffers");
        assert_eq!(&got[12..], &f[..]);
    }
    // No receive buffers left but one: the next frames wait in the TAP, none is lost.
    for i in 0..3 {
        host.send(&frame(mac, 200 + i, 80));
    }
    let used = rig.wait_used(rx, 1).unwrap();
    assert_eq!(used.len(), 1);
    let rx_reads = |rig: &Rig| {
        rig.stats()
            .iter()
            .flat_map(|r| r.queues.clone())
            .find(|q| q.name == "net/q0")
            .map(|q| q.ops)
            .unwrap()
    };
    let reads_before = rx_reads(&rig);
    let mut more = Vec::new();
    for _ in 0..2 {
        more.push(rig.queue(rx).unwrap().post_rx_buffer(2048).unwrap());
    }
    rig.kick(rx).unwrap();
    let used = rig.wait_used(rx, 2).unwrap();
    // Frames already queued on the TAP are taken by plain reads during the drain, with
    // no io_uring read each (a TAP opened blocking, on a kernel whose tun is not
    // FMODE_NOWAIT, took none this way).
    assert_eq!(
        rx_reads(&rig),
        reads_before,
        "io_uring reads for queued frames"
    );
    for ((head, _), i) in used.iter().zip(1..) {
        let (_, at) = more.iter().find(|(h, _)| h == head).unwrap();
        let tag: u16 = {
            let mut b = [0u8; 2];
            rig.mem()
                .read_slice(&mut b, GuestAddress(at.0 + 12 + 14))
                .unwrap();
            u16::from_be_bytes(b)
        };
        assert_eq!(tag, 200 + i, "frames arrive in order");
    }
    assert!(rig.faults().is_empty());
    // The device's per-queue counters come with the reactors' stats.
    let counter = |rig: &Rig, queue: &str, name: &str| {
        rig.stats()
            .iter()
            .flat_map(|r| r.queues.clone())
            .find(|q| q.name == queue)
            .and_then(|q| q.device.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
            .unwrap()
    };
    assert_eq!(counter(&rig, "net/q1", "frames"), 5);
    assert_eq!(counter(&rig, "net/q1", "drops"), 2);
    assert_eq!(counter(&rig, "net/q0", "frames"), 6);
    let tx_bytes: u64 = [60u64, 61, 512, 1514, 100].iter().sum();
    assert_eq!(counter(&rig, "net/q1", "bytes"), tx_bytes);
    // Reset with a read still waiting on the TAP: the detach cancels it.
    rig.queue(rx).unwrap().post_rx_buffer(2048).unwrap();
    rig.kick(rx).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    rig.shutdown().unwrap();
}

#[test]
fn receive_buffers_need_no_kick_while_the_device_holds_some() {
    let Some((mut rig, host, mac)) = nic_on_tap("rvtap0", 1) else {
        return;
    };
    let rx = 0;
    for _ in 0..2 {
        rig.queue(rx).unwrap().post_rx_buffer(2048).unwrap();
    }
    rig.kick(rx).unwrap();
    host.send(&frame(mac, 1, 80));
    rig.wait_used(rx, 1).unwrap();
    // The device still holds a buffer: four more, published with no kick (as Linux does
    // when the device asked for none), are taken when frames need them.
    for _ in 0..4 {
        rig.queue(rx).unwrap().post_rx_buffer(2048).unwrap();
    }
    assert!(
        !rig.queue(rx).unwrap().publish().unwrap(),
        "a kick asked for while the device holds buffers"
    );
    for i in 2..7 {
        host.send(&frame(mac, i, 80));
    }
    assert_eq!(rig.wait_used(rx, 5).unwrap().len(), 5);
    // Out of buffers: the device asks for the kick that says more came.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !rig.queue(rx).unwrap().next_kick_wanted().unwrap() {
        assert!(
            Instant::now() < deadline,
            "no kick asked for with no buffers"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    rig.queue(rx).unwrap().post_rx_buffer(2048).unwrap();
    assert!(rig.queue(rx).unwrap().publish().unwrap());
    rig.kick(rx).unwrap();
    host.send(&frame(mac, 7, 80));
    assert_eq!(rig.wait_used(rx, 1).unwrap().len(), 1);
    assert!(rig.faults().is_empty());
    rig.shutdown().unwrap();
}

#[test]
fn two_queue_pairs_share_the_flows_and_follow_vq_pairs_set() {
    let Some((mut rig, host, mac)) = nic_on_tap("rvtap1", 2) else {
        return;
    };
    let control = 4;
    let pairs_set = |rig: &mut Rig, pairs: u16| {
        let q = rig.queue(control).unwrap();
        let cmd = q.alloc(4).unwrap();
        let ack = q.alloc(1).unwrap();
        let mut bytes = vec![4u8, 0];
        bytes.extend(pairs.to_le_bytes());
        q.mem().write_slice(&bytes, cmd).unwrap();
        q.mem().write_obj(0xeeu8, ack).unwrap();
        q.post_chain(&[Buffer::readable(cmd, 4), Buffer::writable(ack, 1)])
            .unwrap();
        rig.kick(control).unwrap();
        rig.wait_used(control, 1).unwrap();
        rig.mem().read_obj::<u8>(ack).unwrap()
    };
    // Each pair on one reactor, the two pairs on different ones.
    let reactor_of = |name: &str| {
        rig.stats()
            .iter()
            .find(|r| r.queues.iter().any(|q| q.name == name))
            .map(|r| r.reactor)
            .unwrap()
    };
    assert_eq!(reactor_of("net/q0"), reactor_of("net/q1"));
    assert_eq!(reactor_of("net/q2"), reactor_of("net/q3"));
    assert_ne!(reactor_of("net/q0"), reactor_of("net/q2"));
    assert_eq!(pairs_set(&mut rig, 2), 0, "VQ_PAIRS_SET 2: OK");
    assert_eq!(pairs_set(&mut rig, 3), 1, "more pairs than offered: ERR");
    for rx in [0, 2] {
        for _ in 0..40 {
            rig.queue(rx).unwrap().post_rx_buffer(2048).unwrap();
        }
        rig.kick(rx).unwrap();
    }
    // 32 flows: the TAP spreads them over both queues by flow hash.
    for port in 0..32 {
        host.send(&udp_frame(mac, 1000 + port));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut per_queue = [0usize; 2];
    while per_queue.iter().sum::<usize>() < 32 {
        assert!(Instant::now() < deadline, "frames received: {per_queue:?}");
        for (i, rx) in [0, 2].into_iter().enumerate() {
            per_queue[i] += rig.queue(rx).unwrap().reap().unwrap().len();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        per_queue.iter().all(|&n| n > 0),
        "both queues got flows: {per_queue:?}"
    );
    // Back to one pair: every flow goes to queue 0.
    assert_eq!(pairs_set(&mut rig, 1), 0);
    for port in 0..8 {
        host.send(&udp_frame(mac, 2000 + port));
    }
    let used = rig.wait_used(0, 8).unwrap();
    assert_eq!(used.len(), 8);
    assert!(rig.queue(2).unwrap().reap().unwrap().is_empty());
    assert!(rig.faults().is_empty());
    rig.shutdown().unwrap();
}

#[test]
fn a_frame_larger_than_one_buffer_spans_several() {
    // The rig acks every offered feature: MRG_RXBUF and GUEST_TSO, so buffers merge.
    let Some((mut rig, host, mac)) = nic_on_tap("rvtap2", 1) else {
        return;
    };
    let mut buffers = Vec::new();
    for _ in 0..8 {
        buffers.push(rig.queue(0).unwrap().post_rx_buffer(256).unwrap());
    }
    rig.kick(0).unwrap();
    let big = frame(mac, 7, 1000);
    host.send(&big);
    host.send(&frame(mac, 8, 60));
    // 12 + 1000 bytes: four 256-byte buffers (num_buffers 4), then one for the next frame.
    let used = rig.wait_used(0, 5).unwrap();
    let lens: Vec<u32> = used.iter().map(|u| u.1).collect();
    assert_eq!(lens, vec![256, 256, 256, 244, 72]);
    let mut got = Vec::new();
    for (head, len) in &used[..4] {
        let (_, at) = buffers.iter().find(|(h, _)| h == head).unwrap();
        let mut part = vec![0u8; *len as usize];
        rig.mem().read_slice(&mut part, *at).unwrap();
        got.extend(part);
    }
    assert_eq!(u16::from_le_bytes([got[10], got[11]]), 4, "num_buffers");
    assert_eq!(&got[12..], &big[..]);
    assert!(rig.faults().is_empty());
    rig.shutdown().unwrap();
}

#[test]
fn a_tap_in_use_is_a_clear_error() {
    if !private_netns() {
        return;
    }
    let first = Rig::net(config("rvbusy0", 1), &[None], QUEUE_SIZE).unwrap();
    let err = match Rig::net(config("rvbusy0", 1), &[None], QUEUE_SIZE) {
        Ok(_) => panic!("a single-queue TAP attached twice"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("tap rvbusy0 is busy"), "{err}");
    let err = match Rig::net(config("bad/name", 1), &[None], QUEUE_SIZE) {
        Ok(_) => panic!("a TAP name with a slash"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("bad/name: not an interface name"), "{err}");
    first.shutdown().unwrap();
}

#[test]
fn a_tap_deleted_under_the_guest_takes_the_link_down_until_it_is_back() {
    if !private_netns() {
        return;
    }
    let mut rig = Rig::net(config("rvtap4", 1), &[None], QUEUE_SIZE).unwrap();
    // What the transport would do on a link change: count configuration interrupts.
    let changes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = changes.clone();
    rig.device().link().set_notifier(Box::new(move || {
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    let status = |rig: &Rig| {
        let mut bytes = [0u8; 2];
        ringvisor_devices::virtio::VirtioDevice::read_config(rig.device(), 6, &mut bytes);
        u16::from_le_bytes(bytes)
    };
    assert_eq!(status(&rig), 1, "VIRTIO_NET_S_LINK_UP");
    link_up("rvtap4");
    let host = HostSide::bind("rvtap4");
    let mac = rig.device().mac();
    for _ in 0..8 {
        rig.queue(0).unwrap().post_rx_buffer(2048).unwrap();
    }
    rig.kick(0).unwrap();
    host.send(&frame(mac, 1, 60));
    assert_eq!(rig.wait_used(0, 1).unwrap().len(), 1, "traffic before");
    drop(host);

    // An administrator deletes the interface: the descriptor ringvisor holds now fails
    // with EBADFD on every read and write.
    let deleted = std::process::Command::new("ip")
        .args(["link", "del", "rvtap4"])
        .status()
        .expect("ip(8)");
    assert!(deleted.success());
    // Frames the guest sends are dropped and counted; the receive side stops reading
    // and keeps the guest's buffers (no used entries: returning them empty would have the
    // guest post them again, in a loop).
    let tx = rig.queue(1).unwrap();
    tx.post_frame(&[0; 12], &frame([0xff; 6], 2, 60)).unwrap();
    rig.kick(1).unwrap();
    rig.wait_used(1, 1).unwrap();
    rig.kick(0).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let counter = |queue: &str, name: &str| {
        rig.stats()
            .iter()
            .flat_map(|r| r.queues.iter())
            .find(|q| q.name.ends_with(queue))
            .and_then(|q| q.device.iter().find(|(n, _)| *n == name).map(|&(_, v)| v))
            .unwrap_or_else(|| panic!("no {name} on {queue}"))
    };
    assert_eq!(counter("q1", "tap_gone"), 1);
    assert_eq!(counter("q1", "drops"), 1);
    assert_eq!(counter("q0", "tap_gone"), 1);
    // The guest's driver is told once, and reads the link as down.
    assert_eq!(changes.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(status(&rig), 0, "link down");
    let requests = |queue: &str| {
        rig.stats()
            .iter()
            .flat_map(|r| r.queues.iter())
            .find(|q| q.name.ends_with(queue))
            .map(|q| q.ops)
            .unwrap_or(0)
    };
    let reads = requests("q0");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(requests("q0") <= reads + 1, "no read loop on a dead TAP");
    assert!(rig.faults().is_empty(), "the device keeps its queues");

    // The administrator creates it again: within the one-second retry the queue pair is
    // attached to it, the link comes back up, and traffic flows both ways.
    let added = std::process::Command::new("ip")
        .args(["tuntap", "add", "dev", "rvtap4", "mode", "tap", "vnet_hdr"])
        .status()
        .expect("ip(8)");
    assert!(added.success());
    link_up("rvtap4");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while status(&rig) != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the link never came back"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        changes.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "down, then up"
    );
    assert_eq!(counter("q0", "tap_reattached"), 1);
    let host = HostSide::bind("rvtap4");
    host.send(&frame(mac, 3, 60));
    let used = rig.wait_used(0, 1).unwrap();
    assert_eq!(
        used.len(),
        1,
        "a frame from the new TAP in a buffer posted before"
    );
    rig.queue(1)
        .unwrap()
        .post_frame(&[0; 12], &frame([0xff; 6], 4, 60))
        .unwrap();
    rig.kick(1).unwrap();
    rig.wait_used(1, 1).unwrap();
    assert_eq!(host.recv().expect("a frame out"), frame([0xff; 6], 4, 60));
    assert!(rig.faults().is_empty());
    rig.shutdown().unwrap();
}
