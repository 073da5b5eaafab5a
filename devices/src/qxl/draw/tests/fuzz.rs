//! A small deterministic fuzzer: random bytes, and random mutations of valid commands.
//! It only checks that nothing panics and that surfaces keep their shape.

use super::builders::*;
use super::*;

/// xorshift64*: deterministic, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SLOT_SIZE: usize = 1 << 16;

/// Values that tend to break arithmetic, and addresses that point somewhere in the slot.
fn interesting(rng: &mut Rng) -> u64 {
    match rng.below(10) {
        0 => 0,
        1 => u64::from(u32::MAX),
        2 => i32::MIN as u32 as u64,
        3 => i32::MAX as u64,
        4 => u64::MAX,
        5 => 1 << 31,
        6 => rng.below(64) as u64,
        7 => 16384,
        _ => SLOT | rng.below(SLOT_SIZE) as u64,
    }
}

/// Overwrites a few bytes or fields of `mem[..len]` at random.
fn mutate(rng: &mut Rng, mem: &mut [u8], len: usize) {
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(len);
        match rng.below(3) {
            0 => mem[at] = rng.next() as u8,
            1 => mem[at] ^= 1 << rng.below(8),
            _ => {
                let bytes = interesting(rng).to_le_bytes();
                let width = [2, 4, 8][rng.below(3)];
                let end = (at + width).min(len);
                mem[at..end].copy_from_slice(&bytes[..end - at]);
            }
        }
    }
}

/// A scene of valid commands; their addresses.
fn scene(slot: &mut Slot) -> (Vec<u64>, u64, u64) {
    let mut drawables = Vec::new();
    // COPY of a chunked 32-bit image through a RECTS clip.
    let pixels: Vec<u32> = (0..48).collect();
    let data = slot.chunks(&rows_32(&pixels, 8, 36), &[5, 40, 100]);
    let image = slot.put(&bitmap(
        SPICE_BITMAP_FMT_32BIT,
        QXL_BITMAP_TOP_DOWN,
        8,
        6,
        36,
        0,
        data,
    ));
    let clip = slot.clip_rects(&[rect(0, 0, 5, 5), rect(3, 2, 12, 9)]);
    let d = drawable(
        0,
        QXL_DRAW_COPY,
        rect(1, 1, 17, 13),
        &copy_body(image, rect(0, 0, 8, 6), SPICE_ROPD_OP_PUT),
    );
    drawables.push(slot.put(&d.clip(clip).0));
    // An 8-bit paletted image, bottom up.
    let palette = slot.palette(&[1, 2, 3, 4]);
    let data = slot.chunks(&[0, 1, 2, 3, 3, 2, 1, 0], &[3]);
    let image = slot.put(&bitmap(SPICE_BITMAP_FMT_8BIT, 0, 4, 2, 4, palette, data));
    let d = drawable(
        0,
        QXL_DRAW_BLEND,
        rect(2, 2, 6, 4),
        &copy_body(image, rect(0, 0, 4, 2), SPICE_ROPD_OP_XOR),
    );
    drawables.push(slot.put(&d.0));
    // A surface source, a fill, a scroll, an alpha blend, a transparent copy.
    let image = slot.put(&surface_image(1));
    let d = drawable(
        0,
        QXL_DRAW_COPY,
        rect(0, 0, 10, 10),
        &copy_body(image, rect(0, 0, 8, 8), SPICE_ROPD_OP_PUT),
    );
    drawables.push(slot.put(&d.0));
    let d = drawable(
        0,
        QXL_DRAW_FILL,
        rect(5, 5, 20, 20),
        &fill_body(0xabcdef, SPICE_ROPD_OP_PUT),
    );
    drawables.push(slot.put(&d.0));
    let body = Record::new(COPY_BITS_SIZE)
        .i32(COPY_BITS_X, 0)
        .i32(COPY_BITS_Y, 1)
        .0;
    drawables.push(slot.put(&drawable(0, QXL_COPY_BITS, rect(0, 0, 32, 23), &body).0));
    let image = put_bitmap_32(slot, &[0x8000_0000; 4], 2);
    let body = Record::new(ALPHA_SIZE)
        .u8(ALPHA_ALPHA, 99)
        .u64(ALPHA_SRC_BITMAP, image)
        .rect(ALPHA_SRC_AREA, rect(0, 0, 2, 2))
        .0;
    drawables.push(slot.put(&drawable(0, QXL_DRAW_ALPHA_BLEND, rect(0, 0, 7, 3), &body).0));
    let body = Record::new(TRANSPARENT_SIZE)
        .u64(TRANSPARENT_SRC_BITMAP, image)
        .rect(TRANSPARENT_SRC_AREA, rect(0, 0, 2, 2))
        .0;
    drawables.push(slot.put(&drawable(0, QXL_DRAW_TRANSPARENT, rect(9, 9, 11, 11), &body).0));

    let surface = slot.put(&surface_cmd(
        2,
        QXL_SURFACE_CMD_CREATE,
        SPICE_SURFACE_FMT_32_XRGB,
        8,
        8,
    ));
    let argb: Vec<u8> = (0..64u32).flat_map(|p| p.to_le_bytes()).collect();
    let data = chunk(&argb[..30], 0);
    let shape = slot.put(
        &Record::new(CURSOR_HEADER_SIZE)
            .u16(CURSOR_TYPE, SPICE_CURSOR_TYPE_ALPHA)
            .u16(CURSOR_WIDTH, 4)
            .u16(CURSOR_HEIGHT, 4)
            .extend(&data)
            .0,
    );
    // The rest of the cursor's pixels in a second chunk.
    let rest = slot.put(&chunk(&argb[30..], 0));
    slot.write(shape + CURSOR_CHUNK + CHUNK_NEXT, &rest.to_le_bytes());
    let cursor = slot.put(
        &Record::new(150)
            .u8(CURSOR_CMD_TYPE, QXL_CURSOR_SET)
            .u64(CURSOR_CMD_SHAPE, shape)
            .0,
    );
    (drawables, surface, cursor)
}

