//! Per-field hybrid-logical-clock stamps (field → stamp of its last write) and the text a row
//! stores them as in its `stamps` column.
//!
//! Two stored forms:
//!
//! - **JSON** `{"field":"WALLMS-COUNTER-NODEHEX",...}`: packages, and customer rows written
//!   before migration 8. Still read, and still written when a map holds a field the compact
//!   form has no position for.
//! - **Compact** (customers since migration 8): `2;` and then one entry per field of the
//!   entity's field list ([`STAMPED_FIELDS`] for customers), in that order, separated by `,`;
//!   trailing fields without a stamp may be left out. An entry is
//!   - empty: the field has no stamp;
//!   - `+`: the stamp of the previous stamped entry with its counter plus one;
//!   - `WALLMS-COUNTER`: on the node of the previous stamped entry;
//!   - `WALLMS-COUNTER-NODEHEX`: a whole stamp (always so for the first stamped entry).
//!
//!   A new customer's 24 stamps come from consecutive clock ticks, so its column is the first
//!   stamp and 23 `+`: 84 bytes instead of about 1.2 KB of JSON, which took a customer row
//!   from about 2 KB to a third of a KB, and with it what each write puts through the WAL.
//!
//! The position of a field is its index in the field list, which is why that list may only
//! grow at its end.

use super::customer_row::STAMPED_FIELDS;
use super::{Result, StorageError};
use easyisp_protocol::hlc::Hlc;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Marks the compact form (JSON starts with `{`).
const COMPACT: &str = "2;";

/// The stamp of each field's last write, keyed by the record's (snake_case) field name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stamps(BTreeMap<String, Hlc>);

impl Stamps {
    /// Reads the JSON form.
    pub fn parse(text: &str) -> Result<Stamps> {
        let raw: BTreeMap<String, String> =
            serde_json::from_str(text).map_err(StorageError::corrupt)?;
        let mut map = BTreeMap::new();
        for (field, stamp) in raw {
            map.insert(field, stamp.parse().map_err(StorageError::corrupt)?);
        }
        Ok(Stamps(map))
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        // `Hlc` serialises as its text form, so this is `{"field":"WALLMS-COUNTER-NODE",...}`.
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".into())
    }

    /// Reads either stored form; `fields` is the entity's field list for the compact one.
    pub fn parse_stored(text: &str, fields: &[&str]) -> Result<Stamps> {
        let Some(entries) = text.strip_prefix(COMPACT) else {
            return Stamps::parse(text);
        };
        let mut map = BTreeMap::new();
        for (field, stamp) in fields.iter().zip(decode(entries, fields.len())?) {
            if let Some(stamp) = stamp {
                map.insert((*field).to_string(), stamp);
            }
        }
        Ok(Stamps(map))
    }

    /// The compact form over `fields`, or JSON when the map holds a field not among them.
    pub fn to_stored(&self, fields: &[&str]) -> String {
        if self.0.keys().any(|k| !fields.contains(&k.as_str())) {
            return self.to_json();
        }
        let entries: Vec<Option<Hlc>> = fields.iter().map(|f| self.0.get(*f).copied()).collect();
        encode(&entries)
    }

    pub fn set(&mut self, field: &str, stamp: Hlc) {
        self.0.insert(field.to_string(), stamp);
    }

    pub fn get(&self, field: &str) -> Hlc {
        self.0.get(field).copied().unwrap_or_default()
    }

    /// The stamped fields, in name order.
    #[cfg(test)]
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// The compact form of positional stamps (`None`: the field has no stamp).
fn encode(entries: &[Option<Hlc>]) -> String {
    let used = entries
        .iter()
        .rposition(Option::is_some)
        .map_or(0, |i| i + 1);
    let mut out = String::with_capacity(COMPACT.len() + 40 + 2 * used);
    out.push_str(COMPACT);
    let mut previous: Option<Hlc> = None;
    for (i, entry) in entries[..used].iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let Some(stamp) = *entry else { continue };
        // Writing to a String cannot fail.
        let _ = match previous {
            Some(p) if p.node == stamp.node => {
                if p.wall_ms == stamp.wall_ms && p.counter.checked_add(1) == Some(stamp.counter) {
                    out.push('+');
                    Ok(())
                } else {
                    write!(out, "{}-{}", stamp.wall_ms, stamp.counter)
                }
            }
            _ => write!(out, "{stamp}"),
        };
        previous = Some(stamp);
    }
    out
}

