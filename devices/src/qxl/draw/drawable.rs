//! QXL_CMD_DRAW (QXLDrawable) and QXL_CMD_SURFACE (QXLSurfaceCmd).
//!
//! A drawable is turned into a [`Plan`] first, reading everything it points to; only a
//! complete plan touches the surface.

use super::clip;
use super::guest::{offset, Fields};
use super::image::{self, Source};
use super::layout::*;
use super::raster::{self, Rop};
use super::surfaces::Surfaces;
use super::{DrawError, DrawOutcome, QxlReader, Rect};

const OPAQUE: u32 = 0xff00_0000;

/// How source pixels combine with the destination.
enum Combine {
    Rop(Rop),
    /// Skip source pixels of this colour.
    Transparent(u32),
    Alpha {
        alpha: u8,
        src_has_alpha: bool,
    },
}

/// A drawable, read and checked, ready to draw.
enum Plan {
    Nothing,
    /// A raster operation with a solid brush colour.
    Fill(Rop, u32),
    Blit {
        source: Source,
        src_area: Rect,
        combine: Combine,
    },
    /// Copy from (dx, dy) away on the same surface.
    CopyBits {
        dx: i64,
        dy: i64,
    },
}

/// Executes the QXLDrawable at `drawable` (a QXL address): reads it and everything it
/// points to through `reader`, draws into `surfaces`.
pub fn draw(
    reader: &dyn QxlReader,
    drawable: u64,
    surfaces: &mut Surfaces,
) -> Result<DrawOutcome, DrawError> {
    let head = Fields::read(reader, drawable, DRAWABLE_U)?;
    let surface_id = head.u32(DRAWABLE_SURFACE_ID);
    let kind = head.u8(DRAWABLE_TYPE);
    let body_size = match kind {
        QXL_DRAW_NOP => {
            return Ok(DrawOutcome {
                surface_id,
                dirty: None,
            })
        }
        QXL_DRAW_FILL => FILL_SIZE,
        QXL_DRAW_OPAQUE => OPAQUE_SIZE,
        QXL_DRAW_COPY | QXL_DRAW_BLEND => COPY_SIZE,
        QXL_COPY_BITS => COPY_BITS_SIZE,
        QXL_DRAW_BLACKNESS | QXL_DRAW_WHITENESS | QXL_DRAW_INVERS => BLACKNESS_SIZE,
        QXL_DRAW_TRANSPARENT => TRANSPARENT_SIZE,
        QXL_DRAW_ALPHA_BLEND => ALPHA_SIZE,
        QXL_DRAW_ROP3 | QXL_DRAW_STROKE | QXL_DRAW_TEXT | QXL_DRAW_COMPOSITE => {
            return Err(DrawError::UnsupportedDrawType(kind))
        }
        _ => return Err(DrawError::UnknownDrawType(kind)),
    };
    if surface_id >= surfaces.max_surfaces() {
        return Err(DrawError::SurfaceId(surface_id));
    }
    let surface = surfaces
        .get(surface_id)
        .ok_or(DrawError::NoSurface(surface_id))?;
    let bbox = head.rect(DRAWABLE_BBOX);
    // As SPICE does: a box with a negative edge is a broken drawable, not one to clip.
    if bbox.is_inverted() || bbox.left < 0 || bbox.top < 0 {
        return Err(DrawError::BadRect(bbox));
    }
    let bounds = bbox.intersect(&surface.rect());
    let region = clip::region(reader, &head.sub(DRAWABLE_CLIP), bounds)?;
    let body = Fields::read(reader, offset(drawable, DRAWABLE_U as u64)?, body_size)?;
    let plan = plan(reader, kind, &body, bbox, surfaces)?;

    let surface = surfaces
        .get_mut(surface_id)
        .ok_or(DrawError::NoSurface(surface_id))?;
    let dirty = match plan {
        Plan::Nothing => None,
        Plan::Fill(rop, color) => raster::fill(surface, &region, |d| rop.apply(color, d)),
        Plan::Blit {
            source,
            src_area,
            combine,
        } => match combine {
            Combine::Rop(rop) => {
                raster::blit(surface, &region, bbox, &source, src_area, |s, d| {
                    rop.apply(s, d)
                })?
            }
            Combine::Transparent(key) => raster::blit(
                surface,
                &region,
                bbox,
                &source,
                src_area,
                raster::transparent(key),
            )?,
            Combine::Alpha {
                alpha,
                src_has_alpha,
            } => raster::blit(
                surface,
                &region,
                bbox,
                &source,
                src_area,
                raster::alpha_blend(alpha, src_has_alpha),
            )?,
        },
        Plan::CopyBits { dx, dy } => raster::copy_bits(surface, &region, dx, dy)?,
    };
    Ok(DrawOutcome { surface_id, dirty })
}

/// A QXLQMask naming a bitmap: only "no mask" is drawn.
fn check_mask(body: &Fields, at: usize) -> Result<(), DrawError> {
    if body.u64(at + QMASK_BITMAP) != 0 {
        return Err(DrawError::UnsupportedMask);
    }
    Ok(())
}

