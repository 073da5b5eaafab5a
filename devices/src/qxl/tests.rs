//! The device as Linux's qxl driver drives it: reset, memslots, primary surface, a
//! draw on the command ring, the release ring and interrupts; then a guest that breaks
//! the protocol.

use ringvisor_io::{IoBatch, IrqEvent, QueueWorker};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::layout::*;
use super::*;

const RAM_BAR: u64 = 0xc000_0000;
const VRAM_BAR: u64 = 0xc800_0000;
const MAIN_SLOT: u8 = SLOTS_START;
const SURFACE_SLOT: u8 = SLOTS_START + 1;

struct Guest {
    device: QxlDevice,
    worker: QxlWorker,
    irq: IrqEvent,
    header: u64,
    /// Next free byte of the main slot, for command structures.
    next: u64,
}

fn config() -> QxlConfig {
    QxlConfig {
        ram_size: 1 << 20,
        vram_size: 4 << 20,
        ..QxlConfig::default()
    }
}

impl Guest {
    fn new() -> Self {
        let irq = IrqEvent::new().unwrap();
        let guest = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let device = QxlDevice::new(&config(), guest, irq.try_clone().unwrap()).unwrap();
        device.set_bar_placement(BarPlacement {
            ram: Some(RAM_BAR),
            vram: Some(VRAM_BAR),
        });
        let rom = device.rom();
        let header = u64::from(u32::from_le_bytes(rom[44..48].try_into().unwrap()));
        let (worker, _kick) = device.worker().unwrap();
        Self {
            device,
            worker,
            irq,
            header,
            next: 0x1000,
        }
    }

    fn ram(&self) -> &BarMemory {
        self.device.ram_bar()
    }

    fn out(&self, port: IoPort, value: u32) {
        self.device.io_write(port as u16, value);
    }

    fn drain(&mut self) {
        let mut batch = IoBatch::new();
        self.worker.drain(&mut batch).unwrap();
        assert!(batch.is_empty());
        self.worker.enable_notification().unwrap();
    }

    /// What the driver's probe does: reset, interrupts on, both memslots.
    fn probe(&mut self) {
        self.out(IoPort::Reset, 0);
        self.ram().store_u32(
            self.header + RAM_INT_MASK,
            INTERRUPT_DISPLAY | INTERRUPT_CURSOR | INTERRUPT_IO_CMD | INTERRUPT_ERROR,
        );
        self.add_slot(MAIN_SLOT, RAM_BAR, RAM_BAR + self.header);
        self.add_slot(SURFACE_SLOT, VRAM_BAR, VRAM_BAR + (4 << 20));
    }

    fn add_slot(&mut self, id: u8, start: u64, end: u64) {
        self.ram().write_u64(self.header + RAM_MEM_SLOT, start);
        self.ram().write_u64(self.header + RAM_MEM_SLOT + 8, end);
        self.out(IoPort::MemslotAddAsync, u32::from(id));
        self.drain();
        assert!(
            self.take_io_cmd(),
            "MEMSLOT_ADD_ASYNC completes with IO_CMD"
        );
    }

    /// The interrupt handler: takes int_pending and reports whether IO_CMD was in it.
    fn take_io_cmd(&self) -> bool {
        let pending = self
            .ram()
            .fetch_or_u32(self.header + RAM_INT_PENDING, 0)
            .unwrap();
        self.ram().store_u32(self.header + RAM_INT_PENDING, 0);
        pending & INTERRUPT_IO_CMD != 0
    }

    fn create_primary(&mut self, width: u32, height: u32) {
        let c = self.header + RAM_CREATE_SURFACE;
        self.ram().write_u32(c + CREATE_WIDTH, width);
        self.ram().write_u32(c + CREATE_HEIGHT, height);
        self.ram().write_u32(c + CREATE_STRIDE, width * 4);
        self.ram().write_u32(c + CREATE_FORMAT, 32);
        self.ram()
            .write_u64(c + CREATE_MEM, qxl_address(SURFACE_SLOT, 0));
        self.out(IoPort::CreatePrimaryAsync, 0);
        self.drain();
        assert!(self.take_io_cmd());
    }

    /// Writes `bytes` into the main slot; returns their QXL address.
    fn put(&mut self, bytes: &[u8]) -> u64 {
        let offset = self.next;
        assert!(self.ram().write(offset, bytes));
        self.next += (bytes.len() as u64).next_multiple_of(64);
        qxl_address(MAIN_SLOT, offset)
    }