/// Reads the entries after the `2;` marker: one per field, at most `fields` of them.
fn decode(entries: &str, fields: usize) -> Result<Vec<Option<Hlc>>> {
    let bad = |why: &str| StorageError::corrupt(format!("stamps {entries:?}: {why}"));
    let mut out = Vec::with_capacity(fields);
    let mut previous: Option<Hlc> = None;
    for entry in entries.split(',') {
        if out.len() == fields {
            return Err(bad("more entries than fields"));
        }
        let stamp = match entry {
            "" => None,
            "+" => {
                let p = previous.ok_or_else(|| bad("'+' without a previous stamp"))?;
                let counter = p
                    .counter
                    .checked_add(1)
                    .ok_or_else(|| bad("counter overflow"))?;
                Some(Hlc::new(p.wall_ms, counter, p.node))
            }
            text => Some(match text.bytes().filter(|b| *b == b'-').count() {
                2 => text.parse::<Hlc>().map_err(StorageError::corrupt)?,
                1 => {
                    let p = previous.ok_or_else(|| bad("a stamp without its node"))?;
                    let (wall, counter) = text.split_once('-').ok_or_else(|| bad(text))?;
                    let number = |t: &str| t.bytes().all(|b| b.is_ascii_digit()) && !t.is_empty();
                    if !number(wall) || !number(counter) {
                        return Err(bad(text));
                    }
                    let wall = wall.parse().map_err(|_| bad(text))?;
                    let counter = counter.parse().map_err(|_| bad(text))?;
                    Hlc::new(wall, counter, p.node)
                }
                _ => return Err(bad(text)),
            }),
        };
        previous = stamp.or(previous);
        out.push(stamp);
    }
    out.resize(fields, None);
    Ok(out)
}

/// A customer row's stamps, parsed only when a write or a record needs them (lists and
/// details never do).
#[derive(Debug, Clone, PartialEq)]
pub enum LazyStamps {
    /// The column as stored (either form).
    Raw(String),
    Parsed(Stamps),
}

impl Default for LazyStamps {
    fn default() -> Self {
        LazyStamps::Parsed(Stamps::default())
    }
}

impl LazyStamps {
    pub fn into_parsed(self) -> Result<Stamps> {
        match self {
            LazyStamps::Raw(text) => Stamps::parse_stored(&text, &STAMPED_FIELDS),
            LazyStamps::Parsed(stamps) => Ok(stamps),
        }
    }

