//! The QXL renderer: executes the guest's QXL_CMD_DRAW, QXL_CMD_SURFACE and QXL_CMD_CURSOR
//! commands against host-side surfaces.
//!
//! Every structure a command names lives in guest memory and is read through a
//! [`QxlReader`], which bounds each read to the memslot the address names. The guest is
//! untrusted: every count, size and coordinate it supplies is checked or clipped, every
//! chain of data chunks is bounded, and a command is parsed in full before the first pixel
//! changes, so a command that fails leaves its surface as it was.

mod clip;
mod cursor;
mod drawable;
mod guest;
mod image;
pub mod layout;
mod raster;
mod surfaces;
#[cfg(test)]
mod tests;

pub use cursor::{cursor_command, CursorCommand, CursorShape, MAX_CURSOR_SIZE};
pub use drawable::{draw, surface_command};
pub use guest::{MAX_CHUNKS, MAX_CLIP_RECTS};
pub use image::{MAX_IMAGE_BYTES, MAX_IMAGE_SIZE};
pub use surfaces::{Surface, Surfaces, MAX_SURFACE_SIZE};

/// Reads guest bytes named by QXL addresses (QXLPHYSICAL: memslot id and generation in the
/// high bits, offset in the slot below). The device core implements it with bounds checks.
pub trait QxlReader {
    /// Copies `buf.len()` bytes starting at `addr`; an error when any byte is outside the
    /// memslot the address names (or the slot is not set up).
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DrawError>;
}

/// A rectangle with QXLRect semantics: `right` and `bottom` are exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rect {
    pub left: i32,
    pub top: i32,
    pub right: i32,
    pub bottom: i32,
}

impl Rect {
    pub fn new(left: i32, top: i32, right: i32, bottom: i32) -> Self {
        Self {
            left,
            top,
            right,
            bottom,
        }
    }

    /// Width, never negative (an inverted rectangle is empty).
    pub fn width(&self) -> u32 {
        u32::try_from(i64::from(self.right) - i64::from(self.left)).unwrap_or(0)
    }

    /// Height, never negative (an inverted rectangle is empty).
    pub fn height(&self) -> u32 {
        u32::try_from(i64::from(self.bottom) - i64::from(self.top)).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.width() == 0 || self.height() == 0
    }

    /// Whether `right < left` or `bottom < top`: a broken rectangle rather than an empty one.
    pub fn is_inverted(&self) -> bool {
        self.right < self.left || self.bottom < self.top
    }

    /// The overlap of two rectangles; empty (possibly inverted) when they do not meet.
    pub fn intersect(&self, other: &Rect) -> Rect {
        Rect {
            left: self.left.max(other.left),
            top: self.top.max(other.top),
            right: self.right.min(other.right),
            bottom: self.bottom.min(other.bottom),
        }
    }

    /// The smallest rectangle holding both; an empty side does not count.
    pub fn union(&self, other: &Rect) -> Rect {
        if self.is_empty() {
            return *other;
        }
        if other.is_empty() {
            return *self;
        }
        Rect {
            left: self.left.min(other.left),
            top: self.top.min(other.top),
            right: self.right.max(other.right),
            bottom: self.bottom.max(other.bottom),
        }
    }
}

/// What a draw changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrawOutcome {
    pub surface_id: u32,
    /// The bounding box of the changed pixels, inside the surface; None: nothing changed.
    pub dirty: Option<Rect>,
}

