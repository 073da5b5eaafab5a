//! Source images (QXLImage): uncompressed bitmaps in guest memory, and other surfaces.
//!
//! A bitmap keeps its raw bytes and is decoded a row at a time while drawing, so an image
//! costs its guest size once, not again as 32-bit pixels.

use super::guest::{offset, read_chunks, read_direct, Fields};
use super::layout::*;
use super::surfaces::Surfaces;
use super::{DrawError, QxlReader, Rect};

/// The largest image side accepted.
pub const MAX_IMAGE_SIZE: u32 = 16384;
/// The most bytes one image's data may take (stride * height).
pub const MAX_IMAGE_BYTES: u64 = 64 << 20;

const OPAQUE: u32 = 0xff00_0000;

/// A source image, its pixels as 0xAARRGGBB (alpha 0xff where the format has none).
pub enum Source {
    Bitmap(Bitmap),
    /// A copy of part of a surface, taken before drawing so a surface can be its own source.
    Snapshot(Snapshot),
}

pub struct Bitmap {
    format: u8,
    width: u32,
    height: u32,
    stride: usize,
    top_down: bool,
    palette: Vec<u32>,
    data: Vec<u8>,
}

pub struct Snapshot {
    area: Rect,
    pixels: Vec<u32>,
}

impl Source {
    /// Decodes the pixels `x0..x0 + out.len()` of row `y` into `out`. Callers stay inside
    /// the validated source area; anything outside decodes as transparent black rather than
    /// panicking.
    pub fn row(&self, y: u32, x0: u32, out: &mut [u32]) {
        match self {
            Source::Bitmap(bitmap) => bitmap.row(y, x0, out),
            Source::Snapshot(snapshot) => snapshot.row(y, x0, out),
        }
    }
}

/// Loads the QXLImage at `addr`, checking that `src_area` lies inside it.
pub fn load(
    reader: &dyn QxlReader,
    addr: u64,
    src_area: Rect,
    surfaces: &Surfaces,
) -> Result<Source, DrawError> {
    let descriptor = Fields::read(reader, addr, IMAGE_DESCRIPTOR_SIZE)?;
    let body = offset(addr, IMAGE_DESCRIPTOR_SIZE as u64)?;
    match descriptor.u8(IMAGE_TYPE) {
        SPICE_IMAGE_TYPE_BITMAP => {
            let bitmap = Fields::read(reader, body, BITMAP_SIZE)?;
            let bitmap = load_bitmap(reader, &bitmap)?;
            check_area(src_area, bitmap.width, bitmap.height)?;
            Ok(Source::Bitmap(bitmap))
        }
        SPICE_IMAGE_TYPE_SURFACE => {
            let fields = Fields::read(reader, body, SURFACE_IMAGE_SIZE)?;
            let id = fields.u32(SURFACE_IMAGE_ID);
            snapshot(surfaces, id, src_area).map(Source::Snapshot)
        }
        other @ (SPICE_IMAGE_TYPE_QUIC | SPICE_IMAGE_TYPE_LZ_PLT..=SPICE_IMAGE_TYPE_LZ4) => {
            Err(DrawError::UnsupportedImage(other))
        }
        other => Err(DrawError::UnknownImageType(other)),
    }
}

/// `area` must be a non-empty rectangle inside a `width` x `height` image.
fn check_area(area: Rect, width: u32, height: u32) -> Result<(), DrawError> {
    let inside = area.left >= 0
        && area.top >= 0
        && !area.is_empty()
        && i64::from(area.right) <= i64::from(width)
        && i64::from(area.bottom) <= i64::from(height);
    if inside {
        Ok(())
    } else {
        Err(DrawError::SourceArea {
            area,
            width,
            height,
        })
    }
}

