//! Surface and cursor commands, and the surface table's budget.

use super::builders::*;
use super::*;

#[test]
fn surfaces_are_created_replaced_and_destroyed_within_the_budget() {
    let mut surfaces = Surfaces::new(4, 4096);
    surfaces
        .create(1, 16, 16, SPICE_SURFACE_FMT_32_XRGB)
        .unwrap();
    assert_eq!(surfaces.used_bytes(), 1024);
    let s = surfaces.get(1).unwrap();
    assert_eq!((s.width, s.height, s.format), (16, 16, 32));
    assert!(s.pixels.iter().all(|p| *p == 0), "new surfaces are black");

    // 3072 left: a 32x32 surface (4096 bytes) does not fit beside it...
    assert!(matches!(
        surfaces.create(2, 32, 32, SPICE_SURFACE_FMT_32_XRGB),
        Err(DrawError::SurfaceTooLarge {
            bytes: 4096,
            available: 3072
        })
    ));
    assert!(surfaces.get(2).is_none());
    // ...but may replace it, whose bytes come back.
    surfaces
        .create(1, 32, 32, SPICE_SURFACE_FMT_16_565)
        .unwrap();
    assert_eq!(surfaces.used_bytes(), 4096);
    assert_eq!(surfaces.get(1).unwrap().width, 32);
    // A refused replacement keeps the old surface.
    assert!(surfaces
        .create(1, 64, 64, SPICE_SURFACE_FMT_32_XRGB)
        .is_err());
    assert_eq!(surfaces.get(1).unwrap().width, 32);

    assert!(surfaces.destroy(1));
    assert!(!surfaces.destroy(1));
    assert_eq!(surfaces.used_bytes(), 0);
    surfaces.create(0, 8, 8, SPICE_SURFACE_FMT_16_555).unwrap();
    surfaces.create(3, 8, 8, SPICE_SURFACE_FMT_32_ARGB).unwrap();
    surfaces.destroy_all();
    assert!(surfaces.is_empty());
    assert_eq!(surfaces.used_bytes(), 0);

    let err = surfaces
        .create(4, 1, 1, SPICE_SURFACE_FMT_32_XRGB)
        .unwrap_err();
    assert!(matches!(err, DrawError::SurfaceId(4)));
    for (w, h) in [
        (0, 1),
        (1, 0),
        (MAX_SURFACE_SIZE + 1, 1),
        (u32::MAX, u32::MAX),
    ] {
        let err = surfaces
            .create(0, w, h, SPICE_SURFACE_FMT_32_XRGB)
            .unwrap_err();
        assert!(
            matches!(err, DrawError::SurfaceSize { .. }),
            "{w}x{h}: {err}"
        );
    }
    let err = surfaces.create(0, 1, 1, SPICE_SURFACE_FMT_8_A).unwrap_err();
    assert!(
        is_unsupported(&err),
        "an alpha-only surface is valid QXL: {err}"
    );
    let err = surfaces.create(0, 1, 1, 33).unwrap_err();
    assert!(matches!(err, DrawError::SurfaceFormat(33)) && !is_unsupported(&err));
}

#[test]
fn surface_commands() {
    let mut slot = Slot::new(4096);
    let mut surfaces = Surfaces::new(8, 1 << 20);
    let create = slot.put(&surface_cmd(
        5,
        QXL_SURFACE_CMD_CREATE,
        SPICE_SURFACE_FMT_32_ARGB,
        30,
        20,
    ));
    assert_eq!(surface_command(&slot, create, &mut surfaces).unwrap(), 5);
    let s = surfaces.get(5).unwrap();
    assert_eq!(
        (s.width, s.height, s.format),
        (30, 20, SPICE_SURFACE_FMT_32_ARGB)
    );

    let destroy = slot.put(&surface_cmd(5, QXL_SURFACE_CMD_DESTROY, 0, 0, 0));
    assert_eq!(surface_command(&slot, destroy, &mut surfaces).unwrap(), 5);
    assert!(surfaces.get(5).is_none());
    let again = surface_command(&slot, destroy, &mut surfaces).unwrap_err();
    assert!(matches!(again, DrawError::NoSurface(5)));

    let far = slot.put(&surface_cmd(9, QXL_SURFACE_CMD_DESTROY, 0, 0, 0));
    let err = surface_command(&slot, far, &mut surfaces).unwrap_err();
    assert!(matches!(err, DrawError::SurfaceId(9)));
    let odd = slot.put(&surface_cmd(1, 7, 0, 0, 0));
    let err = surface_command(&slot, odd, &mut surfaces).unwrap_err();
    assert!(matches!(err, DrawError::UnknownSurfaceCommand(7)));
    let huge = slot.put(&surface_cmd(1, QXL_SURFACE_CMD_CREATE, 32, 16384, 16384));
    let err = surface_command(&slot, huge, &mut surfaces).unwrap_err();
    assert!(matches!(err, DrawError::SurfaceTooLarge { .. }));
    assert!(surfaces.is_empty());
}

