//! The classic-API query stack (routeros.md §2.6), shared by API `?` words, REST `.query` and
//! REST `?field=value` filters: parse once per request, evaluate per rendered row.

use super::schema::{Kind, Menu};
use super::state::{Bytes, Rendered};

#[derive(Debug, Clone, PartialEq)]
pub enum Word {
    Has(String),
    Lacks(String),
    Eq(String, Bytes),
    Lt(String, Bytes),
    Gt(String, Bytes),
    Ops(Vec<u8>),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QueryError {
    #[error("unknown operation {0:?} in query")]
    BadOp(char),
}

fn split_eq(s: &[u8]) -> (String, Bytes) {
    match s.iter().position(|b| *b == b'=') {
        Some(i) => (
            String::from_utf8_lossy(&s[..i]).into_owned(),
            s[i + 1..].to_vec(),
        ),
        None => (String::from_utf8_lossy(s).into_owned(), Vec::new()),
    }
}

/// Parses one query word without its leading `?`.
pub fn parse_word(w: &[u8]) -> Word {
    match w.first() {
        Some(b'#') => Word::Ops(w[1..].to_vec()),
        Some(b'-') => Word::Lacks(String::from_utf8_lossy(&w[1..]).into_owned()),
        Some(b'<') => {
            let (k, v) = split_eq(&w[1..]);
            Word::Lt(k, v)
        }
        Some(b'>') => {
            let (k, v) = split_eq(&w[1..]);
            Word::Gt(k, v)
        }
        Some(b'=') => {
            let (k, v) = split_eq(&w[1..]);
            Word::Eq(k, v)
        }
        _ if w.contains(&b'=') => {
            let (k, v) = split_eq(w);
            Word::Eq(k, v)
        }
        _ => Word::Has(String::from_utf8_lossy(w).into_owned()),
    }
}

/// Normalises a query value for boolean fields so `yes` matches stored `true`.
pub fn normalise(menu: &Menu, words: Vec<Word>) -> Vec<Word> {
    words
        .into_iter()
        .map(|w| match w {
            Word::Eq(k, v) => {
                let v = match menu.field(&k).map(|f| f.kind) {
                    Some(Kind::Bool | Kind::Flag) => match super::format::parse_bool(&v) {
                        Some(true) => b"true".to_vec(),
                        Some(false) => b"false".to_vec(),
                        None => v,
                    },
                    _ => v,
                };
                Word::Eq(k, v)
            }
            other => other,
        })
        .collect()
}

fn lookup<'a>(menu: &Menu, row: &'a Rendered, key: &str) -> Option<&'a [u8]> {
    match row.iter().find(|(k, _)| k == key) {
        Some((_, v)) => Some(v),
        None if menu.field(key).map(|f| f.kind) == Some(Kind::Flag) => Some(b"false"),
        None => None,
    }
}

fn compare(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let num = |x: &[u8]| {
        std::str::from_utf8(x)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
    };
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// Evaluates the query stack against one row: matches when no `false` is left on the stack.
pub fn matches(menu: &Menu, words: &[Word], row: &Rendered) -> Result<bool, QueryError> {
    let mut stack: Vec<bool> = Vec::with_capacity(words.len());
    // The stack conceptually holds infinitely many `true` below what we pushed.
    let pop = |s: &mut Vec<bool>| s.pop().unwrap_or(true);
    for w in words {
        match w {
            Word::Has(k) => stack.push(row.iter().any(|(rk, _)| rk == k)),
            Word::Lacks(k) => stack.push(!row.iter().any(|(rk, _)| rk == k)),
            Word::Eq(k, v) => stack.push(lookup(menu, row, k).unwrap_or(b"") == v.as_slice()),
            Word::Lt(k, v) => stack.push(
                lookup(menu, row, k).is_some_and(|x| compare(x, v) == std::cmp::Ordering::Less),
            ),
            Word::Gt(k, v) => stack.push(
                lookup(menu, row, k).is_some_and(|x| compare(x, v) == std::cmp::Ordering::Greater),
            ),
            Word::Ops(ops) => {
                let mut i = 0;
                while i < ops.len() {
                    let c = ops[i];
                    match c {
                        b'!' => {
                            let a = pop(&mut stack);
                            stack.push(!a);
                        }
                        b'&' => {
                            let a = pop(&mut stack);
                            let b = pop(&mut stack);
                            stack.push(a && b);
                        }
                        b'|' => {
                            let a = pop(&mut stack);
                            let b = pop(&mut stack);
                            stack.push(a || b);
                        }
                        b'.' => {
                            let a = stack.last().copied().unwrap_or(true);
                            stack.push(a);
                        }
                        b'0'..=b'9' => {
                            let start = i;
                            while i + 1 < ops.len() && ops[i + 1].is_ascii_digit() {
                                i += 1;
                            }
                            let n: usize = std::str::from_utf8(&ops[start..=i])
                                .ok()
                                .and_then(|s| s.parse().ok())
                                .unwrap_or(0);
                            // Index counted from the top of the stack.
                            let v = if n < stack.len() {
                                stack[stack.len() - 1 - n]
                            } else {
                                true
                            };
                            stack.push(v);
                        }
                        other => return Err(QueryError::BadOp(other as char)),
                    }
                    i += 1;
                }
            }
        }
    }
    Ok(stack.iter().all(|b| *b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::schema::menu;

    fn row(pairs: &[(&str, &str)]) -> Rendered {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    fn q(words: &[&str]) -> Vec<Word> {
        words.iter().map(|w| parse_word(w.as_bytes())).collect()
    }

    #[test]
    fn the_stack_implements_or_not_and_presence() {
        let m = menu("interface").unwrap();
        let ether = row(&[("type", "ether"), ("name", "ether1")]);
        let vlan = row(&[("type", "vlan"), ("name", "v1"), ("comment", "x")]);
        let ppp = row(&[
            ("type", "pppoe-in"),
            ("name", "<pppoe-a>"),
            ("dynamic", "true"),
        ]);
        let or = q(&["type=ether", "type=vlan", "#|"]);
        assert!(matches(m, &or, &ether).unwrap());
        assert!(matches(m, &or, &vlan).unwrap());
        assert!(!matches(m, &or, &ppp).unwrap());
        let nor = q(&["type=ether", "type=vlan", "#|!"]);
        assert!(matches(m, &nor, &ppp).unwrap());
        assert!(matches(m, &q(&["comment"]), &vlan).unwrap());
        assert!(matches(m, &q(&["-comment"]), &ether).unwrap());
        assert!(matches(m, &q(&[">comment="]), &vlan).unwrap());
        assert!(matches(m, &q(&["=name=v1"]), &vlan).unwrap());
        assert!(matches(m, &normalise(m, q(&["dynamic=no"])), &ether).unwrap());
        assert!(matches(m, &normalise(m, q(&["dynamic=yes"])), &ppp).unwrap());
    }
}
