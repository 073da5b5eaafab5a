//! `--display qxl`: the QXL device on the PCI bus with its worker on the low-priority
//! reactor, the VNC server and the virtio keyboard and tablet it feeds, and the API's
//! `display` and `screenshot`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use log::info;
use ringvisor_devices::qxl::{QxlDevice, QxlHandle};
use ringvisor_devices::virtio::input::{keysym_to_linux, InputDevice, InputHandle, InputKind};
use ringvisor_io::{IrqEvent, QueueBinding};
use serde_json::{json, Value};

use super::devices::Slots;
use super::MachineError;
use crate::api::DisplayControl;
use crate::display::qxl::QxlScreen;
use crate::display::vnc::VncServer;
use crate::display::{DisplaySource, InputSink};
use crate::options::DisplaySpec;
use crate::pci::qxl::{plug_qxl, QxlBars};
use crate::pci::PciInterrupt;
use crate::pci::{DeviceMemoryMapper, InterruptController};
use crate::pio_bus::IoPortRegions;

/// The IOAPIC pin of the QXL device's INTA# (pins 16..24 are free for PCI).
const QXL_IOAPIC_PIN: u8 = 16;
/// First port of the QXL I/O BAR: above the legacy ISA ports.
const QXL_IO_PORT: u16 = 0xc000;
/// RFB's absolute pointer is in screen pixels; virtio tablets report 0..=32767.
const TABLET_MAX: u32 = 32767;

/// What the machine keeps of the display.
pub(super) struct PluggedDisplay {
    pub control: Arc<dyn DisplayControl>,
    /// For the machine's reset on a reboot.
    pub device: QxlHandle,
    pub interrupt: PciInterrupt,
    pub info: Value,
    /// Keeps the VNC server running for the machine's life.
    _vnc: Option<VncServer>,
}

/// VNC input to the virtio keyboard and tablet.
struct VirtioInput {
    keyboard: InputHandle,
    tablet: InputHandle,
}

impl InputSink for VirtioInput {
    fn key(&self, keysym: u32, down: bool) {
        // RFB clients send their own Shift presses: the shift hint is not needed.
        if let Some((code, _shift)) = keysym_to_linux(keysym) {
            self.keyboard.key(code, down);
        }
    }

    fn pointer(&self, x: u16, y: u16, buttons: u8, width: u32, height: u32) {
        let scale = |at: u16, size: u32| {
            (u32::from(at).min(size.saturating_sub(1)) * TABLET_MAX) / size.saturating_sub(1).max(1)
        };
        self.tablet.pointer_abs(scale(x, width), scale(y, height));
        // RFB: bit 0 left, 1 middle, 2 right, 3 wheel up, 4 wheel down.
        self.tablet.buttons(buttons & 0b111);
        if buttons & 0b1000 != 0 {
            self.tablet.wheel(1);
        }
        if buttons & 0b1_0000 != 0 {
            self.tablet.wheel(-1);
        }
    }
}

struct DisplayApi {
    handle: QxlHandle,
    vnc: Option<SocketAddr>,
}

