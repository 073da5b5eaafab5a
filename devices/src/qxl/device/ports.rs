//! The port commands: run on the vCPU that wrote the port (the synchronous ones) or on
//! the reactor (the async ones, which complete with QXL_INTERRUPT_IO_CMD).

use log::debug;

use super::{lock, CursorState, Shared, State};
use crate::qxl::layout::*;

/// At most this many commands run ahead of a destroy or update: a few rings' worth (the
/// guest may refill the ring while they run).
const FLUSH_BUDGET: usize = 4 * COMMAND_RING_SIZE as usize;

impl Shared {
    pub(super) fn run_port_command(&self, state: &mut State, port: IoPort, value: u32) {
        use IoPort::*;
        if matches!(
            port,
            DestroyPrimary
                | DestroyPrimaryAsync
                | DestroySurfaceWait
                | DestroySurfaceAsync
                | DestroyAllSurfaces
                | DestroyAllSurfacesAsync
                | UpdateArea
                | UpdateAreaAsync
                | FlushSurfacesAsync
        ) {
            // The guest may have queued draws for a surface just before it destroys it
            // (a mode change: destroy the primary, create the new one): as SPICE does,
            // the commands already in the ring run first, against the surface they name.
            let (_, changed) = self.process_rings_locked(state, FLUSH_BUDGET);
            if changed {
                self.bump_screen();
            }
        }
        match port {
            Reset => self.reset(state),
            MemslotAdd | MemslotAddAsync => self.add_memslot(state, value),
            MemslotDel => {
                if let Err(err) = state.slots.remove(value) {
                    self.guest_error(&format!("MEMSLOT_DEL: {err}"));
                }
            }
            CreatePrimary | CreatePrimaryAsync => self.create_primary(state),
            DestroyPrimary | DestroyPrimaryAsync => {
                state.surfaces.destroy(0);
                self.bump_screen();
            }
            DestroySurfaceWait | DestroySurfaceAsync => {
                state.surfaces.destroy(value);
                if value == 0 {
                    self.bump_screen();
                }
            }
            DestroyAllSurfaces | DestroyAllSurfacesAsync => {
                state.surfaces.destroy_all();
                self.bump_screen();
            }
            NotifyOom | FlushRelease => self.publish_releases(state),
            Log => self.log_guest_message(),
            // Surfaces live host side and are always up to date: there is nothing to
            // render into guest memory. Primary attach/detach and SET_MODE belong to
            // migration and the qxl-1 VGA path.
            UpdateArea | UpdateAreaAsync | FlushSurfacesAsync | MonitorsConfigAsync
            | DetachPrimary | AttachPrimary | SetMode => {}
            NotifyCmd | NotifyCursor | UpdateIrq => {}
        }
    }

    pub(super) fn reset(&self, state: &mut State) {
        state.slots.clear();
        state.surfaces.destroy_all();
        state.cursor = CursorState::default();
        state.releases = None;
        state.guest_bug = false;
        lock(&self.async_ops).clear();
        self.init_ram_header();
        self.counters.add(&self.counters.resets, 1);
        self.bump_screen();
    }

    fn add_memslot(&self, state: &mut State, id: u32) {
        let h = self.header + RAM_MEM_SLOT;
        let start = self.ram.read_u64(h).unwrap_or(0);
        let end = self.ram.read_u64(h + 8).unwrap_or(0);
        let bars = state.bars;
        if let Err(err) = state
            .slots
            .add(id, start, end, bars, &self.ram, &self.vram, &self.guest)
        {
            self.guest_error(&format!("MEMSLOT_ADD {id}: {err}"));
        }
    }

    fn create_primary(&self, state: &mut State) {
        let c = self.header + RAM_CREATE_SURFACE;
        let width = self.ram.read_u32(c + CREATE_WIDTH).unwrap_or(0);
        let height = self.ram.read_u32(c + CREATE_HEIGHT).unwrap_or(0);
        let stride = self.ram.read_u32(c + CREATE_STRIDE).unwrap_or(0) as i32;
        let format = self.ram.read_u32(c + CREATE_FORMAT).unwrap_or(0);
        let mem = self.ram.read_u64(c + CREATE_MEM).unwrap_or(0);
        let bytes = u64::from(stride.unsigned_abs()) * u64::from(height);
        if bytes == 0 || !self.memory(&state.slots).covers(mem, bytes) {
            self.guest_error(&format!(
                "CREATE_PRIMARY {width}x{height} stride {stride}: its memory {mem:#x} is not inside a memslot"
            ));
            return;
        }
        match state.surfaces.create(0, width, height, format) {
            Ok(()) => debug!("qxl: primary surface {width}x{height} format {format}"),
            Err(err) => self.guest_error(&format!("CREATE_PRIMARY: {err}")),
        }
        self.bump_screen();
    }

    fn log_guest_message(&self) {
        let mut buf = [0u8; RAM_LOG_BUF_SIZE];
        if self.ram.read(self.header + RAM_LOG_BUF, &mut buf) {
            let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            debug!(
                "qxl guest: {}",
                String::from_utf8_lossy(&buf[..end]).trim_end()
            );
        }
    }
}
