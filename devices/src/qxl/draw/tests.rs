//! The renderer against packed QXL structures built in a test memslot: what Linux's qxl
//! driver sends (a COPY through a RECTS clip), the other drawables and image formats, and
//! (in `errors` and `fuzz`) what a hostile guest might send instead.

mod builders;
mod commands;
mod errors;
mod fuzz;

use builders::*;

use super::layout::*;
use super::*;

const W: u32 = 16;
const H: u32 = 8;

/// What an untouched pixel of the test surface holds: recognisable and unique.
fn background(x: u32, y: u32) -> u32 {
    0x00a0_0000 | (y << 8) | x
}

/// Surface 0, W x H xRGB, painted with `background`.
fn surfaces() -> Surfaces {
    let mut surfaces = Surfaces::new(4, 1 << 20);
    surfaces.create(0, W, H, SPICE_SURFACE_FMT_32_XRGB).unwrap();
    let surface = surfaces.get_mut(0).unwrap();
    for y in 0..H {
        for x in 0..W {
            surface.pixels[(y * W + x) as usize] = background(x, y);
        }
    }
    surfaces
}

fn pixel(surfaces: &Surfaces, x: u32, y: u32) -> u32 {
    surfaces.get(0).unwrap().pixel(x, y).unwrap()
}

/// Runs a drawable placed in the slot and returns what it changed.
fn run(slot: &mut Slot, surfaces: &mut Surfaces, drawable: Record) -> Option<Rect> {
    let addr = slot.put(&drawable.0);
    let outcome = draw(slot, addr, surfaces).unwrap();
    assert_eq!(outcome.surface_id, 0);
    outcome.dirty
}

/// Checks every pixel of surface 0 against `expect(x, y)`.
fn check(surfaces: &Surfaces, expect: impl Fn(u32, u32) -> u32) {
    for y in 0..H {
        for x in 0..W {
            assert_eq!(pixel(surfaces, x, y), expect(x, y), "pixel ({x}, {y})");
        }
    }
}

fn inside(r: &Rect, x: u32, y: u32) -> bool {
    let (x, y) = (x as i32, y as i32);
    x >= r.left && x < r.right && y >= r.top && y < r.bottom
}

/// A COPY of `image` (whose pixels are `width` wide) to `bbox` with its whole area.
fn copy(image: u64, bbox: Rect, src_area: Rect) -> Record {
    drawable(
        0,
        QXL_DRAW_COPY,
        bbox,
        &copy_body(image, src_area, SPICE_ROPD_OP_PUT),
    )
}

#[test]
fn copy_through_a_rects_clip_as_linux_dirty_fb_sends_it() {
    let mut slot = Slot::new(1 << 16);
    let mut surfaces = surfaces();
    // An 8x4 image whose rows are padded to a 40-byte pitch, as the shadow framebuffer is.
    let image_px = |x: u32, y: u32| 0x00c0_0000 | (y << 8) | x;
    let pixels: Vec<u32> = (0..4)
        .flat_map(|y| (0..8).map(move |x| image_px(x, y)))
        .collect();
    let data = slot.chunks(&rows_32(&pixels, 8, 40), &[]);
    let image = slot.put(&bitmap(
        SPICE_BITMAP_FMT_32BIT,
        QXL_BITMAP_TOP_DOWN,
        8,
        4,
        40,
        0,
        data,
    ));
    let bbox = rect(4, 2, 12, 6);
    // Overlapping clips, one reaching past the box.
    let clips = [rect(4, 2, 6, 6), rect(5, 3, 11, 4), rect(10, 5, 20, 7)];
    let clip = slot.clip_rects(&clips);
    let dirty = run(
        &mut slot,
        &mut surfaces,
        copy(image, bbox, rect(0, 0, 8, 4)).clip(clip),
    );
    assert_eq!(dirty, Some(rect(4, 2, 12, 6)));
    check(&surfaces, |x, y| {
        if inside(&bbox, x, y) && clips.iter().any(|c| inside(c, x, y)) {
            image_px(x - 4, y - 2)
        } else {
            background(x, y)
        }
    });
}

