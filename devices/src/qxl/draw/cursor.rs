//! QXL_CMD_CURSOR (QXLCursorCmd) and the cursor shapes it sets (QXLCursor).

use super::guest::{offset, read_chunks, Fields};
use super::layout::*;
use super::{DrawError, QxlReader};

/// The largest cursor side accepted (Linux sends 64x64).
pub const MAX_CURSOR_SIZE: u16 = 512;

/// A cursor image as premultiplied-or-not 0xAARRGGBB, as the guest gave it, row-major.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CursorShape {
    pub width: u16,
    pub height: u16,
    pub hot_x: u16,
    pub hot_y: u16,
    pub argb: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorCommand {
    Set {
        x: i16,
        y: i16,
        visible: bool,
        shape: CursorShape,
    },
    Move {
        x: i16,
        y: i16,
    },
    Hide,
    Trail,
}

/// Parses the QXLCursorCmd at `addr`; SET also reads its QXLCursor shape
/// (SPICE_CURSOR_TYPE_ALPHA or MONO).
pub fn cursor_command(reader: &dyn QxlReader, addr: u64) -> Result<CursorCommand, DrawError> {
    let cmd = Fields::read(reader, addr, CURSOR_CMD_SIZE)?;
    let (x, y) = (cmd.i16(CURSOR_CMD_X), cmd.i16(CURSOR_CMD_Y));
    match cmd.u8(CURSOR_CMD_TYPE) {
        QXL_CURSOR_SET => Ok(CursorCommand::Set {
            x,
            y,
            visible: cmd.u8(CURSOR_CMD_VISIBLE) != 0,
            shape: read_shape(reader, cmd.u64(CURSOR_CMD_SHAPE))?,
        }),
        QXL_CURSOR_MOVE => Ok(CursorCommand::Move { x, y }),
        QXL_CURSOR_HIDE => Ok(CursorCommand::Hide),
        QXL_CURSOR_TRAIL => Ok(CursorCommand::Trail),
        other => Err(DrawError::UnknownCursorCommand(other)),
    }
}

/// Reads the QXLCursor at `addr`; its pixels follow in a data chunk chain.
fn read_shape(reader: &dyn QxlReader, addr: u64) -> Result<CursorShape, DrawError> {
    let header = Fields::read(reader, addr, CURSOR_HEADER_SIZE)?;
    let kind = header.u16(CURSOR_TYPE);
    let width = header.u16(CURSOR_WIDTH);
    let height = header.u16(CURSOR_HEIGHT);
    if !matches!(kind, SPICE_CURSOR_TYPE_ALPHA | SPICE_CURSOR_TYPE_MONO) {
        return Err(if kind <= SPICE_CURSOR_TYPE_COLOR32 {
            DrawError::UnsupportedCursor(kind)
        } else {
            DrawError::UnknownCursorType(kind)
        });
    }
    if width > MAX_CURSOR_SIZE || height > MAX_CURSOR_SIZE {
        return Err(DrawError::CursorSize { width, height });
    }
    let (w, h) = (usize::from(width), usize::from(height));
    let chunks = offset(addr, CURSOR_CHUNK)?;
    let argb = if kind == SPICE_CURSOR_TYPE_ALPHA {
        let data = read_chunks(reader, chunks, (w * h * 4) as u64)?;
        data.chunks_exact(4)
            .map(|p| p.try_into().map_or(0, u32::from_le_bytes))
            .collect()
    } else {
        mono(reader, chunks, w, h)?
    };
    Ok(CursorShape {
        width,
        height,
        hot_x: header.u16(CURSOR_HOT_X),
        hot_y: header.u16(CURSOR_HOT_Y),
        argb,
    })
}

/// A monochrome cursor: an AND mask then an XOR mask, one bit a pixel, most significant
/// bit first, rows padded to bytes.
fn mono(reader: &dyn QxlReader, chunks: u64, w: usize, h: usize) -> Result<Vec<u32>, DrawError> {
    let stride = w.div_ceil(8);
    let data = read_chunks(reader, chunks, (2 * stride * h) as u64)?;
    let (and, xor) = data.split_at_checked(stride * h).unwrap_or((&[], &[]));
    let bit = |mask: &[u8], x: usize, y: usize| {
        mask.get(y * stride + x / 8)
            .is_some_and(|b| b & (0x80 >> (x % 8)) != 0)
    };
    let mut argb = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            argb.push(match (bit(and, x, y), bit(xor, x, y)) {
                (true, false) => 0,
                (false, false) => 0xff00_0000,
                (false, true) => 0xffff_ffff,
                // "Invert what is under": ARGB cannot say that; black shows on the light
                // backgrounds such cursors (text beams) are mostly used over.
                (true, true) => 0xff00_0000,
            });
        }
    }
    Ok(argb)
}
