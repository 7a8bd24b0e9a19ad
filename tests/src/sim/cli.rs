//! The RouterOS console language subset the SSH driver uses (routeros.md §3.2–3.5): paths
//! (`/ppp secret` or `/ppp/secret`), `add/set/remove/enable/disable/unset/reset-counters/
//! print/find`, `[find ...]` sub-expressions, `where` expressions, `:put` and
//! `:serialize to=json`, string escapes of §3.3, and console error texts on the output.

use std::time::Instant;

use chrono::Utc;

use super::cli_format::{self, PrintStyle};
use super::cli_parse::{CliError, Part, Token, tokenize};
use super::command::{self, CmdError, Origin, Outcome, Request};
use super::schema::{self, Menu};
use super::server::Sim;
use super::state::{Bytes, Rendered, State};

/// A value produced by a command: a list of ids, a scalar, or printed rows.
#[derive(Debug, Clone)]
enum Value {
    Nothing,
    Scalar(Bytes),
    Ids(Vec<Bytes>),
    Rows(Vec<Rendered>),
}

impl Value {
    fn as_bytes(&self) -> Bytes {
        match self {
            Value::Nothing => Vec::new(),
            Value::Scalar(b) => b.clone(),
            Value::Ids(ids) => ids.join(&b';'),
            Value::Rows(rows) => cli_format::as_value(rows),
        }
    }
    fn as_numbers(&self) -> Bytes {
        match self {
            Value::Ids(ids) => ids.join(&b','),
            other => other.as_bytes(),
        }
    }
}

struct Ctx<'a> {
    st: &'a mut State,
    out: Vec<u8>,
    line: usize,
    /// Menu of the command being evaluated: `[find ...]` inside it is relative to this.
    cwd: Vec<String>,
}

/// Runs a whole exec-channel script and returns what the console would print.
pub fn run_script(sim: &Sim, script: &[u8]) -> Vec<u8> {
    let mut st = sim.state();
    let q = st.version.cli_question_escape();
    let commands = match tokenize(script, q) {
        Ok(c) => c,
        Err(e) => return format!("{e}\n").into_bytes(),
    };
    let mut ctx = Ctx {
        st: &mut st,
        out: Vec::new(),
        line: 1,
        cwd: Vec::new(),
    };
    for (line, tokens) in commands {
        ctx.line = line;
        match eval(&mut ctx, &tokens, true) {
            Ok(_) => {}
            Err(e) => {
                ctx.out.extend_from_slice(format!("{e}\n").as_bytes());
                // The console stops a script at the first error.
                break;
            }
        }
    }
    ctx.out
}

fn text_of(ctx: &mut Ctx<'_>, t: &Token) -> Result<Bytes, CliError> {
    let mut out = Vec::new();
    for p in &t.parts {
        match p {
            Part::Text(s) => out.extend_from_slice(s),
            Part::Sub(inner) => {
                let v = eval_sub(ctx, inner)?;
                out.extend_from_slice(&v.as_numbers());
            }
        }
    }
    Ok(out)
}

fn eval_sub(ctx: &mut Ctx<'_>, inner: &[u8]) -> Result<Value, CliError> {
    let q = ctx.st.version.cli_question_escape();
    let cmds = tokenize(inner, q)?;
    let mut last = Value::Nothing;
    for (_, tokens) in cmds {
        last = eval(ctx, &tokens, false)?;
    }
    Ok(last)
}

