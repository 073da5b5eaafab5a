//! Every refusal: an error, never a panic, and the surface exactly as it was.

use super::builders::*;
use super::*;

/// Whether an error is the one a case expects.
type Expect = fn(&DrawError) -> bool;

/// Draws the drawable at `addr`, expecting an error that `expected` accepts and no change.
fn refused(slot: &Slot, addr: u64, expected: impl Fn(&DrawError) -> bool) -> DrawError {
    let mut surfaces = surfaces();
    let before = surfaces.get(0).unwrap().pixels.clone();
    let err = draw(slot, addr, &mut surfaces).expect_err("the draw should be refused");
    assert!(expected(&err), "unexpected error: {err}");
    assert_eq!(
        surfaces.get(0).unwrap().pixels,
        before,
        "{err}: surface changed"
    );
    err
}

/// A valid 4x4 COPY of a 32-bit image with its data chunk at `data`.
fn copy_with_data(slot: &mut Slot, data: u64, stride: u32) -> Record {
    let image = slot.put(&bitmap(
        SPICE_BITMAP_FMT_32BIT,
        QXL_BITMAP_TOP_DOWN,
        4,
        4,
        stride,
        0,
        data,
    ));
    copy(image, rect(0, 0, 4, 4), rect(0, 0, 4, 4))
}

#[test]
fn addresses_outside_the_slot() {
    let mut slot = Slot::new(4096);
    // The drawable itself: past the slot's end, in another slot, at zero, wrapping.
    for addr in [SLOT | 4000, SLOT | (1 << 40), 0x0202 << 48, 0, u64::MAX] {
        refused(&slot, addr, |e| matches!(e, DrawError::OutOfRange { .. }));
    }
    // The image, the chunk, and the chunk's data (a size reaching past the slot).
    let bad_image = copy(SLOT | 5000, rect(0, 0, 4, 4), rect(0, 0, 4, 4));
    let addr = slot.put(&bad_image.0);
    refused(&slot, addr, |e| matches!(e, DrawError::OutOfRange { .. }));
    let d = copy_with_data(&mut slot, 0x0303 << 48, 16);
    let addr = slot.put(&d.0);
    refused(&slot, addr, |e| matches!(e, DrawError::OutOfRange { .. }));
    // A chunk at the very end of the slot, claiming the 64 bytes the image needs.
    let data = SLOT | (4096 - 30);
    slot.write(data, &chunk(&[0; 10], 0));
    slot.write(data, &64u32.to_le_bytes());
    let d = copy_with_data(&mut slot, data, 16);
    let addr = slot.put(&d.0);
    refused(&slot, addr, |e| matches!(e, DrawError::OutOfRange { .. }));
}

#[test]
fn chunk_chains_that_loop_run_long_or_fall_short() {
    let mut slot = Slot::new(1 << 20);
    // A chunk whose next is itself, and a two-chunk cycle.
    let looped = slot.put(&chunk(&[0; 16], 0));
    slot.write(looped + CHUNK_NEXT, &looped.to_le_bytes());
    let d = copy_with_data(&mut slot, looped, 16);
    let addr = slot.put(&d.0);
    refused(
        &slot,
        addr,
        |e| matches!(e, DrawError::ChunkLoop(a) if *a == looped),
    );
    let a = slot.put(&chunk(&[0; 4], 0));
    let b = slot.put(&chunk(&[0; 4], a));
    slot.write(a + CHUNK_NEXT, &b.to_le_bytes());
    let d = copy_with_data(&mut slot, a, 16);
    let addr = slot.put(&d.0);
    refused(&slot, addr, |e| matches!(e, DrawError::ChunkLoop(_)));

    // More chunks than allowed, each empty.
    let mut next = 0;
    for _ in 0..MAX_CHUNKS + 1 {
        next = slot.put(&chunk(&[], next));
    }
    let d = copy_with_data(&mut slot, next, 16);
    let addr = slot.put(&d.0);
    refused(&slot, addr, |e| matches!(e, DrawError::TooManyChunks));

    // A chunk claiming 4 GiB, and one holding too little.
    let huge = slot.put(&chunk(&[0; 64], 0));
    slot.write(huge, &u32::MAX.to_le_bytes());
    let d = copy_with_data(&mut slot, huge, 16);
    let addr = slot.put(&d.0);
    refused(&slot, addr, |e| matches!(e, DrawError::ChunkTooLong { .. }));
    let short = slot.put(&chunk(&[0; 63], 0));
    let d = copy_with_data(&mut slot, short, 16);
    let addr = slot.put(&d.0);
    refused(&slot, addr, |e| {
        matches!(e, DrawError::ChunkTooShort { have: 63, need: 64 })
    });
}

