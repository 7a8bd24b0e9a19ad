//! Values as RouterOS sends them, and their parsing into typed fields at the edge.
//!
//! Every value on every transport is a string (routeros.md §1.5): booleans `true/false` or
//! `yes/no`, counters as decimal u64, durations in several shapes (§4.11), two date formats.
//! Strings are bytes in the router's code page (§2.8, §7.13): [`Text`] keeps the raw bytes so a
//! name read from the router can be written back unchanged, and displays lossily.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use super::error::{Result, RouterError};

/// A RouterOS string: raw bytes, usually UTF-8 but not always.
///
/// Up to [`INLINE`] bytes are kept in the value itself, longer ones in one exact-size heap
/// allocation. Names, profiles and flags nearly always fit, and a pass over 10,000 customers
/// holds several of them per customer twice (desired and observed), so this saves a heap
/// allocation each without making the value larger than a `Vec`.
#[derive(Clone)]
pub struct Text(Repr);

/// Bytes a [`Text`] holds without a heap allocation.
pub const INLINE: usize = 22;

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Text {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        let bytes = bytes.into();
        if bytes.len() <= INLINE {
            Text::copied(&bytes)
        } else {
            Text(Repr::Heap(bytes.into_boxed_slice()))
        }
    }

    /// A copy of `b`, inline when short enough.
    fn copied(b: &[u8]) -> Self {
        match u8::try_from(b.len()) {
            Ok(len) if b.len() <= INLINE => {
                let mut bytes = [0u8; INLINE];
                bytes[..b.len()].copy_from_slice(b);
                Text(Repr::Inline { len, bytes })
            }
            _ => Text(Repr::Heap(b.into())),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(b) => b,
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        match self.0 {
            Repr::Inline { .. } => self.as_bytes().to_vec(),
            Repr::Heap(b) => b.into_vec(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// For display and logs; invalid bytes become U+FFFD.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }

    /// The value as UTF-8 if it is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()).ok()
    }
}

impl Default for Text {
    fn default() -> Self {
        Text::copied(&[])
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Text {}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self.as_bytes()) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "b\"{}\"", self.as_bytes().escape_ascii()),
        }
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text::copied(s.as_bytes())
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text::new(s.into_bytes())
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Self {
        Text::copied(s.as_bytes())
    }
}

impl From<Vec<u8>> for Text {
    fn from(b: Vec<u8>) -> Self {
        Text::new(b)
    }
}

