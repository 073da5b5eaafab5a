//! Tier 2: the QXL device through the real low-priority reactor (io_uring), driven by a
//! synthetic guest driver that does what Linux's qxl driver does (reset, memslots, async
//! primary creation, a COPY of a chunked bitmap through a clip list, a cursor), with the
//! VNC server and the PNG encoder reading the result; then a hostile guest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringvisor::display::png::{decode_png_rgb, encode_png};
use ringvisor::display::qxl::QxlScreen;
use ringvisor::display::vnc::VncServer;
use ringvisor::display::DisplaySource;
use ringvisor_devices::qxl::layout::*;
use ringvisor_devices::qxl::{qxl_address, BarPlacement, QxlConfig, QxlDevice};
use ringvisor_io::{IrqEvent, QueueBinding, QueueHost, ReactorSet};
use ringvisor_rig::rfb_client::grab_frame;
use vm_memory::{GuestAddress, GuestMemoryMmap};

const RAM_BAR: u64 = 0xc000_0000;
const VRAM_BAR: u64 = 0xc400_0000;
const MAIN: u8 = SLOTS_START;
const SURFACES: u8 = SLOTS_START + 1;
const WIDTH: u32 = 64;
const HEIGHT: u32 = 48;
const TIMEOUT: Duration = Duration::from_secs(10);

struct Driver {
    device: Arc<QxlDevice>,
    irq: IrqEvent,
    header: u64,
    next: u64,
    _reactors: ReactorSet,
}

impl Driver {
    fn start() -> Self {
        let guest = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let irq = IrqEvent::new().unwrap();
        let config = QxlConfig {
            ram_size: 1 << 20,
            vram_size: 1 << 20,
            ..QxlConfig::default()
        };
        let device = QxlDevice::new(&config, guest, irq.try_clone().unwrap()).unwrap();
        device.set_bar_placement(BarPlacement {
            ram: Some(RAM_BAR),
            vram: Some(VRAM_BAR),
        });
        let (worker, kick) = device.worker().unwrap();
        let reactors = ReactorSet::start_low_priority(&[]).unwrap();
        reactors
            .attach(QueueBinding {
                name: "qxl0".into(),
                worker: Box::new(worker),
                kick,
                interrupt: device.interrupt().unwrap(),
                on_fault: Box::new(|fault| panic!("qxl fault: {fault}")),
            })
            .unwrap();
        let header = (1 << 20) - RAM_HEADER_AREA;
        let mut driver = Self {
            device: Arc::new(device),
            irq,
            header,
            next: 0x1000,
            _reactors: reactors,
        };
        driver.out(IoPort::Reset, 0);
        driver.store(
            RAM_INT_MASK,
            INTERRUPT_IO_CMD | INTERRUPT_DISPLAY | INTERRUPT_ERROR,
        );
        driver.add_slot(MAIN, RAM_BAR, RAM_BAR + header);
        driver.add_slot(SURFACES, VRAM_BAR, VRAM_BAR + (1 << 20));
        driver
    }

    fn out(&self, port: IoPort, value: u32) {
        self.device.io_write(port as u16, value);
    }

    fn store(&self, field: u64, value: u32) {
        self.device.ram_bar().store_u32(self.header + field, value);
    }