impl DisplayControl for DisplayApi {
    fn screenshot(&self, path: &Path) -> Result<Value, String> {
        let (_, frame) = QxlScreen(self.handle.clone())
            .snapshot()
            .ok_or("the guest has not set a display mode yet")?;
        crate::display::png::write_png(&frame, path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let summary = crate::display::summary::summarize(&frame);
        Ok(json!({
            "path": path, "width": frame.width, "height": frame.height,
            "crc32": format!("{:08x}", summary.crc32),
            "colors": summary.distinct_colors, "foreground": summary.foreground_pixels,
        }))
    }

    fn status(&self) -> Value {
        let stats = self.handle.stats();
        let cursor = self.handle.cursor();
        json!({
            "mode": self.handle.mode().map(|(width, height)| json!({ "width": width, "height": height })),
            "version": self.handle.version(),
            "vnc": self.vnc,
            "cursor": { "x": cursor.x, "y": cursor.y, "visible": cursor.visible,
                        "shape": cursor.shape.as_ref().map(|s| json!([s.width, s.height])) },
            "qxl": {
                "io_writes": stats.io_writes, "async_commands": stats.async_commands,
                "draws": stats.draws, "surface_commands": stats.surface_commands,
                "cursor_commands": stats.cursor_commands, "unsupported": stats.unsupported,
                "guest_errors": stats.guest_errors, "last_error": stats.last_error,
                "releases": stats.releases, "release_ring_full": stats.release_ring_full,
                "interrupts": stats.interrupts, "resets": stats.resets,
            },
        })
    }
}

/// Plugs the QXL device (and, with VNC input, a keyboard and a tablet) and starts VNC.
pub(super) fn plug_display(
    spec: &DisplaySpec,
    slots: &mut Slots<'_>,
    interrupts: &Arc<dyn InterruptController>,
    memory: Arc<dyn DeviceMemoryMapper>,
    ports: Arc<IoPortRegions>,
) -> Result<PluggedDisplay, MachineError> {
    let display_error = |what: String| MachineError::Display(what);
    let irq = IrqEvent::new()?;
    interrupts
        .bind_irqfd(irq.eventfd(), u32::from(QXL_IOAPIC_PIN))
        .map_err(|e| display_error(format!("cannot wire the QXL interrupt: {e}")))?;
    let device = QxlDevice::new(&spec.qxl, slots.low_priority.mem.clone(), irq)
        .map_err(|e| display_error(e.to_string()))?;
    let mut bar = |size: u64| {
        slots
            .bars
            .allocate(size)
            .and_then(|at| u32::try_from(at).ok())
            .ok_or_else(|| MachineError::NoBarSpace("qxl0".into()))
    };
    let bars = QxlBars {
        vram: bar(device.vram_bar().size())?,
        ram: bar(device.ram_bar().size())?,
        rom: bar(ringvisor_devices::qxl::layout::ROM_SIZE)?,
        io_port: QXL_IO_PORT,
    };
    let (worker, kick) = device.worker().map_err(|e| display_error(e.to_string()))?;
    let interrupt = device
        .interrupt()
        .map_err(|e| display_error(e.to_string()))?;
    let handle = device.handle();
    let device = Arc::new(device);
    let slot = plug_qxl(
        device,
        bars,
        QXL_IOAPIC_PIN,
        memory,
        slots.root,
        slots.mmio,
        ports,
    )
    .map_err(|e| display_error(e.to_string()))?;
    slots
        .low_priority
        .queue_host
        .attach(QueueBinding {
            name: "qxl0".into(),
            worker: Box::new(worker),
            kick,
            interrupt,
            on_fault: Box::new(|fault| log::error!("qxl0: {fault}")),
        })
        .map_err(|e| display_error(format!("cannot start the QXL worker: {e}")))?;
    info!(
        "qxl0: {} MiB RAM BAR at {:#x}, {} MiB VRAM BAR at {:#x}, ports {:#x}, on PCI 00:{slot:02x}.0",
        spec.qxl.ram_size >> 20,
        bars.ram,
        spec.qxl.vram_size >> 20,
        bars.vram,
        bars.io_port
    );

    let input = if spec.input {
        let keyboard = plug_input(slots, "keyboard0", InputKind::Keyboard)?;
        let tablet = plug_input(slots, "tablet0", InputKind::Tablet)?;
        Some(Arc::new(VirtioInput { keyboard, tablet }) as Arc<dyn InputSink>)
    } else {
        None
    };
    let vnc = match spec.vnc {
        Some(addr) => {
            let source = Arc::new(QxlScreen(handle.clone()));
            let server = VncServer::start(addr, source, input)
                .map_err(|e| display_error(format!("vnc={addr}: {e}")))?;
            info!("qxl0: VNC on {}", server.local_addr());
            Some(server)
        }
        None => None,
    };
    let vnc_addr = vnc.as_ref().map(VncServer::local_addr);
    Ok(PluggedDisplay {
        device: handle.clone(),
        control: Arc::new(DisplayApi {
            handle,
            vnc: vnc_addr,
        }),
        interrupt: PciInterrupt {
            slot: slot as u8,
            pin: 0,
            ioapic_pin: QXL_IOAPIC_PIN,
        },
        info: json!({
            "name": "qxl0", "kind": "qxl", "pci_slot": slot,
            "ram_bytes": spec.qxl.ram_size, "vram_bytes": spec.qxl.vram_size,
            "vnc": vnc_addr, "input": spec.input,
        }),
        _vnc: vnc,
    })
}

fn plug_input(
    slots: &mut Slots<'_>,
    name: &str,
    kind: InputKind,
) -> Result<InputHandle, MachineError> {
    let device = InputDevice::new(kind).map_err(|e| MachineError::Display(e.to_string()))?;
    let handle = device.handle();
    let (plug, _bar) = slots.plug(name, Box::new(device))?;
    info!("{name}: virtio-input on PCI 00:{:02x}.0", plug.slot);
    Ok(handle)
}
