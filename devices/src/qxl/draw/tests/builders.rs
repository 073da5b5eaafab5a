//! A guest memory slot for tests and builders of the packed QXL structures that go in it.

use super::super::layout::*;
use super::super::{DrawError, QxlReader, Rect};

/// The slot's tag in the address's top bits (id 1, generation 1), as the device core
/// builds QXL addresses; an address without it belongs to no slot.
pub const SLOT: u64 = 0x0101 << 48;
const OFFSET_MASK: u64 = (1 << 48) - 1;

/// One memslot over a byte vector, bump-allocated.
pub struct Slot {
    pub mem: Vec<u8>,
    next: usize,
}

impl QxlReader for Slot {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DrawError> {
        let err = DrawError::OutOfRange {
            addr,
            len: buf.len() as u64,
        };
        if addr & !OFFSET_MASK != SLOT {
            return Err(err);
        }
        let start = (addr & OFFSET_MASK) as usize;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.mem.get(start..end))
            .ok_or(err)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl Slot {
    pub fn new(size: usize) -> Self {
        // Offset 0 stays unused so that a zero address is never valid by accident.
        Self {
            mem: vec![0; size],
            next: 64,
        }
    }

    /// Copies `bytes` into the slot; their address.
    pub fn put(&mut self, bytes: &[u8]) -> u64 {
        let at = self.next;
        self.mem[at..at + bytes.len()].copy_from_slice(bytes);
        self.next = (at + bytes.len()).next_multiple_of(8);
        SLOT | at as u64
    }

    /// Overwrites bytes at a slot address.
    pub fn write(&mut self, addr: u64, bytes: &[u8]) {
        let at = (addr & OFFSET_MASK) as usize;
        self.mem[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// `data` as a QXLDataChunk chain cut at the offsets `cuts`; the first chunk's address.
    pub fn chunks(&mut self, data: &[u8], cuts: &[usize]) -> u64 {
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(data.len());
        let mut next = 0;
        // Last chunk first, so that each chunk knows its successor.
        for piece in bounds.windows(2).rev() {
            next = self.put(&chunk(&data[piece[0]..piece[1]], next));
        }
        next
    }

    /// A QXLClipRects holding `rects` in one chunk.
    pub fn clip_rects(&mut self, rects: &[Rect]) -> u64 {
        let data: Vec<u8> = rects.iter().flat_map(rect_bytes).collect();
        let mut bytes = (rects.len() as u32).to_le_bytes().to_vec();
        bytes.extend(chunk(&data, 0));
        self.put(&bytes)
    }

    /// A QXLPalette.
    pub fn palette(&mut self, colors: &[u32]) -> u64 {
        let mut bytes = 7u64.to_le_bytes().to_vec();
        bytes.extend((colors.len() as u16).to_le_bytes());
        bytes.extend(colors.iter().flat_map(|c| c.to_le_bytes()));
        self.put(&bytes)
    }
}

/// A QXLDataChunk header followed by `data`.
pub fn chunk(data: &[u8], next: u64) -> Vec<u8> {
    let mut bytes = (data.len() as u32).to_le_bytes().to_vec();
    bytes.extend(0u64.to_le_bytes());
    bytes.extend(next.to_le_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// A QXLRect: top, left, bottom, right.
pub fn rect_bytes(r: &Rect) -> Vec<u8> {
    [r.top, r.left, r.bottom, r.right]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

pub fn rect(left: i32, top: i32, right: i32, bottom: i32) -> Rect {
    Rect::new(left, top, right, bottom)
}

/// Little-endian bytes written into a zeroed record at offsets.
pub struct Record(pub Vec<u8>);

impl Record {
    pub fn new(len: usize) -> Self {
        Self(vec![0; len])
    }

    pub fn at(mut self, offset: usize, bytes: &[u8]) -> Self {
        self.0[offset..offset + bytes.len()].copy_from_slice(bytes);
        self
    }

    pub fn u8(self, offset: usize, v: u8) -> Self {
        self.at(offset, &[v])
    }

    pub fn u16(self, offset: usize, v: u16) -> Self {
        self.at(offset, &v.to_le_bytes())
    }

    pub fn u32(self, offset: usize, v: u32) -> Self {
        self.at(offset, &v.to_le_bytes())
    }

    pub fn i32(self, offset: usize, v: i32) -> Self {
        self.at(offset, &v.to_le_bytes())
    }

    pub fn u64(self, offset: usize, v: u64) -> Self {
        self.at(offset, &v.to_le_bytes())
    }

    pub fn rect(self, offset: usize, r: Rect) -> Self {
        self.at(offset, &rect_bytes(&r))
    }
}

/// A QXLDrawable of `kind` on `surface` over `bbox`, no clip, with the type-specific `body`.
pub fn drawable(surface: u32, kind: u8, bbox: Rect, body: &[u8]) -> Record {
    Record::new(DRAWABLE_U)
        .u32(DRAWABLE_SURFACE_ID, surface)
        .u8(12, 1) // QXL_EFFECT_OPAQUE
        .u8(DRAWABLE_TYPE, kind)
        .rect(DRAWABLE_BBOX, bbox)
        .u32(DRAWABLE_CLIP + CLIP_TYPE, SPICE_CLIP_TYPE_NONE)
        .extend(body)
}

impl Record {
    pub fn extend(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// Sets a drawable's clip to the QXLClipRects at `rects`.
    pub fn clip(self, rects: u64) -> Self {
        self.u32(DRAWABLE_CLIP + CLIP_TYPE, SPICE_CLIP_TYPE_RECTS)
            .u64(DRAWABLE_CLIP + CLIP_DATA, rects)
    }
}

pub fn fill_body(color: u32, rop: u16) -> Vec<u8> {
    Record::new(FILL_SIZE)
        .u32(FILL_BRUSH + BRUSH_TYPE, SPICE_BRUSH_TYPE_SOLID)
        .u32(FILL_BRUSH + BRUSH_COLOR, color)
        .u16(FILL_ROP, rop)
        .0
}

/// A QXLCopy (also QXLBlend).
pub fn copy_body(image: u64, src_area: Rect, rop: u16) -> Vec<u8> {
    Record::new(COPY_SIZE)
        .u64(COPY_SRC_BITMAP, image)
        .rect(COPY_SRC_AREA, src_area)
        .u16(COPY_ROP, rop)
        .0
}

/// A QXLImage of type BITMAP.
pub fn bitmap(
    format: u8,
    flags: u8,
    width: u32,
    height: u32,
    stride: u32,
    palette: u64,
    data: u64,
) -> Vec<u8> {
    let b = IMAGE_DESCRIPTOR_SIZE;
    Record::new(IMAGE_DESCRIPTOR_SIZE + BITMAP_SIZE)
        .u8(IMAGE_TYPE, SPICE_IMAGE_TYPE_BITMAP)
        .u32(10, width)
        .u32(14, height)
        .u8(b + BITMAP_FORMAT, format)
        .u8(b + BITMAP_FLAGS, flags)
        .u32(b + BITMAP_X, width)
        .u32(b + BITMAP_Y, height)
        .u32(b + BITMAP_STRIDE, stride)
        .u64(b + BITMAP_PALETTE, palette)
        .u64(b + BITMAP_DATA, data)
        .0
}

/// A QXLImage of type SURFACE.
pub fn surface_image(id: u32) -> Vec<u8> {
    Record::new(IMAGE_DESCRIPTOR_SIZE + SURFACE_IMAGE_SIZE)
        .u8(IMAGE_TYPE, SPICE_IMAGE_TYPE_SURFACE)
        .u32(IMAGE_DESCRIPTOR_SIZE + SURFACE_IMAGE_ID, id)
        .0
}

/// Rows of 32-bit xRGB pixels as bitmap bytes, each row padded to `stride`.
pub fn rows_32(pixels: &[u32], width: usize, stride: usize) -> Vec<u8> {
    pixels
        .chunks(width)
        .flat_map(|row| {
            let mut bytes: Vec<u8> = row.iter().flat_map(|p| p.to_le_bytes()).collect();
            bytes.resize(stride, 0xee);
            bytes
        })
        .collect()
}

/// Puts a top-down 32-bit bitmap holding `pixels` (one chunk); the image's address.
pub fn put_bitmap_32(slot: &mut Slot, pixels: &[u32], width: u32) -> u64 {
    let height = pixels.len() as u32 / width;
    let data = slot.chunks(&rows_32(pixels, width as usize, width as usize * 4), &[]);
    slot.put(&bitmap(
        SPICE_BITMAP_FMT_32BIT,
        QXL_BITMAP_TOP_DOWN,
        width,
        height,
        width * 4,
        0,
        data,
    ))
}

/// A QXLSurfaceCmd.
pub fn surface_cmd(id: u32, kind: u8, format: u32, width: u32, height: u32) -> Vec<u8> {
    let c = SURFACE_CMD_CREATE;
    Record::new(SURFACE_CMD_SIZE)
        .u32(SURFACE_CMD_ID, id)
        .u8(SURFACE_CMD_TYPE, kind)
        .u32(c + SURFACE_FORMAT, format)
        .u32(c + SURFACE_WIDTH, width)
        .u32(c + SURFACE_HEIGHT, height)
        .i32(c + 12, (width * 4) as i32)
        .0
}