    /// What the `stamps` column gets: raw text as it is, parsed stamps in the compact form.
    pub fn to_stored(&self) -> Cow<'_, str> {
        match self {
            LazyStamps::Raw(text) => Cow::Borrowed(text),
            LazyStamps::Parsed(stamps) => Cow::Owned(stamps.to_stored(&STAMPED_FIELDS)),
        }
    }

    /// The stamps of a new customer whose fields were stamped in [`STAMPED_FIELDS`] order
    /// by consecutive ticks `stamp()` gives (what a bulk import does), in stored form
    /// without building the map.
    pub fn for_new_row(mut stamp: impl FnMut() -> Hlc) -> LazyStamps {
        let entries: [Option<Hlc>; STAMPED_FIELDS.len()] = std::array::from_fn(|_| Some(stamp()));
        LazyStamps::Raw(encode(&entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(wall_ms: u64, counter: u32, node: u64) -> Hlc {
        Hlc::new(wall_ms, counter, easyisp_protocol::hlc::NodeId(node))
    }

    fn map(entries: &[(&str, Hlc)]) -> Stamps {
        let mut s = Stamps::default();
        for (f, h) in entries {
            s.set(f, *h);
        }
        s
    }

    #[test]
    fn a_new_rows_stamps_are_one_stamp_and_a_run_of_pluses() {
        let mut next = stamp(1_764_093_000_123, 24_000, 0x0791_31de_9f8d_45c7);
        let stored = LazyStamps::for_new_row(|| {
            let s = next;
            next.counter += 1;
            s
        });
        let text = stored.to_stored().into_owned();
        assert_eq!(
            text,
            format!("2;1764093000123-24000-079131de9f8d45c7{}", ",+".repeat(23))
        );
        assert_eq!(text.len(), 84);
        let parsed = stored.into_parsed().unwrap();
        for (i, field) in STAMPED_FIELDS.iter().enumerate() {
            let want = stamp(1_764_093_000_123, 24_000 + i as u32, 0x0791_31de_9f8d_45c7);
            assert_eq!(parsed.get(field), want, "{field}");
        }
    }

    #[test]
    fn compact_stamps_read_back_equal() {
        let (a, b) = (0xaaaa_0000_0000_0001, 0xbbbb_0000_0000_0002);
        let cases = [
            map(&[]),
            map(&[("username", stamp(5, 0, a))]),
            // A gap, a field of another node, the same node again, a counter that goes back,
            // a default stamp, and the last field alone.
            map(&[
                ("username", stamp(10, 4, a)),
                ("password", stamp(10, 5, a)),
                ("email", stamp(10, 6, a)),
                ("phone", stamp(9, 7, b)),
                ("connection_type", stamp(12, 0, a)),
                ("package_id", stamp(12, 0, a)),
                ("router_id", Hlc::default()),
                ("deleted_at", stamp(u64::MAX, u32::MAX, u64::MAX)),
            ]),
            map(&[
                ("created_at", stamp(1, u32::MAX, a)),
                ("deleted_at", stamp(2, 0, a)),
            ]),
        ];
        for stamps in cases {
            let text = stamps.to_stored(&STAMPED_FIELDS);
            assert!(text.starts_with("2;"), "{text}");
            assert_eq!(
                Stamps::parse_stored(&text, &STAMPED_FIELDS).unwrap(),
                stamps,
                "{text}"
            );
        }
    }

    #[test]
    fn json_stamps_of_older_rows_still_read() {
        let json = r#"{"name":"1764093000123-3-079131de9f8d45c7","username":"1764093000123-0-079131de9f8d45c7"}"#;
        let want = map(&[
            ("name", stamp(1_764_093_000_123, 3, 0x0791_31de_9f8d_45c7)),
            (
                "username",
                stamp(1_764_093_000_123, 0, 0x0791_31de_9f8d_45c7),
            ),
        ]);
        assert_eq!(Stamps::parse_stored(json, &STAMPED_FIELDS).unwrap(), want);
        assert_eq!(LazyStamps::Raw(json.into()).into_parsed().unwrap(), want);
        // Written back after a change, such a row takes the compact form.
        assert!(LazyStamps::Parsed(want).to_stored().starts_with("2;"));
    }

    #[test]
    fn a_field_without_a_position_keeps_the_json_form() {
        let stamps = map(&[("username", stamp(1, 0, 1)), ("shoe_size", stamp(1, 1, 1))]);
        let text = stamps.to_stored(&STAMPED_FIELDS);
        assert!(text.starts_with('{'), "{text}");
        assert_eq!(
            Stamps::parse_stored(&text, &STAMPED_FIELDS).unwrap(),
            stamps
        );
    }

    #[test]
    fn damaged_compact_stamps_are_errors() {
        for text in [
            "2;+",
            "2;5-1",
            "2;5-1-00000000000000aa,x",
            "2;5-1-00000000000000aa,-1",
            "2;5-1-00000000000000aa,5-",
            "2;5-1-00000000000000aa,5-1-zz",
            "2;5-4294967295-00000000000000aa,+",
            &format!("2;{}", ",".repeat(STAMPED_FIELDS.len())),
        ] {
            assert!(
                matches!(
                    Stamps::parse_stored(text, &STAMPED_FIELDS),
                    Err(StorageError::Corrupt(_))
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn the_customer_field_positions_never_move() {
        // The compact form stores a field at its index in this list: a field may only be
        // added at the end, never removed or moved.
        assert_eq!(
            STAMPED_FIELDS.join(" "),
            "username password name email phone connection_type package_id router_id \
             expires_at location latitude longitude apartment_number house_number suspended \
             disabled auto_renew static_ip mac_bindings tags last_ip last_mac created_at \
             deleted_at"
        );
    }
}
