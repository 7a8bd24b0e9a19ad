//! Pure RouterOS CLI helpers for the SSH driver: quoting every value (routeros.md §3.3), building
//! command lines, parsing `print terse` output (§3.4) and recognising CLI error texts (§3.5).
//!
//! Quoting follows the PEAR2 rule, stricter: inside double quotes only `[A-Za-z0-9_]` is
//! emitted as is; every other byte becomes `\XX` (upper-case hex). That neutralises `"`, `\`,
//! `$`, `?`, `;`, `[`, `]`, spaces, newlines and control bytes, so no customer-supplied value
//! can inject a command; and bytes ≥ 0x80 (UTF-8 or the router's code page) travel exactly,
//! in an ASCII command line.

use crate::routeros::error::{Result, RouterError};
use crate::routeros::value::{Row, Text};

/// `"…"` with every byte outside `[A-Za-z0-9_]` written as `\XX`.
pub fn quote(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 2);
    out.push(b'"');
    for &b in value {
        if b.is_ascii_alphanumeric() || b == b'_' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("\\{b:02X}").as_bytes());
        }
    }
    out.push(b'"');
    out
}

/// `/ppp/secret` → `/ppp secret`.
pub fn menu_path(menu: &str) -> String {
    let trimmed = menu.trim_start_matches('/');
    format!("/{}", trimmed.replace('/', " "))
}

/// Property names and ids are written unquoted, so they must be plain.
pub fn check_word(word: &str) -> Result<&str> {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*'))
    {
        Ok(word)
    } else {
        Err(RouterError::InvalidValue {
            message: format!("{word:?} is not a plain RouterOS word"),
        })
    }
}

fn push_args(line: &mut Vec<u8>, args: &[(&str, Text)]) -> Result<()> {
    for (k, v) in args {
        line.push(b' ');
        line.extend_from_slice(check_word(k)?.as_bytes());
        line.push(b'=');
        line.extend_from_slice(&quote(v.as_bytes()));
    }
    Ok(())
}

/// `:put [:serialize to=json [/menu print as-value proplist=.id,a,b where k="v" and …]]`:
/// JSON rows with `.id` and byte-exact values (RouterOS 7.13+ has `:serialize`).
pub fn print_line(menu: &str, query: &[(&str, Text)], proplist: &[&str]) -> Result<Vec<u8>> {
    let mut line = format!(
        ":put [:serialize to=json [{} print as-value",
        menu_path(menu)
    )
    .into_bytes();
    if !proplist.is_empty() {
        let mut props: Vec<&str> = vec![".id"];
        props.extend(proplist.iter().copied().filter(|p| *p != ".id"));
        for p in &props {
            check_word(p)?;
        }
        line.extend_from_slice(format!(" proplist={}", props.join(",")).as_bytes());
    }
    push_where(&mut line, query)?;
    line.extend_from_slice(b"]]");
    Ok(line)
}

/// `:put [/menu print as-value proplist=.id,a,b where …]`: the fallback for routers without
/// `:serialize` (RouterOS 6). Rows come back as `k=v` pairs joined by `;`, so a value that
/// itself contains `;` cannot be read exactly (routeros.md §3.4).
pub fn print_as_value_line(
    menu: &str,
    query: &[(&str, Text)],
    proplist: &[&str],
) -> Result<Vec<u8>> {
    let mut line = format!(":put [{} print as-value", menu_path(menu)).into_bytes();
    if !proplist.is_empty() {
        let mut props: Vec<&str> = vec![".id"];
        props.extend(proplist.iter().copied().filter(|p| *p != ".id"));
        for p in &props {
            check_word(p)?;
        }
        line.extend_from_slice(format!(" proplist={}", props.join(",")).as_bytes());
    }
    push_where(&mut line, query)?;
    line.push(b']');
    Ok(line)
}

