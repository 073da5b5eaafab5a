//! Where things are in the QXL device's ROM, RAM header and I/O ports, and the values
//! that go there. Offsets were checked with `offsetof` against spice-protocol 0.14.3's
//! `qxl_dev.h` (every structure there is packed, little endian).

/// PCI identity: Red Hat's vendor ID, the stable QXL device.
pub const QXL_VENDOR_ID: u16 = 0x1b36;
pub const QXL_DEVICE_ID: u16 = 0x0100;
/// Revision 5 (QXL_REVISION_STABLE_V12 + 1, as QEMU's qxl-vga has): Linux's driver then
/// does not ask the VGA arbiter for the legacy VGA ports, which this device does not decode.
pub const QXL_REVISION: u8 = 5;

/// "QXRO" and "QXRA" as little-endian words.
pub const ROM_MAGIC: u32 = u32::from_le_bytes(*b"QXRO");
pub const RAM_MAGIC: u32 = u32::from_le_bytes(*b"QXRA");

// ---- QXLRom ----
pub const ROM_MAGIC_OFFSET: usize = 0;
pub const ROM_ID: usize = 4;
pub const ROM_UPDATE_ID: usize = 8;
pub const ROM_MODE: usize = 20;
pub const ROM_MODES_OFFSET: usize = 24;
pub const ROM_NUM_PAGES: usize = 28;
pub const ROM_PAGES_OFFSET: usize = 32;
pub const ROM_DRAW_AREA_OFFSET: usize = 36;
pub const ROM_SURFACE0_AREA_SIZE: usize = 40;
pub const ROM_RAM_HEADER_OFFSET: usize = 44;
pub const ROM_MM_CLOCK: usize = 48;
pub const ROM_N_SURFACES: usize = 52;
pub const ROM_FLAGS: usize = 56;
pub const ROM_SLOTS_START: usize = 64;
pub const ROM_SLOTS_END: usize = 65;
pub const ROM_SLOT_GEN_BITS: usize = 66;
pub const ROM_SLOT_ID_BITS: usize = 67;
pub const ROM_SLOT_GENERATION: usize = 68;
/// sizeof(QXLRom); the mode list follows it.
pub const ROM_HEADER_SIZE: usize = 1160;
/// sizeof(QXLMode): id, x_res, y_res, bits, stride, x_mili, y_mili, orientation.
pub const MODE_SIZE: usize = 32;
/// The ROM BAR: the header and the mode list fit with room to spare.
pub const ROM_SIZE: u64 = 8192;

// ---- QXLRam (at `ram_header_offset` in BAR0) ----
pub const RAM_MAGIC_OFFSET: u64 = 0;
pub const RAM_INT_PENDING: u64 = 4;
pub const RAM_INT_MASK: u64 = 8;
pub const RAM_LOG_BUF: u64 = 12;
pub const RAM_LOG_BUF_SIZE: usize = 4096;
pub const RAM_CMD_RING: u64 = 4108;
pub const RAM_CURSOR_RING: u64 = 4640;
pub const RAM_RELEASE_RING: u64 = 5172;
pub const RAM_UPDATE_AREA: u64 = 5256;
pub const RAM_UPDATE_SURFACE: u64 = 5272;
pub const RAM_MEM_SLOT: u64 = 5276;
pub const RAM_CREATE_SURFACE: u64 = 5292;
pub const RAM_MONITORS_CONFIG: u64 = 5340;
pub const RAM_HEADER_SIZE: u64 = 5348;
/// The header takes the last page(s) of BAR0, as QEMU lays it out.
pub const RAM_HEADER_AREA: u64 = 8192;

