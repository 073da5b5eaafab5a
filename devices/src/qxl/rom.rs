//! The ROM BAR: QXLRom, then the mode list. Linux reads the magic, where the RAM header
//! is, how large the first surface area is, the memslot geometry and the modes.

use super::device::QxlConfig;
use super::layout::*;

fn put_u32(rom: &mut [u8], offset: usize, value: u32) {
    rom[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

/// Builds the ROM for a device whose RAM header sits at `ram_header_offset` in BAR0.
pub fn build_rom(config: &QxlConfig, ram_header_offset: u64) -> Vec<u8> {
    let mut rom = vec![0u8; ROM_SIZE as usize];
    // Linux sizes its command-memory pool (TTM VRAM) by surface0_area_size and the main
    // memslot by ram_header_offset: give it everything below the header.
    let surface0 = ram_header_offset as u32;
    put_u32(&mut rom, ROM_MAGIC_OFFSET, ROM_MAGIC);
    put_u32(&mut rom, ROM_ID, 0);
    put_u32(&mut rom, ROM_UPDATE_ID, 0);
    put_u32(&mut rom, ROM_MODE, 0);
    put_u32(&mut rom, ROM_MODES_OFFSET, ROM_HEADER_SIZE as u32);
    put_u32(&mut rom, ROM_NUM_PAGES, 0);
    put_u32(&mut rom, ROM_PAGES_OFFSET, surface0);
    put_u32(&mut rom, ROM_DRAW_AREA_OFFSET, 0);
    put_u32(&mut rom, ROM_SURFACE0_AREA_SIZE, surface0);
    put_u32(&mut rom, ROM_RAM_HEADER_OFFSET, ram_header_offset as u32);
    put_u32(&mut rom, ROM_MM_CLOCK, 0);
    put_u32(&mut rom, ROM_N_SURFACES, N_SURFACES);
    rom[ROM_FLAGS..ROM_FLAGS + 8].fill(0);
    rom[ROM_SLOTS_START] = SLOTS_START;
    rom[ROM_SLOTS_END] = SLOTS_END;
    rom[ROM_SLOT_GEN_BITS] = SLOT_GEN_BITS;
    rom[ROM_SLOT_ID_BITS] = SLOT_ID_BITS;
    rom[ROM_SLOT_GENERATION] = SLOT_GENERATION;

    let max_modes = (rom.len() - ROM_HEADER_SIZE - 4) / MODE_SIZE;
    let modes = &config.modes[..config.modes.len().min(max_modes)];
    put_u32(&mut rom, ROM_HEADER_SIZE, modes.len() as u32);
    for (id, &(width, height)) in modes.iter().enumerate() {
        let at = ROM_HEADER_SIZE + 4 + id * MODE_SIZE;
        // id, x_res, y_res, bits, stride, x_mili, y_mili (at 96 dpi), orientation
        let fields = [
            id as u32,
            width,
            height,
            32,
            width * 4,
            width * 254 / 960,
            height * 254 / 960,
            0,
        ];
        for (i, value) in fields.into_iter().enumerate() {
            put_u32(&mut rom, at + i * 4, value);
        }
    }
    rom
}