#[test]
fn images_too_big_or_malformed() {
    let mut slot = Slot::new(1 << 16);
    let data = slot.chunks(&[0; 64], &[]);
    let palette = slot.palette(&[0, 1]);
    let cases: [(u8, u32, u32, u32, u64, Expect); 8] = [
        (SPICE_BITMAP_FMT_32BIT, 20000, 1, 80000, 0, |e| {
            matches!(e, DrawError::ImageSize { .. })
        }),
        (SPICE_BITMAP_FMT_32BIT, 16384, 16384, 65536, 0, |e| {
            matches!(e, DrawError::ImageSize { .. })
        }),
        (SPICE_BITMAP_FMT_32BIT, 4, 4, u32::MAX, 0, |e| {
            matches!(e, DrawError::ImageSize { .. })
        }),
        (SPICE_BITMAP_FMT_32BIT, 0, 4, 16, 0, |e| {
            matches!(e, DrawError::ImageSize { .. })
        }),
        (SPICE_BITMAP_FMT_32BIT, 4, 4, 0, 0, |e| {
            matches!(e, DrawError::BadStride { .. })
        }),
        (SPICE_BITMAP_FMT_8BIT, 4, 4, 4, 0, |e| {
            matches!(e, DrawError::MissingPalette(5))
        }),
        (SPICE_BITMAP_FMT_8BIT_A, 4, 4, 4, palette, |e| {
            matches!(e, DrawError::UnsupportedBitmap(10)) && e.is_unsupported()
        }),
        (0, 4, 4, 16, 0, |e| {
            matches!(e, DrawError::UnknownBitmap(0)) && !e.is_unsupported()
        }),
    ];
    for (format, width, height, stride, palette, expected) in cases {
        let image = slot.put(&bitmap(
            format,
            QXL_BITMAP_TOP_DOWN,
            width,
            height,
            stride,
            palette,
            data,
        ));
        let addr = slot.put(&copy(image, rect(0, 0, 4, 4), rect(0, 0, 4, 4)).0);
        refused(&slot, addr, expected);
    }

    // Image types: unknown, and compressed ones this renderer does not decode.
    for (kind, unsupported) in [
        (2u8, false),
        (50, false),
        (255, false),
        (1, true),
        (103, true),
        (109, true),
    ] {
        let image = slot.put(&Record::new(48).u8(IMAGE_TYPE, kind).0);
        let addr = slot.put(&copy(image, rect(0, 0, 4, 4), rect(0, 0, 4, 4)).0);
        let err = refused(&slot, addr, |e| {
            matches!(
                e,
                DrawError::UnknownImageType(_) | DrawError::UnsupportedImage(_)
            )
        });
        assert_eq!(err.is_unsupported(), unsupported, "{err}");
    }

    // Source areas outside the image, inverted or empty; a missing source surface.
    let image = put_bitmap_32(&mut slot, &[0; 16], 4);
    for area in [
        rect(0, 0, 5, 4),
        rect(-1, 0, 3, 4),
        rect(3, 0, 1, 4),
        rect(0, 0, 0, 0),
        rect(i32::MIN, i32::MIN, i32::MAX, i32::MAX),
    ] {
        let addr = slot.put(&copy(image, rect(0, 0, 4, 4), area).0);
        refused(&slot, addr, |e| matches!(e, DrawError::SourceArea { .. }));
    }
    let image = slot.put(&surface_image(3));
    let addr = slot.put(&copy(image, rect(0, 0, 4, 4), rect(0, 0, 1, 1)).0);
    refused(&slot, addr, |e| matches!(e, DrawError::NoSurface(3)));
}

#[test]
fn drawables_of_unknown_or_unsupported_kinds() {
    let mut slot = Slot::new(1 << 16);
    for kind in [15u8, 99, 255] {
        let addr = slot.put(&drawable(0, kind, rect(0, 0, 4, 4), &[0; 64]).0);
        let err = refused(
            &slot,
            addr,
            |e| matches!(e, DrawError::UnknownDrawType(k) if *k == kind),
        );
        assert!(!err.is_unsupported());
    }
    for kind in [
        QXL_DRAW_ROP3,
        QXL_DRAW_STROKE,
        QXL_DRAW_TEXT,
        QXL_DRAW_COMPOSITE,
    ] {
        let addr = slot.put(&drawable(0, kind, rect(0, 0, 4, 4), &[0; 64]).0);
        let err = refused(&slot, addr, |e| {
            matches!(e, DrawError::UnsupportedDrawType(_))
        });
        assert!(is_unsupported(&err));
    }
    // Masks with a bitmap, pattern brushes, operation-less descriptors, odd brushes.
    let fill = |body: Vec<u8>| drawable(0, QXL_DRAW_FILL, rect(0, 0, 4, 4), &body);
    let masked = Record(fill_body(1, SPICE_ROPD_OP_PUT))
        .u64(FILL_MASK + QMASK_BITMAP, SLOT | 64)
        .0;
    let pattern = Record(fill_body(1, SPICE_ROPD_OP_PUT))
        .u32(FILL_BRUSH, SPICE_BRUSH_TYPE_PATTERN)
        .0;
    let odd = Record(fill_body(1, SPICE_ROPD_OP_PUT)).u32(FILL_BRUSH, 9).0;
    let cases: [(Vec<u8>, Expect); 5] = [
        (masked, |e| matches!(e, DrawError::UnsupportedMask)),
        (pattern, |e| matches!(e, DrawError::UnsupportedBrush)),
        (fill_body(1, 0), |e| {
            matches!(e, DrawError::UnsupportedRop(0))
        }),
        (fill_body(1, SPICE_ROPD_INVERS_RES), |e| {
            matches!(e, DrawError::UnsupportedRop(_))
        }),
        (odd, |e| matches!(e, DrawError::UnknownBrush(9))),
    ];
    for (body, expected) in cases {
        let addr = slot.put(&fill(body).0);
        refused(&slot, addr, expected);
    }
    // A surface that does not exist, or an id past the table.
    for (id, nosurface) in [(1u32, true), (4, false), (u32::MAX, false)] {
        let addr = slot.put(&drawable(id, QXL_DRAW_FILL, rect(0, 0, 4, 4), &fill_body(1, 8)).0);
        refused(&slot, addr, |e| {
            if nosurface {
                matches!(e, DrawError::NoSurface(_))
            } else {
                matches!(e, DrawError::SurfaceId(_))
            }
        });
    }
}