/// Evaluates one command. `top` commands print; sub-expression commands return values.
fn eval(ctx: &mut Ctx<'_>, tokens: &[Token], top: bool) -> Result<Value, CliError> {
    let Some(first) = tokens.first() else {
        return Ok(Value::Nothing);
    };
    let first_text = match first.parts.as_slice() {
        [Part::Text(t)] => t.clone(),
        _ => {
            return Err(CliError::Syntax {
                line: ctx.line,
                col: first.col,
            });
        }
    };
    match first_text.as_slice() {
        b":put" => {
            let v = match tokens.get(1) {
                Some(t) => match t.parts.as_slice() {
                    [Part::Sub(inner)] => eval_sub(ctx, inner)?,
                    _ => Value::Scalar(text_of(ctx, t)?),
                },
                None => Value::Nothing,
            };
            ctx.out.extend_from_slice(&v.as_bytes());
            ctx.out.push(b'\n');
            return Ok(Value::Nothing);
        }
        b":serialize" => {
            let arg = tokens.get(1).map(|t| text_of(ctx, t)).transpose()?;
            if arg.as_deref() != Some(b"to=json") {
                return Err(CliError::ExpectedEnd {
                    line: ctx.line,
                    col: tokens.get(1).map_or(first.col, |t| t.col),
                });
            }
            let v = match tokens.get(2).map(|t| t.parts.as_slice()) {
                Some([Part::Sub(inner)]) => eval_sub(ctx, inner)?,
                _ => {
                    return Err(CliError::Syntax {
                        line: ctx.line,
                        col: first.col,
                    });
                }
            };
            let json = match v {
                Value::Rows(rows) => cli_format::json_rows(&rows),
                other => serde_json::Value::String(
                    String::from_utf8_lossy(&other.as_bytes()).into_owned(),
                )
                .to_string()
                .into_bytes(),
            };
            return Ok(Value::Scalar(json));
        }
        _ => {}
    }
    // Path: `/a/b/c` and/or following bare words while they name directories or menus.
    let mut segs: Vec<String> = Vec::new();
    let mut idx = 0;
    if !first_text.starts_with(b"/") {
        segs = ctx.cwd.clone();
    }
    if let Some(rest) = first_text.strip_prefix(b"/") {
        segs.extend(
            String::from_utf8_lossy(rest)
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
        idx = 1;
    }
    while let Some(t) = tokens.get(idx) {
        let [Part::Text(word)] = t.parts.as_slice() else {
            break;
        };
        let w = String::from_utf8_lossy(word).into_owned();
        let mut candidate = segs.clone();
        candidate.extend(w.split('/').filter(|s| !s.is_empty()).map(str::to_owned));
        let joined = candidate.join("/");
        if schema::menu(&joined).is_some() || schema::is_directory(&joined) {
            segs = candidate;
            idx += 1;
        } else {
            break;
        }
    }
    // The verb may have been glued to the path (`/ppp/secret/print`).
    let (menu, verb, verb_col, args_from) = {
        let joined = segs.join("/");
        if let Some(m) = schema::menu(&joined) {
            let Some(t) = tokens.get(idx) else {
                return Ok(Value::Nothing);
            };
            let v = text_of(ctx, t)?;
            (m, String::from_utf8_lossy(&v).into_owned(), t.col, idx + 1)
        } else if let Some((menu_path, verb)) = joined.rsplit_once('/') {
            match schema::menu(menu_path) {
                Some(m) => (m, verb.to_owned(), first.col, idx),
                None => {
                    return Err(CliError::BadCommand {
                        name: verb.to_owned(),
                        line: ctx.line,
                        col: first.col + 1,
                    });
                }
            }
        } else {
            let name = tokens
                .get(idx)
                .map(|t| text_of(ctx, t))
                .transpose()?
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or(joined);
            return Err(CliError::BadCommand {
                name,
                line: ctx.line,
                col: tokens.get(idx).map_or(first.col, |t| t.col),
            });
        }
    };
    let saved = std::mem::replace(
        &mut ctx.cwd,
        menu.path.split('/').map(str::to_owned).collect(),
    );
    let result = run_verb(ctx, menu, &verb, verb_col, &tokens[args_from..], top);
    ctx.cwd = saved;
    result
}

fn run_verb(
    ctx: &mut Ctx<'_>,
    menu: &'static Menu,
    verb: &str,
    verb_col: usize,
    args: &[Token],
    top: bool,
) -> Result<Value, CliError> {
    let now = Instant::now();
    let wall = Utc::now();
    let line = ctx.line;
    let known = matches!(
        verb,
        "print"
            | "find"
            | "add"
            | "set"
            | "remove"
            | "enable"
            | "disable"
            | "unset"
            | "reset-counters"
            | "comment"
            | "make-static"
    );
    if !known || (!menu.has_command(verb) && verb != "find") {
        return Err(CliError::BadCommand {
            name: verb.to_owned(),
            line,
            col: verb_col,
        });
    }
    if verb == "print" || verb == "find" {
        let mut style = PrintStyle::Table;
        let mut where_words: Vec<Bytes> = Vec::new();
        let mut proplist = None;
        let mut count_only = false;
        let mut i = 0;
        if verb == "find" && !args.is_empty() {
            where_words = where_expr(ctx, menu, &args[usize::from(is_word(&args[0], b"where"))..])?;
            i = args.len();
        }
        while i < args.len() {
            let t = text_of(ctx, &args[i])?;
            match t.as_slice() {
                b"terse" => style = PrintStyle::Terse,
                b"detail" => style = PrintStyle::Detail,
                b"as-value" => style = PrintStyle::AsValue,
                b"count-only" => count_only = true,
                b"without-paging" | b"stats" | b"brief" | b"value-list" | b"show-ids" => {}
                b"where" => {
                    where_words = where_expr(ctx, menu, &args[i + 1..])?;
                    i = args.len();
                    continue;
                }
                other if other.starts_with(b"proplist=") => {
                    proplist = Some(
                        String::from_utf8_lossy(&other[9..])
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    );
                }
                _ => {
                    return Err(CliError::ExpectedEnd {
                        line,
                        col: args[i].col,
                    });
                }
            }
            i += 1;
        }
        let req = Request {
            path: menu.path.into(),
            verb: "print".into(),
            queries: where_words,
            proplist: if verb == "find" {
                Some(vec![".id".into()])
            } else {
                proplist
            },
            ..Request::default()
        };
        let origin = Origin::Cli;
        let rows = match command::execute(ctx.st, &req, origin, now, wall) {
            Ok(Outcome::Rows(r)) => r,
            Ok(_) => Vec::new(),
            Err(e) => return Err(CliError::Cmd(cmd_text(&e))),
        };
        if verb == "find" {
            let ids = rows
                .into_iter()
                .filter_map(|r| r.into_iter().find(|(k, _)| k == ".id").map(|(_, v)| v))
                .collect();
            return Ok(Value::Ids(ids));
        }
        if count_only {
            let n = rows.len().to_string().into_bytes();
            if top {
                ctx.out.extend_from_slice(&n);
                ctx.out.push(b'\n');
            }
            return Ok(Value::Scalar(n));
        }
        if style == PrintStyle::AsValue {
            if top {
                ctx.out.extend_from_slice(&cli_format::as_value(&rows));
                ctx.out.push(b'\n');
            }
            return Ok(Value::Rows(rows));
        }
        if top {
            ctx.out
                .extend_from_slice(&cli_format::print(menu, &rows, style));
        }
        return Ok(Value::Rows(rows));
    }
    // Mutating commands: an optional unnamed first argument (ids, names, `[find ...]`).
    let mut req_args: Vec<(String, Bytes)> = Vec::new();
    let mut numbers: Option<Bytes> = None;
    for (n, t) in args.iter().enumerate() {
        let text = text_of(ctx, t)?;
        let key_len = match (&t.parts[0], text.iter().position(|b| *b == b'=')) {
            (Part::Text(first), Some(pos)) if pos < first.len() => Some(pos),
            _ => None,
        };
        match key_len {
            Some(pos) => {
                let k = String::from_utf8_lossy(&text[..pos]).into_owned();
                if k != "numbers" && k != "value-name" && menu.field(&k).is_none_or(|f| f.read_only)
                {
                    return Err(CliError::ExpectedEnd { line, col: t.col });
                }
                let v = text[pos + 1..].to_vec();
                if k == "numbers" {
                    numbers = Some(v);
                } else {
                    req_args.push((k, v));
                }
            }
            None if n == 0 && verb != "add" => numbers = Some(text),
            None => return Err(CliError::ExpectedEnd { line, col: t.col }),
        }
    }
    let singleton = menu.kind == schema::MenuKind::Singleton;
    if verb != "add" && !singleton {
        match numbers {
            // `set [find ...]` with nothing found is a silent no-op (routeros.md §3.2).
            Some(n) if n.is_empty() => return Ok(Value::Nothing),
            Some(n) => req_args.insert(0, ("numbers".into(), n)),
            None => {}
        }
    }
    let req = Request {
        path: menu.path.into(),
        verb: verb.into(),
        args: req_args,
        ..Request::default()
    };
    match command::execute(ctx.st, &req, Origin::Cli, now, wall) {
        Ok(Outcome::Ret(id)) => Ok(Value::Scalar(id)),
        Ok(_) => Ok(Value::Nothing),
        Err(e) => Err(CliError::Cmd(cmd_text(&e))),
    }
}

fn cmd_text(e: &CmdError) -> String {
    match e {
        CmdError::NoSuchItem => "no such item".into(),
        other => other.to_string(),
    }
}

fn is_word(t: &Token, w: &[u8]) -> bool {
    matches!(t.parts.as_slice(), [Part::Text(x)] if x == w)
}

/// `where`/`find` expression → API query words: `k=v`, `k!=v`, `k` (true), `!k`, `and`,
/// `or`, `not`.
fn where_expr(ctx: &mut Ctx<'_>, menu: &Menu, tokens: &[Token]) -> Result<Vec<Bytes>, CliError> {
    let mut words: Vec<Bytes> = Vec::new();
    let mut pending_op: Option<&[u8]> = None;
    let mut count = 0;
    let mut negate_next = false;
    for t in tokens {
        let text = text_of(ctx, t)?;
        match text.as_slice() {
            b"and" => pending_op = Some(b"#&"),
            b"or" => pending_op = Some(b"#|"),
            b"not" => negate_next = true,
            _ => {
                let (neg, body) = match text.strip_prefix(b"!") {
                    Some(b) => (true, b.to_vec()),
                    None => (false, text.clone()),
                };
                let mut negated = neg ^ negate_next;
                negate_next = false;
                let word = match body.windows(2).position(|w| w == b"!=") {
                    Some(p) => {
                        negated = !negated;
                        [&body[..p], b"=", &body[p + 2..]].concat()
                    }
                    None if body.contains(&b'=') => body,
                    None => {
                        if menu.field(&String::from_utf8_lossy(&body)).is_none() {
                            return Err(CliError::Syntax {
                                line: ctx.line,
                                col: t.col,
                            });
                        }
                        [body.as_slice(), b"=true"].concat()
                    }
                };
                words.push(word);
                if negated {
                    words.push(b"#!".to_vec());
                }
                count += 1;
                if count > 1 {
                    words.push(pending_op.take().unwrap_or(b"#&").to_vec());
                }
            }
        }
    }
    Ok(words)
}
