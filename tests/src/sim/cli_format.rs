//! Console output of `print`: `terse` (one unquoted line per item), `detail` (blocks with
//! quoted strings), the default table, and `as-value` / `:serialize to=json` renderings
//! (routeros.md §3.4). Booleans print `yes`/`no` here, unlike REST and the API.

use super::schema::{Kind, Menu};
use super::state::{Bytes, Rendered};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrintStyle {
    Table,
    Terse,
    Detail,
    AsValue,
}

/// Fields shown as flag letters instead of `key=value`.
const FLAG_FIELDS: &[(&str, char)] = &[("disabled", 'X'), ("dynamic", 'D'), ("running", 'R')];

fn console_value(menu: &Menu, key: &str, v: &[u8]) -> Bytes {
    match menu.field(key).map(|f| f.kind) {
        Some(Kind::Bool | Kind::Flag) => match v {
            b"true" => b"yes".to_vec(),
            b"false" => b"no".to_vec(),
            other => other.to_vec(),
        },
        _ => v.to_vec(),
    }
}

fn flags(menu: &Menu, row: &Rendered) -> String {
    FLAG_FIELDS
        .iter()
        .filter(|(k, _)| menu.field(k).is_some())
        .filter(|(k, _)| row.iter().any(|(rk, v)| rk == k && v == b"true"))
        .map(|(_, c)| *c)
        .collect()
}

fn shown(menu: &Menu, key: &str) -> bool {
    key != ".id"
        && key != "comment"
        && key != "default"
        && !FLAG_FIELDS
            .iter()
            .any(|(k, _)| *k == key && menu.field(k).is_some())
}

/// Whether `detail` quotes this value: strings are quoted, numbers/enums/booleans bare.
fn quoted_kind(menu: &Menu, key: &str) -> bool {
    matches!(
        menu.field(key).map(|f| f.kind),
        Some(Kind::Str | Kind::Ref(_) | Kind::RateLimit) | None
    )
}

fn escape(v: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(v.len());
    for &b in v {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'$' => out.extend_from_slice(b"\\$"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x00..=0x1F | 0x7F => out.extend_from_slice(format!("\\{b:02X}").as_bytes()),
            _ => out.push(b),
        }
    }
    out
}

/// Renders `print` output in the console styles.
pub fn print(menu: &Menu, rows: &[Rendered], style: PrintStyle) -> Vec<u8> {
    let mut out = Vec::new();
    if style == PrintStyle::Table || style == PrintStyle::Detail {
        let letters: Vec<String> = FLAG_FIELDS
            .iter()
            .filter(|(k, _)| menu.field(k).is_some())
            .map(|(k, c)| format!("{c} - {}", k.to_uppercase()))
            .collect();
        if !letters.is_empty() {
            out.extend_from_slice(format!("Flags: {}\n", letters.join("; ")).as_bytes());
        }
    }
    for (i, row) in rows.iter().enumerate() {
        let f = flags(menu, row);
        let comment = row
            .iter()
            .find(|(k, _)| k == "comment")
            .map(|(_, v)| v.clone());
        match style {
            PrintStyle::Terse => {
                out.extend_from_slice(format!("{i:>2} {f:>2} ").as_bytes());
                let mut first = true;
                if let Some(c) = &comment {
                    out.extend_from_slice(b"comment=");
                    out.extend_from_slice(c);
                    first = false;
                }
                for (k, v) in row.iter().filter(|(k, _)| shown(menu, k)) {
                    if !first {
                        out.push(b' ');
                    }
                    first = false;
                    out.extend_from_slice(k.as_bytes());
                    out.push(b'=');
                    out.extend_from_slice(&console_value(menu, k, v));
                }
                out.push(b'\n');
            }
            PrintStyle::Detail | PrintStyle::Table => {
                out.extend_from_slice(format!("{i:>2} {f:<2} ").as_bytes());
                if let Some(c) = &comment {
                    out.extend_from_slice(b";;; ");
                    out.extend_from_slice(c);
                    out.extend_from_slice(b"\n      ");
                }
                let mut first = true;
                for (k, v) in row.iter().filter(|(k, _)| shown(menu, k)) {
                    if !first {
                        out.push(b' ');
                    }
                    first = false;
                    out.extend_from_slice(k.as_bytes());
                    out.push(b'=');
                    let v = console_value(menu, k, v);
                    if quoted_kind(menu, k) {
                        out.push(b'"');
                        out.extend_from_slice(&escape(&v));
                        out.push(b'"');
                    } else {
                        out.extend_from_slice(&v);
                    }
                }
                out.extend_from_slice(b"\n\n");
            }
            PrintStyle::AsValue => {}
        }
    }
    out
}

/// `:put [print as-value]`: every row's `key=value` pairs, all joined with `;`.
pub fn as_value(rows: &[Rendered]) -> Vec<u8> {
    let mut parts: Vec<Bytes> = Vec::new();
    for r in rows {
        for (k, v) in r {
            parts.push([k.as_bytes(), b"=", v].concat());
        }
    }
    parts.join(&b';')
}

/// `:serialize to=json [print as-value]`: an array of objects, values as strings.
pub fn json_rows(rows: &[Rendered]) -> Vec<u8> {
    super::json::array(rows)
}