impl From<&[u8]> for Text {
    fn from(b: &[u8]) -> Self {
        Text::copied(b)
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// A RouterOS internal id such as `*1A`. Never persisted: ids change on reboot (§1.8).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Id(pub String);

impl Id {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id(s.to_string())
    }
}

/// One row of a print: property name → raw value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Row(pub BTreeMap<String, Text>);

impl fmt::Debug for Row {
    /// Prints keys and values but never a `password`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.0 {
            if k.contains("password") || k.contains("secret") {
                m.entry(k, &"[redacted]");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

impl Row {
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Text>) {
        self.0.insert(key.into(), value.into());
    }

    pub fn get(&self, key: &str) -> Option<&Text> {
        self.0.get(key)
    }

    pub fn text(&self, key: &str) -> Text {
        self.0.get(key).cloned().unwrap_or_default()
    }

    /// A non-empty value as text.
    pub fn opt_text(&self, key: &str) -> Option<Text> {
        self.0.get(key).filter(|v| !v.is_empty()).cloned()
    }

    /// A non-empty value, lossily decoded.
    pub fn string(&self, key: &str) -> Option<String> {
        self.opt_text(key).map(|t| t.to_string_lossy())
    }

    /// The row's `.id`; every printed row has one.
    pub fn id(&self) -> Result<Id> {
        self.string(".id")
            .map(Id)
            .ok_or_else(|| RouterError::Protocol("row without .id".into()))
    }

    /// A boolean flag; absent means false (RouterOS omits some flags unless true, §1.5).
    pub fn flag(&self, key: &str) -> Result<bool> {
        match self.0.get(key) {
            None => Ok(false),
            Some(v) if v.is_empty() => Ok(false),
            Some(v) => {
                parse_bool(&v.to_string_lossy()).ok_or_else(|| bad_value(key, v, "a boolean"))
            }
        }
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>> {
        match self.string(key) {
            None => Ok(None),
            Some(s) => parse_u64(&s)
                .map(Some)
                .ok_or_else(|| bad_value(key, &Text::from(s), "a number")),
        }
    }

    /// A counter pair `up/down` as printed by queues (`bytes=123/456`).
    pub fn u64_pair(&self, key: &str) -> Result<Option<(u64, u64)>> {
        match self.string(key) {
            None => Ok(None),
            Some(s) => {
                let parsed = s
                    .split_once('/')
                    .and_then(|(a, b)| Some((parse_u64(a)?, parse_u64(b)?)));
                parsed
                    .map(Some)
                    .ok_or_else(|| bad_value(key, &Text::from(s), "a pair a/b"))
            }
        }
    }

    pub fn duration(&self, key: &str) -> Result<Option<Duration>> {
        match self.string(key) {
            None => Ok(None),
            Some(s) => parse_duration(&s)
                .map(Some)
                .ok_or_else(|| bad_value(key, &Text::from(s), "a duration")),
        }
    }

    pub fn datetime(&self, key: &str) -> Result<Option<NaiveDateTime>> {
        match self.string(key) {
            None => Ok(None),
            Some(s) => parse_datetime(&s)
                .map(Some)
                .ok_or_else(|| bad_value(key, &Text::from(s), "a date")),
        }
    }
}

fn bad_value(key: &str, v: &Text, what: &str) -> RouterError {
    RouterError::Protocol(format!("property {key} = {v:?} is not {what}"))
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "true" | "yes" => Some(true),
        "false" | "no" => Some(false),
        _ => None,
    }
}

pub fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Durations in every shape of routeros.md §4.11: `2d20h12m20s`, `1w2d`, `44m55s`, `1.5s`,
/// `453us`, `100ms`, `HH:MM:SS`, `1d02:15:30`, `3w2d01:00:00`, a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(secs) = parse_u64(s) {
        return Some(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    // Leading unit groups (`3w2d`), possibly followed by `HH:MM:SS`.
    while !rest.is_empty() {
        if is_clock(rest) {
            total = total.checked_add(parse_clock(rest)?)?;
            return Some(total);
        }
        let num_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        if num_len == 0 {
            return None;
        }
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        if unit_len == 0 {
            return None;
        }
        let (unit, after) = after.split_at(unit_len);
        let secs_per_unit: f64 = match unit {
            "w" => 604_800.0,
            "d" => 86_400.0,
            "h" => 3_600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        let n: f64 = num.parse().ok()?;
        if !n.is_finite() || n < 0.0 {
            return None;
        }
        total = total.checked_add(Duration::try_from_secs_f64(n * secs_per_unit).ok()?)?;
        rest = after;
    }
    Some(total)
}

fn is_clock(s: &str) -> bool {
    s.contains(':')
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b == b':' || b == b'.')
}

fn parse_clock(s: &str) -> Option<Duration> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 3 {
        return None;
    }
    let h: u64 = parse_u64(parts[0])?;
    let m: u64 = parse_u64(parts[1])?;
    let sec: f64 = parts[2].parse().ok()?;
    if m >= 60 || !(0.0..60.0).contains(&sec) {
        return None;
    }
    Duration::from_secs(h.checked_mul(3600)?.checked_add(m * 60)?)
        .checked_add(Duration::try_from_secs_f64(sec).ok()?)
}

/// Dates in both formats (§4.11): `jan/14/2023 19:13:29` (before 7.10) and
/// `2023-07-14 19:13:29` (7.10+). A date without time is midnight.
pub fn parse_datetime(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    let (date, time) = match s.split_once(' ') {
        Some((d, t)) => (d, Some(t.trim())),
        None => (s, None),
    };
    let date = parse_date(date)?;
    let time = match time {
        Some(t) => parse_time(t)?,
        None => NaiveTime::MIN,
    };
    Some(date.and_time(time))
}

pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d);
    }
    let mut it = s.split('/');
    let (mon, day, year) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let m = MONTHS.iter().position(|x| x.eq_ignore_ascii_case(mon))?;
    NaiveDate::from_ymd_opt(
        year.parse().ok()?,
        u32::try_from(m + 1).ok()?,
        day.parse().ok()?,
    )
}

pub fn parse_time(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M:%S").ok()
}