/// Copies `area` of surface `id`, alpha made opaque unless the surface carries it.
pub fn snapshot(surfaces: &Surfaces, id: u32, area: Rect) -> Result<Snapshot, DrawError> {
    let surface = surfaces.get(id).ok_or(DrawError::NoSurface(id))?;
    check_area(area, surface.width, surface.height)?;
    let fill = if surface.has_alpha() { 0 } else { OPAQUE };
    let width = surface.width as usize;
    // check_area made the area non-negative and inside the surface.
    let (left, right) = (area.left as usize, area.right as usize);
    let mut pixels = Vec::new();
    pixels
        .try_reserve_exact(area.width() as usize * area.height() as usize)
        .map_err(|_| {
            DrawError::OutOfMemory(u64::from(area.width()) * u64::from(area.height()) * 4)
        })?;
    for y in area.top as usize..area.bottom as usize {
        let start = y * width;
        if let Some(row) = surface.pixels.get(start + left..start + right) {
            pixels.extend(row.iter().map(|p| p | fill));
        }
    }
    Ok(Snapshot { area, pixels })
}

impl Snapshot {
    fn row(&self, y: u32, x0: u32, out: &mut [u32]) {
        let width = self.area.width() as usize;
        let at = |v: u32, origin: i32| (i64::from(v) - i64::from(origin)).try_into().ok();
        let (Some(row), Some(col)): (Option<usize>, Option<usize>) =
            (at(y, self.area.top), at(x0, self.area.left))
        else {
            out.fill(0);
            return;
        };
        let start = row.saturating_mul(width).saturating_add(col);
        match self.pixels.get(start..start.saturating_add(out.len())) {
            Some(src) if col.saturating_add(out.len()) <= width => out.copy_from_slice(src),
            _ => out.fill(0),
        }
    }
}

fn bits_per_pixel(format: u8) -> Result<u64, DrawError> {
    Ok(match format {
        SPICE_BITMAP_FMT_1BIT_LE | SPICE_BITMAP_FMT_1BIT_BE => 1,
        SPICE_BITMAP_FMT_4BIT_LE | SPICE_BITMAP_FMT_4BIT_BE => 4,
        SPICE_BITMAP_FMT_8BIT => 8,
        SPICE_BITMAP_FMT_16BIT => 16,
        SPICE_BITMAP_FMT_24BIT => 24,
        SPICE_BITMAP_FMT_32BIT | SPICE_BITMAP_FMT_RGBA => 32,
        SPICE_BITMAP_FMT_8BIT_A => return Err(DrawError::UnsupportedBitmap(format)),
        _ => return Err(DrawError::UnknownBitmap(format)),
    })
}

/// Reads the QXLBitmap whose fields are `fields`, with its palette and pixel data.
fn load_bitmap(reader: &dyn QxlReader, fields: &Fields) -> Result<Bitmap, DrawError> {
    let format = fields.u8(BITMAP_FORMAT);
    let flags = fields.u8(BITMAP_FLAGS);
    let width = fields.u32(BITMAP_X);
    let height = fields.u32(BITMAP_Y);
    let stride = fields.u32(BITMAP_STRIDE);
    let bpp = bits_per_pixel(format)?;
    if width == 0 || height == 0 || width > MAX_IMAGE_SIZE || height > MAX_IMAGE_SIZE {
        return Err(DrawError::ImageSize { width, height });
    }
    if u64::from(stride) < (u64::from(width) * bpp).div_ceil(8) {
        return Err(DrawError::BadStride {
            stride,
            width,
            format,
        });
    }
    let bytes = u64::from(stride) * u64::from(height);
    if bytes > MAX_IMAGE_BYTES {
        return Err(DrawError::ImageSize { width, height });
    }
    let palette = if bpp <= 8 {
        let addr = fields.u64(BITMAP_PALETTE);
        if addr == 0 {
            return Err(DrawError::MissingPalette(format));
        }
        read_palette(reader, addr, 1 << bpp)?
    } else {
        Vec::new()
    };
    let data_addr = fields.u64(BITMAP_DATA);
    let data = if flags & QXL_BITMAP_DIRECT != 0 {
        read_direct(reader, data_addr, bytes)?
    } else {
        read_chunks(reader, data_addr, bytes)?
    };
    Ok(Bitmap {
        format,
        width,
        height,
        stride: stride as usize,
        top_down: flags & QXL_BITMAP_TOP_DOWN != 0,
        palette,
        data,
    })
}