/// Reads the type-specific part `body` of a drawable of type `kind`.
fn plan(
    reader: &dyn QxlReader,
    kind: u8,
    body: &Fields,
    bbox: Rect,
    surfaces: &Surfaces,
) -> Result<Plan, DrawError> {
    let blit = |image_at: usize, area_at: usize, combine: Combine| -> Result<Plan, DrawError> {
        let src_area = body.rect(area_at);
        let source = image::load(reader, body.u64(image_at), src_area, surfaces)?;
        Ok(Plan::Blit {
            source,
            src_area,
            combine,
        })
    };
    match kind {
        QXL_DRAW_FILL => {
            check_mask(body, FILL_MASK)?;
            let rop = Rop::parse(body.u16(FILL_ROP), SPICE_ROPD_INVERS_BRUSH)?;
            match body.u32(FILL_BRUSH + BRUSH_TYPE) {
                SPICE_BRUSH_TYPE_SOLID => {
                    Ok(Plan::Fill(rop, OPAQUE | body.u32(FILL_BRUSH + BRUSH_COLOR)))
                }
                // No brush: only the operations that ignore it draw anything.
                SPICE_BRUSH_TYPE_NONE if rop.needs_src() => Ok(Plan::Nothing),
                SPICE_BRUSH_TYPE_NONE => Ok(Plan::Fill(rop, OPAQUE)),
                SPICE_BRUSH_TYPE_PATTERN => Err(DrawError::UnsupportedBrush),
                other => Err(DrawError::UnknownBrush(other)),
            }
        }
        // The brush of OPAQUE only matters for ROP3-style combinations; it is ignored.
        QXL_DRAW_OPAQUE => {
            check_mask(body, OPAQUE_MASK)?;
            let rop = Rop::parse(body.u16(OPAQUE_ROP), SPICE_ROPD_INVERS_SRC)?;
            blit(OPAQUE_SRC_BITMAP, OPAQUE_SRC_AREA, Combine::Rop(rop))
        }
        QXL_DRAW_COPY | QXL_DRAW_BLEND => {
            check_mask(body, COPY_MASK)?;
            let rop = Rop::parse(body.u16(COPY_ROP), SPICE_ROPD_INVERS_SRC)?;
            blit(COPY_SRC_BITMAP, COPY_SRC_AREA, Combine::Rop(rop))
        }
        QXL_DRAW_TRANSPARENT => {
            let key = body.u32(TRANSPARENT_SRC_COLOR);
            blit(
                TRANSPARENT_SRC_BITMAP,
                TRANSPARENT_SRC_AREA,
                Combine::Transparent(key),
            )
        }
        QXL_DRAW_ALPHA_BLEND => {
            let flags = body.u16(ALPHA_FLAGS);
            let combine = Combine::Alpha {
                alpha: body.u8(ALPHA_ALPHA),
                src_has_alpha: flags & SPICE_ALPHA_FLAGS_SRC_SURFACE_HAS_ALPHA != 0,
            };
            blit(ALPHA_SRC_BITMAP, ALPHA_SRC_AREA, combine)
        }
        QXL_COPY_BITS => Ok(Plan::CopyBits {
            dx: i64::from(body.i32(COPY_BITS_X)) - i64::from(bbox.left),
            dy: i64::from(body.i32(COPY_BITS_Y)) - i64::from(bbox.top),
        }),
        QXL_DRAW_BLACKNESS | QXL_DRAW_WHITENESS | QXL_DRAW_INVERS => {
            check_mask(body, BLACKNESS_MASK)?;
            let op = match kind {
                QXL_DRAW_BLACKNESS => SPICE_ROPD_OP_BLACKNESS,
                QXL_DRAW_WHITENESS => SPICE_ROPD_OP_WHITENESS,
                _ => SPICE_ROPD_OP_INVERS,
            };
            Ok(Plan::Fill(Rop::parse(op, 0)?, OPAQUE))
        }
        _ => Ok(Plan::Nothing),
    }
}

/// Parses the QXLSurfaceCmd at `addr` and applies it (CREATE makes a black host-side
/// surface of its size and format; the guest's `data` memory is not used; DESTROY).
/// Returns the surface id touched.
pub fn surface_command(
    reader: &dyn QxlReader,
    addr: u64,
    surfaces: &mut Surfaces,
) -> Result<u32, DrawError> {
    let cmd = Fields::read(reader, addr, SURFACE_CMD_SIZE)?;
    let id = cmd.u32(SURFACE_CMD_ID);
    match cmd.u8(SURFACE_CMD_TYPE) {
        QXL_SURFACE_CMD_CREATE => {
            let create = cmd.sub(SURFACE_CMD_CREATE);
            surfaces.create(
                id,
                create.u32(SURFACE_WIDTH),
                create.u32(SURFACE_HEIGHT),
                create.u32(SURFACE_FORMAT),
            )?;
            Ok(id)
        }
        QXL_SURFACE_CMD_DESTROY => {
            if id >= surfaces.max_surfaces() {
                return Err(DrawError::SurfaceId(id));
            }
            if !surfaces.destroy(id) {
                return Err(DrawError::NoSurface(id));
            }
            Ok(id)
        }
        other => Err(DrawError::UnknownSurfaceCommand(other)),
    }
}