    /// Waits for the interrupt line, then takes int_pending as the guest's handler does.
    fn wait_interrupt(&self, bits: u32) -> u32 {
        let deadline = Instant::now() + TIMEOUT;
        let pending = self.header + RAM_INT_PENDING;
        loop {
            let seen = self.device.ram_bar().load_u32(pending).unwrap();
            if seen & bits != 0 {
                self.store(RAM_INT_PENDING, 0);
                assert!(
                    self.irq.take_pending() > 0,
                    "pending bits came with an edge"
                );
                return seen;
            }
            assert!(Instant::now() < deadline, "no interrupt {bits:#x}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn add_slot(&mut self, id: u8, start: u64, end: u64) {
        let ram = self.device.ram_bar();
        ram.write_u64(self.header + RAM_MEM_SLOT, start);
        ram.write_u64(self.header + RAM_MEM_SLOT + 8, end);
        self.out(IoPort::MemslotAddAsync, u32::from(id));
        self.wait_interrupt(INTERRUPT_IO_CMD);
    }

    fn create_primary(&mut self) {
        let ram = self.device.ram_bar();
        let c = self.header + RAM_CREATE_SURFACE;
        ram.write_u32(c + CREATE_WIDTH, WIDTH);
        ram.write_u32(c + CREATE_HEIGHT, HEIGHT);
        ram.write_u32(c + CREATE_STRIDE, WIDTH * 4);
        ram.write_u32(c + CREATE_FORMAT, 32);
        ram.write_u64(c + CREATE_MEM, qxl_address(SURFACES, 0));
        self.out(IoPort::CreatePrimaryAsync, 0);
        self.wait_interrupt(INTERRUPT_IO_CMD);
    }

    fn put(&mut self, bytes: &[u8]) -> u64 {
        let offset = self.next;
        assert!(self.device.ram_bar().write(offset, bytes));
        self.next += (bytes.len() as u64).next_multiple_of(64);
        qxl_address(MAIN, offset)
    }

    fn push(&self, ring: u64, data: u64, kind: u32) {
        let ram = self.device.ram_bar();
        let ring = self.header + ring;
        let prod = ram.load_u32(ring + RING_PROD).unwrap();
        let item = ring + RING_ITEMS + u64::from(prod % COMMAND_RING_SIZE) * COMMAND_SIZE;
        ram.write_u64(item, data);
        ram.write_u32(item + 8, kind);
        ram.store_u32(ring + RING_PROD, prod + 1);
        let notify = if ring == self.header + RAM_CMD_RING {
            IoPort::NotifyCmd
        } else {
            IoPort::NotifyCursor
        };
        self.out(notify, 0);
    }

    /// A data chunk holding `data`, linked to `next` (0: last).
    fn chunk(&mut self, data: &[u8], next: u64) -> u64 {
        let mut bytes = Vec::with_capacity(20 + data.len());
        bytes.extend_from_slice(&(data.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&next.to_le_bytes());
        bytes.extend_from_slice(data);
        self.put(&bytes)
    }

    /// What qxl_draw_dirty_fb sends: COPY of a top-down 32-bit bitmap to `bbox`, clipped
    /// to `clips`, the bitmap's rows spread over chunks of `rows_per_chunk` rows.
    fn copy(
        &mut self,
        id: u64,
        bbox: [i32; 4],
        pixels: &[u32],
        clips: &[[i32; 4]],
        rows_per_chunk: usize,
    ) -> u64 {
        let [left, top, right, bottom] = bbox;
        let (w, h) = ((right - left) as usize, (bottom - top) as usize);
        let stride = w * 4;
        let rows: Vec<u8> = pixels.iter().flat_map(|p| p.to_le_bytes()).collect();
        let mut next = 0;
        for start in (0..h).step_by(rows_per_chunk).rev() {
            let end = (start + rows_per_chunk).min(h);
            next = self.chunk(&rows[start * stride..end * stride], next);
        }
        let mut image = vec![0u8; 48];
        image[8] = 0; // SPICE_IMAGE_TYPE_BITMAP
        image[10..14].copy_from_slice(&(w as u32).to_le_bytes());
        image[14..18].copy_from_slice(&(h as u32).to_le_bytes());
        image[18] = 8; // SPICE_BITMAP_FMT_32BIT
        image[19] = 1 << 2; // QXL_BITMAP_TOP_DOWN
        image[20..24].copy_from_slice(&(w as u32).to_le_bytes());
        image[24..28].copy_from_slice(&(h as u32).to_le_bytes());
        image[28..32].copy_from_slice(&(stride as u32).to_le_bytes());
        image[40..48].copy_from_slice(&next.to_le_bytes());
        let image = self.put(&image);
        let rects: Vec<u8> = clips
            .iter()
            .flat_map(|[l, t, r, b]| [*t, *l, *b, *r])
            .flat_map(i32::to_le_bytes)
            .collect();
        let chunk = {
            let mut c = (clips.len() as u32).to_le_bytes().to_vec();
            c.extend_from_slice(&(rects.len() as u32).to_le_bytes());
            c.extend_from_slice(&[0; 16]);
            c.extend_from_slice(&rects);
            c
        };
        let clip = self.put(&chunk);
        let mut d = vec![0u8; 191];
        d[0..8].copy_from_slice(&id.to_le_bytes());
        d[12] = 1; // QXL_EFFECT_OPAQUE
        d[13] = 3; // QXL_DRAW_COPY
        for (i, v) in [top, left, bottom, right].iter().enumerate() {
            d[31 + i * 4..35 + i * 4].copy_from_slice(&v.to_le_bytes());
        }
        d[47..51].copy_from_slice(&1u32.to_le_bytes()); // SPICE_CLIP_TYPE_RECTS
        d[51..59].copy_from_slice(&clip.to_le_bytes());
        d[123..131].copy_from_slice(&image.to_le_bytes());
        for (i, v) in [0, 0, h as i32, w as i32].iter().enumerate() {
            d[131 + i * 4..135 + i * 4].copy_from_slice(&v.to_le_bytes());
        }
        d[147..149].copy_from_slice(&(1u16 << 3).to_le_bytes()); // SPICE_ROPD_OP_PUT
        self.put(&d)
    }

    fn wait_screen(&self, seen: u64) -> u64 {
        let version = self.device.handle().wait_for_change(seen, TIMEOUT);
        assert_ne!(version, seen, "the screen never changed");
        version
    }
}

#[test]
fn linux_style_draws_reach_the_screen_vnc_and_png() {
    let mut driver = Driver::start();
    driver.create_primary();
    let handle = driver.device.handle();
    let screen = QxlScreen(handle.clone());
    let (v0, blank) = screen.snapshot().unwrap();
    assert_eq!((blank.width, blank.height), (WIDTH, HEIGHT));

    // A 16x8 gradient at (10, 20), in chunks of 3 rows, clipped to its top 6 rows.
    let pixels: Vec<u32> = (0..16 * 8).map(|i| 0x0001_0203 * (i + 1)).collect();
    let copy = driver.copy(0x1111, [10, 20, 26, 28], &pixels, &[[10, 20, 26, 26]], 3);
    driver.push(RAM_CMD_RING, copy, CMD_DRAW);
    driver.wait_screen(v0);
    let (_, frame) = screen.snapshot().unwrap();
    let at = |x: u32, y: u32| frame.pixel(x, y).unwrap();
    assert_eq!(at(10, 20), pixels[0] & 0xffffff);
    assert_eq!(at(25, 25), pixels[5 * 16 + 15] & 0xffffff);
    assert_eq!(at(10, 26), 0, "clipped row stays black");
    assert_eq!(at(9, 20), 0);

    // The resource came back on the release ring, and the guest was told.
    let ram = driver.device.ram_bar();
    let ring = driver.header + RAM_RELEASE_RING;
    assert_eq!(ram.load_u32(ring + RING_PROD), Some(1));
    assert_eq!(ram.read_u64(ring + RING_ITEMS), Some(0x1111));

    // VNC and PNG show the same picture.
    let server = VncServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(QxlScreen(handle.clone())),
        None,
    )
    .unwrap();
    let grabbed = grab_frame(server.local_addr(), TIMEOUT).unwrap();
    assert_eq!(grabbed, frame);
    assert_eq!(decode_png_rgb(&encode_png(&frame)).unwrap(), frame);
    server.stop();

    let stats = handle.stats();
    assert_eq!((stats.draws, stats.guest_errors), (1, 0), "{stats:?}");
}

#[test]
fn a_hostile_guest_gets_errors_not_a_crash() {
    let mut driver = Driver::start();
    driver.create_primary();
    let handle = driver.device.handle();
    let v0 = handle.version();

    // A chunk whose next points at itself, as a bitmap's data.
    let pixels = vec![0x00ff_00ff; 4 * 4];
    let copy = driver.copy(0x2222, [0, 0, 4, 4], &pixels, &[[0, 0, 4, 4]], 4);
    let image = driver
        .device
        .ram_bar()
        .read_u64((copy & 0xffff_ffff_ffff) + 123)
        .unwrap();
    let chunk_at = driver
        .device
        .ram_bar()
        .read_u64((image & 0xffff_ffff_ffff) + 40)
        .unwrap();
    driver
        .device
        .ram_bar()
        .write_u64((chunk_at & 0xffff_ffff_ffff) + 12, chunk_at);
    driver.push(RAM_CMD_RING, copy, CMD_DRAW);
    // A drawable past the end of its slot, and one in a slot never added.
    driver.push(RAM_CMD_RING, qxl_address(MAIN, 1 << 30), CMD_DRAW);
    driver.push(RAM_CMD_RING, qxl_address(7, 0), CMD_SURFACE);
    let pending = driver.wait_interrupt(INTERRUPT_ERROR);
    assert_ne!(pending & INTERRUPT_ERROR, 0);

    // Still serving: a good copy lands.
    let good = driver.copy(0x3333, [0, 0, 2, 2], &[0xabcdef; 4], &[[0, 0, 2, 2]], 2);
    driver.push(RAM_CMD_RING, good, CMD_DRAW);
    driver.wait_screen(v0);
    let deadline = Instant::now() + TIMEOUT;
    while handle.stats().draws == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(handle.screen().unwrap().pixels[0] & 0xffffff, 0xabcdef);
    let stats = handle.stats();
    assert_eq!(stats.guest_errors, 3, "{stats:?}");
}