/// The colours of the QXLPalette at `addr`, at most `max` of them (the indices the format
/// can express); an index past the guest's entries reads as black.
fn read_palette(reader: &dyn QxlReader, addr: u64, max: usize) -> Result<Vec<u32>, DrawError> {
    let head = Fields::read(reader, addr, PALETTE_HEADER_SIZE)?;
    let count = usize::from(head.u16(PALETTE_NUM_ENTS)).min(max);
    let ents = Fields::read(reader, offset(addr, PALETTE_HEADER_SIZE as u64)?, count * 4)?;
    let mut palette: Vec<u32> = (0..count).map(|i| OPAQUE | ents.u32(i * 4)).collect();
    palette.resize(max, OPAQUE);
    Ok(palette)
}

fn rgb555(v: u16) -> u32 {
    let expand = |c: u16| {
        let c = u32::from(c & 0x1f);
        (c << 3) | (c >> 2)
    };
    OPAQUE | expand(v >> 10) << 16 | expand(v >> 5) << 8 | expand(v)
}

impl Bitmap {
    fn row(&self, y: u32, x0: u32, out: &mut [u32]) {
        let line = if self.top_down {
            y
        } else {
            self.height.saturating_sub(1).saturating_sub(y)
        };
        let start = (line as usize).saturating_mul(self.stride);
        let Some(row) = self.data.get(start..start.saturating_add(self.stride)) else {
            out.fill(0);
            return;
        };
        let x0 = x0 as usize;
        let byte = |i: usize| row.get(i).copied().unwrap_or(0);
        let word = |i: usize| {
            row.get(i..i + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        let index = |i: usize| self.palette.get(i).copied().unwrap_or(OPAQUE);
        let xs = out.iter_mut().zip(x0..);
        match self.format {
            SPICE_BITMAP_FMT_32BIT => xs.for_each(|(p, x)| *p = OPAQUE | word(x * 4)),
            SPICE_BITMAP_FMT_RGBA => xs.for_each(|(p, x)| *p = word(x * 4)),
            SPICE_BITMAP_FMT_24BIT => xs.for_each(|(p, x)| {
                let (b, g, r) = (byte(x * 3), byte(x * 3 + 1), byte(x * 3 + 2));
                *p = OPAQUE | u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b);
            }),
            SPICE_BITMAP_FMT_16BIT => xs.for_each(|(p, x)| {
                *p = rgb555(u16::from_le_bytes([byte(x * 2), byte(x * 2 + 1)]));
            }),
            SPICE_BITMAP_FMT_8BIT => xs.for_each(|(p, x)| *p = index(usize::from(byte(x)))),
            SPICE_BITMAP_FMT_4BIT_BE | SPICE_BITMAP_FMT_4BIT_LE => {
                // BE: the first pixel of each byte is its high nibble.
                let first_high = self.format == SPICE_BITMAP_FMT_4BIT_BE;
                xs.for_each(|(p, x)| {
                    let b = byte(x / 2);
                    let high = (x % 2 == 0) == first_high;
                    *p = index(usize::from(if high { b >> 4 } else { b & 0xf }));
                });
            }
            SPICE_BITMAP_FMT_1BIT_BE | SPICE_BITMAP_FMT_1BIT_LE => {
                // BE: the first pixel of each byte is its most significant bit.
                let msb_first = self.format == SPICE_BITMAP_FMT_1BIT_BE;
                xs.for_each(|(p, x)| {
                    let bit = if msb_first { 7 - x % 8 } else { x % 8 };
                    *p = index(usize::from((byte(x / 8) >> bit) & 1));
                });
            }
            _ => out.fill(0),
        }
    }
}
