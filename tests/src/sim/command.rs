//! Menu commands shared by every front end: `print`/`getall`, `add`, `set`, `remove`,
//! `enable`, `disable`, `unset`, `comment`, `reset-counters`, `make-static`. REST, API and CLI
//! translate their syntax into a `Request` and their replies from an `Outcome` or `CmdError`;
//! validation and error texts (routeros.md §1.7, §2.4, §3.5) live here and only here.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::format::{format_duration_ms, parse_bool, parse_duration_ms};
use super::query::{self, Word};
use super::ratelimit::parse_rate_limit;
use super::schema::{self, Kind, Menu, MenuKind};
use super::sessions;
use super::state::{Bytes, COUNTER_FIELDS, Rendered, State, defaults, format_id, parse_id};

/// Who sent a command; only router-facing interfaces count as reads/writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Rest,
    Api,
    Cli,
    Control,
}

#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Menu path without leading slash (`ppp/secret`).
    pub path: String,
    /// Command (`print`, `add`, ...).
    pub verb: String,
    /// `name=value` arguments in order; `.id`/`numbers` included.
    pub args: Vec<(String, Bytes)>,
    /// Query words without the leading `?`.
    pub queries: Vec<Bytes>,
    /// `.proplist`, if given.
    pub proplist: Option<Vec<String>>,
}

