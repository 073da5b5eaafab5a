//! X11 keysyms (what an RFB KeyEvent carries) to Linux key codes, for a US layout.
//!
//! A keysym names the symbol the client's layout produced, not the key: `A` and `a` are
//! both the A key, `!` is the 1 key with Shift. The guest runs its own layout over the key
//! codes, so this table is only right for guests using a US layout too; a client that
//! sends Shift itself (every RFB client does) gets the symbol it meant either way.

use super::evdev::key::*;

/// The printable ASCII keysyms, 0x20 (space) to 0x7e (`~`), by `keysym - 0x20`: the key
/// and whether a US layout needs Shift for the symbol.
const PRINTABLE: [(u16, bool); 95] = [
    (KEY_SPACE, false),      // space
    (KEY_1, true),           // !
    (KEY_APOSTROPHE, true),  // "
    (KEY_3, true),           // #
    (KEY_4, true),           // $
    (KEY_5, true),           // %
    (KEY_7, true),           // &
    (KEY_APOSTROPHE, false), // '
    (KEY_9, true),           // (
    (KEY_0, true),           // )
    (KEY_8, true),           // *
    (KEY_EQUAL, true),       // +
    (KEY_COMMA, false),      // ,
    (KEY_MINUS, false),      // -
    (KEY_DOT, false),        // .
    (KEY_SLASH, false),      // /
    (KEY_0, false),
    (KEY_1, false),
    (KEY_2, false),
    (KEY_3, false),
    (KEY_4, false),
    (KEY_5, false),
    (KEY_6, false),
    (KEY_7, false),
    (KEY_8, false),
    (KEY_9, false),
    (KEY_SEMICOLON, true),  // :
    (KEY_SEMICOLON, false), // ;
    (KEY_COMMA, true),      // <
    (KEY_EQUAL, false),     // =
    (KEY_DOT, true),        // >
    (KEY_SLASH, true),      // ?
    (KEY_2, true),          // @
    (KEY_A, true),
    (KEY_B, true),
    (KEY_C, true),
    (KEY_D, true),
    (KEY_E, true),
    (KEY_F, true),
    (KEY_G, true),
    (KEY_H, true),
    (KEY_I, true),
    (KEY_J, true),
    (KEY_K, true),
    (KEY_L, true),
    (KEY_M, true),
    (KEY_N, true),
    (KEY_O, true),
    (KEY_P, true),
    (KEY_Q, true),
    (KEY_R, true),
    (KEY_S, true),
    (KEY_T, true),
    (KEY_U, true),
    (KEY_V, true),
    (KEY_W, true),
    (KEY_X, true),
    (KEY_Y, true),
    (KEY_Z, true),
    (KEY_LEFTBRACE, false),  // [
    (KEY_BACKSLASH, false),  // backslash
    (KEY_RIGHTBRACE, false), // ]
    (KEY_6, true),           // ^
    (KEY_MINUS, true),       // _
    (KEY_GRAVE, false),      // `
    (KEY_A, false),
    (KEY_B, false),
    (KEY_C, false),
    (KEY_D, false),
    (KEY_E, false),
    (KEY_F, false),
    (KEY_G, false),
    (KEY_H, false),
    (KEY_I, false),
    (KEY_J, false),
    (KEY_K, false),
    (KEY_L, false),
    (KEY_M, false),
    (KEY_N, false),
    (KEY_O, false),
    (KEY_P, false),
    (KEY_Q, false),
    (KEY_R, false),
    (KEY_S, false),
    (KEY_T, false),
    (KEY_U, false),
    (KEY_V, false),
    (KEY_W, false),
    (KEY_X, false),
    (KEY_Y, false),
    (KEY_Z, false),
    (KEY_LEFTBRACE, true),  // {
    (KEY_BACKSLASH, true),  // |
    (KEY_RIGHTBRACE, true), // }
    (KEY_GRAVE, true),      // ~
];

