//! Target 7: QXL commands and their chunk chains, through the whole device: the guest's
//! port writes, the command and cursor rings in the RAM BAR, memslots and the renderer.

use ringvisor_devices::qxl::layout::*;
use ringvisor_devices::qxl::{qxl_address, BarPlacement, QxlConfig, QxlDevice};
use ringvisor_io::{IoBatch, IrqEvent, QueueWorker};

use crate::harness::guest_memory;

const RAM_BAR: u64 = 0xc000_0000;
const VRAM_BAR: u64 = 0xc800_0000;
const MAIN_SLOT: u8 = SLOTS_START;
const SURFACE_SLOT: u8 = SLOTS_START + 1;
const BAR_SIZE: u64 = 1 << 20;
/// Where the input's structures go in the RAM BAR (the main slot).
pub const IMAGE_OFFSET: u64 = 0x1000;
/// Bytes of one script step.
pub const STEP_LEN: usize = 4;

/// Every port, in BAR3 offset order.
const PORTS: [IoPort; 25] = [
    IoPort::NotifyCmd,
    IoPort::NotifyCursor,
    IoPort::UpdateArea,
    IoPort::UpdateIrq,
    IoPort::NotifyOom,
    IoPort::Reset,
    IoPort::SetMode,
    IoPort::Log,
    IoPort::MemslotAdd,
    IoPort::MemslotDel,
    IoPort::DetachPrimary,
    IoPort::AttachPrimary,
    IoPort::CreatePrimary,
    IoPort::DestroyPrimary,
    IoPort::DestroySurfaceWait,
    IoPort::DestroyAllSurfaces,
    IoPort::UpdateAreaAsync,
    IoPort::MemslotAddAsync,
    IoPort::CreatePrimaryAsync,
    IoPort::DestroyPrimaryAsync,
    IoPort::DestroySurfaceAsync,
    IoPort::DestroyAllSurfacesAsync,
    IoPort::FlushSurfacesAsync,
    IoPort::FlushRelease,
    IoPort::MonitorsConfigAsync,
];

