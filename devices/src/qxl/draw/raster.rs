//! Pixel operations on a surface, over a clip region already inside it. Nothing here
//! fails once it starts writing: whatever can fail (reading, allocating) happens first.

use super::guest::zeroed;
use super::image::Source;
use super::layout::*;
use super::surfaces::Surface;
use super::{DrawError, Rect};

const OPAQUE: u32 = 0xff00_0000;
const RGB: u32 = 0x00ff_ffff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Or,
    And,
    Xor,
    Blackness,
    Whiteness,
    Invers,
}

/// A SPICE raster operation descriptor (SPICE_ROPD_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rop {
    op: Op,
    invert_src: bool,
    invert_dest: bool,
    invert_res: bool,
}

impl Rop {
    /// Parses `desc`; `src_invert` is the bit that inverts this drawable's source
    /// (SPICE_ROPD_INVERS_SRC for images, SPICE_ROPD_INVERS_BRUSH for fills). When several
    /// operation bits are set, the first in SPICE's order wins.
    pub fn parse(desc: u16, src_invert: u16) -> Result<Self, DrawError> {
        const OPS: [(u16, Op); 7] = [
            (SPICE_ROPD_OP_PUT, Op::Put),
            (SPICE_ROPD_OP_OR, Op::Or),
            (SPICE_ROPD_OP_AND, Op::And),
            (SPICE_ROPD_OP_XOR, Op::Xor),
            (SPICE_ROPD_OP_BLACKNESS, Op::Blackness),
            (SPICE_ROPD_OP_WHITENESS, Op::Whiteness),
            (SPICE_ROPD_OP_INVERS, Op::Invers),
        ];
        let op = OPS
            .iter()
            .find(|(bit, _)| desc & bit != 0)
            .map(|(_, op)| *op)
            .ok_or(DrawError::UnsupportedRop(desc))?;
        Ok(Self {
            op,
            invert_src: desc & src_invert != 0,
            invert_dest: desc & SPICE_ROPD_INVERS_DEST != 0,
            invert_res: desc & SPICE_ROPD_INVERS_RES != 0,
        })
    }

    /// Whether the result depends on the source (or brush) at all.
    pub fn needs_src(&self) -> bool {
        matches!(self.op, Op::Put | Op::Or | Op::And | Op::Xor)
    }

    /// Combines a source pixel (0xAARRGGBB) with a destination pixel. The colour bits
    /// follow the operation; alpha is the source's for PUT and opaque otherwise.
    pub fn apply(&self, src: u32, dst: u32) -> u32 {
        let s = if self.invert_src { !src } else { src };
        let d = if self.invert_dest { !dst } else { dst };
        let rgb = match self.op {
            Op::Put => s,
            Op::Or => s | d,
            Op::And => s & d,
            Op::Xor => s ^ d,
            Op::Blackness => 0,
            Op::Whiteness => RGB,
            Op::Invers => !d,
        };
        let rgb = if self.invert_res { !rgb } else { rgb };
        let alpha = if self.op == Op::Put {
            src & OPAQUE
        } else {
            OPAQUE
        };
        alpha | (rgb & RGB)
    }
}

/// Copies pixels except those whose colour is `key` (QXL_DRAW_TRANSPARENT).
pub fn transparent(key: u32) -> impl Fn(u32, u32) -> u32 {
    move |src, dst| {
        if (src ^ key) & RGB == 0 {
            dst
        } else {
            src | OPAQUE
        }
    }
}

/// Blends with a constant `alpha`; with `src_has_alpha`, the source is premultiplied ARGB
/// whose own alpha also weighs in (QXL_DRAW_ALPHA_BLEND).
pub fn alpha_blend(alpha: u8, src_has_alpha: bool) -> impl Fn(u32, u32) -> u32 {
    let alpha = u32::from(alpha);
    move |src, dst| {
        let channel = |v: u32, shift: u32| (v >> shift) & 0xff;
        let mix =
            |s: u32, d: u32, keep: u32, weight: u32| ((s * weight + d * keep + 127) / 255).min(255);
        // Premultiplied: the colour is already scaled by the source's own alpha.
        let (src_alpha, keep) = if src_has_alpha {
            let a = (channel(src, 24) * alpha + 127) / 255;
            (a, 255 - a)
        } else {
            (alpha, 255 - alpha)
        };
        let mut out = 0;
        for shift in [0, 8, 16] {
            out |= mix(channel(src, shift), channel(dst, shift), keep, alpha) << shift;
        }
        let out_alpha = (src_alpha + (channel(dst, 24) * keep + 127) / 255).min(255);
        out | out_alpha << 24
    }
}

/// What stays of a computed pixel in this surface: the alpha byte only where it has one.
fn keep_mask(surface: &Surface) -> u32 {
    if surface.has_alpha() {
        u32::MAX
    } else {
        RGB
    }
}

/// `rect` inside the surface, None when nothing is left. The region is already inside;
/// this keeps every index below in bounds even if it were not.
fn inside(surface: &Surface, rect: &Rect) -> Option<Rect> {
    let r = rect.intersect(&surface.rect());
    (!r.is_empty()).then_some(r)
}

/// The pixels of row `y`, columns `left..right` (all inside the surface).
fn row_mut(surface: &mut Surface, y: i32, left: i32, right: i32) -> Option<&mut [u32]> {
    let start = (y as usize).checked_mul(surface.width as usize)?;
    surface
        .pixels
        .get_mut(start.checked_add(left as usize)?..start.checked_add(right as usize)?)
}

fn grow(dirty: Option<Rect>, rect: Rect) -> Option<Rect> {
    Some(dirty.map_or(rect, |d| d.union(&rect)))
}