/// The function, modifier and keypad keysyms (0xfe00 to 0xffff), sorted by keysym for a
/// binary search: (keysym, key, needs Shift).
const SPECIAL: &[(u32, u16, bool)] = &[
    (0xfe03, KEY_RIGHTALT, false), // ISO_Level3_Shift (AltGr)
    (0xfe20, KEY_TAB, true),       // ISO_Left_Tab: what Shift+Tab sends on X11
    (0xff08, KEY_BACKSPACE, false),
    (0xff09, KEY_TAB, false),
    (0xff0d, KEY_ENTER, false), // Return
    (0xff13, KEY_PAUSE, false),
    (0xff14, KEY_SCROLLLOCK, false),
    (0xff15, KEY_SYSRQ, false),
    (0xff1b, KEY_ESC, false),
    (0xff50, KEY_HOME, false),
    (0xff51, KEY_LEFT, false),
    (0xff52, KEY_UP, false),
    (0xff53, KEY_RIGHT, false),
    (0xff54, KEY_DOWN, false),
    (0xff55, KEY_PAGEUP, false),   // Prior
    (0xff56, KEY_PAGEDOWN, false), // Next
    (0xff57, KEY_END, false),
    (0xff61, KEY_SYSRQ, false), // Print: Linux names the Print Screen key SysRq
    (0xff63, KEY_INSERT, false),
    (0xff67, KEY_COMPOSE, false), // Menu
    (0xff7f, KEY_NUMLOCK, false),
    (0xff8d, KEY_KPENTER, false),
    // With Num Lock off the client sends the keypad's navigation keysyms: they are still
    // keypad keys, and the guest's own Num Lock state gives them their meaning.
    (0xff95, KEY_KP7, false),   // KP_Home
    (0xff96, KEY_KP4, false),   // KP_Left
    (0xff97, KEY_KP8, false),   // KP_Up
    (0xff98, KEY_KP6, false),   // KP_Right
    (0xff99, KEY_KP2, false),   // KP_Down
    (0xff9a, KEY_KP9, false),   // KP_Prior
    (0xff9b, KEY_KP3, false),   // KP_Next
    (0xff9c, KEY_KP1, false),   // KP_End
    (0xff9d, KEY_KP5, false),   // KP_Begin
    (0xff9e, KEY_KP0, false),   // KP_Insert
    (0xff9f, KEY_KPDOT, false), // KP_Delete
    (0xffaa, KEY_KPASTERISK, false),
    (0xffab, KEY_KPPLUS, false),
    (0xffac, KEY_KPCOMMA, false), // KP_Separator
    (0xffad, KEY_KPMINUS, false),
    (0xffae, KEY_KPDOT, false), // KP_Decimal
    (0xffaf, KEY_KPSLASH, false),
    (0xffb0, KEY_KP0, false),
    (0xffb1, KEY_KP1, false),
    (0xffb2, KEY_KP2, false),
    (0xffb3, KEY_KP3, false),
    (0xffb4, KEY_KP4, false),
    (0xffb5, KEY_KP5, false),
    (0xffb6, KEY_KP6, false),
    (0xffb7, KEY_KP7, false),
    (0xffb8, KEY_KP8, false),
    (0xffb9, KEY_KP9, false),
    (0xffbd, KEY_KPEQUAL, false),
    (0xffbe, KEY_F1, false),
    (0xffbf, KEY_F2, false),
    (0xffc0, KEY_F3, false),
    (0xffc1, KEY_F4, false),
    (0xffc2, KEY_F5, false),
    (0xffc3, KEY_F6, false),
    (0xffc4, KEY_F7, false),
    (0xffc5, KEY_F8, false),
    (0xffc6, KEY_F9, false),
    (0xffc7, KEY_F10, false),
    (0xffc8, KEY_F11, false),
    (0xffc9, KEY_F12, false),
    (0xffca, KEY_F13, false),
    (0xffcb, KEY_F13 + 1, false), // F14 to F24 follow F13 in both numberings
    (0xffcc, KEY_F13 + 2, false),
    (0xffcd, KEY_F13 + 3, false),
    (0xffce, KEY_F13 + 4, false),
    (0xffcf, KEY_F13 + 5, false),
    (0xffd0, KEY_F13 + 6, false),
    (0xffd1, KEY_F13 + 7, false),
    (0xffd2, KEY_F13 + 8, false),
    (0xffd3, KEY_F13 + 9, false),
    (0xffd4, KEY_F13 + 10, false),
    (0xffd5, KEY_F24, false),
    (0xffe1, KEY_LEFTSHIFT, false),
    (0xffe2, KEY_RIGHTSHIFT, false),
    (0xffe3, KEY_LEFTCTRL, false),
    (0xffe4, KEY_RIGHTCTRL, false),
    (0xffe5, KEY_CAPSLOCK, false),
    // Meta and Super both name the "Windows" key: X servers differ in which they send.
    (0xffe7, KEY_LEFTMETA, false),  // Meta_L
    (0xffe8, KEY_RIGHTMETA, false), // Meta_R
    (0xffe9, KEY_LEFTALT, false),
    (0xffea, KEY_RIGHTALT, false),
    (0xffeb, KEY_LEFTMETA, false),  // Super_L
    (0xffec, KEY_RIGHTMETA, false), // Super_R
    (0xffff, KEY_DELETE, false),
];