    fn push_command(&mut self, data: u64, kind: u32) {
        let ring = self.header + RAM_CMD_RING;
        let prod = self.ram().load_u32(ring + RING_PROD).unwrap();
        let item = ring + RING_ITEMS + u64::from(prod % COMMAND_RING_SIZE) * COMMAND_SIZE;
        self.ram().write_u64(item, data);
        self.ram().write_u32(item + 8, kind);
        self.ram().store_u32(ring + RING_PROD, prod + 1);
        self.out(IoPort::NotifyCmd, 0);
    }

    /// A QXLDrawable of type FILL with a solid colour over `bbox` (no clip).
    fn fill(&mut self, release_id: u64, bbox: [i32; 4], color: u32) -> u64 {
        let mut d = vec![0u8; 191];
        d[0..8].copy_from_slice(&release_id.to_le_bytes());
        d[12] = 1; // QXL_EFFECT_OPAQUE
        d[13] = 1; // QXL_DRAW_FILL
        for (i, v) in bbox.iter().enumerate() {
            d[31 + i * 4..35 + i * 4].copy_from_slice(&v.to_le_bytes());
        }
        d[123..127].copy_from_slice(&1u32.to_le_bytes()); // SPICE_BRUSH_TYPE_SOLID
        d[127..131].copy_from_slice(&color.to_le_bytes());
        d[143..145].copy_from_slice(&(1u16 << 3).to_le_bytes()); // SPICE_ROPD_OP_PUT
        self.put(&d)
    }

    fn released_ids(&self) -> Vec<u64> {
        let ring = self.header + RAM_RELEASE_RING;
        let prod = self.ram().load_u32(ring + RING_PROD).unwrap();
        let mut ids = Vec::new();
        for index in 0..prod {
            let item = ring + RING_ITEMS + u64::from(index % RELEASE_RING_SIZE) * 8;
            let mut id = self.ram().read_u64(item).unwrap();
            // Follow the chain through each release info's `next` word.
            while id != 0 {
                ids.push(id);
                id = self.release_next(id);
            }
        }
        ids
    }

    /// Release ids in these tests are the main-slot offset of the info they label.
    fn release_next(&self, id: u64) -> u64 {
        self.ram().read_u64(id).unwrap()
    }
}

#[test]
fn rom_describes_the_device_as_linux_reads_it() {
    let g = Guest::new();
    let rom = g.device.rom();
    let word = |at: usize| u32::from_le_bytes(rom[at..at + 4].try_into().unwrap());
    assert_eq!(word(0), 0x4f52_5851, "QXRO");
    assert_eq!(u64::from(word(44)), (1 << 20) - RAM_HEADER_AREA);
    assert_eq!(word(40), word(44), "surface0 area reaches the header");
    assert_eq!(word(1160), 6, "mode count after QXLRom");
    assert_eq!(
        (word(1164 + 2 * 32 + 4), word(1164 + 2 * 32 + 8)),
        (1024, 768)
    );
    assert_eq!(g.ram().read_u32(g.header).unwrap(), RAM_MAGIC);
    assert_eq!(g.ram().read_u32(g.header + RAM_CMD_RING).unwrap(), 32);
}

#[test]
fn a_fill_reaches_the_primary_and_its_resource_comes_back() {
    let mut g = Guest::new();
    g.probe();
    g.create_primary(64, 32);
    let handle = g.device.handle();
    let before = handle.version();
    let screen = handle.screen().expect("a primary surface");
    assert_eq!((screen.width, screen.height), (64, 32));
    assert_eq!(handle.mode(), Some((64, 32)));

    // Release ids are the info's own main-slot offset, so the test can follow chains.
    let first = g.next;
    let a = g.fill(first, [4, 8, 12, 16], 0x00ff_0000);
    let second = g.next;
    let b = g.fill(second, [0, 0, 1, 1], 0x0000_00ff);
    g.push_command(a, CMD_DRAW);
    g.push_command(b, CMD_DRAW);
    g.drain();

    let screen = handle.screen().unwrap();
    assert!(screen.version > before);
    let pixel = |x: usize, y: usize| screen.pixels[y * 64 + x] & 0x00ff_ffff;
    assert_eq!(
        pixel(8, 4),
        0xff_0000,
        "inside the first fill (left 8, top 4)"
    );
    assert_eq!(pixel(15, 11), 0xff_0000);
    assert_eq!(pixel(16, 4), 0, "right edge is exclusive");
    assert_eq!(pixel(0, 0), 0xff);
    assert_eq!(
        g.released_ids(),
        vec![first, second],
        "both released, chained"
    );
    let stats = handle.stats();
    assert_eq!((stats.draws, stats.guest_errors), (2, 0));
    assert!(g.irq.take_pending() > 0);

    // Idle: the device asks to be notified of the next push.
    let ring = g.header + RAM_CMD_RING;
    assert_eq!(
        g.ram().load_u32(ring + RING_NOTIFY_ON_PROD),
        Some(g.ram().load_u32(ring + RING_CONS).unwrap() + 1)
    );
}

