//! Timestamps in PocketBase's wire format: UTC `YYYY-MM-DD HH:MM:SS.sssZ`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// The current time, formatted.
pub fn now() -> String {
    format(Utc::now())
}

/// Formats a UTC instant with millisecond precision.
pub fn format(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string()
}

/// Parses the date formats clients send: RFC 3339 (`T` or space separator, any offset),
/// a naive date-time taken as UTC, or a bare date.
pub fn parse(input: &str) -> Option<DateTime<Utc>> {
    let s = input.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let with_t = s.replacen(' ', "T", 1);
    if let Ok(t) = DateTime::parse_from_rfc3339(&with_t) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = with_t.trim_end_matches('Z');
    for pattern in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, pattern) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms_and_formats_in_pocketbase_style() {
        for input in [
            "2024-05-01 10:20:30.123Z",
            "2024-05-01T10:20:30.123Z",
            "2024-05-01T12:20:30.123+02:00",
            "2024-05-01 10:20:30.123",
        ] {
            let t = parse(input).expect(input);
            assert_eq!(format(t), "2024-05-01 10:20:30.123Z", "{input}");
        }
        assert_eq!(parse("2024-05-01").map(format).as_deref(), Some("2024-05-01 00:00:00.000Z"));
        assert!(parse("yesterday").is_none());
        assert!(parse("2024-13-01").is_none());
    }
}
