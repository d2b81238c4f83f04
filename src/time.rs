//! Time: the one place that reads the wall clock as unix time and that writes and reads
//! RFC 3339.
//!
//! Stage: shared by every stage that needs a date (token checks, the request context, published
//! bundles, logs, tests). Invariants: a clock before 1970 reads as 1970 (never an underflow that
//! would make an expired token look fresh); RFC 3339 output is UTC with a `Z`; parsing accepts
//! `YYYY-MM-DDTHH:MM:SS[.fff…](Z|±HH:MM)` and nothing looser.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds of `t` (0 before 1970).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Unix milliseconds of `t` (0 before 1970).
pub fn unix_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    unix_seconds(SystemTime::now())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for unix milliseconds (Cedar's `datetime` format).
pub fn rfc3339_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ` for unix seconds.
pub fn rfc3339_seconds(secs: u64) -> String {
    let ms = i64::try_from(secs).unwrap_or(0).saturating_mul(1000);
    let text = rfc3339_millis(ms);
    // `…T07:00:00.000Z` → `…T07:00:00Z`
    text.replace(".000Z", "Z")
}

/// Now as RFC 3339 UTC, to the second.
pub fn rfc3339_now() -> String {
    rfc3339_seconds(unix_now())
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff…](Z|±HH:MM)` into unix milliseconds.
pub fn parse_rfc3339_millis(s: &str) -> Result<i64, String> {
    let bad = || format!("`{s}` is not an RFC 3339 time such as `2025-06-01T12:00:00Z`");
    let b = s.as_bytes();
    let digits = |from: usize, len: usize| -> Result<i64, String> {
        let part = s.get(from..from + len).ok_or_else(bad)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse::<i64>().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let at = |i: usize| b.get(i).copied();
    if at(4) != Some(b'-') || at(7) != Some(b'-') || at(13) != Some(b':') || at(16) != Some(b':') {
        return Err(bad());
    }
    if !matches!(at(10), Some(b'T' | b't' | b' ')) {
        return Err(bad());
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    let mut i = 19;
    let mut millis = 0;
    if at(i) == Some(b'.') {
        i += 1;
        let start = i;
        while at(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        // Milliseconds: the first three fraction digits, padded.
        let frac = s.get(start..i).ok_or_else(bad)?;
        let three: String = frac.chars().chain("000".chars()).take(3).collect();
        millis = three.parse::<i64>().map_err(|_| bad())?;
    }
    let offset_minutes = match at(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && at(i + 3) == Some(b':') => {
            let (h, m) = (digits(i + 1, 2)?, digits(i + 4, 2)?);
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let total = h * 60 + m;
            if sign == b'-' {
                -total
            } else {
                total
            }
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_minutes * 60;
    Ok(seconds * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_format() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_583_348_638_390),
            "2020-03-04T19:03:58.390Z"
        );
        assert_eq!(
            rfc3339_millis(4_102_444_800_000),
            "2100-01-01T00:00:00.000Z"
        );
        assert_eq!(rfc3339_seconds(1_583_348_638), "2020-03-04T19:03:58Z");
    }

    #[test]
    fn parsing_round_trips_and_refuses_the_rest() {
        for ms in [0, 1_583_348_638_390, 4_102_444_800_000, -86_400_000] {
            assert_eq!(parse_rfc3339_millis(&rfc3339_millis(ms)), Ok(ms));
        }
        assert_eq!(
            parse_rfc3339_millis("2020-03-04T20:03:58.39+01:00"),
            Ok(1_583_348_638_390)
        );
        for bad in [
            "",
            "2020-03-04",
            "2020-02-30T00:00:00Z",
            "2020-03-04T24:00:00Z",
            "2020-03-04T19:03:58",
            "2020-03-04T19:03:58.Z",
            "2020-03-04T19:03:58Zjunk",
        ] {
            assert!(parse_rfc3339_millis(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_parsing() {
        assert_eq!(parse_rfc3339_millis("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339_millis("2020-03-04T19:03:58.390Z"),
            Ok(1_583_348_638_390)
        );
        assert_eq!(
            parse_rfc3339_millis("2020-03-04T20:03:58.39+01:00"),
            Ok(1_583_348_638_390)
        );
        assert_eq!(
            parse_rfc3339_millis("2024-02-29T00:00:00Z"),
            Ok(1_709_164_800_000)
        );
        for bad in [
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00+0100",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00.Z",
            "２０２４-01-01T00:00:00Z",
        ] {
            assert!(parse_rfc3339_millis(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clocks_before_1970_read_as_1970() {
        let before = UNIX_EPOCH - std::time::Duration::from_secs(10);
        assert_eq!(unix_seconds(before), 0);
        assert_eq!(unix_millis(before), 0);
    }
}
