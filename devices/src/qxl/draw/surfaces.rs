//! Host-side surfaces, by QXL surface id, under a memory budget: the guest decides how many
//! and how big, so their total is held to what the device's VRAM could hold.

use std::collections::BTreeMap;
use std::fmt;

use super::guest::zeroed;
use super::layout::{SPICE_SURFACE_FMT_16_555, SPICE_SURFACE_FMT_16_565};
use super::layout::{SPICE_SURFACE_FMT_32_ARGB, SPICE_SURFACE_FMT_32_XRGB};
use super::{DrawError, Rect};

/// The largest surface side accepted.
pub const MAX_SURFACE_SIZE: u32 = 16384;

/// One surface. Pixels are 0x00RRGGBB (0xAARRGGBB for SPICE_SURFACE_FMT_32_ARGB), row-major
/// with stride == width, top row first, whatever format the guest named: the 16-bit formats
/// are only a promise about what the guest will look at.
#[derive(Clone, PartialEq, Eq)]
pub struct Surface {
    pub width: u32,
    pub height: u32,
    pub format: u32,
    pub pixels: Vec<u32>,
}

impl fmt::Debug for Surface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Surface")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Surface {
    /// Whether the top byte of each pixel is alpha (otherwise it is kept zero).
    pub fn has_alpha(&self) -> bool {
        self.format == SPICE_SURFACE_FMT_32_ARGB
    }

    /// The whole surface as a rectangle.
    pub fn rect(&self) -> Rect {
        // Both sides are at most MAX_SURFACE_SIZE, so they fit in i32.
        Rect::new(0, 0, self.width as i32, self.height as i32)
    }

    /// The pixel at (x, y), None outside the surface.
    pub fn pixel(&self, x: u32, y: u32) -> Option<u32> {
        if x >= self.width || y >= self.height {
            return None;
        }
        self.pixels
            .get(y as usize * self.width as usize + x as usize)
            .copied()
    }

    fn bytes(&self) -> u64 {
        surface_bytes(self.width, self.height)
    }
}

fn surface_bytes(width: u32, height: u32) -> u64 {
    u64::from(width) * u64::from(height) * 4
}

/// The surfaces by id.
#[derive(Debug)]
pub struct Surfaces {
    max_surfaces: u32,
    budget: u64,
    used: u64,
    surfaces: BTreeMap<u32, Surface>,
}

impl Surfaces {
    /// `max_surfaces`: ids 0..max (QXLRom n_surfaces); `budget_bytes`: the total of
    /// width*height*4 over live surfaces may not exceed it (the device passes its VRAM size).
    pub fn new(max_surfaces: u32, budget_bytes: u64) -> Self {
        Self {
            max_surfaces,
            budget: budget_bytes,
            used: 0,
            surfaces: BTreeMap::new(),
        }
    }

    /// Creates surface `id`, black, replacing any surface of that id. On error the old
    /// surface, if any, stays.
    pub fn create(
        &mut self,
        id: u32,
        width: u32,
        height: u32,
        format: u32,
    ) -> Result<(), DrawError> {
        if id >= self.max_surfaces {
            return Err(DrawError::SurfaceId(id));
        }
        if !matches!(
            format,
            SPICE_SURFACE_FMT_32_XRGB
                | SPICE_SURFACE_FMT_32_ARGB
                | SPICE_SURFACE_FMT_16_565
                | SPICE_SURFACE_FMT_16_555
        ) {
            return Err(DrawError::SurfaceFormat(format));
        }
        if width == 0 || height == 0 || width > MAX_SURFACE_SIZE || height > MAX_SURFACE_SIZE {
            return Err(DrawError::SurfaceSize { width, height });
        }
        let bytes = surface_bytes(width, height);
        let replaced = self.surfaces.get(&id).map_or(0, Surface::bytes);
        let available = self
            .budget
            .saturating_sub(self.used.saturating_sub(replaced));
        if bytes > available {
            return Err(DrawError::SurfaceTooLarge { bytes, available });
        }
        // Both sides are at most MAX_SURFACE_SIZE: the product fits in usize.
        let pixels = zeroed::<u32>(width as usize * height as usize)?;
        self.surfaces.insert(
            id,
            Surface {
                width,
                height,
                format,
                pixels,
            },
        );
        self.used = self.used.saturating_sub(replaced).saturating_add(bytes);
        Ok(())
    }

    /// Destroys surface `id`; whether it existed.
    pub fn destroy(&mut self, id: u32) -> bool {
        match self.surfaces.remove(&id) {
            Some(surface) => {
                self.used = self.used.saturating_sub(surface.bytes());
                true
            }
            None => false,
        }
    }

    pub fn destroy_all(&mut self) {
        self.surfaces.clear();
        self.used = 0;
    }

    pub fn get(&self, id: u32) -> Option<&Surface> {
        self.surfaces.get(&id)
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Surface> {
        self.surfaces.get_mut(&id)
    }

    /// Ids are 0..max_surfaces().
    pub fn max_surfaces(&self) -> u32 {
        self.max_surfaces
    }

    /// Bytes (width*height*4) the live surfaces take from the budget.
    pub fn used_bytes(&self) -> u64 {
        self.used
    }

    pub fn budget_bytes(&self) -> u64 {
        self.budget
    }

    /// The number of live surfaces.
    pub fn len(&self) -> usize {
        self.surfaces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.surfaces.is_empty()
    }
}