#[test]
fn rows_may_straddle_chunks() {
    let mut slot = Slot::new(1 << 16);
    let mut surfaces = surfaces();
    // 5x3 BGR pixels, 16-byte stride, cut into chunks in the middle of pixels and rows.
    let color = |x: u32, y: u32| (x * 40) << 16 | (y * 60) << 8 | (x + y);
    let mut bytes = Vec::new();
    for y in 0..3 {
        for x in 0..5 {
            let c = color(x, y);
            bytes.extend([c as u8, (c >> 8) as u8, (c >> 16) as u8]);
        }
        bytes.push(0xee);
    }
    let data = slot.chunks(&bytes, &[7, 20, 33, 34]);
    let image = slot.put(&bitmap(
        SPICE_BITMAP_FMT_24BIT,
        QXL_BITMAP_TOP_DOWN,
        5,
        3,
        16,
        0,
        data,
    ));
    let bbox = rect(1, 1, 6, 4);
    let dirty = run(
        &mut slot,
        &mut surfaces,
        copy(image, bbox, rect(0, 0, 5, 3)),
    );
    assert_eq!(dirty, Some(bbox));
    check(&surfaces, |x, y| {
        if inside(&bbox, x, y) {
            color(x - 1, y - 1)
        } else {
            background(x, y)
        }
    });
}

#[test]
fn bottom_up_and_direct_bitmaps() {
    let mut slot = Slot::new(1 << 16);
    let mut surfaces = surfaces();
    // Memory order: the bottom row first.
    let data = slot.chunks(&rows_32(&[1, 2, 3, 4, 5, 6], 2, 8), &[]);
    let image = slot.put(&bitmap(SPICE_BITMAP_FMT_32BIT, 0, 2, 3, 8, 0, data));
    run(
        &mut slot,
        &mut surfaces,
        copy(image, rect(0, 0, 2, 3), rect(0, 0, 2, 3)),
    );
    let got: Vec<u32> = (0..3)
        .flat_map(|y| [pixel(&surfaces, 0, y), pixel(&surfaces, 1, y)])
        .collect();
    assert_eq!(got, [5, 6, 3, 4, 1, 2]);

    // QXL_BITMAP_DIRECT: the data is the pixels themselves, no chunk header.
    let raw = slot.put(&rows_32(&[7, 8], 2, 8));
    let image = slot.put(&bitmap(
        SPICE_BITMAP_FMT_RGBA,
        QXL_BITMAP_DIRECT | QXL_BITMAP_TOP_DOWN,
        2,
        1,
        8,
        0,
        raw,
    ));
    run(
        &mut slot,
        &mut surfaces,
        copy(image, rect(5, 5, 7, 6), rect(0, 0, 2, 1)),
    );
    assert_eq!((pixel(&surfaces, 5, 5), pixel(&surfaces, 6, 5)), (7, 8));
}

/// Copies a one-row image of `format` and `width` pixels to row 0 and returns the row.
fn decode_row(format: u8, width: u32, bytes: &[u8], palette: &[u32]) -> Vec<u32> {
    let mut slot = Slot::new(1 << 16);
    let mut surfaces = surfaces();
    let palette = if palette.is_empty() {
        0
    } else {
        slot.palette(palette)
    };
    let data = slot.chunks(bytes, &[]);
    let stride = bytes.len() as u32;
    let image = slot.put(&bitmap(
        format,
        QXL_BITMAP_TOP_DOWN,
        width,
        1,
        stride,
        palette,
        data,
    ));
    let bbox = rect(0, 0, width as i32, 1);
    run(&mut slot, &mut surfaces, copy(image, bbox, bbox));
    (0..width).map(|x| pixel(&surfaces, x, 0)).collect()
}

