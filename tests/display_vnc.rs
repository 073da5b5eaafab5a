//! The VNC server over real TCP on loopback, against a fake screen and a recording input
//! sink: the RFB client, hand-written raw clients (incremental updates, resizes, other
//! pixel formats, old protocol versions) and hostile clients.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ringvisor::display::rfb::PixelFormat;
use ringvisor::display::{DisplaySource, Frame, InputSink, VncServer};
use ringvisor_rig::rfb_client::{grab_frame, RfbClient};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A screen whose frame the test sets; the version bumps on every change.
struct FakeScreen {
    state: Mutex<(u64, Option<Frame>)>,
    changed: Condvar,
}

impl FakeScreen {
    fn new(frame: Option<Frame>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new((1, frame)),
            changed: Condvar::new(),
        })
    }

    fn update(&self, edit: impl FnOnce(&mut Option<Frame>)) {
        let mut state = self.state.lock().unwrap();
        edit(&mut state.1);
        state.0 += 1;
        self.changed.notify_all();
    }

    fn set(&self, frame: Frame) {
        self.update(|f| *f = Some(frame));
    }

    fn set_pixel(&self, x: u32, y: u32, pixel: u32) {
        self.update(|f| {
            let f = f.as_mut().unwrap();
            f.pixels[(y * f.width + x) as usize] = pixel;
        });
    }

    fn frame(&self) -> Frame {
        self.state.lock().unwrap().1.clone().unwrap()
    }
}

impl DisplaySource for FakeScreen {
    fn snapshot(&self) -> Option<(u64, Frame)> {
        let state = self.state.lock().unwrap();
        state.1.clone().map(|f| (state.0, f))
    }

    fn wait_for_change(&self, seen: u64, timeout: Duration) -> u64 {
        let state = self.state.lock().unwrap();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| s.0 == seen)
            .unwrap();
        state.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Key(u32, bool),
    Pointer(u16, u16, u8, u32, u32),
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    arrived: Condvar,
}

impl Recorder {
    fn push(&self, event: Event) {
        self.events.lock().unwrap().push(event);
        self.arrived.notify_all();
    }

    fn wait_for(&self, count: usize) -> Vec<Event> {
        let events = self.events.lock().unwrap();
        let (events, _) = self
            .arrived
            .wait_timeout_while(events, TIMEOUT, |e| e.len() < count)
            .unwrap();
        events.clone()
    }
}

impl InputSink for Recorder {
    fn key(&self, keysym: u32, down: bool) {
        self.push(Event::Key(keysym, down));
    }

    fn pointer(&self, x: u16, y: u16, buttons: u8, width: u32, height: u32) {
        self.push(Event::Pointer(x, y, buttons, width, height));
    }
}

/// A frame where every pixel differs from its neighbours.
fn pattern(width: u32, height: u32, salt: u32) -> Frame {
    let pixels = (0..width * height)
        .map(|i| (i.wrapping_mul(2_654_435_761) ^ salt) & 0x00FF_FFFF)
        .collect();
    Frame {
        width,
        height,
        pixels,
    }
}

fn serve(frame: Option<Frame>) -> (Arc<FakeScreen>, Arc<Recorder>, VncServer) {
    let screen = FakeScreen::new(frame);
    let input = Arc::new(Recorder::default());
    let server = VncServer::start(
        "127.0.0.1:0".parse().unwrap(),
        screen.clone(),
        Some(input.clone()),
    )
    .unwrap();
    (screen, input, server)
}

/// A hand-written RFB client, to see exactly what the server sends.
struct Raw {
    stream: TcpStream,
    width: u16,
    height: u16,
}

