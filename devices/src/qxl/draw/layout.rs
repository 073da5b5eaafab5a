//! Byte offsets and sizes of the QXL structures the renderer reads, and the protocol
//! values it understands. Every structure is packed and little endian; the offsets were
//! checked with `offsetof`/`sizeof` in a C program including spice-protocol 0.14.3's
//! `qxl_dev.h` (values from `enums.h` beside it).

// ---- QXLRect: top, left, bottom, right (note the order) ----
pub const RECT_TOP: usize = 0;
pub const RECT_LEFT: usize = 4;
pub const RECT_BOTTOM: usize = 8;
pub const RECT_RIGHT: usize = 12;
pub const RECT_SIZE: usize = 16;

// ---- QXLDataChunk ----
pub const CHUNK_DATA_SIZE: u64 = 0;
pub const CHUNK_NEXT: u64 = 12;
/// sizeof(QXLDataChunk): the chunk's bytes follow its header.
pub const CHUNK_HEADER_SIZE: usize = 20;

// ---- QXLDrawable (the fixed part; the per-type union starts at DRAWABLE_U) ----
pub const DRAWABLE_SURFACE_ID: usize = 8;
pub const DRAWABLE_TYPE: usize = 13;
pub const DRAWABLE_BBOX: usize = 31;
pub const DRAWABLE_CLIP: usize = 47;
pub const DRAWABLE_U: usize = 123;

// ---- QXLClip (type u32, data QXLPHYSICAL) ----
pub const CLIP_TYPE: usize = 0;
pub const CLIP_DATA: usize = 4;

// ---- QXLClipRects: num_rects, then a QXLDataChunk holding the QXLRects ----
pub const CLIP_RECTS_NUM: u64 = 0;
pub const CLIP_RECTS_CHUNK: u64 = 4;

// ---- QXLBrush: type, then the colour (or a 16-byte pattern) ----
pub const BRUSH_TYPE: usize = 0;
pub const BRUSH_COLOR: usize = 4;

// ---- QXLQMask: flags, pos, bitmap ----
pub const QMASK_BITMAP: usize = 9;

// ---- QXLFill ----
pub const FILL_BRUSH: usize = 0;
pub const FILL_ROP: usize = 20;
pub const FILL_MASK: usize = 22;
pub const FILL_SIZE: usize = 39;

// ---- QXLOpaque ----
pub const OPAQUE_SRC_BITMAP: usize = 0;
pub const OPAQUE_SRC_AREA: usize = 8;
pub const OPAQUE_ROP: usize = 44;
pub const OPAQUE_MASK: usize = 47;
pub const OPAQUE_SIZE: usize = 64;

// ---- QXLCopy, QXLBlend (one layout) ----
pub const COPY_SRC_BITMAP: usize = 0;
pub const COPY_SRC_AREA: usize = 8;
pub const COPY_ROP: usize = 24;
pub const COPY_MASK: usize = 27;
pub const COPY_SIZE: usize = 44;

// ---- QXLTransparent ----
pub const TRANSPARENT_SRC_BITMAP: usize = 0;
pub const TRANSPARENT_SRC_AREA: usize = 8;
pub const TRANSPARENT_SRC_COLOR: usize = 24;
pub const TRANSPARENT_SIZE: usize = 32;

// ---- QXLAlphaBlend ----
pub const ALPHA_FLAGS: usize = 0;
pub const ALPHA_ALPHA: usize = 2;
pub const ALPHA_SRC_BITMAP: usize = 3;
pub const ALPHA_SRC_AREA: usize = 11;
pub const ALPHA_SIZE: usize = 27;

// ---- QXLCopyBits: src_pos (QXLPoint x, y) ----
pub const COPY_BITS_X: usize = 0;
pub const COPY_BITS_Y: usize = 4;
pub const COPY_BITS_SIZE: usize = 8;

