//! The REST API (`/rest`, routeros.md §1): Basic auth, verb mapping onto `command`, JSON
//! bodies with every value a string, RouterOS error bodies and status codes, serial request
//! processing, latency/fail/hang faults and the `Session closed` timeout.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use hyper::{Method, Response};

use super::command::{self, CmdError, Origin, Outcome, Request};
use super::faults::{Action, Service};
use super::http::{Body, HttpRequest, json_response, percent_decode, response};
use super::json;
use super::schema::{self, Menu, MenuKind};
use super::server::Sim;
use super::state::{Bytes, Rendered, parse_id};

fn reason(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

fn err(status: u16, detail: Option<&[u8]>) -> Response<Body> {
    json_response(status, json::error(status, reason(status), detail))
}

fn bad(detail: &str) -> Response<Body> {
    err(400, Some(detail.as_bytes()))
}

fn authorised(sim: &Sim, req: &HttpRequest) -> bool {
    let Some(h) = req.headers.get(hyper::header::AUTHORIZATION) else {
        return false;
    };
    let Some(b64) = h.as_bytes().strip_prefix(b"Basic ") else {
        return false;
    };
    let Some(decoded) = base64_decode(b64) else {
        return false;
    };
    let Some(i) = decoded.iter().position(|b| *b == b':') else {
        return false;
    };
    let user = String::from_utf8_lossy(&decoded[..i]);
    sim.creds().check(&user, &decoded[i + 1..])
}

fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let trimmed: Vec<u8> = input.iter().copied().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    for chunk in trimmed.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// Entry point for one HTTP request on the REST listeners.
pub async fn handle(sim: Arc<Sim>, req: HttpRequest) -> Response<Body> {
    if !sim.version().rest_enabled() {
        // v6 has no REST; its web server answers like for any unknown page.
        return response(
            404,
            "text/html",
            b"<html><body>Not Found</body></html>".to_vec(),
        );
    }
    let path = req.uri.path().to_owned();
    let Some(rest_path) = path.strip_prefix("/rest") else {
        return response(
            404,
            "text/html",
            b"<html><body>Not Found</body></html>".to_vec(),
        );
    };
    if !authorised(&sim, &req) {
        tracing::info!("rest login failure");
        let mut r = err(401, None);
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Basic realm=\"REST API\""),
        );
        return r;
    }
    if req.method == Method::HEAD {
        return err(501, None);
    }
    let _serial = sim.rest_serial.lock().await;
    match sim.before_request(Service::Rest).await {
        Action::Proceed => {}
        Action::Fail { status, message } => return err(status, Some(message.as_bytes())),
        Action::Hang => {
            tokio::time::sleep(sim.rest_timeout()).await;
            return bad("Session closed");
        }
    }
    let segments: Vec<Bytes> = rest_path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).collect())
        .collect();
    route(&sim, &req, &segments)
}

/// Splits the path into a menu and the segments after it.
fn find_menu(segments: &[Bytes]) -> Result<(&'static Menu, &[Bytes]), String> {
    let text: Vec<String> = segments
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    for k in (1..=text.len()).rev() {
        if let Some(m) = schema::menu(&text[..k].join("/")) {
            return Ok((m, &segments[k..]));
        }
    }
    // Name the first segment that is neither a menu nor a directory.
    for k in 1..=text.len() {
        if !schema::is_directory(&text[..k].join("/")) {
            return Err(text[k - 1].clone());
        }
    }
    Err(text.last().cloned().unwrap_or_default())
}

fn query_params(req: &HttpRequest) -> (Vec<Bytes>, Option<Vec<String>>) {
    let mut filters = Vec::new();
    let mut proplist = None;
    for pair in req
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = String::from_utf8_lossy(&percent_decode(k)).into_owned();
        let v = percent_decode(v);
        if k == ".proplist" {
            proplist = Some(
                String::from_utf8_lossy(&v)
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            );
        } else {
            filters.push([k.as_bytes(), b"=", &v].concat());
        }
    }
    (filters, proplist)
}

/// `.id` is always part of a REST reply, `.proplist` or not (routeros.md §1.3).
fn with_id(menu: &Menu, proplist: Option<Vec<String>>) -> Option<Vec<String>> {
    proplist.map(|mut p| {
        if menu.kind != MenuKind::Singleton && !p.iter().any(|k| k == ".id") {
            p.insert(0, ".id".into());
        }
        p
    })
}