// ---- rings (SPICE_RING_DECLARE): num_items, prod, notify_on_prod, cons, notify_on_cons,
// then items padded to a power of two ----
pub const RING_NUM_ITEMS: u64 = 0;
pub const RING_PROD: u64 = 4;
pub const RING_NOTIFY_ON_PROD: u64 = 8;
pub const RING_CONS: u64 = 12;
pub const RING_NOTIFY_ON_CONS: u64 = 16;
pub const RING_ITEMS: u64 = 20;
pub const COMMAND_RING_SIZE: u32 = 32;
pub const CURSOR_RING_SIZE: u32 = 32;
pub const RELEASE_RING_SIZE: u32 = 8;
/// QXLCommand: data (QXLPHYSICAL), type, padding.
pub const COMMAND_SIZE: u64 = 16;
pub const RELEASE_ITEM_SIZE: u64 = 8;

// ---- QXLSurfaceCreate (in the RAM header, for CREATE_PRIMARY) ----
pub const CREATE_WIDTH: u64 = 0;
pub const CREATE_HEIGHT: u64 = 4;
pub const CREATE_STRIDE: u64 = 8;
pub const CREATE_FORMAT: u64 = 12;
pub const CREATE_MEM: u64 = 32;

// ---- interrupts ----
pub const INTERRUPT_DISPLAY: u32 = 1 << 0;
pub const INTERRUPT_CURSOR: u32 = 1 << 1;
pub const INTERRUPT_IO_CMD: u32 = 1 << 2;
pub const INTERRUPT_ERROR: u32 = 1 << 3;

// ---- command types (QXLCmdType) ----
pub const CMD_NOP: u32 = 0;
pub const CMD_DRAW: u32 = 1;
pub const CMD_UPDATE: u32 = 2;
pub const CMD_CURSOR: u32 = 3;
pub const CMD_MESSAGE: u32 = 4;
pub const CMD_SURFACE: u32 = 5;

// ---- memslots: 8 id bits and 8 generation bits on top of a 48-bit offset ----
pub const SLOTS_START: u8 = 1;
pub const SLOTS_END: u8 = 8;
pub const SLOT_ID_BITS: u8 = 8;
pub const SLOT_GEN_BITS: u8 = 8;
pub const SLOT_GENERATION: u8 = 1;
/// Surface ids the guest may use (QXLRom n_surfaces).
pub const N_SURFACES: u32 = 1024;

/// Declares the port enum and its offset table from one list, so the two never drift.
macro_rules! io_ports {
    ($($port:ident),+ $(,)?) => {
        /// The I/O ports (offsets into BAR3), in qxl_dev.h's order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum IoPort {
            $($port),+
        }

        const PORTS: &[IoPort] = &[$(IoPort::$port),+];
    };
}

io_ports!(
    NotifyCmd,
    NotifyCursor,
    UpdateArea,
    UpdateIrq,
    NotifyOom,
    Reset,
    SetMode,
    Log,
    MemslotAdd,
    MemslotDel,
    DetachPrimary,
    AttachPrimary,
    CreatePrimary,
    DestroyPrimary,
    DestroySurfaceWait,
    DestroyAllSurfaces,
    UpdateAreaAsync,
    MemslotAddAsync,
    CreatePrimaryAsync,
    DestroyPrimaryAsync,
    DestroySurfaceAsync,
    DestroyAllSurfacesAsync,
    FlushSurfacesAsync,
    FlushRelease,
    MonitorsConfigAsync,
);

/// QXL_IO_RANGE_SIZE rounded up to a power of two, as a BAR must be.
pub const IO_PORT_COUNT: u16 = 32;

impl IoPort {
    pub fn from_offset(offset: u16) -> Option<Self> {
        PORTS.get(usize::from(offset)).copied()
    }

    /// The ports whose completion the guest learns from QXL_INTERRUPT_IO_CMD.
    pub fn is_async(self) -> bool {
        use IoPort::*;
        matches!(
            self,
            UpdateAreaAsync
                | MemslotAddAsync
                | CreatePrimaryAsync
                | DestroyPrimaryAsync
                | DestroySurfaceAsync
                | DestroyAllSurfacesAsync
                | FlushSurfacesAsync
                | MonitorsConfigAsync
        )
    }
}
