//! RFC 3339 timestamps in UTC, written and read without a calendar library.
//!
//! The platform only ever writes UTC (`Z`), but reads any offset, because Kubernetes and fluentd
//! write local times with offsets.

use std::fmt::Write;

/// Days since 1970-01-01 to a civil date (proleptic Gregorian), after Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A civil date to days since 1970-01-01, after Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Appends `YYYY-MM-DDTHH:MM:SS` for whole seconds since the epoch.
fn write_seconds(out: &mut String, secs: i64) {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, mo, d) = civil_from_days(days);
    let _ = write!(out, "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60);
}

/// `2024-01-02T03:04:05Z`.
pub fn format_seconds(secs: i64) -> String {
    let mut s = String::with_capacity(20);
    write_seconds(&mut s, secs);
    s.push('Z');
    s
}

/// The first and last microsecond of years 0001 to 9999: times RFC 3339 can write.
pub const MIN_MICROS: i64 = -62_135_596_800_000_000;
/// See [`MIN_MICROS`].
pub const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// Whether RFC 3339 can write this time (years 0001 to 9999).
pub fn in_range(micros: i64) -> bool {
    (MIN_MICROS..=MAX_MICROS).contains(&micros)
}

/// `2024-01-02T03:04:05.123456Z`, appended to `out`: the RFC 5424 timestamp form. Only for
/// times [`in_range`].
pub fn write_micros(out: &mut String, micros: i64) {
    write_seconds(out, micros.div_euclid(1_000_000));
    let _ = write!(out, ".{:06}Z", micros.rem_euclid(1_000_000));
}

/// `2024-01-02T03:04:05.123456Z`.
pub fn format_micros(micros: i64) -> String {
    let mut s = String::with_capacity(27);
    write_micros(&mut s, micros);
    s
}

/// Seconds since the epoch, now.
pub fn now_seconds() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Parses an RFC 3339 timestamp (`2024-01-02T03:04:05.123456789+02:00`, `...Z`) into
/// microseconds since the epoch. Fractions beyond microseconds are cut.
pub fn parse_micros(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0i64, |n, c| n * 10 + i64::from(c - b'0')))
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut at = 19;
    let mut micros = 0i64;
    if b[at] == b'.' {
        let digits = b[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for i in 0..6 {
            micros = micros * 10 + b.get(at + 1 + i).filter(|_| i < digits).map_or(0, |c| i64::from(c - b'0'));
        }
        at += 1 + digits;
    }
    let offset = match b.get(at)? {
        b'Z' | b'z' if at + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if at + 6 == b.len() && b[at + 3] == b':' => {
            let off = num(at + 1..at + 3)? * 3600 + num(at + 4..at + 6)? * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some(secs * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_seconds(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_seconds(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_micros(1_700_000_000_123_456), "2023-11-14T22:13:20.123456Z");
        assert_eq!(format_micros(-1), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn range_ends_are_four_digit_years() {
        assert_eq!(format_micros(MIN_MICROS), "0001-01-01T00:00:00.000000Z");
        assert_eq!(format_micros(MAX_MICROS), "9999-12-31T23:59:59.999999Z");
        assert!(in_range(0) && !in_range(MIN_MICROS - 1) && !in_range(MAX_MICROS + 1));
    }

    #[test]
    fn parses() {
        for (text, want) in [
            ("2023-11-14T22:13:20.123456Z", Some(1_700_000_000_123_456)),
            ("2023-11-14T22:13:20Z", Some(1_700_000_000_000_000)),
            ("2023-11-14T23:13:20.1+01:00", Some(1_700_000_000_100_000)),
            ("2023-11-14T22:13:20.123456789Z", Some(1_700_000_000_123_456)),
            ("2023-11-14 22:13:20Z", Some(1_700_000_000_000_000)),
            ("2023-11-14T22:13:20", None),
            ("2023-13-14T22:13:20Z", None),
            ("2023-11-14T22:13:20.Z", None),
            ("2023-11-14T22:13:20+0100", None),
            ("garbage", None),
        ] {
            assert_eq!(parse_micros(text), want, "{text}");
        }
        for us in [0, 1_700_000_000_123_456, 4_102_444_800_000_000] {
            assert_eq!(parse_micros(&format_micros(us)), Some(us));
        }
    }
}
