//! The simulator's single in-memory router state: one `Table` per menu with `.id` allocation,
//! uniqueness indexes and insertion order, plus router-wide facts (version, identity, boot
//! time). All front ends lock the same `State`; nothing here does I/O or sleeps.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::format::{format_date, format_datetime, format_duration_ms};
use super::schema::{MENUS, Menu, MenuKind};
use super::sessions::Sessions;
use super::version::RosVersion;

/// Raw property value: RouterOS values are byte strings (routeros.md §2.8).
pub type Bytes = Vec<u8>;

/// One rendered row: ordered `(key, value)` pairs as they go on the wire.
pub type Rendered = Vec<(String, Bytes)>;

/// Hidden bookkeeping props start with this and are never printed.
pub const HIDDEN: char = '~';

#[derive(Debug, Clone)]
pub struct Row {
    pub id: u32,
    pub props: BTreeMap<String, Bytes>,
    /// Start of a session row (for `uptime`).
    pub since: Option<Instant>,
}

impl Row {
    pub fn get(&self, k: &str) -> Option<&Bytes> {
        self.props.get(k)
    }
    pub fn get_str(&self, k: &str) -> String {
        self.props
            .get(k)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }
    pub fn is_true(&self, k: &str) -> bool {
        self.props.get(k).is_some_and(|v| v == b"true")
    }
}

/// Formats an id as RouterOS does: `*1A`.
pub fn format_id(id: u32) -> String {
    format!("*{id:X}")
}

