//! Lexing of console scripts (routeros.md §3.2–3.3): splitting into commands on `;` and
//! newlines, double-quoted strings with every escape of the scripting manual (and `$var`
//! substitution, which is what breaks unescaped `$`), `[...]` sub-expressions, and the
//! console's syntax errors with line and column.

use super::state::Bytes;

/// One token: text made of literal and quoted parts, or a `[...]` sub-expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(Bytes),
    Sub(Bytes),
}

#[derive(Debug, Clone)]
pub struct Token {
    pub parts: Vec<Part>,
    /// 1-based column of the token's first byte.
    pub col: usize,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CliError {
    #[error("syntax error (line {line} column {col})")]
    Syntax { line: usize, col: usize },
    #[error("bad command name {name} (line {line} column {col})")]
    BadCommand {
        name: String,
        line: usize,
        col: usize,
    },
    #[error("expected end of command (line {line} column {col})")]
    ExpectedEnd { line: usize, col: usize },
    #[error("{0}")]
    Cmd(String),
}

/// Decodes a double-quoted string body starting after the opening quote; returns the bytes
/// and the index after the closing quote.
pub fn quoted(src: &[u8], mut i: usize, question_escape: bool) -> Option<(Bytes, usize)> {
    let mut out = Vec::new();
    while i < src.len() {
        match src[i] {
            b'"' => return Some((out, i + 1)),
            b'\\' => {
                let c = *src.get(i + 1)?;
                i += 2;
                match c {
                    b'"' => out.push(b'"'),
                    b'\\' => out.push(b'\\'),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'$' => out.push(b'$'),
                    b'_' => out.push(b' '),
                    b'a' => out.push(0x07),
                    b'b' => out.push(0x08),
                    b'f' => out.push(0x0C),
                    b'v' => out.push(0x0B),
                    b'?' if question_escape => out.push(b'?'),
                    b'0'..=b'9' | b'A'..=b'F' => {
                        let d = *src.get(i)?;
                        if !(d.is_ascii_digit() || (b'A'..=b'F').contains(&d)) {
                            return None;
                        }
                        let hex = [c, d];
                        let v = u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?;
                        out.push(v);
                        i += 1;
                    }
                    _ => return None,
                }
            }
            b'$' => {
                // Variable substitution; the simulator has no variables, so it expands to
                // nothing — exactly what breaks an unescaped `$` in a password.
                i += 1;
                while i < src.len() && (src[i].is_ascii_alphanumeric() || src[i] == b'-') {
                    i += 1;
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

/// Splits a script into commands of tokens. Errors carry line/column.
pub fn tokenize(src: &[u8], question_escape: bool) -> Result<Vec<(usize, Vec<Token>)>, CliError> {
    let mut commands = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    let mut tok: Option<Token> = None;
    let mut line = 1;
    let mut line_start = 0;
    let mut i = 0;
    let flush = |tok: &mut Option<Token>, current: &mut Vec<Token>| {
        if let Some(t) = tok.take() {
            current.push(t);
        }
    };
    while i < src.len() {
        let b = src[i];
        let col = i - line_start + 1;
        match b {
            b' ' | b'\t' | b'\r' => {
                flush(&mut tok, &mut current);
                i += 1;
            }
            b'\n' | b';' => {
                flush(&mut tok, &mut current);
                if !current.is_empty() {
                    commands.push((line, std::mem::take(&mut current)));
                }
                if b == b'\n' {
                    line += 1;
                    line_start = i + 1;
                }
                i += 1;
            }
            b'"' => {
                let (s, next) =
                    quoted(src, i + 1, question_escape).ok_or(CliError::Syntax { line, col })?;
                tok.get_or_insert(Token {
                    parts: Vec::new(),
                    col,
                })
                .parts
                .push(Part::Text(s));
                i = next;
            }
            b'[' => {
                let mut depth = 0;
                let mut j = i;
                let mut in_quote = false;
                while j < src.len() {
                    match src[j] {
                        b'\\' if in_quote => j += 1,
                        b'"' => in_quote = !in_quote,
                        b'[' if !in_quote => depth += 1,
                        b']' if !in_quote => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if j >= src.len() {
                    return Err(CliError::Syntax { line, col });
                }
                tok.get_or_insert(Token {
                    parts: Vec::new(),
                    col,
                })
                .parts
                .push(Part::Sub(src[i + 1..j].to_vec()));
                i = j + 1;
            }
            b'?' if !question_escape => return Err(CliError::Syntax { line, col }),
            _ => {
                let t = tok.get_or_insert(Token {
                    parts: Vec::new(),
                    col,
                });
                match t.parts.last_mut() {
                    Some(Part::Text(s)) => s.push(b),
                    _ => t.parts.push(Part::Text(vec![b])),
                }
                i += 1;
            }
        }
    }
    flush(&mut tok, &mut current);
    if !current.is_empty() {
        commands.push((line, current));
    }
    Ok(commands)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_per_the_scripting_manual() {
        let (s, _) = quoted(br#"a\"b\\c\$d\_e\41\n""#, 0, false).unwrap();
        assert_eq!(s, b"a\"b\\c$d eA\n");
        assert!(quoted(br#"\q""#, 0, false).is_none());
        assert!(quoted(br#"\?""#, 0, false).is_none());
        assert_eq!(quoted(br#"\?""#, 0, true).unwrap().0, b"?");
        // Lower-case hex is not an escape.
        assert!(quoted(br#"\4a""#, 0, false).is_none());
        // An unescaped `$name` is variable substitution.
        assert_eq!(quoted(br#"pa$ss""#, 0, false).unwrap().0, b"pa");
    }

    #[test]
    fn commands_split_on_semicolons_and_newlines_but_not_inside_quotes() {
        let c = tokenize(
            b"/ppp secret add name=\"a;b\"; /ppp secret print\n:put 1",
            false,
        )
        .unwrap();
        assert_eq!(c.len(), 3);
    }
}