#[derive(Debug)]
pub enum Outcome {
    /// `!re` rows (possibly none).
    Rows(Vec<Rendered>),
    /// `!done =ret=<value>` (e.g. the new id of `add`).
    Ret(Bytes),
    /// Plain `!done`.
    Done,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CmdError {
    /// The `.id`/name does not exist (REST 404 for item paths).
    #[error("no such item")]
    NoSuchItem,
    /// The path is not a menu or directory.
    #[error("no such command or directory ({0})")]
    NoSuchPath(String),
    /// The menu exists but has no such command (REST 406 for verbs, 400 for POST).
    #[error("no such command or directory ({0})")]
    NoSuchCommand(String),
    /// Any other refusal; the text is RouterOS console text.
    #[error("{0}")]
    Failure(String),
}

impl CmdError {
    fn unknown_param(name: &str) -> Self {
        CmdError::Failure(format!("unknown parameter {name}"))
    }
    /// The API `=category=` for this error, if RouterOS sends one.
    pub fn category(&self) -> Option<u8> {
        match self {
            CmdError::NoSuchPath(_) | CmdError::NoSuchCommand(_) => Some(0),
            CmdError::Failure(m)
                if m.starts_with("invalid value") || m.starts_with("input does") =>
            {
                Some(1)
            }
            _ => None,
        }
    }
}

/// Runs one command against the state.
pub fn execute(
    st: &mut State,
    req: &Request,
    origin: Origin,
    now: Instant,
    wall: DateTime<Utc>,
) -> Result<Outcome, CmdError> {
    let Some(menu) = schema::menu(&req.path) else {
        let last = req.path.rsplit('/').next().unwrap_or_default();
        return Err(CmdError::NoSuchPath(last.to_owned()));
    };
    if !menu.has_command(&req.verb) {
        return Err(CmdError::NoSuchCommand(req.verb.clone()));
    }
    sessions::tick(st, now);
    let is_read = matches!(req.verb.as_str(), "print" | "getall");
    if origin != Origin::Control {
        if is_read {
            st.count_read(menu.path);
        } else {
            st.count_write(menu.path);
        }
    }
    match req.verb.as_str() {
        "print" | "getall" => {
            let rows = print(st, menu, req, now, wall)?;
            if req.args.iter().any(|(k, _)| k == "count-only") {
                return Ok(Outcome::Ret(rows.len().to_string().into_bytes()));
            }
            Ok(Outcome::Rows(rows))
        }
        "add" => add(st, menu, &req.args, now, wall),
        "set" => {
            let (ids, rest) = targets(st, menu, &req.args, true)?;
            for id in ids {
                set(st, menu, id, &rest)?;
            }
            Ok(Outcome::Done)
        }
        "remove" => {
            let (ids, rest) = targets(st, menu, &req.args, false)?;
            no_extra_args(&rest)?;
            for id in ids {
                remove(st, menu, id, now)?;
            }
            Ok(Outcome::Done)
        }
        "enable" | "disable" => {
            let (ids, rest) = targets(st, menu, &req.args, false)?;
            no_extra_args(&rest)?;
            let v = if req.verb == "disable" { "yes" } else { "no" };
            for id in ids {
                set(st, menu, id, &[("disabled".into(), v.as_bytes().to_vec())])?;
            }
            Ok(Outcome::Done)
        }
        "comment" => {
            let (ids, rest) = targets(st, menu, &req.args, false)?;
            for id in ids {
                set(st, menu, id, &rest)?;
            }
            Ok(Outcome::Done)
        }
        "unset" => {
            let (ids, rest) = targets(st, menu, &req.args, false)?;
            let mut names = Vec::new();
            for (k, v) in rest {
                if k != "value-name" {
                    return Err(CmdError::unknown_param(&k));
                }
                names.push(String::from_utf8_lossy(&v).into_owned());
            }
            for id in ids {
                unset(st, menu, id, &names)?;
            }
            Ok(Outcome::Done)
        }
        "reset-counters" => {
            let (ids, rest) = targets(st, menu, &req.args, false)?;
            no_extra_args(&rest)?;
            for id in ids {
                reset_counters(st, menu, id);
            }
            Ok(Outcome::Done)
        }
        "make-static" => {
            let (ids, _) = targets(st, menu, &req.args, false)?;
            for id in ids {
                let t = st.table_mut(menu.path);
                if let Some(row) = t.get(id) {
                    let mut props = row.props.clone();
                    props.remove("dynamic");
                    let _ = t.replace(id, props);
                }
            }
            Ok(Outcome::Done)
        }
        other => Err(CmdError::NoSuchCommand(other.to_owned())),
    }
}

fn no_extra_args(rest: &[(String, Bytes)]) -> Result<(), CmdError> {
    match rest.first() {
        Some((k, _)) => Err(CmdError::unknown_param(k)),
        None => Ok(()),
    }
}

/// Rows of `menu` matching the request's queries, rendered and cut to `.proplist`.
pub fn print(
    st: &State,
    menu: &'static Menu,
    req: &Request,
    now: Instant,
    wall: DateTime<Utc>,
) -> Result<Vec<Rendered>, CmdError> {
    let words: Vec<Word> = query::normalise(
        menu,
        req.queries.iter().map(|w| query::parse_word(w)).collect(),
    );
    for (k, _) in &req.args {
        // `print` takes flags such as `detail`, `count-only`, `without-paging`; ignore them.
        if menu.field(k).is_some() {
            return Err(CmdError::unknown_param(k));
        }
    }
    let table = st.table(menu.path);
    // Fast path: a single `name=` equality on a menu indexed by name.
    let candidates: Box<dyn Iterator<Item = &super::state::Row>> = match words.as_slice() {
        [Word::Eq(k, v)] if k == "name" && menu.unique == ["name"] => {
            Box::new(table.find_name(v).and_then(|id| table.get(id)).into_iter())
        }
        _ => Box::new(table.rows()),
    };
    let stats = menu.path == "ppp/active" && req.args.iter().any(|(k, _)| k == "stats");
    let stored = stored_equalities(menu, &words);
    let mut out = Vec::new();
    for row in candidates {
        // A row without computed fields renders its stored values as they are: an equality
        // they fail is failed by the rendered row too, so skip rendering it (rendering every
        // row of a 10,000-row menu dominated filtered prints). The full query still decides.
        if let Some(eqs) = &stored
            && row.since.is_none()
            && !eqs
                .iter()
                .all(|(k, v, absent)| row.get(k).map_or(*absent, |x| x.as_slice()) == v.as_slice())
        {
            continue;
        }
        let mut r = st.render(menu, row, now, wall);
        if stats {
            add_session_stats(st, row, &mut r);
        }
        if !query::matches(menu, &words, &r).map_err(|e| CmdError::Failure(e.to_string()))? {
            continue;
        }
        out.push(match &req.proplist {
            Some(keys) => keys
                .iter()
                .filter_map(|k| r.iter().find(|(rk, _)| rk == k).cloned())
                .collect(),
            None => r,
        });
    }
    Ok(out)
}

/// When the query is only equalities on stored fields of a list menu: each `(field, value,
/// what an absent field compares as)`, for a check on the stored row. `None` otherwise (any
/// other word, `.id`, a singleton).
fn stored_equalities<'w>(
    menu: &Menu,
    words: &'w [Word],
) -> Option<Vec<(&'w str, &'w Bytes, &'static [u8])>> {
    if menu.kind == MenuKind::Singleton || words.is_empty() {
        return None;
    }
    words
        .iter()
        .map(|w| match w {
            Word::Eq(k, v) => {
                let field = menu.field(k)?;
                let absent: &'static [u8] = if field.kind == Kind::Flag {
                    b"false"
                } else {
                    b""
                };
                Some((k.as_str(), v, absent))
            }
            _ => None,
        })
        .collect()
}

