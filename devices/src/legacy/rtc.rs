//! The MC146818 real-time clock and CMOS RAM behind ports 0x70/0x71.
//!
//! Linux reads the wall clock from here at boot and probes the chip with `rtc_cmos`; with no
//! chip present the probe spins on the update-in-progress bit for seconds. The clock runs on
//! the host's UTC time plus an offset the guest may change by writing the time registers.

use std::time::{SystemTime, UNIX_EPOCH};

/// Ports decoded: 0x70 (index) and 0x71 (data).
pub const RTC_PORT_COUNT: u16 = 2;

const INDEX_OFFSET: u16 = 0;
const DATA_OFFSET: u16 = 1;
const CMOS_SIZE: usize = 128;
/// Bit 7 of the index port masks NMIs on real hardware; it is not part of the index.
const INDEX_MASK: u8 = 0x7f;

const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_WEEKDAY: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;

/// 32.768 kHz time base, 1024 Hz periodic rate; the update-in-progress bit stays clear
/// because every read sees a complete, consistent time.
const REG_A_DEFAULT: u8 = 0x26;
const REG_B_24_HOUR: u8 = 0x02;
const REG_B_BINARY: u8 = 0x04;
const REG_D_VALID_RAM_AND_TIME: u8 = 0x80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CivilTime {
    year: i64,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    weekday: u8, // 1 = Sunday
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl CivilTime {
    fn from_unix(seconds: i64) -> Self {
        let days = seconds.div_euclid(86_400);
        let secs = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: (secs / 3600) as u8,
            minute: (secs / 60 % 60) as u8,
            second: (secs % 60) as u8,
            // 1970-01-01 was a Thursday (weekday 5 when Sunday is 1).
            weekday: ((days + 4).rem_euclid(7) + 1) as u8,
        }
    }

    fn to_unix(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }
}

fn to_bcd(value: u8) -> u8 {
    ((value / 10) << 4) | (value % 10)
}

fn from_bcd(value: u8) -> u8 {
    (value >> 4) * 10 + (value & 0x0f)
}

/// The RTC/CMOS chip. `now` supplies host UTC seconds (injectable for tests).
pub struct CmosRtc {
    index: u8,
    ram: [u8; CMOS_SIZE],
    offset_seconds: i64,
    now: fn() -> i64,
}

fn host_unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Default for CmosRtc {
    fn default() -> Self {
        Self::new()
    }
}

impl CmosRtc {
    pub fn new() -> Self {
        Self::with_clock(host_unix_seconds)
    }

    pub fn with_clock(now: fn() -> i64) -> Self {
        let mut ram = [0u8; CMOS_SIZE];
        ram[REG_A as usize] = REG_A_DEFAULT;
        ram[REG_B as usize] = REG_B_24_HOUR;
        ram[REG_D as usize] = REG_D_VALID_RAM_AND_TIME;
        Self {
            index: 0,
            ram,
            offset_seconds: 0,
            now,
        }
    }

    fn guest_time(&self) -> CivilTime {
        CivilTime::from_unix((self.now)() + self.offset_seconds)
    }

    fn encode(&self, value: u8) -> u8 {
        if self.ram[REG_B as usize] & REG_B_BINARY != 0 {
            value
        } else {
            to_bcd(value)
        }
    }

    fn decode(&self, value: u8) -> u8 {
        if self.ram[REG_B as usize] & REG_B_BINARY != 0 {
            value
        } else {
            from_bcd(value)
        }
    }

    pub fn read(&mut self, offset: u16) -> u8 {
        match offset {
            INDEX_OFFSET => self.index,
            DATA_OFFSET => self.read_register(self.index),
            _ => 0xff,
        }
    }

    pub fn write(&mut self, offset: u16, value: u8) {
        match offset {
            INDEX_OFFSET => self.index = value & INDEX_MASK,
            DATA_OFFSET => self.write_register(self.index, value),
            _ => {}
        }
    }