#[test]
fn broken_rectangles_and_clips() {
    let mut slot = Slot::new(1 << 16);
    let fill = |bbox| drawable(0, QXL_DRAW_FILL, bbox, &fill_body(0x42, SPICE_ROPD_OP_PUT));
    for bbox in [
        rect(4, 0, 2, 4),
        rect(0, 4, 4, 2),
        rect(-1, 0, 4, 4),
        rect(0, i32::MIN, 4, 4),
        rect(i32::MIN, i32::MIN, i32::MAX, i32::MAX),
        rect(i32::MAX, 0, i32::MIN, 4),
    ] {
        let addr = slot.put(&fill(bbox).0);
        refused(
            &slot,
            addr,
            |e| matches!(e, DrawError::BadRect(r) if *r == bbox),
        );
    }
    // 2^31 clip rectangles (the chunk holds one).
    let clip = slot.clip_rects(&[rect(0, 0, 4, 4)]);
    slot.write(clip, &(1u32 << 31).to_le_bytes());
    let addr = slot.put(&fill(rect(0, 0, 4, 4)).clip(clip).0);
    refused(&slot, addr, |e| {
        matches!(e, DrawError::TooManyClipRects(0x8000_0000))
    });
    // A count within bounds but more than the chunk holds.
    let clip = slot.clip_rects(&[rect(0, 0, 4, 4)]);
    slot.write(clip, &2u32.to_le_bytes());
    let addr = slot.put(&fill(rect(0, 0, 4, 4)).clip(clip).0);
    refused(&slot, addr, |e| {
        matches!(e, DrawError::ChunkTooShort { .. })
    });
    // An inverted clip rectangle after a good one; an unknown clip type; a clip at zero.
    let clip = slot.clip_rects(&[rect(0, 0, 2, 2), rect(3, 3, 1, 1)]);
    let addr = slot.put(&fill(rect(0, 0, 4, 4)).clip(clip).0);
    refused(&slot, addr, |e| matches!(e, DrawError::BadRect(_)));
    let addr = slot.put(&fill(rect(0, 0, 4, 4)).u32(DRAWABLE_CLIP + CLIP_TYPE, 2).0);
    refused(&slot, addr, |e| matches!(e, DrawError::UnknownClipType(2)));
    let addr = slot.put(&fill(rect(0, 0, 4, 4)).clip(0).0);
    refused(&slot, addr, |e| matches!(e, DrawError::OutOfRange { .. }));

    // Clip rectangles far outside, or with extreme values, are only clipped away.
    let mut surfaces = surfaces();
    let clip = slot.clip_rects(&[
        rect(i32::MIN, i32::MIN, -5, -5),
        rect(100, 100, i32::MAX, i32::MAX),
    ]);
    let addr = slot.put(&fill(rect(0, 0, 4, 4)).clip(clip).0);
    assert_eq!(draw(&slot, addr, &mut surfaces).unwrap().dirty, None);
    // COPY_BITS from extreme positions draws nothing it has no source for.
    for (x, y) in [(i32::MIN, i32::MIN), (i32::MAX, i32::MAX), (-3, 0)] {
        let body = Record::new(COPY_BITS_SIZE)
            .i32(COPY_BITS_X, x)
            .i32(COPY_BITS_Y, y)
            .0;
        let addr = slot.put(&drawable(0, QXL_COPY_BITS, rect(0, 0, 2, 2), &body).0);
        let before = surfaces.get(0).unwrap().pixels.clone();
        assert_eq!(
            draw(&slot, addr, &mut surfaces).unwrap().dirty,
            None,
            "({x}, {y})"
        );
        assert_eq!(surfaces.get(0).unwrap().pixels, before);
    }
}