/// `true`/`false` as written to the router (accepted by every transport, §4.11).
pub fn bool_text(b: bool) -> Text {
    Text::from(if b { "yes" } else { "no" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_in_both_spellings() {
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool("yes"), Some(true));
        assert_eq!(parse_bool("false"), Some(false));
        assert_eq!(parse_bool("no"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn counters_are_u64_and_reject_garbage() {
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64("18446744073709551616"), None);
        assert_eq!(parse_u64("-1"), None);
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("12a"), None);
    }

    #[test]
    fn durations_in_every_form() {
        let d = |s| parse_duration(s);
        assert_eq!(
            d("2d20h12m20s"),
            Some(Duration::from_secs(2 * 86400 + 20 * 3600 + 12 * 60 + 20))
        );
        assert_eq!(d("44m55s"), Some(Duration::from_secs(44 * 60 + 55)));
        assert_eq!(d("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(d("1w2d"), Some(Duration::from_secs(9 * 86400)));
        assert_eq!(d("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(d("453us"), Some(Duration::from_micros(453)));
        assert_eq!(d("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(d("01:00:00"), Some(Duration::from_secs(3600)));
        assert_eq!(
            d("1d02:15:30"),
            Some(Duration::from_secs(86400 + 2 * 3600 + 15 * 60 + 30))
        );
        assert_eq!(
            d("3w2d01:00:00"),
            Some(Duration::from_secs(23 * 86400 + 3600))
        );
        assert_eq!(d("0s"), Some(Duration::ZERO));
        assert_eq!(d("0"), Some(Duration::ZERO));
        assert_eq!(d("90"), Some(Duration::from_secs(90)));
        for bad in ["", "h", "5x", "1h:2", "01:61:00", "-1s", "1..5s", "abc"] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn dates_in_both_formats() {
        let want = NaiveDate::from_ymd_opt(2023, 1, 14)
            .unwrap()
            .and_hms_opt(19, 13, 29)
            .unwrap();
        assert_eq!(parse_datetime("jan/14/2023 19:13:29"), Some(want));
        assert_eq!(parse_datetime("Jan/14/2023 19:13:29"), Some(want));
        assert_eq!(parse_datetime("2023-01-14 19:13:29"), Some(want));
        assert_eq!(
            parse_datetime("2023-01-14"),
            Some(want.date().and_time(NaiveTime::MIN))
        );
        assert_eq!(parse_datetime("foo/14/2023 19:13:29"), None);
        assert_eq!(parse_datetime("2023-13-01 00:00:00"), None);
    }

    #[test]
    fn short_and_long_texts_compare_and_round_trip_alike() {
        let short = "x".repeat(INLINE);
        let long = "x".repeat(INLINE + 1);
        for s in ["", short.as_str(), long.as_str()] {
            let t = Text::from(s);
            assert_eq!(t.as_bytes(), s.as_bytes());
            assert_eq!(t, Text::new(s.as_bytes().to_vec()));
            assert_eq!(t.clone().into_bytes(), s.as_bytes());
            assert_eq!(t.is_empty(), s.is_empty());
        }
        let (inline, heap) = (Text::from(short.as_str()), Text::from(long.as_str()));
        assert!(inline < heap);
        assert_eq!(std::mem::size_of::<Text>(), std::mem::size_of::<Vec<u8>>());
    }

    #[test]
    fn text_keeps_raw_bytes_and_displays_lossily() {
        let t = Text::new(vec![b'a', 0xE9, b'b']);
        assert_eq!(t.as_bytes(), &[b'a', 0xE9, b'b']);
        assert_eq!(t.to_string(), "a\u{FFFD}b");
        assert_eq!(format!("{t:?}"), "b\"a\\xe9b\"");
    }

    #[test]
    fn row_debug_redacts_passwords() {
        let mut r = Row::default();
        r.insert("name", "alice");
        r.insert("password", "hunter2");
        let s = format!("{r:?}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("alice"));
    }

    #[test]
    fn absent_flag_is_false_and_bad_values_are_errors() {
        let mut r = Row::default();
        assert!(!r.flag("dynamic").unwrap());
        r.insert("disabled", "true");
        r.insert("bytes", "10/20");
        r.insert("rx-byte", "x");
        assert!(r.flag("disabled").unwrap());
        assert_eq!(r.u64_pair("bytes").unwrap(), Some((10, 20)));
        assert!(r.u64("rx-byte").is_err());
    }
}
