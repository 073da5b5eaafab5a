//! Display outputs for the guest's screen: PNG snapshots and a VNC (RFB 3.8) server (its
//! tests' client is in tests/rig). They read the screen through [`DisplaySource`], which the graphics
//! device implements, and send keyboard and pointer input to an [`InputSink`].
//!
//! The outputs depend on the device only through the traits (`qxl` adapts the device to
//! them), so they are tested against fakes.

pub mod png;
pub mod qxl;
pub mod rfb;
pub mod summary;
pub mod tiles;
pub mod vnc;
mod vnc_session;

pub use png::{decode_png_rgb, encode_png, write_png, PngError};
pub use vnc::VncServer;

/// The visible screen: 0x00RRGGBB pixels, row-major, stride == width, top row first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u32>,
}

impl Frame {
    /// A frame of one colour.
    pub fn filled(width: u32, height: u32, pixel: u32) -> Self {
        Self {
            width,
            height,
            pixels: vec![pixel; width as usize * height as usize],
        }
    }

    /// The pixel at (x, y); None outside the frame or when `pixels` is short.
    pub fn pixel(&self, x: u32, y: u32) -> Option<u32> {
        if x >= self.width || y >= self.height {
            return None;
        }
        self.pixels
            .get(y as usize * self.width as usize + x as usize)
            .copied()
    }

    /// Whether `pixels` holds exactly width x height entries. Outputs check it once so
    /// a source with a bad frame is reported instead of indexing out of bounds.
    pub fn is_consistent(&self) -> bool {
        self.pixels.len() as u64 == u64::from(self.width) * u64::from(self.height)
    }
}

/// What outputs read: the device implements it.
pub trait DisplaySource: Send + Sync {
    /// The screen now and its version (bumped on every change of content or size); None before the guest set a mode.
    fn snapshot(&self) -> Option<(u64, Frame)>;
    /// Blocks until the version differs from `seen` or `timeout` passes; returns the version now.
    fn wait_for_change(&self, seen: u64, timeout: std::time::Duration) -> u64;
}

/// Where keyboard and pointer input goes (a virtio-input device, written by someone else).
pub trait InputSink: Send + Sync {
    /// An X11 keysym (RFB KeyEvent) pressed or released.
    fn key(&self, keysym: u32, down: bool);
    /// The pointer at (x, y) in a screen of width x height pixels, with RFB's button mask (bit 0 left, 1 middle, 2 right, 3/4 wheel up/down).
    fn pointer(&self, x: u16, y: u16, buttons: u8, width: u32, height: u32);
}