/// Parses `*1A`; anything else is `None`.
pub fn parse_id(s: &[u8]) -> Option<u32> {
    let hex = s.strip_prefix(b"*")?;
    if hex.is_empty() || hex.len() > 8 {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// Rows of one menu in print order with an index over the menu's unique key.
#[derive(Debug)]
pub struct Table {
    pub menu: &'static Menu,
    rows: BTreeMap<u32, Row>,
    unique: HashMap<Vec<Bytes>, u32>,
    next_id: u32,
}

/// The unique key of `row` is already taken by the row with this id.
#[derive(Debug)]
pub struct Duplicate(pub u32);

impl Table {
    fn new(menu: &'static Menu) -> Self {
        Table {
            menu,
            rows: BTreeMap::new(),
            unique: HashMap::new(),
            next_id: menu.id_base,
        }
    }

    fn key_of(&self, props: &BTreeMap<String, Bytes>) -> Option<Vec<Bytes>> {
        if self.menu.unique.is_empty() {
            return None;
        }
        Some(
            self.menu
                .unique
                .iter()
                .map(|k| props.get(*k).cloned().unwrap_or_default())
                .collect(),
        )
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    pub fn get(&self, id: u32) -> Option<&Row> {
        self.rows.get(&id)
    }
    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.rows.values()
    }
    pub fn ids(&self) -> Vec<u32> {
        self.rows.keys().copied().collect()
    }

    /// Looks a row up by its unique key values (e.g. `[name]`).
    pub fn find_unique(&self, key: &[Bytes]) -> Option<u32> {
        self.unique.get(key).copied()
    }

    /// Finds a row by `name`: indexed when the unique key is exactly `name`, scanned otherwise.
    pub fn find_name(&self, name: &[u8]) -> Option<u32> {
        if self.menu.unique == ["name"] {
            return self.find_unique(&[name.to_vec()]);
        }
        // Hotspot users are unique per server; most live on server `all`.
        if self.menu.unique == ["name", "server"]
            && let Some(id) = self.find_unique(&[name.to_vec(), b"all".to_vec()])
        {
            return Some(id);
        }
        self.rows
            .values()
            .find(|r| r.get("name").is_some_and(|n| n == name))
            .map(|r| r.id)
    }

    /// Rows whose `field` equals `value` (linear scan).
    pub fn find_all(&self, field: &str, value: &[u8]) -> Vec<u32> {
        self.rows
            .values()
            .filter(|r| r.get(field).is_some_and(|v| v == value))
            .map(|r| r.id)
            .collect()
    }

    pub fn insert(
        &mut self,
        props: BTreeMap<String, Bytes>,
        since: Option<Instant>,
    ) -> Result<u32, Duplicate> {
        let key = self.key_of(&props);
        if let Some(k) = &key
            && let Some(existing) = self.unique.get(k)
        {
            return Err(Duplicate(*existing));
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        if let Some(k) = key {
            self.unique.insert(k, id);
        }
        self.rows.insert(id, Row { id, props, since });
        Ok(id)
    }

    /// Replaces a row's props, keeping the unique index right.
    pub fn replace(&mut self, id: u32, props: BTreeMap<String, Bytes>) -> Result<(), Duplicate> {
        let new_key = self.key_of(&props);
        let Some(row) = self.rows.get(&id) else {
            return Ok(());
        };
        let old_key = self.key_of(&row.props);
        if new_key != old_key {
            if let Some(k) = &new_key
                && let Some(other) = self.unique.get(k)
                && *other != id
            {
                return Err(Duplicate(*other));
            }
            if let Some(k) = old_key {
                self.unique.remove(&k);
            }
            if let Some(k) = new_key {
                self.unique.insert(k, id);
            }
        }
        if let Some(row) = self.rows.get_mut(&id) {
            row.props = props;
        }
        Ok(())
    }

    /// Sets fields that are not part of the unique key (counters, status) without checks.
    pub fn set_fields(&mut self, id: u32, fields: &[(&str, Bytes)]) {
        if let Some(row) = self.rows.get_mut(&id) {
            for (k, v) in fields {
                debug_assert!(!self.menu.unique.contains(k));
                row.props.insert((*k).to_owned(), v.clone());
            }
        }
    }

    pub fn remove(&mut self, id: u32) -> Option<Row> {
        let row = self.rows.remove(&id)?;
        if let Some(k) = self.key_of(&row.props)
            && self.unique.get(&k) == Some(&id)
        {
            self.unique.remove(&k);
        }
        Some(row)
    }

    /// Gives every row a fresh id in the same order, as a reboot does (routeros.md §1.8).
    pub fn renumber(&mut self) {
        let rows: Vec<Row> = std::mem::take(&mut self.rows).into_values().collect();
        self.unique.clear();
        // Keep counting from where we are so that no old id is reused.
        self.next_id = self.next_id.wrapping_add(0x10);
        for mut row in rows {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            row.id = id;
            if let Some(k) = self.key_of(&row.props) {
                self.unique.insert(k, id);
            }
            self.rows.insert(id, row);
        }
    }
}

/// Static identity of the emulated hardware.
#[derive(Debug, Clone)]
pub struct Hardware {
    pub board: String,
    pub architecture: String,
}

/// Writes and reads received per menu from REST/API/SSH (not from the control interface).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct OpCounts {
    pub writes: BTreeMap<String, u64>,
    pub reads: BTreeMap<String, u64>,
}

#[derive(Debug)]
pub struct State {
    tables: HashMap<&'static str, Table>,
    pub version: RosVersion,
    pub hardware: Hardware,
    pub boot: Instant,
    pub sessions: Sessions,
    pub ops: OpCounts,
    /// Incremented on every change to the rows (REST/API/CLI/control alike).
    pub generation: u64,
}

impl State {
    pub fn new(
        version: RosVersion,
        identity: &str,
        hardware: Hardware,
        redial: Option<Duration>,
    ) -> Self {
        let mut tables = HashMap::new();
        for m in MENUS {
            tables.insert(m.path, Table::new(m));
        }
        let mut st = State {
            tables,
            version,
            hardware,
            boot: Instant::now(),
            sessions: Sessions::new(redial),
            ops: OpCounts::default(),
            generation: 0,
        };
        st.seed(identity);
        st
    }

    /// Factory defaults: built-in profiles, ethernet ports, singletons.
    fn seed(&mut self, identity: &str) {
        let mk = |pairs: &[(&str, &str)]| -> BTreeMap<String, Bytes> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect()
        };
        for (menu, name, extra) in [
            ("ppp/profile", "default", vec![]),
            (
                "ppp/profile",
                "default-encryption",
                vec![("use-encryption", "yes")],
            ),
            ("ip/hotspot/user/profile", "default", vec![]),
        ] {
            let m = self.table(menu).menu;
            let mut props = defaults(m);
            props.insert("name".into(), name.as_bytes().to_vec());
            props.insert("default".into(), b"true".to_vec());
            for (k, v) in extra {
                props.insert(k.into(), v.as_bytes().to_vec());
            }
            let _ = self.table_mut(menu).insert(props, None);
        }
        let iface = self.table("interface").menu;
        for i in 1..=5 {
            let mut props = defaults(iface);
            let name = format!("ether{i}");
            props.extend(mk(&[
                ("name", &name),
                ("default-name", &name),
                ("mac-address", &format!("48:8F:5A:00:00:0{i}")),
            ]));
            let _ = self.table_mut("interface").insert(props, None);
        }
        let idm = self.table("system/identity").menu;
        let mut props = defaults(idm);
        props.insert("name".into(), identity.as_bytes().to_vec());
        let _ = self.table_mut("system/identity").insert(props, None);
        let clock = self.table("system/clock").menu;
        let props = defaults(clock);
        let _ = self.table_mut("system/clock").insert(props, None);
        let res = self.table("system/resource").menu;
        let props = defaults(res);
        let _ = self.table_mut("system/resource").insert(props, None);
    }

    pub fn table(&self, path: &str) -> &Table {
        // Every path handed in comes from `schema::MENUS`, all of which `new` inserted.
        self.tables
            .get(path)
            .expect("menu table exists for every schema menu")
    }
    pub fn table_mut(&mut self, path: &str) -> &mut Table {
        self.generation += 1;
        // See `table`.
        self.tables
            .get_mut(path)
            .expect("menu table exists for every schema menu")
    }

    pub fn menus(&self) -> impl Iterator<Item = &'static Menu> {
        MENUS.iter()
    }

    pub fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.boot)
    }

    /// Renders a row as it goes on the wire: `.id` first (not for singletons), then fields in
    /// schema order, computed fields filled in, hidden bookkeeping left out.
    pub fn render(
        &self,
        menu: &'static Menu,
        row: &Row,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Rendered {
        let mut out: Rendered = Vec::with_capacity(row.props.len() + 1);
        if menu.kind != MenuKind::Singleton {
            out.push((".id".into(), format_id(row.id).into_bytes()));
        }
        let iso = self.version.iso_dates();
        // Only session rows and singletons have computed fields; skip the lookups otherwise.
        let special = row.since.is_some() || menu.kind == MenuKind::Singleton;
        let mut from_props = 0;
        for f in menu.fields {
            if !special {
                if let Some(v) = row.props.get(f.name) {
                    out.push((f.name.to_owned(), v.clone()));
                    from_props += 1;
                }
                continue;
            }
            let computed: Option<Bytes> = match (menu.path, f.name) {
                (_, "uptime") if row.since.is_some() => row.since.map(|s| {
                    format_duration_ms(now.saturating_duration_since(s).as_millis() as u64)
                        .into_bytes()
                }),
                ("ip/hotspot/active", "session-time-left") => {
                    row.get("~limit-uptime-ms").map(|l| {
                        let limit = super::format::counter(Some(l));
                        let used = row
                            .since
                            .map(|s| now.saturating_duration_since(s).as_millis() as u64)
                            .unwrap_or(0);
                        format_duration_ms(limit.saturating_sub(used) / 1000 * 1000).into_bytes()
                    })
                }
                ("system/resource", _) => self.resource_field(f.name, now),
                ("ip/firewall/address-list", "timeout") => row.get("timeout").map(|t| {
                    let total =
                        super::format::parse_duration_ms(&String::from_utf8_lossy(t)).unwrap_or(0);
                    let used = row
                        .since
                        .map(|s| now.saturating_duration_since(s).as_millis() as u64)
                        .unwrap_or(0);
                    format_duration_ms(total.saturating_sub(used) / 1000 * 1000).into_bytes()
                }),
                ("system/clock", "time") => Some(wall.format("%H:%M:%S").to_string().into_bytes()),
                ("system/clock", "date") => Some(format_date(wall, iso).into_bytes()),
                _ => None,
            };
            if let Some(v) = computed {
                out.push((f.name.to_owned(), v));
            } else if let Some(v) = row.props.get(f.name) {
                out.push((f.name.to_owned(), v.clone()));
            }
        }
        if from_props == row.props.len() {
            return out;
        }
        for (k, v) in &row.props {
            if !k.starts_with(HIDDEN) && menu.field(k).is_none() {
                out.push((k.clone(), v.clone()));
            }
        }
        out
    }

    fn resource_field(&self, name: &str, now: Instant) -> Option<Bytes> {
        let v = match name {
            "uptime" => format_duration_ms(self.uptime(now).as_secs() * 1000),
            "version" => format!("{} (stable)", self.version),
            "build-time" => {
                let t = DateTime::parse_from_rfc3339("2024-09-20T13:00:27Z")
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_default();
                format_datetime(t, self.version.iso_dates())
            }
            "factory-software" => "6.44.6".into(),
            "free-memory" => "189530112".into(),
            "total-memory" => "268435456".into(),
            "cpu" => "MIPS 1004Kc V2.15".into(),
            "cpu-count" => "4".into(),
            "cpu-frequency" => "880".into(),
            "cpu-load" => "3".into(),
            "free-hdd-space" => "4222976".into(),
            "total-hdd-space" => "16777216".into(),
            "architecture-name" => self.hardware.architecture.clone(),
            "board-name" => self.hardware.board.clone(),
            "platform" => "MikroTik".into(),
            _ => return None,
        };
        Some(v.into_bytes())
    }

    /// The identity's name, for prompts and logs.
    pub fn identity(&self) -> String {
        self.table("system/identity")
            .rows()
            .next()
            .map(|r| r.get_str("name"))
            .unwrap_or_default()
    }

    pub fn count_write(&mut self, path: &str) {
        *self.ops.writes.entry(path.to_owned()).or_default() += 1;
    }
    pub fn count_read(&mut self, path: &str) {
        *self.ops.reads.entry(path.to_owned()).or_default() += 1;
    }

    /// A reboot: sessions drop, dynamic rows vanish, every id changes, counters restart.
    pub fn reboot(&mut self, now: Instant) {
        super::sessions::drop_all_for_reboot(self, now);
        for m in MENUS {
            let t = self.table_mut(m.path);
            let dynamic: Vec<u32> = t
                .rows()
                .filter(|r| r.is_true("dynamic"))
                .map(|r| r.id)
                .collect();
            for id in dynamic {
                t.remove(id);
            }
            if m.kind != MenuKind::Singleton {
                t.renumber();
            }
        }
        let iface = self.table_mut("interface");
        for id in iface.ids() {
            let zero: Vec<(&str, Bytes)> =
                COUNTER_FIELDS.iter().map(|k| (*k, b"0".to_vec())).collect();
            iface.set_fields(id, &zero);
        }
        let q = self.table_mut("queue/simple");
        for id in q.ids() {
            q.set_fields(
                id,
                &[("bytes", b"0/0".to_vec()), ("packets", b"0/0".to_vec())],
            );
        }
        self.boot = now;
    }
}

/// Interface counter fields zeroed by reboot and `reset-counters`.
pub const COUNTER_FIELDS: &[&str] = &[
    "rx-byte",
    "tx-byte",
    "rx-packet",
    "tx-packet",
    "rx-drop",
    "tx-drop",
    "tx-queue-drop",
    "rx-error",
    "tx-error",
    "fp-rx-byte",
    "fp-tx-byte",
    "fp-rx-packet",
    "fp-tx-packet",
];

/// Props a new row of `menu` starts with.
pub fn defaults(menu: &Menu) -> BTreeMap<String, Bytes> {
    menu.fields
        .iter()
        .filter_map(|f| {
            f.default
                .map(|d| (f.name.to_owned(), d.as_bytes().to_vec()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_in_routeros_form() {
        assert_eq!(format_id(0x1A), "*1A");
        assert_eq!(parse_id(b"*1A"), Some(0x1A));
        assert_eq!(parse_id(b"*0"), Some(0));
        assert_eq!(parse_id(b"1A"), None);
        assert_eq!(parse_id(b"*"), None);
    }
}
