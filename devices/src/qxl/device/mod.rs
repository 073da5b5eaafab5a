//! The QXL device's state and its two faces: I/O port writes from vCPU threads, and
//! ring processing on the low-priority reactor (see [`super::worker`]).
//!
//! Threads: vCPUs write ports; the reactor drains rings and runs the async port
//! commands; outputs read the screen. The RAM header is shared memory accessed with
//! atomics; everything else sits behind `state` (taken by vCPUs only for the rare
//! synchronous port commands) and the async-command queue has its own small lock.

mod commands;
mod ports;

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use log::{debug, warn};
use ringvisor_io::IrqEvent;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::bar::{BarMemory, BarMemoryError};
use super::draw::{CursorShape, Surfaces};
use super::layout::*;
use super::memslots::{BarPlacement, MemSlots, QxlMemory};
use super::rings::Ring;
use super::rom::build_rom;
use super::stats::{QxlCounters, QxlStats};
use crate::virtio::GuestMemory;

/// Commands one drain takes before letting the reactor serve others.
pub(super) const DRAIN_BUDGET: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QxlConfig {
    /// BAR0: command data, images and the RAM header (a power of two).
    pub ram_size: u64,
    /// BAR1: surfaces, the primary included (a power of two).
    pub vram_size: u64,
    /// Modes advertised in the ROM, (width, height), 32 bits per pixel.
    pub modes: Vec<(u32, u32)>,
}

pub const MIN_BAR_SIZE: u64 = 1 << 20;
pub const MAX_BAR_SIZE: u64 = 1 << 30;

