//! RFC 3339 timestamps: read with the `time` crate, written in UTC by a small formatter.
//!
//! The platform only ever writes UTC (`Z`), but reads any offset, because Kubernetes and fluentd
//! write local times with offsets. Reading is `time`'s RFC 3339 parser, which checks the calendar
//! (no 30 February, no hour 24). Writing stays hand-written: the logshuttle writes one timestamp
//! per delivered line, and the formatter below appends to a buffer it already has with no
//! allocation and no `Result`, which `time`'s formatter (an `OffsetDateTime`, then its well-known
//! format through `io::Write`) does not; the unit test `writes_what_time_writes` checks the two
//! agree over the whole writable range.

use std::fmt::Write;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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

/// Appends `YYYY-MM-DDTHH:MM:SS` for whole seconds since the epoch. Years outside 0000-9999
/// (which RFC 3339 cannot write, see [`in_range`]) are written as `{:04}` writes them.
fn write_seconds(out: &mut String, secs: i64) {
    match seconds_bytes(secs) {
        Some(b) => out.push_str(std::str::from_utf8(&b).expect("ASCII digits and separators")),
        None => {
            let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
            let (y, mo, d) = civil_from_days(days);
            let _ = write!(out, "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60);
        }
    }
}

/// Writes `n` (less than `10^N`) as `N` decimal digits, zero-padded, into `out`.
fn digits<const N: usize>(out: &mut [u8], mut n: u32) {
    for b in out[..N].iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// `YYYY-MM-DDTHH:MM:SS` for whole seconds since the epoch, digit by digit; `None` for a year
/// outside 0000-9999. The logshuttle writes one timestamp per delivered line, and `core::fmt`'s
/// padded integers cost it about 1,800 instructions per line (callgrind, issue 18's fan-out
/// benchmark); this costs a few dozen.
fn seconds_bytes(secs: i64) -> Option<[u8; 19]> {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    let (y, mo, d) = civil_from_days(days);
    let y = u32::try_from(y).ok().filter(|y| *y <= 9999)?;
    let mut b = *b"0000-00-00T00:00:00";
    digits::<4>(&mut b[0..], y);
    digits::<2>(&mut b[5..], mo);
    digits::<2>(&mut b[8..], d);
    digits::<2>(&mut b[11..], rem / 3600);
    digits::<2>(&mut b[14..], rem / 60 % 60);
    digits::<2>(&mut b[17..], rem % 60);
    Some(b)
}

/// `2024-01-02T03:04:05.123456Z` as bytes, without allocating: the RFC 5424 timestamp form,
/// for writers that build a byte buffer (the logshuttle's syslog frames). Only for times
/// [`in_range`]; `None` otherwise.
pub fn micros_bytes(micros: i64) -> Option<[u8; 27]> {
    // A writer's line mostly shares its second with the line before (lines come in batches
    // from one moment): the last second written is kept per thread with its text, which then
    // costs a comparison instead of the calendar's few hundred instructions (benches/RESULTS.md,
    // logshuttle run 16).
    thread_local! {
        static LAST: std::cell::Cell<(i64, [u8; 19])> = const { std::cell::Cell::new((i64::MIN, [0; 19])) };
    }
    if !in_range(micros) {
        return None;
    }
    let seconds = micros.div_euclid(1_000_000);
    let secs = LAST.with(|last| match last.get() {
        (s, text) if s == seconds => Some(text),
        _ => {
            let text = seconds_bytes(seconds)?;
            last.set((seconds, text));
            Some(text)
        }
    })?;
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    b[..19].copy_from_slice(&secs);
    digits::<6>(&mut b[20..], micros.rem_euclid(1_000_000) as u32);
    Some(b)
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
    let mut frac = *b".000000Z";
    digits::<6>(&mut frac[1..], micros.rem_euclid(1_000_000) as u32);
    out.push_str(std::str::from_utf8(&frac).expect("ASCII digits"));
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

/// Parses an RFC 3339 timestamp (`2024-01-02T03:04:05.123456789+02:00`, `...Z`; RFC 3339 §5.6)
/// into microseconds since the epoch. Fractions beyond microseconds are cut. A space instead of
/// the `T` is read too, as RFC 3339's note on §5.6 allows and some log shippers write. `None` for
/// anything else: a date the calendar does not have (30 February), hour 24, minute 60, a missing
/// offset, a leap second (`:60`, which no clock Wharf reads from reports).
pub fn parse_micros(s: &str) -> Option<i64> {
    // `time` reads any byte between the date and the time; RFC 3339 allows `T`, `t` and (by its
    // note) a space.
    let parsed = match s.as_bytes().get(10) {
        Some(b'T' | b't') => OffsetDateTime::parse(s, &Rfc3339),
        Some(b' ') => {
            let mut t = s.to_owned();
            t.replace_range(10..11, "T");
            OffsetDateTime::parse(&t, &Rfc3339)
        }
        _ => return None,
    }
    .ok()?;
    i64::try_from(parsed.unix_timestamp_nanos().div_euclid(1_000)).ok()
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
            ("2023-11-14t22:13:20z", Some(1_700_000_000_000_000)),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800_000_000)),
            ("2023-11-14T22:13:20", None),
            ("2023-13-14T22:13:20Z", None),
            ("2023-11-14T22:13:20.Z", None),
            ("2023-11-14T22:13:20+0100", None),
            ("garbage", None),
            ("", None),
            // Dates the calendar does not have, and times the clock does not show.
            ("2023-02-31T00:00:00Z", None),
            ("2023-02-30T00:00:00Z", None),
            ("2023-02-29T00:00:00Z", None),
            ("2023-04-31T00:00:00Z", None),
            ("2023-11-00T00:00:00Z", None),
            ("2023-11-14T24:00:00Z", None),
            ("2023-11-14T23:60:00Z", None),
            ("2023-11-14T23:59:61Z", None),
            ("2023-11-14T22:13:20+24:00", None),
            ("2023-11-14T22:13:20-00:60", None),
            ("2023-11-14X22:13:20Z", None),
            ("2023-11-14T22:13:20Z ", None),
        ] {
            assert_eq!(parse_micros(text), want, "{text}");
        }
        for us in [0, 1_700_000_000_123_456, 4_102_444_800_000_000, MIN_MICROS, MAX_MICROS] {
            assert_eq!(parse_micros(&format_micros(us)), Some(us));
        }
    }

    /// The hand-written formatter against `time`'s, over the writable range: both ends, the
    /// epoch, leap days and a spread of times in between.
    #[test]
    fn writes_what_time_writes() {
        let mut samples = vec![MIN_MICROS, MAX_MICROS, -1, 0, 951_782_400_000_000, 4_107_542_399_999_999];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            samples.push(MIN_MICROS + (x % (MAX_MICROS - MIN_MICROS) as u64) as i64);
        }
        // Runs of one second, the next, and back, as a writer's lines come (the last second
        // written is kept).
        let second = 1_700_000_000_000_000;
        samples.extend([second + 5, second + 999_999, second + 1_000_000, second + 1_000_001, second, second - 1]);
        samples.extend([second + 86_400_000_000, second + 5, second - 86_400_000_000 + 5]);
        for us in samples {
            let theirs = OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).unwrap();
            let want = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                theirs.year(),
                u8::from(theirs.month()),
                theirs.day(),
                theirs.hour(),
                theirs.minute(),
                theirs.second(),
                theirs.microsecond()
            );
            assert_eq!(format_micros(us), want, "{us}");
            assert_eq!(micros_bytes(us).as_ref().map(|b| &b[..]), Some(want.as_bytes()), "{us}");
        }
        // Outside the writable range there are no bytes; the `String` forms still write
        // what `{:04}` writes.
        for us in [MIN_MICROS - 1, MAX_MICROS + 1, i64::MIN, i64::MAX] {
            assert_eq!(micros_bytes(us), None, "{us}");
        }
        assert_eq!(format_seconds(253_402_300_800), "10000-01-01T00:00:00Z");
        assert_eq!(format_seconds(-62_135_596_801), "0000-12-31T23:59:59Z");
    }
}