/// The input: `[steps, width, height, flags]`, then `steps` 4-byte steps, then the bytes
/// copied to the main slot at [`IMAGE_OFFSET`]. A step `[kind, x, lo, hi]` with `offset =
/// lo | hi << 8`:
/// - kind bit 7 clear: pushes command type `kind & 7` whose data is `offset` (times 8) in
///   the main slot (`kind & 0x40`: the surface slot) on the command ring (`kind & 0x20`:
///   the cursor ring) and notifies; `x & 1` drains at once.
/// - kind bit 7 set: writes `offset` to port `kind & 0x1f`, then drains; with `x & 1` it
///   first writes `offset` as the 32-bit word at RAM-header field `x & 0xfe` (times 2).
pub fn qxl(data: &[u8]) {
    let head = |i: usize| data.get(i).copied().unwrap_or(0);
    let steps = usize::from(head(0) % 64);
    let script_end = (4 + steps * STEP_LEN).min(data.len());
    let script = data.get(4..script_end).unwrap_or(&[]);
    let image = data.get(script_end..).unwrap_or(&[]);

    let Ok(irq) = IrqEvent::new() else { return };
    let Ok(irq_clone) = irq.try_clone() else {
        return;
    };
    let config = QxlConfig {
        ram_size: BAR_SIZE,
        vram_size: BAR_SIZE,
        ..QxlConfig::default()
    };
    let device = QxlDevice::new(&config, guest_memory(&[]), irq_clone).expect("a QXL device");
    device.set_bar_placement(BarPlacement {
        ram: Some(RAM_BAR),
        vram: Some(VRAM_BAR),
    });
    let rom = device.rom();
    let header = u64::from(u32::from_le_bytes(
        rom[ROM_RAM_HEADER_OFFSET..ROM_RAM_HEADER_OFFSET + 4]
            .try_into()
            .unwrap_or_default(),
    ));
    let Ok((mut worker, _kick)) = device.worker() else {
        return;
    };
    let ram = device.ram_bar();
    let out = |port: IoPort, value: u32| device.io_write(port as u16, value);
    let drain = |worker: &mut dyn QueueWorker| {
        let mut batch = IoBatch::new();
        let _ = worker.drain(&mut batch);
        let _ = worker.enable_notification();
        let _ = worker.needs_interrupt();
    };

    // What Linux's probe does: reset, interrupts on, both memslots, a primary surface.
    out(IoPort::Reset, 0);
    ram.store_u32(
        header + RAM_INT_MASK,
        INTERRUPT_DISPLAY | INTERRUPT_CURSOR | INTERRUPT_IO_CMD | INTERRUPT_ERROR,
    );
    for (id, start, end) in [
        (MAIN_SLOT, RAM_BAR, RAM_BAR + header),
        (SURFACE_SLOT, VRAM_BAR, VRAM_BAR + BAR_SIZE),
    ] {
        ram.write_u64(header + RAM_MEM_SLOT, start);
        ram.write_u64(header + RAM_MEM_SLOT + 8, end);
        out(IoPort::MemslotAddAsync, u32::from(id));
        drain(&mut worker);
    }
    let (width, height) = (u32::from(head(1)) + 1, u32::from(head(2)) + 1);
    let c = header + RAM_CREATE_SURFACE;
    ram.write_u32(c + CREATE_WIDTH, width);
    ram.write_u32(c + CREATE_HEIGHT, height);
    ram.write_u32(c + CREATE_STRIDE, width * 4);
    ram.write_u32(c + CREATE_FORMAT, if head(3) & 1 != 0 { 16 } else { 32 });
    ram.write_u64(c + CREATE_MEM, qxl_address(SURFACE_SLOT, 0));
    out(IoPort::CreatePrimaryAsync, 0);
    drain(&mut worker);

    let n = image.len().min((header - IMAGE_OFFSET) as usize);
    ram.write(IMAGE_OFFSET, &image[..n]);

    for step in script.chunks_exact(STEP_LEN) {
        let (kind, x) = (step[0], step[1]);
        let offset = u16::from_le_bytes([step[2], step[3]]);
        if kind & 0x80 != 0 {
            if x & 1 != 0 {
                let field = header + u64::from(x & 0xfe) * 2;
                ram.write_u32(field.min(header + RAM_HEADER_SIZE - 4), u32::from(offset));
            }
            let port = PORTS[usize::from(kind & 0x1f) % PORTS.len()];
            out(port, u32::from(offset));
            drain(&mut worker);
            continue;
        }
        let slot = if kind & 0x40 != 0 {
            SURFACE_SLOT
        } else {
            MAIN_SLOT
        };
        let data = qxl_address(slot, IMAGE_OFFSET + u64::from(offset) * 8);
        let (ring, size, port) = if kind & 0x20 != 0 {
            (RAM_CURSOR_RING, CURSOR_RING_SIZE, IoPort::NotifyCursor)
        } else {
            (RAM_CMD_RING, COMMAND_RING_SIZE, IoPort::NotifyCmd)
        };
        let ring = header + ring;
        let prod = ram.load_u32(ring + RING_PROD).unwrap_or(0);
        let item = ring + RING_ITEMS + u64::from(prod % size) * COMMAND_SIZE;
        ram.write_u64(item, data);
        ram.write_u32(item + 8, u32::from(kind & 7));
        ram.store_u32(ring + RING_PROD, prod.wrapping_add(1));
        out(port, 0);
        if x & 1 != 0 {
            drain(&mut worker);
        }
    }
    drain(&mut worker);
    let handle = device.handle();
    let _ = handle.screen();
    let _ = handle.cursor();
    let _ = handle.stats();
    let _ = irq.take_pending();
}

/// A step pushing command `kind` whose structure is at `IMAGE_OFFSET + 8 * offset`.
pub fn push_step(kind: u32, offset: u16, drain_now: bool) -> [u8; STEP_LEN] {
    let o = offset.to_le_bytes();
    [kind as u8 & 7, u8::from(drain_now), o[0], o[1]]
}