#[derive(Debug, thiserror::Error)]
pub enum DrawError {
    #[error("guest address {addr:#x} (+{len} bytes) is outside its memslot")]
    OutOfRange { addr: u64, len: u64 },
    #[error("data chunk chain loops back to the chunk at {0:#x}")]
    ChunkLoop(u64),
    #[error("data chunk chain is longer than {MAX_CHUNKS} chunks")]
    TooManyChunks,
    #[error("data chunks hold {have} bytes, more than the {limit} allowed for this object")]
    ChunkTooLong { have: u64, limit: u64 },
    #[error("data chunks hold {have} bytes, the object needs {need}")]
    ChunkTooShort { have: u64, need: u64 },
    #[error("unknown drawable type {0}")]
    UnknownDrawType(u8),
    #[error("drawable type {0} (ROP3, STROKE, TEXT or COMPOSITE) is not supported")]
    UnsupportedDrawType(u8),
    #[error("unknown image type {0}")]
    UnknownImageType(u8),
    #[error("image type {0} (compressed or cached) is not supported")]
    UnsupportedImage(u8),
    #[error("unknown bitmap format {0}")]
    UnknownBitmap(u8),
    #[error("bitmap format {0} (alpha-only) is not supported")]
    UnsupportedBitmap(u8),
    #[error("image {width}x{height} is empty or larger than {MAX_IMAGE_SIZE} pixels a side or {MAX_IMAGE_BYTES} bytes")]
    ImageSize { width: u32, height: u32 },
    #[error("bitmap stride {stride} is too small for {width} pixels of format {format}")]
    BadStride { stride: u32, width: u32, format: u8 },
    #[error("bitmap format {0} needs a palette and has none")]
    MissingPalette(u8),
    #[error("surface {0} does not exist")]
    NoSurface(u32),
    #[error("surface id {0} is out of range")]
    SurfaceId(u32),
    #[error("surface {width}x{height} is empty or larger than {MAX_SURFACE_SIZE} pixels a side")]
    SurfaceSize { width: u32, height: u32 },
    #[error("surface needs {bytes} bytes, only {available} of the surface budget are free")]
    SurfaceTooLarge { bytes: u64, available: u64 },
    #[error("surface format {0} is not supported")]
    SurfaceFormat(u32),
    #[error("cannot allocate {0} bytes")]
    OutOfMemory(u64),
    #[error("rectangle {0:?} is inverted or negative")]
    BadRect(Rect),
    #[error("source area {area:?} is not inside the {width}x{height} source image")]
    SourceArea { area: Rect, width: u32, height: u32 },
    #[error("unknown clip type {0}")]
    UnknownClipType(u32),
    #[error("clip with {0} rectangles, more than {MAX_CLIP_RECTS}")]
    TooManyClipRects(u32),
    #[error("unknown brush type {0}")]
    UnknownBrush(u32),
    #[error("pattern brushes are not supported")]
    UnsupportedBrush,
    #[error("bitmap masks are not supported")]
    UnsupportedMask,
    #[error("raster operation descriptor {0:#x} names no operation")]
    UnsupportedRop(u16),
    #[error("unknown surface command {0}")]
    UnknownSurfaceCommand(u8),
    #[error("unknown cursor command {0}")]
    UnknownCursorCommand(u8),
    #[error("unknown cursor type {0}")]
    UnknownCursorType(u16),
    #[error("cursor type {0} (a COLOR type) is not supported")]
    UnsupportedCursor(u16),
    #[error("cursor {width}x{height} is larger than {MAX_CURSOR_SIZE} pixels a side")]
    CursorSize { width: u16, height: u16 },
}

impl DrawError {
    /// Whether the command is valid QXL that this renderer does not implement (to be
    /// counted and skipped) rather than a guest breaking the protocol.
    pub fn is_unsupported(&self) -> bool {
        match self {
            DrawError::UnsupportedDrawType(_)
            | DrawError::UnsupportedImage(_)
            | DrawError::UnsupportedBitmap(_)
            | DrawError::UnsupportedBrush
            | DrawError::UnsupportedMask
            | DrawError::UnsupportedRop(_)
            | DrawError::UnsupportedCursor(_) => true,
            DrawError::SurfaceFormat(format) => {
                matches!(
                    *format,
                    layout::SPICE_SURFACE_FMT_1_A | layout::SPICE_SURFACE_FMT_8_A
                )
            }
            _ => false,
        }
    }
}

/// See [`DrawError::is_unsupported`].
pub fn is_unsupported(err: &DrawError) -> bool {
    err.is_unsupported()
}