impl Raw {
    fn connect_version(addr: SocketAddr, version: &[u8; 12]) -> Raw {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut server_version = [0u8; 12];
        stream.read_exact(&mut server_version).unwrap();
        assert_eq!(&server_version, b"RFB 003.008\n");
        stream.write_all(version).unwrap();
        let mut raw = Raw {
            stream,
            width: 0,
            height: 0,
        };
        if version == b"RFB 003.003\n" {
            assert_eq!(raw.read(4), [0, 0, 0, 1], "3.3: the server picks None");
        } else {
            assert_eq!(raw.read(2), [1, 1], "one security type: None");
            raw.send(&[1]);
            if version == b"RFB 003.008\n" {
                assert_eq!(raw.read(4), [0, 0, 0, 0], "SecurityResult OK");
            }
        }
        raw.send(&[1]); // ClientInit, shared
        let init = raw.read(24);
        raw.width = u16::from_be_bytes([init[0], init[1]]);
        raw.height = u16::from_be_bytes([init[2], init[3]]);
        let format: [u8; 16] = init[4..20].try_into().unwrap();
        assert_eq!(PixelFormat::from_bytes(&format), PixelFormat::RGB888_LE);
        let name_len = u32::from_be_bytes(init[20..24].try_into().unwrap());
        assert_eq!(raw.read(name_len as usize), b"ringvisor");
        raw
    }

    fn connect(addr: SocketAddr) -> Raw {
        Self::connect_version(addr, b"RFB 003.008\n")
    }