/// Resolved ids and the remaining arguments.
type Targets = (Vec<u32>, Vec<(String, Bytes)>);

/// `print stats` on `/ppp/active`: `bytes`/`packets` as "transmitted by the router /
/// received", i.e. download/upload — the reverse of the interface's rx/tx (routeros.md §5).
fn add_session_stats(st: &State, row: &super::state::Row, r: &mut Rendered) {
    let name = row.get("name").cloned().unwrap_or_default();
    let ifname = [b"<pppoe-".as_slice(), &name, b">"].concat();
    let t = st.table("interface");
    let Some(iface) = t.find_name(&ifname).and_then(|id| t.get(id)) else {
        return;
    };
    let pair = |a: &str, b: &str| format!("{}/{}", iface.get_str(a), iface.get_str(b)).into_bytes();
    r.push(("bytes".into(), pair("tx-byte", "rx-byte")));
    r.push(("packets".into(), pair("tx-packet", "rx-packet")));
}

/// Splits `.id`/`numbers` off the arguments and resolves them (comma lists, names).
fn targets(
    st: &State,
    menu: &Menu,
    args: &[(String, Bytes)],
    allow_singleton: bool,
) -> Result<Targets, CmdError> {
    let mut refs: Option<Bytes> = None;
    let mut rest = Vec::new();
    for (k, v) in args {
        if k == ".id" || k == "numbers" {
            refs = Some(v.clone());
        } else {
            rest.push((k.clone(), v.clone()));
        }
    }
    if menu.kind == MenuKind::Singleton && allow_singleton {
        let ids = st.table(menu.path).ids();
        return Ok((ids, rest));
    }
    let Some(refs) = refs else {
        return Err(CmdError::Failure(
            "missing value(s) of argument(s) numbers".into(),
        ));
    };
    let table = st.table(menu.path);
    let mut ids = Vec::new();
    for part in refs.split(|b| *b == b',') {
        let id = match parse_id(part) {
            Some(id) if table.get(id).is_some() => id,
            Some(_) => return Err(CmdError::NoSuchItem),
            None if menu.named => table.find_name(part).ok_or(CmdError::NoSuchItem)?,
            None => return Err(CmdError::NoSuchItem),
        };
        ids.push(id);
    }
    Ok((ids, rest))
}