/// Parses `:put [print as-value]` output: `.id=*1;name=a;.id=*2;name=b`. A row starts at
/// each `.id`; a part without `=` continues the previous value (it contained a `;`).
pub fn parse_as_value(output: &[u8]) -> Result<Vec<Row>> {
    let text = output.trim_ascii();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(e) = error_in(text).filter(|_| !text.starts_with(b".id=")) {
        return Err(e);
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut last_key: Option<String> = None;
    for part in text.split(|b| *b == b';') {
        let eq = part.iter().position(|b| *b == b'=');
        let key_ok = eq.is_some_and(|p| p > 0 && part[..p].iter().all(|b| is_key_byte(*b)));
        match (eq, key_ok) {
            (Some(p), true) => {
                let key = String::from_utf8_lossy(&part[..p]).into_owned();
                if key == ".id" || rows.is_empty() {
                    rows.push(Row::default());
                }
                if let Some(row) = rows.last_mut() {
                    row.insert(key.clone(), Text::from(&part[p + 1..]));
                }
                last_key = Some(key);
            }
            _ => {
                let (Some(row), Some(key)) = (rows.last_mut(), last_key.as_ref()) else {
                    return Err(RouterError::Protocol(
                        "as-value output without a key".into(),
                    ));
                };
                let mut v = row.text(key).into_bytes();
                v.push(b';');
                v.extend_from_slice(part);
                row.insert(key.clone(), Text::new(v));
            }
        }
    }
    Ok(rows)
}

/// `/menu print terse without-paging where …`: the fallback for routers without `:serialize`
/// (no ids; usable for counts and display only).
pub fn print_terse_line(menu: &str, query: &[(&str, Text)]) -> Result<Vec<u8>> {
    let mut line = format!("{} print terse without-paging", menu_path(menu)).into_bytes();
    push_where(&mut line, query)?;
    Ok(line)
}

fn push_where(line: &mut Vec<u8>, query: &[(&str, Text)]) -> Result<()> {
    for (i, (k, v)) in query.iter().enumerate() {
        line.extend_from_slice(if i == 0 { b" where " } else { b" and " });
        line.extend_from_slice(check_word(k)?.as_bytes());
        line.push(b'=');
        line.extend_from_slice(&quote(v.as_bytes()));
    }
    Ok(())
}

/// Parses the JSON printed by [`print_line`] (an array of objects, or one object).
pub fn parse_json_rows(output: &[u8]) -> Result<Vec<Row>> {
    let trimmed = trim_start(output);
    if !trimmed.starts_with(b"[") && !trimmed.starts_with(b"{") {
        return Err(error_in(output).unwrap_or_else(|| {
            RouterError::Protocol(format!(
                "unexpected CLI output {:?}",
                Text::from(&output[..output.len().min(200)])
            ))
        }));
    }
    let json = crate::routeros::rest::json::parse(output.trim_ascii())
        .map_err(|e| RouterError::Protocol(format!("bad JSON from :serialize: {e}")))?;
    crate::routeros::rest::rows_from(json)
}

/// `:put [/menu add k="v" …]`: prints the new id.
pub fn add_line(menu: &str, attrs: &[(&str, Text)]) -> Result<Vec<u8>> {
    let mut line = format!(":put [{} add", menu_path(menu)).into_bytes();
    push_args(&mut line, attrs)?;
    line.push(b']');
    Ok(line)
}

/// `/menu verb [id] k="v" …`.
pub fn verb_line(
    menu: &str,
    verb: &str,
    id: Option<&str>,
    args: &[(&str, Text)],
) -> Result<Vec<u8>> {
    let mut line = format!("{} {}", menu_path(menu), check_word(verb)?).into_bytes();
    if let Some(id) = id {
        line.push(b' ');
        line.extend_from_slice(check_word(id)?.as_bytes());
    }
    push_args(&mut line, args)?;
    Ok(line)
}

/// If `output` is a CLI error message, the typed error for it.
pub fn error_in(output: &[u8]) -> Option<RouterError> {
    let text = String::from_utf8_lossy(output);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    match RouterError::from_router_message(line) {
        RouterError::Other(_) if !looks_like_error(line) => None,
        e => Some(e),
    }
}

fn looks_like_error(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    [
        "error",
        "failure",
        "bad command",
        "no such",
        "invalid",
        "not allowed",
        "expected",
    ]
    .iter()
    .any(|n| l.contains(n))
}

/// Flag letters of `print terse` that stand for properties.
fn flag_property(flag: u8) -> Option<&'static str> {
    match flag {
        b'X' => Some("disabled"),
        b'D' => Some("dynamic"),
        b'R' => Some("running"),
        _ => None,
    }
}