// ---- QXLBlackness, QXLWhiteness, QXLInvers: just a QXLQMask ----
pub const BLACKNESS_MASK: usize = 0;
pub const BLACKNESS_SIZE: usize = 17;

// ---- QXLImage: a QXLImageDescriptor, then QXLBitmap or QXLSurfaceId ----
pub const IMAGE_TYPE: usize = 8;
pub const IMAGE_DESCRIPTOR_SIZE: usize = 18;
pub const BITMAP_FORMAT: usize = 0;
pub const BITMAP_FLAGS: usize = 1;
pub const BITMAP_X: usize = 2;
pub const BITMAP_Y: usize = 6;
pub const BITMAP_STRIDE: usize = 10;
pub const BITMAP_PALETTE: usize = 14;
pub const BITMAP_DATA: usize = 22;
pub const BITMAP_SIZE: usize = 30;
pub const SURFACE_IMAGE_ID: usize = 0;
pub const SURFACE_IMAGE_SIZE: usize = 4;

// ---- QXLPalette: unique, num_ents, then u32 entries ----
pub const PALETTE_NUM_ENTS: usize = 8;
pub const PALETTE_HEADER_SIZE: usize = 10;

// ---- QXLSurfaceCmd, with QXLSurface at SURFACE_CMD_CREATE ----
pub const SURFACE_CMD_ID: usize = 8;
pub const SURFACE_CMD_TYPE: usize = 12;
pub const SURFACE_CMD_CREATE: usize = 17;
pub const SURFACE_FORMAT: usize = 0;
pub const SURFACE_WIDTH: usize = 4;
pub const SURFACE_HEIGHT: usize = 8;
pub const SURFACE_CMD_SIZE: usize = 41;

// ---- QXLCursorCmd ----
pub const CURSOR_CMD_TYPE: usize = 8;
/// `u.set.position` and `u.position` share this offset.
pub const CURSOR_CMD_X: usize = 9;
pub const CURSOR_CMD_Y: usize = 11;
pub const CURSOR_CMD_VISIBLE: usize = 13;
pub const CURSOR_CMD_SHAPE: usize = 14;
/// Up to the end of the union; `device_data` (not read) follows.
pub const CURSOR_CMD_SIZE: usize = 22;

// ---- QXLCursor: QXLCursorHeader, data_size, then the first QXLDataChunk ----
pub const CURSOR_TYPE: usize = 8;
pub const CURSOR_WIDTH: usize = 10;
pub const CURSOR_HEIGHT: usize = 12;
pub const CURSOR_HOT_X: usize = 14;
pub const CURSOR_HOT_Y: usize = 16;
pub const CURSOR_CHUNK: u64 = 22;
pub const CURSOR_HEADER_SIZE: usize = 22;

// ---- enums.h / qxl_dev.h values ----
pub const QXL_DRAW_NOP: u8 = 0;
pub const QXL_DRAW_FILL: u8 = 1;
pub const QXL_DRAW_OPAQUE: u8 = 2;
pub const QXL_DRAW_COPY: u8 = 3;
pub const QXL_COPY_BITS: u8 = 4;
pub const QXL_DRAW_BLEND: u8 = 5;
pub const QXL_DRAW_BLACKNESS: u8 = 6;
pub const QXL_DRAW_WHITENESS: u8 = 7;
pub const QXL_DRAW_INVERS: u8 = 8;
pub const QXL_DRAW_ROP3: u8 = 9;
pub const QXL_DRAW_STROKE: u8 = 10;
pub const QXL_DRAW_TEXT: u8 = 11;
pub const QXL_DRAW_TRANSPARENT: u8 = 12;
pub const QXL_DRAW_ALPHA_BLEND: u8 = 13;
pub const QXL_DRAW_COMPOSITE: u8 = 14;

pub const SPICE_CLIP_TYPE_NONE: u32 = 0;
pub const SPICE_CLIP_TYPE_RECTS: u32 = 1;