/// Validates and normalises one argument for `menu`.
fn normalise(st: &State, menu: &Menu, name: &str, value: &[u8]) -> Result<Bytes, CmdError> {
    let Some(field) = menu.field(name).filter(|f| !f.read_only) else {
        return Err(CmdError::unknown_param(name));
    };
    let invalid = || CmdError::Failure(format!("invalid value for argument {name}"));
    let text = || std::str::from_utf8(value).map_err(|_| invalid());
    Ok(match field.kind {
        Kind::Str => value.to_vec(),
        Kind::Bool | Kind::Flag => match parse_bool(value) {
            Some(true) => b"true".to_vec(),
            Some(false) => b"false".to_vec(),
            None => return Err(invalid()),
        },
        Kind::Int => {
            let t = text()?;
            t.parse::<u64>()
                .map_err(|_| invalid())?
                .to_string()
                .into_bytes()
        }
        Kind::Time => {
            let t = text()?;
            if t == "none" || t.is_empty() {
                t.as_bytes().to_vec()
            } else {
                format_duration_ms(parse_duration_ms(t).ok_or_else(invalid)?).into_bytes()
            }
        }
        Kind::RateLimit => {
            parse_rate_limit(text()?).map_err(|_| invalid())?;
            value.to_vec()
        }
        Kind::Enum(options) => {
            if !options.iter().any(|o| o.as_bytes() == value) {
                return Err(CmdError::Failure(format!(
                    "input does not match any value of {name}"
                )));
            }
            value.to_vec()
        }
        Kind::Ref(target) => resolve_ref(st, target, name, value)?,
    })
}

/// Exact name, else a unique prefix, else the ambiguity / no-match errors of routeros.md §1.7.
fn resolve_ref(st: &State, target: &str, field: &str, value: &[u8]) -> Result<Bytes, CmdError> {
    let t = st.table(target);
    if t.find_name(value).is_some() {
        return Ok(value.to_vec());
    }
    let matches: Vec<Bytes> = if value.is_empty() {
        Vec::new()
    } else {
        t.rows()
            .filter_map(|r| r.get("name"))
            .filter(|n| n.starts_with(value))
            .cloned()
            .collect()
    };
    match matches.len() {
        1 => Ok(matches.into_iter().next().unwrap_or_default()),
        0 => Err(CmdError::Failure(format!(
            "input does not match any value of {field}"
        ))),
        _ => Err(CmdError::Failure(format!(
            "ambiguous value of {field}, more than one possible value matches input"
        ))),
    }
}

fn add(
    st: &mut State,
    menu: &'static Menu,
    args: &[(String, Bytes)],
    now: Instant,
    wall: DateTime<Utc>,
) -> Result<Outcome, CmdError> {
    if !menu.commands.contains(&"add") {
        return Err(CmdError::NoSuchCommand("add".into()));
    }
    let mut props = defaults(menu);
    let mut given = Vec::new();
    for (k, v) in args {
        props.insert(k.clone(), normalise(st, menu, k, v)?);
        given.push(k.as_str());
    }
    let missing: Vec<&str> = menu
        .required
        .iter()
        .copied()
        .filter(|r| !given.contains(r))
        .collect();
    if !missing.is_empty() {
        return Err(CmdError::Failure(format!(
            "missing value(s) of argument(s) {}",
            missing.join(",")
        )));
    }
    match menu.path {
        "ip/firewall/address-list" => {
            let iso = st.version.iso_dates();
            props.insert(
                "creation-time".into(),
                super::format::format_datetime(wall, iso).into_bytes(),
            );
            if props.contains_key("timeout") {
                props.insert("dynamic".into(), b"true".to_vec());
            }
        }
        "ppp/secret" | "ip/hotspot/user" | "queue/simple"
            if props.get("name").is_none_or(|n| n.is_empty()) && menu.path != "queue/simple" =>
        {
            return Err(CmdError::Failure("failure: name must be set".into()));
        }
        _ => {}
    }
    if menu.path == "queue/simple" && props.get("name").is_none_or(|n| n.is_empty()) {
        let n = st.table(menu.path).len() + 1;
        props.insert("name".into(), format!("queue{n}").into_bytes());
    }
    // An address-list entry with a timeout is dynamic and removes itself (routeros.md §4.10).
    let timeout_ms = match menu.path {
        "ip/firewall/address-list" => props
            .get("timeout")
            .and_then(|t| parse_duration_ms(&String::from_utf8_lossy(t))),
        _ => None,
    };
    let since = timeout_ms.map(|_| now);
    let id = st
        .table_mut(menu.path)
        .insert(props, since)
        .map_err(|_| CmdError::Failure(menu.duplicate_error.to_owned()))?;
    if let Some(ms) = timeout_ms {
        sessions::expire_address_at(st, id, now + std::time::Duration::from_millis(ms));
    }
    Ok(Outcome::Ret(format_id(id).into_bytes()))
}