impl Default for QxlConfig {
    fn default() -> Self {
        Self {
            ram_size: 32 << 20,
            vram_size: 64 << 20,
            modes: vec![
                (640, 480),
                (800, 600),
                (1024, 768),
                (1280, 720),
                (1280, 1024),
                (1920, 1080),
            ],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QxlError {
    #[error("QXL {which} size {size} must be a power of two from 1 MiB to 1 GiB")]
    BarSize { which: &'static str, size: u64 },
    #[error(transparent)]
    BarMemory(#[from] BarMemoryError),
    #[error("cannot create the QXL doorbell: {0}")]
    Doorbell(#[source] std::io::Error),
    #[error("cannot duplicate the QXL interrupt: {0}")]
    Interrupt(String),
}

/// The cursor as the guest last set it.
#[derive(Debug, Clone, Default)]
pub struct CursorState {
    pub x: i16,
    pub y: i16,
    pub visible: bool,
    pub shape: Option<CursorShape>,
}

/// The chain of released resources not yet handed to the guest: QXLReleaseInfo `id`s
/// linked through their `next` fields (the same word), head first.
#[derive(Debug, Default, Clone, Copy)]
struct ReleaseChain {
    head_id: u64,
    tail: u64,
}

pub(super) struct State {
    slots: MemSlots,
    bars: BarPlacement,
    surfaces: Surfaces,
    cursor: CursorState,
    releases: Option<ReleaseChain>,
    /// Set on a broken ring: the device stops reading rings until RESET, as QEMU does.
    guest_bug: bool,
}

/// The screen's version, waited on by outputs.
#[derive(Default)]
struct ScreenVersion {
    version: Mutex<u64>,
    changed: Condvar,
}

pub(super) struct Shared {
    pub(super) ram: BarMemory,
    pub(super) vram: BarMemory,
    rom: Vec<u8>,
    header: u64,
    guest: GuestMemory,
    irq: IrqEvent,
    pub(super) kick: EventFd,
    async_ops: Mutex<VecDeque<(IoPort, u32)>>,
    state: Mutex<State>,
    screen: ScreenVersion,
    pub(super) counters: QxlCounters,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a thread died mid-command; the state is still the best there is.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A QXL device; the VMM maps its BARs, forwards port writes, and runs its worker on
/// the low-priority reactor.
pub struct QxlDevice {
    shared: Arc<Shared>,
}

/// What outputs and the control API read.
#[derive(Clone)]
pub struct QxlHandle {
    shared: Arc<Shared>,
}

/// A copy of the primary surface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screen {
    pub version: u64,
    pub width: u32,
    pub height: u32,
    /// 0x00RRGGBB, row-major, top row first.
    pub pixels: Vec<u32>,
}

fn check_bar(which: &'static str, size: u64) -> Result<(), QxlError> {
    if size.is_power_of_two() && (MIN_BAR_SIZE..=MAX_BAR_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(QxlError::BarSize { which, size })
    }
}

impl QxlDevice {
    /// `irq` is the device's interrupt line (an edge: written whenever an enabled
    /// interrupt becomes pending).
    pub fn new(config: &QxlConfig, guest: GuestMemory, irq: IrqEvent) -> Result<Self, QxlError> {
        check_bar("ram", config.ram_size)?;
        check_bar("vram", config.vram_size)?;
        let ram = BarMemory::new(config.ram_size)?;
        let vram = BarMemory::new(config.vram_size)?;
        let header = config.ram_size - RAM_HEADER_AREA;
        let rom = build_rom(config, header);
        let kick = EventFd::new(EFD_NONBLOCK).map_err(QxlError::Doorbell)?;
        let shared = Arc::new(Shared {
            ram,
            vram,
            rom,
            header,
            guest,
            irq,
            kick,
            async_ops: Mutex::new(VecDeque::new()),
            state: Mutex::new(State {
                slots: MemSlots::default(),
                bars: BarPlacement::default(),
                surfaces: Surfaces::new(N_SURFACES, config.vram_size),
                cursor: CursorState::default(),
                releases: None,
                guest_bug: false,
            }),
            screen: ScreenVersion::default(),
            counters: QxlCounters::default(),
        });
        shared.init_ram_header();
        Ok(Self { shared })
    }

    pub fn ram_bar(&self) -> &BarMemory {
        &self.shared.ram
    }

    pub fn vram_bar(&self) -> &BarMemory {
        &self.shared.vram
    }

    pub fn rom(&self) -> &[u8] {
        &self.shared.rom
    }

    /// The PCI function tells where the memory BARs are decoded now: memslots are
    /// resolved against these addresses.
    pub fn set_bar_placement(&self, bars: BarPlacement) {
        lock(&self.shared.state).bars = bars;
    }

    /// A vCPU wrote `value` to I/O port `offset` of BAR3.
    pub fn io_write(&self, offset: u16, value: u32) {
        self.shared.io_write(offset, value);
    }

    pub fn handle(&self) -> QxlHandle {
        QxlHandle {
            shared: self.shared.clone(),
        }
    }

    /// The worker for the low-priority reactor, with the doorbell it waits on.
    pub fn worker(&self) -> Result<(super::worker::QxlWorker, EventFd), QxlError> {
        let kick = self.shared.kick.try_clone().map_err(QxlError::Doorbell)?;
        Ok((super::worker::QxlWorker::new(self.shared.clone()), kick))
    }

    /// A second handle on the interrupt line, for the reactor binding.
    pub fn interrupt(&self) -> Result<IrqEvent, QxlError> {
        self.shared
            .irq
            .try_clone()
            .map_err(|e| QxlError::Interrupt(e.to_string()))
    }
}

impl QxlHandle {
    /// The machine's reset (a reboot in place): what the guest's QXL_IO_RESET does, with
    /// both memory BARs zeroed as well, so nothing of the last boot's screen, rings or
    /// surfaces outlives it. The vCPUs are stopped; the worker waits on the state lock.
    pub fn platform_reset(&self) {
        let mut state = lock(&self.shared.state);
        for (name, bar) in [("VRAM", &self.shared.vram), ("RAM", &self.shared.ram)] {
            if let Err(err) = bar.clear() {
                warn!("qxl: cannot clear the {name} BAR on reset: {err}");
            }
        }
        self.shared.reset(&mut state);
    }

    pub fn screen(&self) -> Option<Screen> {
        let version = *lock(&self.shared.screen.version);
        let state = lock(&self.shared.state);
        let surface = state.surfaces.get(0)?;
        Some(Screen {
            version,
            width: surface.width,
            height: surface.height,
            pixels: surface.pixels.clone(),
        })
    }

    /// The primary surface's size, without copying its pixels.
    pub fn mode(&self) -> Option<(u32, u32)> {
        let state = lock(&self.shared.state);
        let surface = state.surfaces.get(0)?;
        Some((surface.width, surface.height))
    }

    pub fn version(&self) -> u64 {
        *lock(&self.shared.screen.version)
    }

    /// Blocks until the screen's version differs from `seen` or `timeout` passes.
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> u64 {
        let guard = lock(&self.shared.screen.version);
        let (guard, _) = self
            .shared
            .screen
            .changed
            .wait_timeout_while(guard, timeout, |version| *version == seen)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard
    }

    pub fn cursor(&self) -> CursorState {
        lock(&self.shared.state).cursor.clone()
    }

    pub fn stats(&self) -> QxlStats {
        self.shared.counters.snapshot()
    }
}

impl Shared {
    fn memory<'a>(&'a self, slots: &'a MemSlots) -> QxlMemory<'a> {
        QxlMemory {
            slots,
            ram: &self.ram,
            vram: &self.vram,
            guest: &self.guest,
        }
    }

    pub(super) fn command_ring(&self) -> Ring {
        Ring {
            offset: self.header + RAM_CMD_RING,
            size: COMMAND_RING_SIZE,
        }
    }

    pub(super) fn cursor_ring(&self) -> Ring {
        Ring {
            offset: self.header + RAM_CURSOR_RING,
            size: CURSOR_RING_SIZE,
        }
    }

    fn release_ring(&self) -> Ring {
        Ring {
            offset: self.header + RAM_RELEASE_RING,
            size: RELEASE_RING_SIZE,
        }
    }

    fn init_ram_header(&self) {
        let h = self.header;
        self.ram.write(h, &[0u8; RAM_HEADER_SIZE as usize]);
        self.ram.write_u32(h + RAM_MAGIC_OFFSET, RAM_MAGIC);
        self.command_ring().init(&self.ram);
        self.cursor_ring().init(&self.ram);
        self.release_ring().init(&self.ram);
    }

    /// Sets interrupt bits; signals the line when one of them is newly pending and enabled.
    pub(super) fn raise(&self, bits: u32) {
        let Some(old) = self.ram.fetch_or_u32(self.header + RAM_INT_PENDING, bits) else {
            return;
        };
        if old & bits == bits {
            return; // already pending: the guest has yet to take the earlier edge
        }
        let mask = self.ram.load_u32(self.header + RAM_INT_MASK).unwrap_or(0);
        if (old | bits) & mask != 0 {
            self.signal();
        }
    }

    fn signal(&self) {
        self.counters.add(&self.counters.interrupts, 1);
        if let Err(err) = self.irq.signal() {
            warn!("qxl: cannot signal the interrupt: {err}");
        }
    }

    fn kick(&self) {
        let _ = self.kick.write(1);
    }

    fn io_write(&self, offset: u16, value: u32) {
        self.counters.add(&self.counters.io_writes, 1);
        let Some(port) = IoPort::from_offset(offset) else {
            debug!("qxl: write to unknown port {offset}");
            return;
        };
        match port {
            IoPort::NotifyCmd | IoPort::NotifyCursor => self.kick(),
            IoPort::UpdateIrq => {
                let pending = self
                    .ram
                    .load_u32(self.header + RAM_INT_PENDING)
                    .unwrap_or(0);
                let mask = self.ram.load_u32(self.header + RAM_INT_MASK).unwrap_or(0);
                if pending & mask != 0 {
                    self.signal();
                }
            }
            IoPort::NotifyOom | IoPort::FlushRelease => {
                lock(&self.async_ops).push_back((port, value));
                self.kick();
            }
            port if port.is_async() => {
                self.counters.add(&self.counters.async_commands, 1);
                lock(&self.async_ops).push_back((port, value));
                self.kick();
            }
            port => {
                let mut state = lock(&self.state);
                self.run_port_command(&mut state, port, value);
            }
        }
    }

    /// Runs the async port commands queued by vCPUs; each completion raises IO_CMD.
    pub(super) fn run_async_commands(&self) -> usize {
        let mut done = 0;
        loop {
            let Some((port, value)) = lock(&self.async_ops).pop_front() else {
                return done;
            };
            let mut state = lock(&self.state);
            self.run_port_command(&mut state, port, value);
            drop(state);
            if port.is_async() {
                self.raise(INTERRUPT_IO_CMD);
            }
            done += 1;
        }
    }

    pub(super) fn has_async_commands(&self) -> bool {
        !lock(&self.async_ops).is_empty()
    }

    /// The guest broke the protocol: counted, logged, and QXL_INTERRUPT_ERROR raised.
    fn guest_error(&self, what: &str) {
        let count = self.counters.add(&self.counters.guest_errors, 1);
        if count <= 16 || count.is_power_of_two() {
            warn!("qxl: guest error #{count}: {what}");
        }
        self.counters.set_last_error(what);
        self.raise(INTERRUPT_ERROR);
    }

    pub(super) fn bump_screen(&self) {
        *lock(&self.screen.version) += 1;
        self.screen.changed.notify_all();
    }

    pub(super) fn rings_pending(&self) -> bool {
        if lock(&self.state).guest_bug {
            return false;
        }
        [self.command_ring(), self.cursor_ring()]
            .iter()
            .any(|ring| ring.has_pending(&self.ram).unwrap_or(false))
    }
}