    fn read_register(&self, register: u8) -> u8 {
        let time = self.guest_time();
        match register {
            REG_SECONDS => self.encode(time.second),
            REG_MINUTES => self.encode(time.minute),
            REG_HOURS => self.encode(time.hour),
            REG_WEEKDAY => self.encode(time.weekday),
            REG_DAY => self.encode(time.day),
            REG_MONTH => self.encode(time.month),
            REG_YEAR => self.encode(time.year.rem_euclid(100) as u8),
            REG_CENTURY => self.encode(time.year.div_euclid(100).clamp(0, 99) as u8),
            // Reading C acknowledges interrupts; none are ever raised.
            REG_C => 0,
            other => self.ram[usize::from(other) % CMOS_SIZE],
        }
    }

    fn write_register(&mut self, register: u8, value: u8) {
        let mut time = self.guest_time();
        let decoded = self.decode(value);
        match register {
            REG_SECONDS => time.second = decoded.min(59),
            REG_MINUTES => time.minute = decoded.min(59),
            REG_HOURS => time.hour = decoded.min(23),
            REG_DAY => time.day = decoded.clamp(1, 31),
            REG_MONTH => time.month = decoded.clamp(1, 12),
            REG_YEAR => time.year = time.year.div_euclid(100) * 100 + i64::from(decoded.min(99)),
            REG_CENTURY => time.year = i64::from(decoded.min(99)) * 100 + time.year.rem_euclid(100),
            REG_C | REG_D | REG_WEEKDAY => return,
            other => {
                self.ram[usize::from(other) % CMOS_SIZE] = value;
                return;
            }
        }
        self.offset_seconds = time.to_unix() - (self.now)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-24 22:32:07 UTC, a Tuesday.
    const FIXED: i64 = 1_795_559_527;

    fn rtc() -> CmosRtc {
        CmosRtc::with_clock(|| FIXED)
    }

    fn read(rtc: &mut CmosRtc, register: u8) -> u8 {
        rtc.write(INDEX_OFFSET, register);
        rtc.read(DATA_OFFSET)
    }

    #[test]
    fn reports_host_time_in_bcd() {
        let mut rtc = rtc();
        assert_eq!(read(&mut rtc, REG_SECONDS), 0x07);
        assert_eq!(read(&mut rtc, REG_MINUTES), 0x32);
        assert_eq!(read(&mut rtc, REG_HOURS), 0x22);
        assert_eq!(read(&mut rtc, REG_DAY), 0x24);
        assert_eq!(read(&mut rtc, REG_MONTH), 0x11);
        assert_eq!(read(&mut rtc, REG_YEAR), 0x26);
        assert_eq!(read(&mut rtc, REG_CENTURY), 0x20);
        assert_eq!(read(&mut rtc, REG_WEEKDAY), 3, "Tuesday");
    }

    #[test]
    fn never_reports_an_update_in_progress() {
        let mut rtc = rtc();
        assert_eq!(read(&mut rtc, REG_A) & 0x80, 0);
        assert_eq!(read(&mut rtc, REG_D), REG_D_VALID_RAM_AND_TIME);
    }

    #[test]
    fn guest_writes_move_the_clock_and_cmos_ram_keeps_bytes() {
        let mut rtc = rtc();
        rtc.write(INDEX_OFFSET, REG_YEAR | 0x80); // NMI-mask bit is not part of the index
        rtc.write(DATA_OFFSET, 0x30);
        assert_eq!(read(&mut rtc, REG_YEAR), 0x30);
        assert_eq!(read(&mut rtc, REG_MONTH), 0x11);
        rtc.write(INDEX_OFFSET, 0x40);
        rtc.write(DATA_OFFSET, 0xa5);
        assert_eq!(read(&mut rtc, 0x40), 0xa5);
    }

    #[test]
    fn binary_mode_is_honoured() {
        let mut rtc = rtc();
        rtc.write(INDEX_OFFSET, REG_B);
        rtc.write(DATA_OFFSET, REG_B_24_HOUR | REG_B_BINARY);
        assert_eq!(read(&mut rtc, REG_MINUTES), 32);
    }

    #[test]
    fn calendar_round_trips() {
        for seconds in [0, 951_782_400, FIXED, 4_107_542_399, -86_400] {
            assert_eq!(CivilTime::from_unix(seconds).to_unix(), seconds);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