#[test]
fn masked_interrupts_wait_for_update_irq() {
    let mut g = Guest::new();
    g.probe();
    g.take_io_cmd();
    g.irq.take_pending();
    g.ram().store_u32(g.header + RAM_INT_MASK, 0);
    g.out(IoPort::DestroyAllSurfacesAsync, 0);
    g.drain();
    assert_eq!(g.irq.take_pending(), 0, "masked: no edge");
    g.ram().store_u32(g.header + RAM_INT_MASK, INTERRUPT_IO_CMD);
    g.out(IoPort::UpdateIrq, 0);
    assert_eq!(
        g.irq.take_pending(),
        1,
        "unmasked and pending: UPDATE_IRQ signals"
    );
}

#[test]
fn protocol_violations_are_counted_and_raise_the_error_interrupt() {
    let mut g = Guest::new();
    g.probe();
    g.create_primary(16, 16);
    let handle = g.device.handle();

    // A memslot outside both BARs and guest RAM.
    g.ram().write_u64(g.header + RAM_MEM_SLOT, 0x7000_0000_0000);
    g.ram()
        .write_u64(g.header + RAM_MEM_SLOT + 8, 0x7000_0001_0000);
    g.out(IoPort::MemslotAdd, 3);
    // A slot id past the table.
    g.out(IoPort::MemslotAdd, 200);
    // A draw whose drawable lies outside every slot, and an unknown command type.
    g.push_command(qxl_address(MAIN_SLOT, 1 << 40), CMD_DRAW);
    g.push_command(qxl_address(5, 0), CMD_DRAW);
    let bad = g.fill(0x99, [0, 0, 4, 4], 0xffffff);
    g.push_command(bad, 77);
    g.drain();
    let stats = handle.stats();
    assert_eq!(stats.guest_errors, 5, "{stats:?}");
    let pending = g.ram().load_u32(g.header + RAM_INT_PENDING).unwrap();
    assert_ne!(pending & INTERRUPT_ERROR, 0);
    // The device keeps working for good commands.
    let good = g.fill(0x42, [0, 0, 2, 2], 0x00ff00);
    g.push_command(good, CMD_DRAW);
    g.drain();
    assert_eq!(handle.screen().unwrap().pixels[0] & 0xffffff, 0x00ff00);
    // A primary bigger than any slot is refused.
    let c = g.header + RAM_CREATE_SURFACE;
    g.ram().write_u32(c + CREATE_WIDTH, 100_000);
    g.ram().write_u32(c + CREATE_HEIGHT, 100_000);
    g.ram().write_u32(c + CREATE_STRIDE, 400_000);
    g.out(IoPort::CreatePrimary, 0);
    assert_eq!(handle.stats().guest_errors, 6);
    assert_eq!(handle.screen().unwrap().width, 16, "the old primary stays");
}

#[test]
fn a_ring_pushed_past_its_size_stops_the_device_until_reset() {
    let mut g = Guest::new();
    g.probe();
    let ring = g.header + RAM_CMD_RING;
    g.ram().store_u32(ring + RING_PROD, 1000);
    g.out(IoPort::NotifyCmd, 0);
    g.drain();
    assert_eq!(g.device.handle().stats().guest_errors, 1);
    assert!(
        !g.worker.has_available().unwrap(),
        "no busy loop on a broken ring"
    );
    g.out(IoPort::Reset, 0);
    assert_eq!(g.ram().load_u32(ring + RING_PROD), Some(0));
    g.probe();
    g.create_primary(8, 8);
    let fill = g.fill(7, [0, 0, 8, 8], 0x123456);
    g.push_command(fill, CMD_DRAW);
    g.drain();
    assert_eq!(
        g.device.handle().screen().unwrap().pixels[63] & 0xffffff,
        0x123456
    );
}

#[test]
fn releases_wait_in_a_chain_while_the_release_ring_is_full() {
    let mut g = Guest::new();
    g.probe();
    g.create_primary(8, 8);
    let mut ids = Vec::new();
    // More drains than ring slots, the guest never consuming.
    for _ in 0..(RELEASE_RING_SIZE + 3) {
        let id = g.next;
        ids.push(id);
        let fill = g.fill(id, [0, 0, 1, 1], 1);
        g.push_command(fill, CMD_DRAW);
        g.drain();
    }
    assert_eq!(g.device.handle().stats().release_ring_full, 3);
    // The guest consumes everything: ring items, then the chain published next.
    let ring = g.header + RAM_RELEASE_RING;
    let mut seen = g.released_ids();
    assert_eq!(seen.len(), RELEASE_RING_SIZE as usize);
    let prod = g.ram().load_u32(ring + RING_PROD).unwrap();
    g.ram().store_u32(ring + RING_CONS, prod);
    g.out(IoPort::FlushRelease, 0);
    g.drain();
    let item = ring + RING_ITEMS + u64::from(prod % RELEASE_RING_SIZE) * 8;
    let mut id = g.ram().read_u64(item).unwrap();
    while id != 0 {
        seen.push(id);
        id = g.release_next(id);
    }
    assert_eq!(seen, ids);
}