fn json_value_bytes(v: &serde_json::Value) -> Bytes {
    match v {
        serde_json::Value::String(s) => s.as_bytes().to_vec(),
        serde_json::Value::Bool(b) => {
            if *b {
                b"true".to_vec()
            } else {
                b"false".to_vec()
            }
        }
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::Array(a) => a
            .iter()
            .map(json_value_bytes)
            .collect::<Vec<_>>()
            .join(&b','),
        other => other.to_string().into_bytes(),
    }
}

/// Body object → ordered args, with `.proplist` and `.query` split off.
struct BodyArgs {
    args: Vec<(String, Bytes)>,
    proplist: Option<Vec<String>>,
    query: Vec<Bytes>,
}

fn body_args(body: &[u8]) -> Result<BodyArgs, Box<Response<Body>>> {
    let mut out = BodyArgs {
        args: Vec::new(),
        proplist: None,
        query: Vec::new(),
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(out);
    }
    let parsed: serde_json::Value = serde_json::from_slice(body)
        .or_else(|_| serde_json::from_str(&String::from_utf8_lossy(body)))
        .map_err(|e| Box::new(bad(&format!("JSON parse error: {e}"))))?;
    let serde_json::Value::Object(map) = parsed else {
        return Err(Box::new(bad("JSON object expected")));
    };
    for (k, v) in map {
        match k.as_str() {
            ".proplist" => {
                let s = String::from_utf8_lossy(&json_value_bytes(&v)).into_owned();
                out.proplist = Some(
                    s.split(',')
                        .filter(|x| !x.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
            ".query" => {
                if let serde_json::Value::Array(a) = v {
                    out.query = a.iter().map(json_value_bytes).collect();
                }
            }
            _ => out.args.push((k, json_value_bytes(&v))),
        }
    }
    Ok(out)
}

fn map_error(e: CmdError, item_path: bool, verb_method: bool) -> Response<Body> {
    match e {
        CmdError::NoSuchItem if item_path => err(404, None),
        CmdError::NoSuchCommand(_) if verb_method => err(406, Some(e.to_string().as_bytes())),
        other => bad(&other.to_string()),
    }
}

fn route(sim: &Sim, req: &HttpRequest, segments: &[Bytes]) -> Response<Body> {
    let (menu, rest) = match find_menu(segments) {
        Ok(x) => x,
        Err(seg) => return bad(&format!("no such command or directory ({seg})")),
    };
    let now = Instant::now();
    let wall = Utc::now();
    let mut st = sim.state();
    let exec = |st: &mut super::state::State, r: &Request| {
        command::execute(st, r, Origin::Rest, now, wall)
    };
    let (filters, qs_proplist) = query_params(req);
    let method = req.method.clone();
    match (method, rest) {
        (Method::GET, []) => {
            let r = Request {
                path: menu.path.into(),
                verb: "print".into(),
                queries: filters,
                proplist: with_id(menu, qs_proplist),
                ..Request::default()
            };
            match exec(&mut st, &r) {
                Ok(Outcome::Rows(rows)) if menu.kind == MenuKind::Singleton => {
                    json_response(200, json::object(rows.first().unwrap_or(&Vec::new())))
                }
                Ok(Outcome::Rows(rows)) => json_response(200, json::array(&rows)),
                Ok(_) => json_response(200, b"[]".to_vec()),
                Err(e) => map_error(e, false, false),
            }
        }
        (Method::GET, [seg]) => {
            let s = String::from_utf8_lossy(seg);
            if menu.has_command(&s) || matches!(s.as_ref(), "add" | "set" | "remove" | "print") {
                return bad("no such command");
            }
            let Some(id) = resolve(&st, menu, seg) else {
                if seg.first() == Some(&b'*') || menu.named {
                    return err(404, None);
                }
                return bad("no such command prefix");
            };
            let proplist = with_id(menu, qs_proplist);
            st.count_read(menu.path);
            one_object(&st, menu, id, proplist.as_deref(), now, wall, 200)
        }
        (Method::PUT, []) => {
            let b = match body_args(&req.body) {
                Ok(b) => b,
                Err(r) => return *r,
            };
            let r = Request {
                path: menu.path.into(),
                verb: "add".into(),
                args: b.args,
                ..Request::default()
            };
            match exec(&mut st, &r) {
                Ok(Outcome::Ret(id)) => match parse_id(&id) {
                    Some(id) => one_object(&st, menu, id, None, now, wall, sim.rest_put_status),
                    None => json_response(sim.rest_put_status, b"{}".to_vec()),
                },
                Ok(_) => json_response(sim.rest_put_status, b"{}".to_vec()),
                Err(e) => map_error(e, false, true),
            }
        }
        (Method::PATCH, rest) if rest.len() <= 1 => {
            let b = match body_args(&req.body) {
                Ok(b) => b,
                Err(r) => return *r,
            };
            let mut args = b.args;
            let id = match rest.first() {
                Some(seg) => match resolve(&st, menu, seg) {
                    Some(id) => {
                        args.insert(0, (".id".into(), super::state::format_id(id).into_bytes()));
                        Some(id)
                    }
                    None => return err(404, None),
                },
                None if menu.kind == MenuKind::Singleton => None,
                None => return bad("no such command or directory"),
            };
            let r = Request {
                path: menu.path.into(),
                verb: "set".into(),
                args,
                ..Request::default()
            };
            match exec(&mut st, &r) {
                Ok(_) => match id {
                    Some(id) => one_object(&st, menu, id, None, now, wall, 200),
                    None => {
                        let rows = command::print(&st, menu, &Request::default(), now, wall)
                            .unwrap_or_default();
                        json_response(200, json::object(rows.first().unwrap_or(&Vec::new())))
                    }
                },
                Err(e) => map_error(e, true, true),
            }
        }
        (Method::DELETE, [seg]) => {
            let Some(id) = resolve(&st, menu, seg) else {
                return err(404, None);
            };
            let r = Request {
                path: menu.path.into(),
                verb: "remove".into(),
                args: vec![(".id".into(), super::state::format_id(id).into_bytes())],
                ..Request::default()
            };
            match exec(&mut st, &r) {
                Ok(_) => response(sim.rest_delete_status, "application/json", Vec::new()),
                Err(e) => map_error(e, true, true),
            }
        }
        (Method::POST, [cmd]) => {
            let b = match body_args(&req.body) {
                Ok(b) => b,
                Err(r) => return *r,
            };
            let verb = String::from_utf8_lossy(cmd).into_owned();
            let is_print = matches!(verb.as_str(), "print" | "getall");
            let r = Request {
                path: menu.path.into(),
                verb,
                args: b.args,
                queries: b.query,
                proplist: if is_print {
                    with_id(menu, b.proplist)
                } else {
                    None
                },
            };
            match exec(&mut st, &r) {
                Ok(Outcome::Rows(rows)) => json_response(200, json::array(&rows)),
                Ok(Outcome::Ret(v)) => {
                    json_response(200, json::object(&vec![("ret".to_owned(), v)]))
                }
                Ok(Outcome::Done) => json_response(200, b"[]".to_vec()),
                Err(e) => map_error(e, false, false),
            }
        }
        (Method::PUT | Method::DELETE, _) => {
            err(406, Some(b"no such command or directory".as_slice()))
        }
        _ => bad("no such command or directory"),
    }
}

fn resolve(st: &super::state::State, menu: &Menu, seg: &[u8]) -> Option<u32> {
    let t = st.table(menu.path);
    match parse_id(seg) {
        Some(id) => t.get(id).map(|_| id),
        None if menu.named => t.find_name(seg),
        None => None,
    }
}

#[allow(clippy::too_many_arguments)]
fn one_object(
    st: &super::state::State,
    menu: &'static Menu,
    id: u32,
    proplist: Option<&[String]>,
    now: Instant,
    wall: chrono::DateTime<Utc>,
    status: u16,
) -> Response<Body> {
    let Some(row) = st.table(menu.path).get(id) else {
        return err(404, None);
    };
    let mut r: Rendered = st.render(menu, row, now, wall);
    if let Some(p) = proplist {
        r.retain(|(k, _)| p.iter().any(|x| x == k));
    }
    json_response(status, json::object(&r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_decodes() {
        assert_eq!(base64_decode(b"YWRtaW46cHc=").unwrap(), b"admin:pw");
        assert_eq!(base64_decode(b"YWRtaW46").unwrap(), b"admin:");
    }
}