#[test]
fn palette_and_low_depth_formats() {
    let pal = [0x000000, 0xff0000, 0x00ff00, 0x0000ff];
    assert_eq!(
        decode_row(SPICE_BITMAP_FMT_8BIT, 4, &[3, 2, 1, 0], &pal),
        [0x0000ff, 0x00ff00, 0xff0000, 0]
    );
    // An index past the palette's entries reads as black.
    assert_eq!(decode_row(SPICE_BITMAP_FMT_8BIT, 1, &[200], &pal), [0]);
    assert_eq!(
        decode_row(SPICE_BITMAP_FMT_4BIT_BE, 3, &[0x12, 0x30], &pal),
        [0xff0000, 0x00ff00, 0x0000ff]
    );
    assert_eq!(
        decode_row(SPICE_BITMAP_FMT_4BIT_LE, 3, &[0x12, 0x03], &pal),
        [0x00ff00, 0xff0000, 0x0000ff]
    );
    let mono = [0x000000, 0xffffff];
    assert_eq!(
        decode_row(
            SPICE_BITMAP_FMT_1BIT_BE,
            10,
            &[0b1010_0000, 0b0100_0000],
            &mono
        ),
        [0xffffff, 0, 0xffffff, 0, 0, 0, 0, 0, 0, 0xffffff]
    );
    assert_eq!(
        decode_row(
            SPICE_BITMAP_FMT_1BIT_LE,
            10,
            &[0b0000_0101, 0b0000_0010],
            &mono
        ),
        [0xffffff, 0, 0xffffff, 0, 0, 0, 0, 0, 0, 0xffffff]
    );
    // 16-bit is x1r5g5b5: full red, full green, a mid blue.
    let words: Vec<u8> = [0x7c00u16, 0x03e0, 0x0010]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    assert_eq!(
        decode_row(SPICE_BITMAP_FMT_16BIT, 3, &words, &[]),
        [0xff0000, 0x00ff00, 0x000084]
    );
}

#[test]
fn fills_and_raster_operations() {
    let mut slot = Slot::new(1 << 16);
    let mut surfaces = surfaces();
    let bbox = rect(2, 1, 6, 3);
    let fill = |color, rop| drawable(0, QXL_DRAW_FILL, bbox, &fill_body(color, rop));
    assert_eq!(
        run(&mut slot, &mut surfaces, fill(0x123456, SPICE_ROPD_OP_PUT)),
        Some(bbox)
    );
    check(&surfaces, |x, y| {
        if inside(&bbox, x, y) {
            0x123456
        } else {
            background(x, y)
        }
    });

    run(&mut slot, &mut surfaces, fill(0x0000ff, SPICE_ROPD_OP_OR));
    assert_eq!(pixel(&surfaces, 2, 1), 0x1234ff);
    run(&mut slot, &mut surfaces, fill(0xff00ff, SPICE_ROPD_OP_AND));
    assert_eq!(pixel(&surfaces, 2, 1), 0x1200ff);
    run(
        &mut slot,
        &mut surfaces,
        fill(0, SPICE_ROPD_OP_PUT | SPICE_ROPD_INVERS_BRUSH),
    );
    assert_eq!(pixel(&surfaces, 2, 1), 0xffffff);
    run(
        &mut slot,
        &mut surfaces,
        fill(0x00ff00, SPICE_ROPD_OP_XOR | SPICE_ROPD_INVERS_RES),
    );
    assert_eq!(pixel(&surfaces, 2, 1), 0x00ff00);

    // The fixed operations: their masks are QXLQMask with no bitmap.
    let fixed = |kind| drawable(0, kind, bbox, &[0; BLACKNESS_SIZE]);
    run(&mut slot, &mut surfaces, fixed(QXL_DRAW_WHITENESS));
    assert_eq!(pixel(&surfaces, 5, 2), 0xffffff);
    run(&mut slot, &mut surfaces, fixed(QXL_DRAW_BLACKNESS));
    assert_eq!(pixel(&surfaces, 5, 2), 0);
    run(&mut slot, &mut surfaces, fixed(QXL_DRAW_INVERS));
    assert_eq!(pixel(&surfaces, 5, 2), 0xffffff);
    assert_eq!(
        pixel(&surfaces, 6, 2),
        background(6, 2),
        "right edge exclusive"
    );
    assert_eq!(
        run(
            &mut slot,
            &mut surfaces,
            drawable(0, QXL_DRAW_NOP, bbox, &[])
        ),
        None
    );
}