/// Replaces each pixel of `region` with `f(pixel)`; returns the changed bounding box.
pub fn fill(surface: &mut Surface, region: &[Rect], f: impl Fn(u32) -> u32) -> Option<Rect> {
    let mask = keep_mask(surface);
    let mut dirty = None;
    for rect in region {
        let Some(r) = inside(surface, rect) else {
            continue;
        };
        for y in r.top..r.bottom {
            if let Some(row) = row_mut(surface, y, r.left, r.right) {
                row.iter_mut().for_each(|p| *p = f(*p) & mask);
            }
        }
        dirty = grow(dirty, r);
    }
    dirty
}

/// The source coordinate for destination offset `i` when `dst` pixels cover `src`:
/// nearest neighbour, sampling at pixel centres (the identity when the sizes match).
fn scale(i: u32, src: u32, dst: u32) -> u32 {
    let v = (2 * u64::from(i) + 1) * u64::from(src) / (2 * u64::from(dst).max(1));
    u32::try_from(v)
        .unwrap_or(u32::MAX)
        .min(src.saturating_sub(1))
}

/// Draws `src_area` of `source` stretched over `bbox`, combining each source pixel with
/// the destination through `f`, inside `region` only; returns the changed bounding box.
pub fn blit(
    surface: &mut Surface,
    region: &[Rect],
    bbox: Rect,
    source: &Source,
    src_area: Rect,
    f: impl Fn(u32, u32) -> u32,
) -> Result<Option<Rect>, DrawError> {
    let (bw, bh) = (bbox.width(), bbox.height());
    let (sw, sh) = (src_area.width(), src_area.height());
    if bw == 0 || bh == 0 || sw == 0 || sh == 0 {
        return Ok(None);
    }
    let (src_left, src_top) = (
        u32::try_from(src_area.left).unwrap_or(0),
        u32::try_from(src_area.top).unwrap_or(0),
    );
    let mask = keep_mask(surface);
    let mut line = zeroed::<u32>(sw as usize)?;
    let mut decoded = None;
    let mut dirty = None;
    for rect in region {
        let Some(r) = inside(surface, rect) else {
            continue;
        };
        // The region lies inside bbox, so these offsets are not negative.
        let offset = |v: i32, origin: i32| u32::try_from(i64::from(v) - i64::from(origin)).ok();
        let Some(dx0) = offset(r.left, bbox.left) else {
            continue;
        };
        for y in r.top..r.bottom {
            let Some(dy) = offset(y, bbox.top) else {
                continue;
            };
            let sy = src_top.saturating_add(scale(dy, sh, bh));
            if decoded != Some(sy) {
                source.row(sy, src_left, &mut line);
                decoded = Some(sy);
            }
            let Some(row) = row_mut(surface, y, r.left, r.right) else {
                continue;
            };
            if sw == bw {
                let start = dx0 as usize;
                let src = line.get(start..).unwrap_or(&[]);
                row.iter_mut()
                    .zip(src)
                    .for_each(|(p, s)| *p = f(*s, *p) & mask);
            } else {
                for (p, dx) in row.iter_mut().zip(dx0..) {
                    let s = line.get(scale(dx, sw, bw) as usize).copied().unwrap_or(0);
                    *p = f(s, *p) & mask;
                }
            }
        }
        dirty = grow(dirty, r);
    }
    Ok(dirty)
}

/// Copies pixels within the surface: each pixel of `region` takes the pixel `(dx, dy)`
/// away (QXL_COPY_BITS). All sources are read before anything is written, so overlapping
/// moves (scrolling) come out right; pixels whose source is off the surface stay as they are.
pub fn copy_bits(
    surface: &mut Surface,
    region: &[Rect],
    dx: i64,
    dy: i64,
) -> Result<Option<Rect>, DrawError> {
    let bounds = surface.rect();
    let shift = |r: &Rect, x: i64, y: i64| -> Option<Rect> {
        let conv = |v: i64| i32::try_from(v).ok();
        Some(Rect::new(
            conv(i64::from(r.left) + x)?,
            conv(i64::from(r.top) + y)?,
            conv(i64::from(r.right) + x)?,
            conv(i64::from(r.bottom) + y)?,
        ))
    };
    let clamp = |v: i64| v.clamp(i64::from(i32::MIN), i64::from(i32::MAX));
    let width = surface.width as usize;
    let mut moves = Vec::new();
    for rect in region {
        // Clamped shifts keep the arithmetic in range; a source that far out is empty anyway.
        let Some(src) = shift(rect, clamp(dx), clamp(dy)).map(|s| s.intersect(&bounds)) else {
            continue;
        };
        if src.is_empty() {
            continue;
        }
        let Some(dst) = shift(&src, -clamp(dx), -clamp(dy)) else {
            continue;
        };
        let mut pixels = zeroed::<u32>(src.width() as usize * src.height() as usize)?;
        let rows = pixels.chunks_mut(src.width() as usize);
        for (y, out) in (src.top..src.bottom).zip(rows) {
            let start = y as usize * width;
            if let Some(line) = surface
                .pixels
                .get(start + src.left as usize..start + src.right as usize)
            {
                out.iter_mut().zip(line).for_each(|(o, p)| *o = *p);
            }
        }
        moves.push((dst, pixels));
    }
    let mut dirty = None;
    for (dst, pixels) in moves {
        let Some(r) = inside(surface, &dst) else {
            continue;
        };
        if r != dst {
            continue;
        }
        for (y, line) in (r.top..r.bottom).zip(pixels.chunks(r.width() as usize)) {
            if let Some(row) = row_mut(surface, y, r.left, r.right) {
                row.iter_mut().zip(line).for_each(|(p, s)| *p = *s);
            }
        }
        dirty = grow(dirty, r);
    }
    Ok(dirty)
}