/// Parses `print terse show-ids` output: one row per line, `*ID FLAGS key=value …`. When
/// `keys` is non-empty, a value extends up to the next ` key=` of a known key, so values with
/// spaces survive; otherwise pairs split at spaces.
pub fn parse_terse(output: &[u8], keys: &[&str]) -> Result<Vec<Row>> {
    if let Some(row) = parse_singleton(output) {
        return Ok(vec![row]);
    }
    let mut rows = Vec::new();
    for raw in output.split(|b| *b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = trim_start(line);
        if line.is_empty() {
            continue;
        }
        if !(line[0] == b'*' || line[0].is_ascii_digit()) {
            return Err(error_in(line).unwrap_or_else(|| {
                RouterError::Protocol(format!("unexpected CLI output line {:?}", Text::from(line)))
            }));
        }
        let mut row = Row::default();
        let id_end = line.iter().position(|b| *b == b' ').unwrap_or(line.len());
        let id = &line[..id_end];
        if id[0] == b'*' {
            row.insert(".id", Text::from(id));
        }
        let mut rest = trim_start(&line[id_end..]);
        // Flag tokens: short runs of upper-case letters or `*` before the first `key=`.
        loop {
            let tok_end = rest.iter().position(|b| *b == b' ').unwrap_or(rest.len());
            let tok = &rest[..tok_end];
            if tok.is_empty() || tok.contains(&b'=') || tok.len() > 4 {
                break;
            }
            if !tok.iter().all(|b| b.is_ascii_uppercase() || *b == b'*') {
                break;
            }
            for f in tok {
                if let Some(p) = flag_property(*f) {
                    row.insert(p, "true");
                }
            }
            rest = trim_start(&rest[tok_end..]);
        }
        for (k, v) in split_pairs(rest, keys) {
            row.insert(k, Text::from(v));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Singleton menus (`/system identity print`) print `key: value` lines, not rows.
fn parse_singleton(output: &[u8]) -> Option<Row> {
    let mut row = Row::default();
    for raw in output.split(|b| *b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = trim_start(line);
        if line.is_empty() {
            continue;
        }
        let klen = line.iter().take_while(|b| is_key_byte(**b)).count();
        if klen == 0 || !line[klen..].starts_with(b":") || line[0].is_ascii_digit() {
            return None;
        }
        let key = String::from_utf8_lossy(&line[..klen]).into_owned();
        row.insert(key, Text::from(trim_start(&line[klen + 1..])));
    }
    (!row.0.is_empty()).then_some(row)
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
    &s[n..]
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'
}

/// Start offsets of ` key=` (or `key=` at 0) where `key` is acceptable.
fn key_starts(s: &[u8], keys: &[&str]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if i == 0 || s[i - 1] == b' ' {
            let klen = s[i..].iter().take_while(|b| is_key_byte(**b)).count();
            if klen > 0 && s.get(i + klen) == Some(&b'=') {
                let key = &s[i..i + klen];
                if keys.is_empty() || keys.iter().any(|k| k.as_bytes() == key) {
                    out.push((i, klen));
                    i += klen + 1;
                    if keys.is_empty() {
                        // Unknown key set: the value ends at the next space.
                        while i < s.len() && s[i] != b' ' {
                            i += 1;
                        }
                    }
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

fn split_pairs(s: &[u8], keys: &[&str]) -> Vec<(String, Vec<u8>)> {
    let starts = key_starts(s, keys);
    let mut out = Vec::with_capacity(starts.len());
    for (n, &(at, klen)) in starts.iter().enumerate() {
        let key = String::from_utf8_lossy(&s[at..at + klen]).into_owned();
        let vstart = at + klen + 1;
        let vend = match starts.get(n + 1) {
            Some(&(next, _)) => next.saturating_sub(1).max(vstart),
            None => s.len(),
        };
        let mut value = &s[vstart..vend];
        while let Some(v) = value.strip_suffix(b" ") {
            value = v;
        }
        out.push((key, value.to_vec()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_strings_cannot_escape_the_quotes() {
        let cases: &[(&[u8], &str)] = &[
            (b"plain_Name1", r#""plain_Name1""#),
            (b"a\"b", r#""a\22b""#),
            (b"a\\b", r#""a\5Cb""#),
            (b"$HOME", r#""\24HOME""#),
            (b"what?", r#""what\3F""#),
            (b"x\ny", r#""x\0Ay""#),
            (b"a; /system reboot", r#""a\3B\20\2Fsystem\20reboot""#),
            (b"[/system reboot]", r#""\5B\2Fsystem\20reboot\5D""#),
            (b"\x00\x01\x1f\x7f", r#""\00\01\1F\7F""#),
            (b"cust@isp.net", r#""cust\40isp\2Enet""#),
            (b"", r#""""#),
        ];
        for (input, want) in cases {
            assert_eq!(String::from_utf8_lossy(&quote(input)), *want, "{input:?}");
        }
        // Non-ASCII bytes (UTF-8 or the router's code page) travel as exact byte escapes.
        assert_eq!(quote(b"caf\xe9"), br#""caf\E9""#.to_vec());
        assert_eq!(quote("ü".as_bytes()), br#""\C3\BC""#.to_vec());
    }

    #[test]
    fn quoted_output_has_no_active_characters() {
        let all: Vec<u8> = (0u8..=0x7F).collect();
        let q = quote(&all);
        let inner = &q[1..q.len() - 1];
        for b in [
            b'"', b'$', b'?', b';', b'[', b']', b'{', b'}', b' ', b'\n', b'\r',
        ] {
            assert!(!inner.contains(&b), "{} leaked", b as char);
        }
    }

    #[test]
    fn command_lines_are_built_with_quoted_values() {
        let line = print_line(
            "/ppp/secret",
            &[("name", Text::from("a b"))],
            &[".id", "name"],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            r#":put [:serialize to=json [/ppp secret print as-value proplist=.id,name where name="a\20b"]]"#
        );
        let rows = parse_json_rows(b"[{\".id\":\"*1\",\"name\":\"caf\xe9\"}]\r\n").unwrap();
        assert_eq!(rows[0].text("name").as_bytes(), b"caf\xe9");
        assert!(matches!(
            parse_json_rows(b"bad command name :serialize (line 1 column 7)\n"),
            Err(RouterError::InvalidValue { .. })
        ));
        let line = add_line("/ip/firewall/address-list", &[("list", Text::from("x"))]).unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            r#":put [/ip firewall address-list add list="x"]"#
        );
        let line = verb_line(
            "/ppp/secret",
            "set",
            Some("*1F"),
            &[("disabled", Text::from("yes"))],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            r#"/ppp secret set *1F disabled="yes""#
        );
        assert!(verb_line("/ppp/secret", "set", Some("*1; /system reboot"), &[]).is_err());
        assert!(print_line("/x", &[("a b", Text::from("v"))], &[]).is_err());
    }

    #[test]
    fn terse_rows_with_ids_flags_and_spaces_in_values() {
        let out = b" *1F X  name=cust1 profile=10M comment=hello world disabled=yes\r\n\
                    *20    name=cust2 profile=default comment=\n";
        let rows = parse_terse(out, &["name", "profile", "comment", "disabled"]).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].text(".id"), "*1F");
        assert_eq!(rows[0].text("comment"), "hello world");
        assert_eq!(rows[0].text("disabled"), "yes");
        assert_eq!(rows[1].text("comment"), "");
        assert!(!rows[1].flag("disabled").unwrap());
        let rows = parse_terse(b"*5 D name=<pppoe-a> rx-byte=10 tx-byte=20\n", &[]).unwrap();
        assert!(rows[0].flag("dynamic").unwrap());
        assert_eq!(rows[0].u64("tx-byte").unwrap(), Some(20));
    }

    #[test]
    fn as_value_rows_split_at_each_id() {
        let out = b".id=*1;name=a;comment=x;y;.id=*2;name=b;comment=\r\n";
        let rows = parse_as_value(out).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].text("comment"), "x;y");
        assert_eq!(rows[1].text(".id"), "*2");
        assert_eq!(rows[1].text("comment"), "");
        assert!(parse_as_value(b"").unwrap().is_empty());
        assert!(parse_as_value(b"no such item\n").is_err());
        let line =
            print_as_value_line("/ppp/active", &[("name", Text::from("a"))], &["name"]).unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            r#":put [/ppp active print as-value proplist=.id,name where name="a"]"#
        );
    }

    #[test]
    fn singleton_print_is_one_row() {
        let rows = parse_terse(b"  name: MikroTik\r\n  version: 7.16 (stable)\n", &[]).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].text("name"), "MikroTik");
        assert_eq!(rows[0].text("version"), "7.16 (stable)");
        assert!(parse_terse(b"syntax error (line 1 column 5)\n", &[]).is_err());
    }

    #[test]
    fn cli_errors_become_typed_errors() {
        assert!(matches!(
            error_in(b"failure: secret with the same name already exists\r\n"),
            Some(RouterError::AlreadyExists(_))
        ));
        assert!(matches!(
            error_in(b"input does not match any value of profile\n"),
            Some(RouterError::InvalidValue { .. })
        ));
        assert!(matches!(
            error_in(b"no such item\n"),
            Some(RouterError::NotFound(_))
        ));
        assert!(matches!(
            error_in(b"bad command name frob (line 1 column 13)\n"),
            Some(RouterError::InvalidValue { .. })
        ));
        assert!(error_in(b"*1F\n").is_none());
        assert!(error_in(b"").is_none());
        assert!(parse_terse(b"syntax error (line 1 column 5)\n", &[]).is_err());
    }
}