#[test]
fn xor_through_overlapping_clips_applies_once() {
    let mut slot = Slot::new(1 << 16);
    let mut surfaces = surfaces();
    let clips = [rect(0, 0, 4, 4), rect(2, 2, 6, 6), rect(1, 1, 5, 5)];
    let clip = slot.clip_rects(&clips);
    let bbox = rect(0, 0, 8, 8);
    let xor = drawable(0, QXL_DRAW_INVERS, bbox, &[0; BLACKNESS_SIZE]).clip(clip);
    assert_eq!(run(&mut slot, &mut surfaces, xor), Some(rect(0, 0, 6, 6)));
    check(&surfaces, |x, y| {
        if clips.iter().any(|c| inside(c, x, y)) {
            !background(x, y) & 0xffffff
        } else {
            background(x, y)
        }
    });
}

#[test]
fn copy_bits_scrolls_in_both_directions() {
    let mut slot = Slot::new(1 << 16);
    let mut surfaces = surfaces();
    // Scroll up a line: every row but the last takes the row below it.
    let up = Record::new(COPY_BITS_SIZE)
        .i32(COPY_BITS_X, 0)
        .i32(COPY_BITS_Y, 1)
        .0;
    let dirty = run(
        &mut slot,
        &mut surfaces,
        drawable(0, QXL_COPY_BITS, rect(0, 0, W as i32, H as i32 - 1), &up),
    );
    assert_eq!(dirty, Some(rect(0, 0, W as i32, H as i32 - 1)));
    check(&surfaces, |x, y| background(x, (y + 1).min(H - 1)));

    // Down two lines and right three, inside a window.
    let mut surfaces = self::surfaces();
    let down = Record::new(COPY_BITS_SIZE)
        .i32(COPY_BITS_X, 2)
        .i32(COPY_BITS_Y, 1)
        .0;
    let bbox = rect(5, 3, 12, 8);
    run(
        &mut slot,
        &mut surfaces,
        drawable(0, QXL_COPY_BITS, bbox, &down),
    );
    check(&surfaces, |x, y| {
        if inside(&bbox, x, y) {
            background(x - 3, y - 2)
        } else {
            background(x, y)
        }
    });

    // A source partly off the surface: only the pixels with a source change.
    let mut surfaces = self::surfaces();
    let off = Record::new(COPY_BITS_SIZE)
        .i32(COPY_BITS_X, 14)
        .i32(COPY_BITS_Y, 0)
        .0;
    let dirty = run(
        &mut slot,
        &mut surfaces,
        drawable(0, QXL_COPY_BITS, rect(0, 0, 4, 1), &off),
    );
    assert_eq!(dirty, Some(rect(0, 0, 2, 1)));
    assert_eq!(pixel(&surfaces, 1, 0), background(15, 0));
    assert_eq!(pixel(&surfaces, 2, 0), background(2, 0));
}