fn set(
    st: &mut State,
    menu: &'static Menu,
    id: u32,
    args: &[(String, Bytes)],
) -> Result<(), CmdError> {
    let mut changes = Vec::with_capacity(args.len());
    for (k, v) in args {
        changes.push((k.clone(), normalise(st, menu, k, v)?));
    }
    let table = st.table_mut(menu.path);
    let Some(row) = table.get(id) else {
        return Err(CmdError::NoSuchItem);
    };
    let mut props = row.props.clone();
    for (k, v) in changes {
        if k == "comment" && v.is_empty() {
            props.remove("comment");
        } else {
            props.insert(k, v);
        }
    }
    table
        .replace(id, props)
        .map_err(|_| CmdError::Failure(menu.duplicate_error.to_owned()))
}

fn unset(st: &mut State, menu: &'static Menu, id: u32, names: &[String]) -> Result<(), CmdError> {
    for n in names {
        if menu.field(n).is_none_or(|f| f.read_only) {
            return Err(CmdError::unknown_param(n));
        }
    }
    let table = st.table_mut(menu.path);
    let Some(row) = table.get(id) else {
        return Err(CmdError::NoSuchItem);
    };
    let mut props = row.props.clone();
    for n in names {
        match menu.field(n).and_then(|f| f.default) {
            Some(d) => props.insert(n.clone(), d.as_bytes().to_vec()),
            None => props.remove(n),
        };
    }
    table
        .replace(id, props)
        .map_err(|_| CmdError::Failure(menu.duplicate_error.to_owned()))
}

fn remove(st: &mut State, menu: &'static Menu, id: u32, now: Instant) -> Result<(), CmdError> {
    let Some(row) = st.table(menu.path).get(id) else {
        return Err(CmdError::NoSuchItem);
    };
    if row.is_true("default") {
        return Err(CmdError::Failure(
            "failure: can not remove default profile".into(),
        ));
    }
    match menu.kind {
        MenuKind::Sessions => {
            sessions::remove_by_admin(st, menu.path, id, now);
            Ok(())
        }
        MenuKind::List => {
            if row.is_true("dynamic") && menu.path == "queue/simple" {
                return Err(CmdError::Failure(
                    "failure: can not remove dynamic queue".into(),
                ));
            }
            st.table_mut(menu.path).remove(id);
            Ok(())
        }
        MenuKind::Interfaces | MenuKind::Singleton => Err(CmdError::NoSuchCommand("remove".into())),
    }
}

fn reset_counters(st: &mut State, menu: &Menu, id: u32) {
    let zero = |k: &'static str, v: &str| (k, v.as_bytes().to_vec());
    let fields: Vec<(&str, Bytes)> = match menu.path {
        "ip/hotspot/user" => vec![
            zero("bytes-in", "0"),
            zero("bytes-out", "0"),
            zero("packets-in", "0"),
            zero("packets-out", "0"),
            zero("uptime", "0s"),
        ],
        "interface" => COUNTER_FIELDS.iter().map(|k| zero(k, "0")).collect(),
        "queue/simple" => vec![zero("bytes", "0/0"), zero("packets", "0/0")],
        _ => Vec::new(),
    };
    st.table_mut(menu.path).set_fields(id, &fields);
}

/// Builds a request from a menu path and verb, for the control interface and tests.
pub fn request(path: &str, verb: &str, args: &[(&str, &str)]) -> Request {
    Request {
        path: path.trim_matches('/').to_owned(),
        verb: verb.to_owned(),
        args: args
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect(),
        ..Request::default()
    }
}

/// Converts `=k=v` style pairs into a map, for callers that want lookups.
pub fn to_map(r: &Rendered) -> BTreeMap<String, Bytes> {
    r.iter().cloned().collect()
}
