//! Value formats shared by every interface: booleans, durations, dates, counters
//! (routeros.md §4.11). Pure functions; the clock is always passed in.

use chrono::{DateTime, Utc};

/// Parses a RouterOS boolean input (`yes`/`no`/`true`/`false`) into its canonical form.
pub fn parse_bool(v: &[u8]) -> Option<bool> {
    match v {
        b"yes" | b"true" => Some(true),
        b"no" | b"false" => Some(false),
        _ => None,
    }
}

/// Parses durations in the forms RouterOS accepts: `1w2d3h4m5s`, `1h`, `90` (seconds),
/// `01:00:00`, `1d02:15:30`, with optional fractional seconds / `ms`. Returns milliseconds.
pub fn parse_duration_ms(v: &str) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    if v.contains(':') {
        let (days, clock) = match v.find('d') {
            Some(i) => (v[..i].parse::<u64>().ok()?, &v[i + 1..]),
            None => (0, v),
        };
        let parts: Vec<&str> = clock.split(':').collect();
        if parts.len() != 3 {
            return None;
        }
        let h: u64 = parts[0].parse().ok()?;
        let m: u64 = parts[1].parse().ok()?;
        let s: f64 = parts[2].parse().ok()?;
        if m >= 60 || !(0.0..60.0).contains(&s) {
            return None;
        }
        return Some(((days * 24 + h) * 60 + m) * 60_000 + (s * 1000.0).round() as u64);
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse::<u64>().ok()?.checked_mul(1000);
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    let bytes = v.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            i += 1;
            continue;
        }
        let (unit_ms, len) = if v[i..].starts_with("ms") {
            (1.0, 2)
        } else if v[i..].starts_with("us") {
            (0.001, 2)
        } else {
            match c {
                'w' => (604_800_000.0, 1),
                'd' => (86_400_000.0, 1),
                'h' => (3_600_000.0, 1),
                'm' => (60_000.0, 1),
                's' => (1000.0, 1),
                _ => return None,
            }
        };
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += (n * unit_ms).round() as u64;
        i += len;
    }
    if !num.is_empty() {
        return None;
    }
    Some(total)
}

/// Formats a duration the way RouterOS prints it: `2d20h12m20s`, `44m55s`, `0s`.
pub fn format_duration_ms(ms: u64) -> String {
    let mut secs = ms / 1000;
    let rest_ms = ms % 1000;
    if secs == 0 && rest_ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    if secs > 0 || rest_ms > 0 {
        if rest_ms > 0 && out.is_empty() && secs == 0 {
            out.push_str(&format!("{rest_ms}ms"));
        } else {
            out.push_str(&format!("{secs}s"));
        }
    }
    out
}

/// Formats a wall-clock date-time per version: `2023-07-14 19:13:29` (7.10+) or
/// `jul/14/2023 19:13:29` (older).
pub fn format_datetime(t: DateTime<Utc>, iso: bool) -> String {
    if iso {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        t.format("%b/%d/%Y %H:%M:%S").to_string().to_lowercase()
    }
}

/// The `date` field of `/system/clock`.
pub fn format_date(t: DateTime<Utc>, iso: bool) -> String {
    if iso {
        t.format("%Y-%m-%d").to_string()
    } else {
        t.format("%b/%d/%Y").to_string().to_lowercase()
    }
}

/// Parses an unsigned decimal counter; absent or malformed counts as 0.
pub fn counter(v: Option<&Vec<u8>>) -> u64 {
    v.and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_documented_shape() {
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("01:00:00"), Some(3_600_000));
        assert_eq!(parse_duration_ms("1d02:15:30"), Some(94_530_000));
        assert_eq!(parse_duration_ms("2d20h12m20s"), Some(245_540_000));
        assert_eq!(parse_duration_ms("1.5s"), Some(1500));
        assert_eq!(parse_duration_ms("100ms"), Some(100));
        assert_eq!(parse_duration_ms("30"), Some(30_000));
        assert_eq!(parse_duration_ms("abc"), None);
    }

    #[test]
    fn durations_format_like_routeros() {
        assert_eq!(format_duration_ms(0), "0s");
        assert_eq!(format_duration_ms(245_540_000), "2d20h12m20s");
        assert_eq!(format_duration_ms(3_600_000), "1h");
        assert_eq!(format_duration_ms(2_695_000), "44m55s");
    }

    #[test]
    fn dates_switch_format_at_7_10() {
        let t = DateTime::parse_from_rfc3339("2023-07-14T19:13:29Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_datetime(t, true), "2023-07-14 19:13:29");
        assert_eq!(format_datetime(t, false), "jul/14/2023 19:13:29");
    }
}