#[test]
fn surfaces_are_image_sources() {
    let mut slot = Slot::new(1 << 16);
    let mut surfaces = surfaces();
    surfaces.create(1, 4, 4, SPICE_SURFACE_FMT_32_ARGB).unwrap();
    surfaces.get_mut(1).unwrap().pixels[5] = 0x80ab_cdef; // (1, 1)
    let image = slot.put(&surface_image(1));
    run(
        &mut slot,
        &mut surfaces,
        copy(image, rect(0, 0, 2, 2), rect(1, 1, 3, 3)),
    );
    // The destination is xRGB: alpha does not survive.
    assert_eq!(pixel(&surfaces, 0, 0), 0x00ab_cdef);
    assert_eq!(pixel(&surfaces, 1, 1), 0);

    // A surface drawing from itself reads its pixels as they were before the draw.
    let mut surfaces = self::surfaces();
    let image = slot.put(&surface_image(0));
    run(
        &mut slot,
        &mut surfaces,
        copy(image, rect(1, 0, 9, 1), rect(0, 0, 8, 1)),
    );
    check(&surfaces, |x, y| match (x, y) {
        (1..=8, 0) => background(x - 1, 0),
        _ => background(x, y),
    });
}

#[test]
fn nearest_neighbour_scaling() {
    let mut slot = Slot::new(1 << 16);
    let mut surfaces = surfaces();
    let image = put_bitmap_32(&mut slot, &[1, 2, 3, 4], 2);
    // 2x2 up to 4x4: each source pixel becomes a 2x2 block.
    run(
        &mut slot,
        &mut surfaces,
        copy(image, rect(0, 0, 4, 4), rect(0, 0, 2, 2)),
    );
    let block = |x: u32, y: u32| [1, 2, 3, 4][(y / 2 * 2 + x / 2) as usize];
    for y in 0..4 {
        for x in 0..4 {
            assert_eq!(pixel(&surfaces, x, y), block(x, y), "({x}, {y})");
        }
    }
    // 4x4 down to 2x2 samples the centres: source (1, 1), (3, 1), (1, 3), (3, 3).
    let pixels: Vec<u32> = (0..16).collect();
    let image = put_bitmap_32(&mut slot, &pixels, 4);
    run(
        &mut slot,
        &mut surfaces,
        copy(image, rect(8, 0, 10, 2), rect(0, 0, 4, 4)),
    );
    let got = [(8, 0), (9, 0), (8, 1), (9, 1)].map(|(x, y)| pixel(&surfaces, x, y));
    assert_eq!(got, [5, 7, 13, 15]);
}