#[test]
fn draws_queued_before_a_mode_change_run_against_the_old_primary() {
    let mut g = Guest::new();
    g.probe();
    g.create_primary(16, 16);
    let handle = g.device.handle();
    // A draw in the ring, not yet taken, then the mode change Linux makes: destroy the
    // primary and create the next one, async, before the reactor looked at the ring.
    let fill = g.fill(0x51, [0, 0, 4, 4], 0x00ff00);
    g.push_command(fill, CMD_DRAW);
    g.out(IoPort::DestroyPrimaryAsync, 0);
    let c = g.header + RAM_CREATE_SURFACE;
    g.ram().write_u32(c + CREATE_WIDTH, 32);
    g.ram().write_u32(c + CREATE_HEIGHT, 8);
    g.ram().write_u32(c + CREATE_STRIDE, 32 * 4);
    g.out(IoPort::CreatePrimaryAsync, 0);
    g.drain();
    let stats = handle.stats();
    assert_eq!((stats.draws, stats.guest_errors), (1, 0), "{stats:?}");
    assert_eq!(handle.mode(), Some((32, 8)));
    assert_eq!(g.released_ids(), vec![0x51]);

    // The synchronous destroy, on the vCPU, flushes the ring the same way.
    let fill = g.fill(0x52, [0, 0, 2, 2], 0x0000ff);
    g.push_command(fill, CMD_DRAW);
    g.out(IoPort::DestroyPrimary, 0);
    let stats = handle.stats();
    assert_eq!((stats.draws, stats.guest_errors), (2, 0), "{stats:?}");
    assert_eq!(handle.mode(), None);
}

#[test]
fn the_machine_reset_leaves_nothing_of_the_last_boot() {
    let mut g = Guest::new();
    g.probe();
    g.create_primary(64, 32);
    let first = g.next;
    let fill = g.fill(first, [0, 0, 8, 8], 0x00ff_0000);
    g.push_command(fill, CMD_DRAW);
    g.drain();
    let handle = g.device.handle();
    let drawn = handle.version();
    assert!(handle.screen().is_some());
    // What the guest left in both BARs: commands in the main slot, pixels in VRAM.
    assert!(g.device.vram_bar().write_u32(256, 0x00ff_0000));
    let ring = g.header + RAM_CMD_RING;
    assert_eq!(g.ram().load_u32(ring + RING_PROD), Some(1));

    handle.platform_reset();

    assert!(
        handle.screen().is_none(),
        "no primary surface after the reset"
    );
    assert!(handle.version() > drawn, "outputs are told the screen went");
    assert_eq!(
        handle.stats().resets,
        2,
        "the probe's reset and the machine's"
    );
    assert_eq!(g.device.vram_bar().read_u32(256), Some(0));
    assert_eq!(g.ram().load_u32(ring + RING_PROD), Some(0));
    assert_eq!(g.ram().load_u32(g.header + RAM_INT_MASK), Some(0));
    assert_eq!(
        g.ram().read_u32(g.header + RAM_MAGIC_OFFSET),
        Some(RAM_MAGIC),
        "the RAM header is ready for the next driver"
    );
    // The memslots went too: a primary in the old surface slot is refused until the
    // new driver adds its slots again.
    let errors = handle.stats().guest_errors;
    let c = g.header + RAM_CREATE_SURFACE;
    for (field, value) in [
        (CREATE_WIDTH, 64),
        (CREATE_HEIGHT, 32),
        (CREATE_STRIDE, 256),
    ] {
        g.ram().write_u32(c + field, value);
    }
    g.ram().write_u32(c + CREATE_FORMAT, 32);
    g.ram()
        .write_u64(c + CREATE_MEM, qxl_address(SURFACE_SLOT, 0));
    g.out(IoPort::CreatePrimary, 0);
    assert!(handle.screen().is_none());
    assert_eq!(handle.stats().guest_errors, errors + 1);

    // And a driver that probes again gets a working device.
    g.probe();
    g.create_primary(64, 32);
    assert_eq!(handle.mode(), Some((64, 32)));
}