pub const SPICE_BRUSH_TYPE_NONE: u32 = 0;
pub const SPICE_BRUSH_TYPE_SOLID: u32 = 1;
pub const SPICE_BRUSH_TYPE_PATTERN: u32 = 2;

pub const SPICE_ROPD_INVERS_SRC: u16 = 1 << 0;
pub const SPICE_ROPD_INVERS_BRUSH: u16 = 1 << 1;
pub const SPICE_ROPD_INVERS_DEST: u16 = 1 << 2;
pub const SPICE_ROPD_OP_PUT: u16 = 1 << 3;
pub const SPICE_ROPD_OP_OR: u16 = 1 << 4;
pub const SPICE_ROPD_OP_AND: u16 = 1 << 5;
pub const SPICE_ROPD_OP_XOR: u16 = 1 << 6;
pub const SPICE_ROPD_OP_BLACKNESS: u16 = 1 << 7;
pub const SPICE_ROPD_OP_WHITENESS: u16 = 1 << 8;
pub const SPICE_ROPD_OP_INVERS: u16 = 1 << 9;
pub const SPICE_ROPD_INVERS_RES: u16 = 1 << 10;

pub const SPICE_IMAGE_TYPE_BITMAP: u8 = 0;
pub const SPICE_IMAGE_TYPE_QUIC: u8 = 1;
pub const SPICE_IMAGE_TYPE_LZ_PLT: u8 = 100;
pub const SPICE_IMAGE_TYPE_SURFACE: u8 = 104;
pub const SPICE_IMAGE_TYPE_LZ4: u8 = 109;

pub const SPICE_BITMAP_FMT_1BIT_LE: u8 = 1;
pub const SPICE_BITMAP_FMT_1BIT_BE: u8 = 2;
pub const SPICE_BITMAP_FMT_4BIT_LE: u8 = 3;
pub const SPICE_BITMAP_FMT_4BIT_BE: u8 = 4;
pub const SPICE_BITMAP_FMT_8BIT: u8 = 5;
pub const SPICE_BITMAP_FMT_16BIT: u8 = 6;
pub const SPICE_BITMAP_FMT_24BIT: u8 = 7;
pub const SPICE_BITMAP_FMT_32BIT: u8 = 8;
pub const SPICE_BITMAP_FMT_RGBA: u8 = 9;
pub const SPICE_BITMAP_FMT_8BIT_A: u8 = 10;

/// QXLBitmapFlags (not SPICE_BITMAP_FLAGS_*: the guest-side bits differ).
pub const QXL_BITMAP_DIRECT: u8 = 1 << 0;
pub const QXL_BITMAP_TOP_DOWN: u8 = 1 << 2;

pub const SPICE_SURFACE_FMT_1_A: u32 = 1;
pub const SPICE_SURFACE_FMT_8_A: u32 = 8;
pub const SPICE_SURFACE_FMT_16_555: u32 = 16;
pub const SPICE_SURFACE_FMT_32_XRGB: u32 = 32;
pub const SPICE_SURFACE_FMT_16_565: u32 = 80;
pub const SPICE_SURFACE_FMT_32_ARGB: u32 = 96;

pub const SPICE_ALPHA_FLAGS_SRC_SURFACE_HAS_ALPHA: u16 = 1 << 1;

pub const QXL_SURFACE_CMD_CREATE: u8 = 0;
pub const QXL_SURFACE_CMD_DESTROY: u8 = 1;

pub const QXL_CURSOR_SET: u8 = 0;
pub const QXL_CURSOR_MOVE: u8 = 1;
pub const QXL_CURSOR_HIDE: u8 = 2;
pub const QXL_CURSOR_TRAIL: u8 = 3;

pub const SPICE_CURSOR_TYPE_ALPHA: u16 = 0;
pub const SPICE_CURSOR_TYPE_MONO: u16 = 1;
pub const SPICE_CURSOR_TYPE_COLOR32: u16 = 6;