#[test]
fn transparent_and_alpha_blend() {
    let mut slot = Slot::new(1 << 16);
    let mut surfaces = surfaces();
    let key = 0x00ff00;
    let image = put_bitmap_32(&mut slot, &[0x111111, key, 0x333333], 3);
    let body = Record::new(TRANSPARENT_SIZE)
        .u64(TRANSPARENT_SRC_BITMAP, image)
        .rect(TRANSPARENT_SRC_AREA, rect(0, 0, 3, 1))
        .u32(TRANSPARENT_SRC_COLOR, key)
        .0;
    run(
        &mut slot,
        &mut surfaces,
        drawable(0, QXL_DRAW_TRANSPARENT, rect(0, 0, 3, 1), &body),
    );
    let row = [0, 1, 2].map(|x| pixel(&surfaces, x, 0));
    assert_eq!(row, [0x111111, background(1, 0), 0x333333]);

    // Half white over black.
    let black = drawable(
        0,
        QXL_DRAW_BLACKNESS,
        rect(0, 4, 2, 5),
        &[0; BLACKNESS_SIZE],
    );
    run(&mut slot, &mut surfaces, black);
    let white = put_bitmap_32(&mut slot, &[0xffffff, 0x80ffffff], 2);
    let alpha = |flags: u16| {
        Record::new(ALPHA_SIZE)
            .u16(ALPHA_FLAGS, flags)
            .u8(ALPHA_ALPHA, 128)
            .u64(ALPHA_SRC_BITMAP, white)
            .rect(ALPHA_SRC_AREA, rect(0, 0, 2, 1))
            .0
    };
    run(
        &mut slot,
        &mut surfaces,
        drawable(0, QXL_DRAW_ALPHA_BLEND, rect(0, 4, 2, 5), &alpha(0)),
    );
    assert_eq!(pixel(&surfaces, 0, 4), 0x808080);
    // A premultiplied source with its own alpha: 0x80 alpha, scaled by 128/255.
    let black = drawable(
        0,
        QXL_DRAW_BLACKNESS,
        rect(0, 4, 2, 5),
        &[0; BLACKNESS_SIZE],
    );
    run(&mut slot, &mut surfaces, black);
    let data = slot.chunks(&rows_32(&[0x8080_8080, 0], 2, 8), &[]);
    let image = slot.put(&bitmap(
        SPICE_BITMAP_FMT_RGBA,
        QXL_BITMAP_TOP_DOWN,
        2,
        1,
        8,
        0,
        data,
    ));
    let body = Record::new(ALPHA_SIZE)
        .u16(ALPHA_FLAGS, SPICE_ALPHA_FLAGS_SRC_SURFACE_HAS_ALPHA)
        .u8(ALPHA_ALPHA, 255)
        .u64(ALPHA_SRC_BITMAP, image)
        .rect(ALPHA_SRC_AREA, rect(0, 0, 2, 1))
        .0;
    run(
        &mut slot,
        &mut surfaces,
        drawable(0, QXL_DRAW_ALPHA_BLEND, rect(0, 4, 2, 5), &body),
    );
    assert_eq!(pixel(&surfaces, 0, 4), 0x808080);
    assert_eq!(pixel(&surfaces, 1, 4), 0, "transparent premultiplied black");
}

#[test]
fn opaque_and_blend_draw_like_copy() {
    let mut slot = Slot::new(1 << 16);
    let mut surfaces = surfaces();
    let image = put_bitmap_32(&mut slot, &[0x0f0f0f], 1);
    let opaque = Record::new(OPAQUE_SIZE)
        .u64(OPAQUE_SRC_BITMAP, image)
        .rect(OPAQUE_SRC_AREA, rect(0, 0, 1, 1))
        .u16(OPAQUE_ROP, SPICE_ROPD_OP_PUT)
        .0;
    run(
        &mut slot,
        &mut surfaces,
        drawable(0, QXL_DRAW_OPAQUE, rect(3, 3, 5, 4), &opaque),
    );
    assert_eq!(pixel(&surfaces, 4, 3), 0x0f0f0f);
    let blend = copy_body(image, rect(0, 0, 1, 1), SPICE_ROPD_OP_XOR);
    run(
        &mut slot,
        &mut surfaces,
        drawable(0, QXL_DRAW_BLEND, rect(3, 3, 4, 4), &blend),
    );
    assert_eq!(pixel(&surfaces, 3, 3), 0);
    assert_eq!(pixel(&surfaces, 4, 3), 0x0f0f0f);
}

#[test]
fn a_box_past_the_surface_is_clipped() {
    let mut slot = Slot::new(1 << 16);
    let mut surfaces = surfaces();
    let big = drawable(
        0,
        QXL_DRAW_FILL,
        rect(10, 6, 1000, i32::MAX),
        &fill_body(7, SPICE_ROPD_OP_PUT),
    );
    assert_eq!(
        run(&mut slot, &mut surfaces, big),
        Some(rect(10, 6, W as i32, H as i32))
    );
    assert_eq!(pixel(&surfaces, W - 1, H - 1), 7);
    assert_eq!(pixel(&surfaces, 9, 7), background(9, 7));
    // Entirely outside: valid, nothing changes.
    let away = drawable(
        0,
        QXL_DRAW_FILL,
        rect(100, 100, 200, 200),
        &fill_body(7, SPICE_ROPD_OP_PUT),
    );
    assert_eq!(run(&mut slot, &mut surfaces, away), None);
}