fn fresh_surfaces() -> Surfaces {
    let mut surfaces = Surfaces::new(4, 1 << 20);
    surfaces
        .create(0, 32, 24, SPICE_SURFACE_FMT_32_XRGB)
        .unwrap();
    surfaces.create(1, 8, 8, SPICE_SURFACE_FMT_32_ARGB).unwrap();
    surfaces
}

/// Runs every command of the scene; checks the surfaces keep their shapes.
fn run_all(slot: &Slot, drawables: &[u64], surface: u64, cursor: u64) {
    let mut surfaces = fresh_surfaces();
    for &d in drawables {
        let _ = draw(slot, d, &mut surfaces);
    }
    let _ = surface_command(slot, surface, &mut surfaces);
    let _ = cursor_command(slot, cursor);
    for id in 0..4 {
        if let Some(s) = surfaces.get(id) {
            assert_eq!(s.pixels.len(), (s.width * s.height) as usize);
        }
    }
    assert!(surfaces.used_bytes() <= surfaces.budget_bytes());
}

#[test]
fn the_scene_is_valid() {
    let mut slot = Slot::new(SLOT_SIZE);
    let (drawables, surface, cursor) = scene(&mut slot);
    let mut surfaces = fresh_surfaces();
    for d in drawables {
        let outcome = draw(&slot, d, &mut surfaces).unwrap();
        assert!(outcome.dirty.is_some());
    }
    assert_eq!(surface_command(&slot, surface, &mut surfaces).unwrap(), 2);
    let CursorCommand::Set { shape, .. } = cursor_command(&slot, cursor).unwrap() else {
        panic!("not a SET");
    };
    assert_eq!(shape.argb, (0..16).collect::<Vec<u32>>());
}

#[test]
fn mutated_commands_never_panic() {
    let mut rng = Rng(0x5eed_0fc0_ffee);
    let mut base = Slot::new(SLOT_SIZE);
    let (drawables, surface, cursor) = scene(&mut base);
    let used = drawables
        .iter()
        .chain([&surface, &cursor])
        .map(|a| (a & 0xffff) as usize)
        .max()
        .unwrap()
        + 200;
    for _ in 0..3000 {
        let mut slot = Slot::new(0);
        slot.mem = base.mem.clone();
        mutate(&mut rng, &mut slot.mem, used);
        run_all(&slot, &drawables, surface, cursor);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut slot = Slot::new(SLOT_SIZE);
    for round in 0..400 {
        for (i, b) in slot.mem.iter_mut().enumerate() {
            // Mostly small values, so that counts and types land in the interesting range.
            *b = if (i + round) % 3 == 0 {
                rng.next() as u8
            } else {
                (rng.next() % 16) as u8
            };
        }
        // Sprinkle pointers back into the slot so random structures link up.
        for _ in 0..2000 {
            let at = rng.below(SLOT_SIZE - 8) & !7;
            let addr = interesting(&mut rng);
            slot.mem[at..at + 8].copy_from_slice(&addr.to_le_bytes());
        }
        for _ in 0..10 {
            let addrs: Vec<u64> = (0..3).map(|_| SLOT | rng.below(SLOT_SIZE) as u64).collect();
            let mut surfaces = fresh_surfaces();
            // Random drawable types on real surfaces, so that each branch is reached.
            let at = (addrs[0] & 0xffff) as usize;
            if let Some(b) = slot.mem.get_mut(at + DRAWABLE_TYPE) {
                *b = rng.below(16) as u8;
            }
            let mut set = |offset: usize, value: u32| {
                let field = at + offset;
                if let Some(bytes) = slot.mem.get_mut(field..field + 4) {
                    bytes.copy_from_slice(&value.to_le_bytes());
                }
            };
            set(DRAWABLE_SURFACE_ID, rng.below(3) as u32);
            // Often a sane box and clip type, so that the bodies get parsed.
            if rng.below(2) == 0 {
                let (x, y) = (rng.below(40) as u32, rng.below(30) as u32);
                let bbox = [y, x, y + rng.below(20) as u32, x + rng.below(20) as u32];
                for (i, v) in bbox.into_iter().enumerate() {
                    set(DRAWABLE_BBOX + 4 * i, v);
                }
                set(DRAWABLE_CLIP + CLIP_TYPE, rng.below(2) as u32);
            }
            let _ = draw(&slot, addrs[0], &mut surfaces);
            let _ = surface_command(&slot, addrs[1], &mut surfaces);
            let _ = cursor_command(&slot, addrs[2]);
        }
    }
}