/// The Linux key code for X11 keysym `keysym` on a US layout, and whether the symbol
/// needs Shift held (`!` is Shift+1); `None` for a keysym no US key produces.
///
/// RFB clients send Shift_L themselves before a shifted symbol, so a caller forwarding
/// their events ignores the flag; one typing text on its own synthesizes Shift from it.
pub fn keysym_to_linux(keysym: u32) -> Option<(u16, bool)> {
    if let Some(index) = keysym.checked_sub(0x20) {
        if let Some(&entry) = usize::try_from(index).ok().and_then(|i| PRINTABLE.get(i)) {
            return Some(entry);
        }
    }
    SPECIAL
        .binary_search_by_key(&keysym, |&(sym, _, _)| sym)
        .ok()
        .and_then(|i| SPECIAL.get(i))
        .map(|&(_, code, shift)| (code, shift))
}

/// Every key code the keymap produces (the keyboard advertises them all).
pub(crate) fn mapped_codes() -> impl Iterator<Item = u16> {
    PRINTABLE
        .iter()
        .map(|&(code, _)| code)
        .chain(SPECIAL.iter().map(|&(_, code, _)| code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_map_to_one_key_and_upper_case_needs_shift() {
        assert_eq!(keysym_to_linux(u32::from(b'a')), Some((KEY_A, false)));
        assert_eq!(keysym_to_linux(u32::from(b'A')), Some((KEY_A, true)));
        assert_eq!(keysym_to_linux(u32::from(b'q')), Some((KEY_Q, false)));
        assert_eq!(keysym_to_linux(u32::from(b'Z')), Some((KEY_Z, true)));
        for (lower, upper) in (b'a'..=b'z').zip(b'A'..=b'Z') {
            let (l, ls) = keysym_to_linux(u32::from(lower)).unwrap();
            let (u, us) = keysym_to_linux(u32::from(upper)).unwrap();
            assert_eq!(l, u, "{}", lower as char);
            assert!(!ls && us);
        }
        // Every letter is its own key.
        let mut codes: Vec<u16> = (b'a'..=b'z')
            .map(|c| keysym_to_linux(u32::from(c)).unwrap().0)
            .collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), 26);
    }

    #[test]
    fn digits_and_punctuation_follow_a_us_layout() {
        assert_eq!(keysym_to_linux(u32::from(b'1')), Some((KEY_1, false)));
        assert_eq!(keysym_to_linux(u32::from(b'0')), Some((KEY_0, false)));
        for (sym, key, shift) in [
            (b'!', KEY_1, true),
            (b'@', KEY_2, true),
            (b'#', KEY_3, true),
            (b'^', KEY_6, true),
            (b'(', KEY_9, true),
            (b')', KEY_0, true),
            (b'-', KEY_MINUS, false),
            (b'_', KEY_MINUS, true),
            (b'=', KEY_EQUAL, false),
            (b'+', KEY_EQUAL, true),
            (b'[', KEY_LEFTBRACE, false),
            (b'}', KEY_RIGHTBRACE, true),
            (b'\\', KEY_BACKSLASH, false),
            (b'|', KEY_BACKSLASH, true),
            (b';', KEY_SEMICOLON, false),
            (b':', KEY_SEMICOLON, true),
            (b'\'', KEY_APOSTROPHE, false),
            (b'"', KEY_APOSTROPHE, true),
            (b',', KEY_COMMA, false),
            (b'<', KEY_COMMA, true),
            (b'.', KEY_DOT, false),
            (b'>', KEY_DOT, true),
            (b'/', KEY_SLASH, false),
            (b'?', KEY_SLASH, true),
            (b'`', KEY_GRAVE, false),
            (b'~', KEY_GRAVE, true),
            (b' ', KEY_SPACE, false),
        ] {
            assert_eq!(
                keysym_to_linux(u32::from(sym)),
                Some((key, shift)),
                "{}",
                sym as char
            );
        }
    }

    #[test]
    fn function_modifier_and_keypad_keys() {
        for (sym, key) in [
            (0xff0d, KEY_ENTER),
            (0xff08, KEY_BACKSPACE),
            (0xff09, KEY_TAB),
            (0xff1b, KEY_ESC),
            (0xffff, KEY_DELETE),
            (0xff63, KEY_INSERT),
            (0xff50, KEY_HOME),
            (0xff57, KEY_END),
            (0xff55, KEY_PAGEUP),
            (0xff56, KEY_PAGEDOWN),
            (0xff51, KEY_LEFT),
            (0xff52, KEY_UP),
            (0xff53, KEY_RIGHT),
            (0xff54, KEY_DOWN),
            (0xffbe, KEY_F1),
            (0xffc7, KEY_F10),
            (0xffc8, KEY_F11),
            (0xffc9, KEY_F12),
            (0xffe1, KEY_LEFTSHIFT),
            (0xffe2, KEY_RIGHTSHIFT),
            (0xffe3, KEY_LEFTCTRL),
            (0xffe4, KEY_RIGHTCTRL),
            (0xffe9, KEY_LEFTALT),
            (0xffea, KEY_RIGHTALT),
            (0xffe7, KEY_LEFTMETA),
            (0xffec, KEY_RIGHTMETA),
            (0xffe5, KEY_CAPSLOCK),
            (0xffb0, KEY_KP0),
            (0xffb5, KEY_KP5),
            (0xffb9, KEY_KP9),
            (0xff8d, KEY_KPENTER),
            (0xffab, KEY_KPPLUS),
            (0xffad, KEY_KPMINUS),
            (0xffaa, KEY_KPASTERISK),
            (0xffaf, KEY_KPSLASH),
            (0xffae, KEY_KPDOT),
            (0xff9c, KEY_KP1),
        ] {
            assert_eq!(keysym_to_linux(sym), Some((key, false)), "{sym:#x}");
        }
        assert_eq!(keysym_to_linux(0xfe20), Some((KEY_TAB, true)));
        assert_eq!(keysym_to_linux(0xffd5), Some((KEY_F24, false)));
    }

    #[test]
    fn unknown_keysyms_map_to_nothing() {
        for sym in [
            0,
            0x1f,
            0x7f,
            0xe9, /* eacute */
            0xff00,
            0xfffe,
            0x1000_20ac,
            u32::MAX,
        ] {
            assert_eq!(keysym_to_linux(sym), None, "{sym:#x}");
        }
    }

    #[test]
    fn the_special_table_is_sorted_for_its_search() {
        assert!(SPECIAL.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(mapped_codes().all(|c| c > 0 && c <= KEY_LAST_BELOW_BUTTONS));
    }
}