/// A QXLCursorCmd.
fn cursor_cmd(kind: u8, x: i16, y: i16, shape: u64) -> Vec<u8> {
    Record::new(150)
        .u8(CURSOR_CMD_TYPE, kind)
        .at(CURSOR_CMD_X, &x.to_le_bytes())
        .at(CURSOR_CMD_Y, &y.to_le_bytes())
        .u8(CURSOR_CMD_VISIBLE, 1)
        .u64(CURSOR_CMD_SHAPE, shape)
        .0
}

/// A QXLCursor header; its first chunk follows (appended by the caller).
fn cursor_header(kind: u16, width: u16, height: u16) -> Record {
    Record::new(CURSOR_HEADER_SIZE)
        .u16(CURSOR_TYPE, kind)
        .u16(CURSOR_WIDTH, width)
        .u16(CURSOR_HEIGHT, height)
        .u16(CURSOR_HOT_X, 1)
        .u16(CURSOR_HOT_Y, 2)
}

#[test]
fn cursor_set_with_alpha_and_mono_shapes() {
    let mut slot = Slot::new(1 << 16);
    // A 3x2 ARGB cursor whose pixels continue in a second chunk.
    let argb: Vec<u32> = vec![0xff00_0000, 0x80ff_ffff, 0, 1, 2, 3];
    let bytes: Vec<u8> = argb.iter().flat_map(|p| p.to_le_bytes()).collect();
    let rest = slot.put(&chunk(&bytes[10..], 0));
    let shape = slot.put(
        &cursor_header(SPICE_CURSOR_TYPE_ALPHA, 3, 2)
            .extend(&chunk(&bytes[..10], rest))
            .0,
    );
    let cmd = slot.put(&cursor_cmd(QXL_CURSOR_SET, -5, 300, shape));
    let expected = CursorCommand::Set {
        x: -5,
        y: 300,
        visible: true,
        shape: CursorShape {
            width: 3,
            height: 2,
            hot_x: 1,
            hot_y: 2,
            argb,
        },
    };
    assert_eq!(cursor_command(&slot, cmd).unwrap(), expected);

    // Mono 2x2: AND then XOR, MSB first. (and, xor): row 0 (1,0) (0,0); row 1 (0,1) (1,1).
    let masks = [0b1000_0000, 0b0100_0000, 0b0000_0000, 0b1100_0000];
    let shape = slot.put(
        &cursor_header(SPICE_CURSOR_TYPE_MONO, 2, 2)
            .extend(&chunk(&masks, 0))
            .0,
    );
    let cmd = slot.put(&cursor_cmd(QXL_CURSOR_SET, 0, 0, shape));
    let CursorCommand::Set { shape, .. } = cursor_command(&slot, cmd).unwrap() else {
        panic!("not a SET");
    };
    assert_eq!(shape.argb, [0, 0xff00_0000, 0xffff_ffff, 0xff00_0000]);
}

#[test]
fn cursor_move_hide_trail_and_refusals() {
    let mut slot = Slot::new(1 << 16);
    let cmd = slot.put(&cursor_cmd(QXL_CURSOR_MOVE, 10, -20, 0));
    assert_eq!(
        cursor_command(&slot, cmd).unwrap(),
        CursorCommand::Move { x: 10, y: -20 }
    );
    let cmd = slot.put(&cursor_cmd(QXL_CURSOR_HIDE, 0, 0, 0));
    assert_eq!(cursor_command(&slot, cmd).unwrap(), CursorCommand::Hide);
    let cmd = slot.put(&cursor_cmd(QXL_CURSOR_TRAIL, 0, 0, 0));
    assert_eq!(cursor_command(&slot, cmd).unwrap(), CursorCommand::Trail);
    let cmd = slot.put(&cursor_cmd(9, 0, 0, 0));
    assert!(matches!(
        cursor_command(&slot, cmd),
        Err(DrawError::UnknownCursorCommand(9))
    ));

    let set = |slot: &mut Slot, header: Record, data: &[u8]| {
        let shape = slot.put(&header.extend(&chunk(data, 0)).0);
        let cmd = slot.put(&cursor_cmd(QXL_CURSOR_SET, 0, 0, shape));
        cursor_command(slot, cmd).unwrap_err()
    };
    let err = set(
        &mut slot,
        cursor_header(SPICE_CURSOR_TYPE_COLOR32, 1, 1),
        &[0; 8],
    );
    assert!(matches!(err, DrawError::UnsupportedCursor(6)) && is_unsupported(&err));
    let err = set(&mut slot, cursor_header(77, 1, 1), &[0; 8]);
    assert!(matches!(err, DrawError::UnknownCursorType(77)));
    let err = set(
        &mut slot,
        cursor_header(SPICE_CURSOR_TYPE_ALPHA, u16::MAX, u16::MAX),
        &[],
    );
    assert!(matches!(err, DrawError::CursorSize { .. }));
    let err = set(
        &mut slot,
        cursor_header(SPICE_CURSOR_TYPE_ALPHA, 4, 4),
        &[0; 60],
    );
    assert!(matches!(
        err,
        DrawError::ChunkTooShort { have: 60, need: 64 }
    ));
    // The shape pointer itself outside the slot.
    let cmd = slot.put(&cursor_cmd(QXL_CURSOR_SET, 0, 0, SLOT | 0xffff_ffff));
    assert!(matches!(
        cursor_command(&slot, cmd),
        Err(DrawError::OutOfRange { .. })
    ));
}
