//! UTC timestamps as RFC 3339 text, the one format the API and job records use.
//!
//! Fixed width (`2026-11-27T12:36:33.123Z`), so the strings sort in time order.

use std::time::{SystemTime, UNIX_EPOCH};

/// `(year, month, day)` of a day count since 1970-01-01 (proleptic
/// Gregorian; Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// RFC 3339 in UTC with milliseconds for a time in nanoseconds since the epoch.
pub fn rfc3339_from_nanos(nanos: i128) -> String {
    let secs = nanos.div_euclid(1_000_000_000) as i64;
    let millis = (nanos.rem_euclid(1_000_000_000) / 1_000_000) as u32;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// Nanoseconds since the epoch (negative before it).
pub fn nanos_since_epoch(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

pub fn rfc3339(time: SystemTime) -> String {
    rfc3339_from_nanos(nanos_since_epoch(time))
}

pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// Days since 1970-01-01 of a date (the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch of a UTC time as this module writes it
/// (`2026-11-27T12:36:33.123Z`; the fraction and `Z` optional); `None`
/// for any other text.
pub fn parse_rfc3339(text: &str) -> Option<f64> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once('T')?;
    let mut date = date.splitn(3, '-').map(|p| p.parse::<u32>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut clock = clock.splitn(3, ':').map(|p| p.parse::<u32>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let fraction: f64 = format!("0.{fraction}").parse().ok()?;
    let days = days_from_civil(i64::from(year), month, day);
    Some((days * 86_400 + i64::from(hour * 3600 + minute * 60 + second)) as f64 + fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_inverts_formatting() {
        for nanos in [0i128, 1_709_214_358_123_000_000, 4_102_444_800_999_000_000] {
            let text = rfc3339_from_nanos(nanos);
            let seconds = parse_rfc3339(&text).unwrap();
            assert!((seconds - nanos as f64 / 1e9).abs() < 1e-3, "{text}");
        }
        assert_eq!(parse_rfc3339("2026-11-29T00:00:00Z"), Some(1_795_910_400.0));
        for bad in [
            "",
            "2026-11-29",
            "2026-13-01T00:00:00Z",
            "x-y-zT1:2:3",
            "2026-11-29T25:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_from_nanos(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_from_nanos(1_709_214_358_123_456_789),
            "2024-02-29T13:45:58.123Z"
        );
        assert_eq!(
            rfc3339_from_nanos(4_102_444_799_999_000_000),
            "2099-12-31T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339_from_nanos(-1_000_000_000),
            "1969-12-31T23:59:59.000Z"
        );
    }

    #[test]
    fn days_round_trip_through_a_leap_century() {
        // 2000-02-29 is day 11016.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
    }
}
