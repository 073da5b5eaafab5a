//! A drawable's clip (QXLClip) turned into the region it may touch: disjoint rectangles
//! inside the drawable's box and the surface. Disjoint, because XOR and INVERS applied
//! twice where two clip rectangles overlap would undo themselves.

use super::guest::{offset, read_chunks, Fields, MAX_CLIP_RECTS};
use super::layout::{CLIP_DATA, CLIP_RECTS_CHUNK, CLIP_RECTS_NUM, CLIP_TYPE, RECT_SIZE};
use super::layout::{SPICE_CLIP_TYPE_NONE, SPICE_CLIP_TYPE_RECTS};
use super::{DrawError, QxlReader, Rect};

/// The region of the drawable whose QXLClip is `clip`, limited to `bounds`.
pub fn region(reader: &dyn QxlReader, clip: &Fields, bounds: Rect) -> Result<Vec<Rect>, DrawError> {
    match clip.u32(CLIP_TYPE) {
        SPICE_CLIP_TYPE_NONE => Ok(if bounds.is_empty() {
            Vec::new()
        } else {
            vec![bounds]
        }),
        SPICE_CLIP_TYPE_RECTS => {
            let rects = read_rects(reader, clip.u64(CLIP_DATA))?;
            Ok(disjoint(rects.iter().map(|r| r.intersect(&bounds))))
        }
        other => Err(DrawError::UnknownClipType(other)),
    }
}

/// The QXLRects of the QXLClipRects at `addr`.
fn read_rects(reader: &dyn QxlReader, addr: u64) -> Result<Vec<Rect>, DrawError> {
    let head = Fields::read(reader, offset(addr, CLIP_RECTS_NUM)?, 4)?;
    let count = head.u32(0);
    if count > MAX_CLIP_RECTS {
        return Err(DrawError::TooManyClipRects(count));
    }
    let need = u64::from(count) * RECT_SIZE as u64;
    let bytes = read_chunks(reader, offset(addr, CLIP_RECTS_CHUNK)?, need)?;
    let fields = Fields::from_vec(bytes);
    (0..count as usize)
        .map(|i| {
            let rect = fields.rect(i * RECT_SIZE);
            if rect.is_inverted() {
                Err(DrawError::BadRect(rect))
            } else {
                Ok(rect)
            }
        })
        .collect()
}

/// Splits possibly overlapping rectangles into disjoint ones covering the same pixels:
/// horizontal bands between consecutive edges, and in each band the merged spans of the
/// rectangles crossing it.
pub fn disjoint(rects: impl Iterator<Item = Rect>) -> Vec<Rect> {
    let rects: Vec<Rect> = rects.filter(|r| !r.is_empty()).collect();
    if rects.len() <= 1 {
        return rects;
    }
    let mut edges: Vec<i32> = rects.iter().flat_map(|r| [r.top, r.bottom]).collect();
    edges.sort_unstable();
    edges.dedup();
    let mut out = Vec::new();
    let mut spans: Vec<(i32, i32)> = Vec::new();
    for band in edges.windows(2) {
        let &[top, bottom] = band else {
            continue;
        };
        spans.clear();
        spans.extend(
            rects
                .iter()
                .filter(|r| r.top <= top && r.bottom >= bottom)
                .map(|r| (r.left, r.right)),
        );
        spans.sort_unstable();
        let mut current: Option<(i32, i32)> = None;
        for &(left, right) in &spans {
            current = match current {
                Some((l, r)) if left <= r => Some((l, r.max(right))),
                Some((l, r)) => {
                    out.push(Rect::new(l, top, r, bottom));
                    Some((left, right))
                }
                None => Some((left, right)),
            };
        }
        if let Some((l, r)) = current {
            out.push(Rect::new(l, top, r, bottom));
        }
    }
    out
}