    fn read(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.stream.read_exact(&mut buf).unwrap();
        buf
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn set_encodings(&mut self, encodings: &[i32]) {
        let mut msg = vec![2, 0];
        msg.extend_from_slice(&(encodings.len() as u16).to_be_bytes());
        for e in encodings {
            msg.extend_from_slice(&e.to_be_bytes());
        }
        self.send(&msg);
    }

    fn set_pixel_format(&mut self, format: &PixelFormat) {
        let mut msg = vec![0, 0, 0, 0];
        msg.extend_from_slice(&format.to_bytes());
        self.send(&msg);
    }

    fn request(&mut self, incremental: bool, x: u16, y: u16, width: u16, height: u16) {
        let mut msg = vec![3, u8::from(incremental)];
        for v in [x, y, width, height] {
            msg.extend_from_slice(&v.to_be_bytes());
        }
        self.send(&msg);
    }

    fn request_all(&mut self, incremental: bool) {
        let (w, h) = (self.width, self.height);
        self.request(incremental, 0, 0, w, h);
    }

    /// Reads one FramebufferUpdate: per rectangle (x, y, w, h, encoding, bytes), with
    /// `bytes_per_pixel` bytes a pixel for Raw.
    fn update(&mut self, bytes_per_pixel: usize) -> Vec<(u16, u16, u16, u16, i32, Vec<u8>)> {
        let header = self.read(4);
        assert_eq!(header[0], 0, "FramebufferUpdate");
        let count = u16::from_be_bytes([header[2], header[3]]);
        (0..count)
            .map(|_| {
                let h = self.read(12);
                let field = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
                let (x, y, w, hh) = (field(0), field(2), field(4), field(6));
                let encoding = i32::from_be_bytes(h[8..12].try_into().unwrap());
                let data = match encoding {
                    0 => self.read(usize::from(w) * usize::from(hh) * bytes_per_pixel),
                    _ => Vec::new(),
                };
                (x, y, w, hh, encoding, data)
            })
            .collect()
    }

    /// Whether the server closed the connection (EOF or reset) within the timeout.
    fn is_dropped(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.stream.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn rgb888(pixels: &[u32]) -> Vec<u8> {
    pixels.iter().flat_map(|p| p.to_le_bytes()).collect()
}

fn sub_frame(frame: &Frame, x: u32, y: u32, w: u32, h: u32) -> Vec<u32> {
    (y..y + h)
        .flat_map(|row| {
            let start = (row * frame.width + x) as usize;
            frame.pixels[start..start + w as usize].to_vec()
        })
        .collect()
}

#[test]
fn the_client_grabs_the_source_frame() {
    let frame = pattern(200, 150, 0);
    let (_screen, _input, server) = serve(Some(frame.clone()));
    assert_eq!(grab_frame(server.local_addr(), TIMEOUT).unwrap(), frame);
    let client = RfbClient::connect(server.local_addr(), TIMEOUT).unwrap();
    assert_eq!(client.name(), "ringvisor");
    assert_eq!(client.size(), (200, 150));
}

#[test]
fn before_a_mode_the_screen_is_640x480_black() {
    let (screen, _input, server) = serve(None);
    let grabbed = grab_frame(server.local_addr(), TIMEOUT).unwrap();
    assert_eq!(grabbed, Frame::filled(640, 480, 0));
    // A DesktopSize client (ours) follows the first mode.
    screen.set(pattern(100, 80, 5));
    assert_eq!(
        grab_frame(server.local_addr(), TIMEOUT).unwrap(),
        screen.frame()
    );
}

#[test]
fn an_incremental_update_sends_only_the_changed_tile() {
    let (screen, _input, server) = serve(Some(pattern(300, 200, 1)));
    let mut raw = Raw::connect(server.local_addr());
    raw.request_all(false);
    let full = raw.update(4);
    assert_eq!(full.len(), 1);
    assert_eq!(full[0].5, rgb888(&screen.frame().pixels));

    // Nothing changed: the incremental request waits.
    raw.request_all(true);
    raw.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = raw.stream.read(&mut byte);
    assert!(early.is_err(), "no update without a change: {early:?}");
    raw.stream.set_read_timeout(Some(TIMEOUT)).unwrap();

    screen.set_pixel(130, 70, 0x00AB_CDEF);
    let update = raw.update(4);
    assert_eq!(update.len(), 1, "one rectangle");
    let (x, y, w, h, encoding, data) = &update[0];
    assert_eq!((*x, *y, *w, *h, *encoding), (128, 64, 64, 64, 0));
    let now = screen.frame();
    assert_eq!(*data, rgb888(&sub_frame(&now, 128, 64, 64, 64)));
    // (130, 70) is at (2, 6) in the tile.
    let at = (6 * 64 + 2) * 4;
    assert_eq!(data[at..at + 4], [0xEF, 0xCD, 0xAB, 0]);

    // An edge tile is clipped to the screen.
    raw.request_all(true);
    screen.set_pixel(299, 199, 0x0011_2233);
    let update = raw.update(4);
    assert_eq!(
        update
            .iter()
            .map(|r| (r.0, r.1, r.2, r.3))
            .collect::<Vec<_>>(),
        [(256, 192, 44, 8)]
    );
}

#[test]
fn keys_and_pointer_reach_the_input_sink() {
    let (_screen, input, server) = serve(Some(pattern(320, 240, 2)));
    let mut client = RfbClient::connect(server.local_addr(), TIMEOUT).unwrap();
    client.send_key(0xFF0D, true).unwrap(); // Return
    client.send_key(0xFF0D, false).unwrap();
    client.send_pointer(10, 20, 0b001).unwrap();
    client.send_pointer(5000, 7, 0b1_0000).unwrap(); // past the edge, wheel down
    assert_eq!(
        input.wait_for(4),
        [
            Event::Key(0xFF0D, true),
            Event::Key(0xFF0D, false),
            Event::Pointer(10, 20, 1, 320, 240),
            Event::Pointer(319, 7, 0b1_0000, 320, 240),
        ]
    );
}

#[test]
fn a_desktop_size_client_is_told_of_a_resize() {
    let (screen, input, server) = serve(Some(pattern(200, 100, 3)));
    let mut resizing = Raw::connect(server.local_addr());
    resizing.set_encodings(&[0, -223]);
    let mut fixed = Raw::connect(server.local_addr());
    resizing.request_all(false);
    assert_eq!(resizing.update(4)[0].5, rgb888(&screen.frame().pixels));

    resizing.request_all(true);
    screen.set(pattern(120, 260, 4));
    let update = resizing.update(4);
    assert_eq!(
        update
            .iter()
            .map(|r| (r.0, r.1, r.2, r.3, r.4))
            .collect::<Vec<_>>(),
        [(0, 0, 120, 260, -223)]
    );
    // Its framebuffer is new: the next incremental request gets all of it, even when
    // it still asks for the old size.
    resizing.request_all(true);
    let update = resizing.update(4);
    assert_eq!(update.len(), 1);
    assert_eq!((update[0].2, update[0].3), (120, 260));
    assert_eq!(update[0].5, rgb888(&screen.frame().pixels));
    // Pointer events now use the new size.
    resizing.send(&[5, 0, 0, 50, 0x01, 0x2C]); // y 300: clamped
    assert_eq!(input.wait_for(1), [Event::Pointer(50, 259, 0, 120, 260)]);

    // A client without DesktopSize keeps 200x100: cropped, padded with black.
    fixed.request_all(false);
    let update = fixed.update(4);
    assert_eq!((update[0].2, update[0].3), (200, 100));
    let now = screen.frame();
    let expected: Vec<u32> = (0..100)
        .flat_map(|y| (0..200).map(move |x| (x, y)))
        .map(|(x, y)| if x < 120 { now.pixels[y * 120 + x] } else { 0 })
        .collect();
    assert_eq!(update[0].5, rgb888(&expected));
}

#[test]
fn a_16bpp_client_gets_converted_pixels() {
    let colours = [
        0x00FF_0000,
        0x0000_FF00,
        0x0000_00FF,
        0x00FF_FFFF,
        0x0080_8080,
        0x0012_3456,
        0x0007_0307,
        0,
    ];
    let frame = Frame {
        width: 4,
        height: 2,
        pixels: colours.to_vec(),
    };
    let (_screen, _input, server) = serve(Some(frame));
    let scale = |c: u32, max: u32| (c * max + 127) / 255;
    let channels = |p: u32| (p >> 16 & 0xFF, p >> 8 & 0xFF, p & 0xFF);

    let mut rgb565 = Raw::connect(server.local_addr());
    rgb565.set_pixel_format(&PixelFormat::RGB565_LE);
    rgb565.request_all(false);
    let expected: Vec<u8> = colours
        .iter()
        .flat_map(|&p| {
            let (r, g, b) = channels(p);
            let v = scale(r, 31) << 11 | scale(g, 63) << 5 | scale(b, 31);
            (v as u16).to_le_bytes()
        })
        .collect();
    assert_eq!(rgb565.update(2)[0].5, expected);
    assert_eq!(&expected[..4], [0x00, 0xF8, 0xE0, 0x07]);

    // 15-bit BGR, big endian.
    let bgr555_be = PixelFormat {
        bits_per_pixel: 16,
        depth: 15,
        big_endian: true,
        true_colour: true,
        red_max: 31,
        green_max: 31,
        blue_max: 31,
        red_shift: 0,
        green_shift: 5,
        blue_shift: 10,
    };
    let mut bgr555 = Raw::connect(server.local_addr());
    bgr555.set_pixel_format(&bgr555_be);
    bgr555.request_all(false);
    let expected: Vec<u8> = colours
        .iter()
        .flat_map(|&p| {
            let (r, g, b) = channels(p);
            let v = scale(b, 31) << 10 | scale(g, 31) << 5 | scale(r, 31);
            (v as u16).to_be_bytes()
        })
        .collect();
    assert_eq!(bgr555.update(2)[0].5, expected);

    // A colour-map format is refused with a disconnect.
    let mut palette = Raw::connect(server.local_addr());
    palette.set_pixel_format(&PixelFormat {
        bits_per_pixel: 8,
        depth: 8,
        true_colour: false,
        ..PixelFormat::RGB888_LE
    });
    assert!(palette.is_dropped());
}

#[test]
fn older_protocol_versions_are_served() {
    let frame = pattern(64, 32, 6);
    let (_screen, _input, server) = serve(Some(frame.clone()));
    for version in [b"RFB 003.003\n", b"RFB 003.007\n"] {
        let mut raw = Raw::connect_version(server.local_addr(), version);
        raw.request_all(false);
        assert_eq!(raw.update(4)[0].5, rgb888(&frame.pixels));
    }
}

#[test]
fn hostile_clients_are_dropped_while_another_keeps_working() {
    let frame = pattern(128, 96, 7);
    let (screen, _input, server) = serve(Some(frame.clone()));
    let addr = server.local_addr();
    let mut good = Raw::connect(addr);

    // Not RFB at all.
    let mut http = TcpStream::connect(addr).unwrap();
    http.set_read_timeout(Some(TIMEOUT)).unwrap();
    http.write_all(b"GET / HTTP/1").unwrap();
    let mut reply = Vec::new();
    let _ = http.read_to_end(&mut reply);
    assert_eq!(reply, b"RFB 003.008\n", "version, then closed");

    // Security type 2 (VNC authentication) is not offered.
    let mut auth = TcpStream::connect(addr).unwrap();
    auth.set_read_timeout(Some(TIMEOUT)).unwrap();
    auth.write_all(b"RFB 003.008\n\x02").unwrap();
    let mut reply = Vec::new();
    let _ = auth.read_to_end(&mut reply);
    assert_eq!(&reply[12..18], [1, 1, 0, 0, 0, 1], "SecurityResult failed");

    // An unknown message type.
    let mut unknown = Raw::connect(addr);
    unknown.send(&[0x42, 0, 0, 0]);
    assert!(unknown.is_dropped());

    // Clipboard text over the limit; one within it is read and ignored.
    let mut cut = Raw::connect(addr);
    cut.send(&[6, 0, 0, 0, 0, 0, 0, 5]);
    cut.send(b"hello");
    cut.request_all(false);
    assert_eq!(cut.update(4)[0].5, rgb888(&frame.pixels));
    cut.send(&[6, 0, 0, 0, 0x10, 0, 0, 0]); // 256 MiB
    assert!(cut.is_dropped());

    // The connection ends inside a message.
    let mut early = Raw::connect(addr);
    early.send(&[3, 0, 0]);
    early.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(early.is_dropped());

    // A client that never answers the handshake does not hold up the others.
    let _silent = TcpStream::connect(addr).unwrap();

    good.request_all(false);
    assert_eq!(good.update(4)[0].5, rgb888(&frame.pixels));
    good.request_all(true);
    screen.set_pixel(1, 1, 0x0055_5555);
    assert_eq!(
        good.update(4)
            .iter()
            .map(|r| (r.0, r.1, r.2, r.3))
            .collect::<Vec<_>>(),
        [(0, 0, 64, 64)]
    );
    assert_eq!(grab_frame(addr, TIMEOUT).unwrap(), screen.frame());

    // Only the good client and the silent one remain.
    let deadline = Instant::now() + TIMEOUT;
    while server.client_count() > 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.client_count(), 2);
}

#[test]
fn stopping_the_server_closes_its_connections() {
    let (_screen, _input, server) = serve(Some(pattern(64, 64, 8)));
    let addr = server.local_addr();
    let mut waiting = Raw::connect(addr);
    waiting.request_all(false);
    waiting.update(4);
    waiting.request_all(true); // the writer now waits for a change
    let mut silent = TcpStream::connect(addr).unwrap();
    silent.set_read_timeout(Some(TIMEOUT)).unwrap();
    let started = Instant::now();
    server.stop();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(waiting.is_dropped());
    // Closed (or reset, if it was never accepted), not left hanging.
    if let Err(e) = silent.read_to_end(&mut Vec::new()) {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
    }
    assert!(TcpStream::connect(addr).is_err(), "no longer listening");
}
