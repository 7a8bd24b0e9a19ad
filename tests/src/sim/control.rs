//! The control interface (plain HTTP JSON on the `control` port) through which tests act as a
//! person at the router (edit any menu, reboot), as subscribers (sessions, traffic), and as
//! the network (faults, refused connections). Not a RouterOS interface: errors here are
//! `{"error":"..."}` and nothing is counted as a router read or write.
//!
//! | Method | Path | Body | Reply |
//! |---|---|---|---|
//! | GET | `/info` | — | version, identity, board, redial delay, pending redials, listening |
//! | GET | `/state` | — | `{"ppp/secret":[rows...], ...}` every menu |
//! | GET | `/menu/<menu path>[/<.id or name>]` | — | rows / one row |
//! | POST | `/menu/<menu path>` | `{"name":"x",...}` | `{"id":"*1"}` (validated like `add`) |
//! | POST | `/bulk/<menu path>` | `[{...},...]` | `["*1",...]` |
//! | PATCH | `/menu/<menu path>/<.id or name>[?force=true]` | fields | `{}` (`force` skips validation, sets read-only fields) |
//! | DELETE | `/menu/<menu path>/<.id or name>` | — | `{}` |
//! | POST | `/sessions/ppp` | `{"name","callerId"?,"address"?}` | `{"activeId","interfaceId","queueId","sessionId","address"}` |
//! | POST | `/sessions/hotspot` | `{"user","mac"?,"address"?}` | same shape |
//! | DELETE | `/sessions/{ppp,hotspot}/<name>` | — | subscriber hangs up for good (no redial) |
//! | POST | `/traffic` | `{"kind":"ppp"/"hotspot","name","up","down"}` | adds bytes (up = customer upload) |
//! | POST | `/counters` | same | sets counters absolutely (e.g. near 2^32) |
//! | POST | `/reboot` | — | sessions drop, ids renumber, counters zero, sockets close |
//! | PUT | `/redial` | `{"delayMs": n or null}` | null = redial only on `/redial/now` |
//! | POST | `/redial/now` | — | `{"redialed": n}` |
//! | GET/PUT | `/faults` | `{"latencyMs","failNext":{count,service?,message,status},"hangNext":{count,service?},"restTimeoutMs"}` | |
//! | POST | `/services/{rest,api,ssh}/{stop,start,drop}` | — | stop = refuse connections |
//! | GET | `/ops` | — | `{"writes":{menu:n},"reads":{menu:n}}` from REST/API/SSH |
//! | POST | `/ops/reset` | — | |
//! | PUT | `/version` | `{"version":"6.44"}` | switch emulated version |
//! | PUT | `/credentials` | `{"user","password"}` | |

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use hyper::{Method, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::command::{self, Origin, Outcome, Request};
use super::faults::{Faults, Service};
use super::http::{Body, HttpRequest, json_response};
use super::schema::{self, MENUS, Menu};
use super::server::{Sim, lock};
use super::sessions::{self, SessionKind};
use super::state::{Bytes, Rendered, State, parse_id};
use super::version::RosVersion;

fn ok(v: Value) -> Response<Body> {
    json_response(200, v.to_string().into_bytes())
}

fn fail(status: u16, msg: impl std::fmt::Display) -> Response<Body> {
    json_response(
        status,
        json!({ "error": msg.to_string() }).to_string().into_bytes(),
    )
}

/// A rendered row as a JSON object (values decoded lossily).
pub fn row_json(r: &Rendered) -> Value {
    Value::Object(
        r.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Value::String(String::from_utf8_lossy(v).into_owned()),
                )
            })
            .collect(),
    )
}

fn dump_menu(st: &State, menu: &'static Menu) -> Value {
    let now = Instant::now();
    let wall = Utc::now();
    Value::Array(
        st.table(menu.path)
            .rows()
            .map(|r| row_json(&st.render(menu, r, now, wall)))
            .collect(),
    )
}

fn body_json<T: for<'de> Deserialize<'de>>(req: &HttpRequest) -> Result<T, Box<Response<Body>>> {
    let body: &[u8] = if req.body.is_empty() {
        b"{}"
    } else {
        &req.body
    };
    serde_json::from_slice(body).map_err(|e| Box::new(fail(400, format!("bad JSON body: {e}"))))
}

fn value_bytes(v: Value) -> Bytes {
    match v {
        Value::String(s) => s.into_bytes(),
        Value::Bool(b) => {
            if b {
                b"yes".to_vec()
            } else {
                b"no".to_vec()
            }
        }
        Value::Null => Vec::new(),
        other => other.to_string().into_bytes(),
    }
}

fn body_args(req: &HttpRequest) -> Result<Vec<(String, Bytes)>, Box<Response<Body>>> {
    let map: serde_json::Map<String, Value> = body_json(req)?;
    Ok(map.into_iter().map(|(k, v)| (k, value_bytes(v))).collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PppSession {
    name: String,
    #[serde(default = "default_mac")]
    caller_id: String,
    address: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HotspotSession {
    user: String,
    #[serde(default = "default_mac")]
    mac: String,
    address: Option<String>,
}

fn default_mac() -> String {
    "02:00:00:00:00:01".into()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Traffic {
    kind: SessionKind,
    name: String,
    #[serde(default)]
    up: u64,
    #[serde(default)]
    down: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Redial {
    delay_ms: Option<u64>,
}

#[derive(Deserialize)]
struct VersionBody {
    version: String,
}

#[derive(Deserialize)]
struct CredentialsBody {
    user: String,
    password: String,
}

fn segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            String::from_utf8_lossy(&percent_encoding::percent_decode_str(s).collect::<Vec<u8>>())
                .into_owned()
        })
        .collect()
}

fn find_menu(segs: &[String]) -> Option<(&'static Menu, Option<String>)> {
    for k in (1..=segs.len()).rev() {
        if let Some(m) = schema::menu(&segs[..k].join("/")) {
            return match &segs[k..] {
                [] => Some((m, None)),
                [item] => Some((m, Some(item.clone()))),
                _ => None,
            };
        }
    }
    None
}

fn resolve(st: &State, menu: &Menu, item: &str) -> Option<u32> {
    let t = st.table(menu.path);
    match parse_id(item.as_bytes()) {
        Some(id) => t.get(id).map(|_| id),
        None => t.find_name(item.as_bytes()),
    }
}

fn run(st: &mut State, req: &Request) -> Response<Body> {
    match command::execute(st, req, Origin::Control, Instant::now(), Utc::now()) {
        Ok(Outcome::Ret(id)) => ok(json!({ "id": String::from_utf8_lossy(&id) })),
        Ok(Outcome::Rows(rows)) => ok(Value::Array(rows.iter().map(row_json).collect())),
        Ok(Outcome::Done) => ok(json!({})),
        Err(command::CmdError::NoSuchItem) => fail(404, "no such item"),
        Err(e) => fail(400, e),
    }
}

fn service(name: &str) -> Option<Service> {
    match name {
        "rest" => Some(Service::Rest),
        "api" => Some(Service::Api),
        "ssh" => Some(Service::Ssh),
        _ => None,
    }
}

/// Entry point for one control request.
pub async fn handle(sim: Arc<Sim>, req: HttpRequest) -> Response<Body> {
    let segs = segments(req.uri.path());
    let seg_refs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let now = Instant::now();
    let method = req.method.clone();
    match (method, seg_refs.as_slice()) {
        (Method::GET, ["info"]) => {
            let st = sim.state();
            ok(json!({
                "version": st.version.to_string(),
                "identity": st.identity(),
                "board": st.hardware.board,
                "redialDelayMs": st.sessions.redial_delay.map(|d| d.as_millis() as u64),
                "pendingRedials": st.sessions.pending(),
                "listening": {
                    "rest": sim.service(Service::Rest).listening(),
                    "api": sim.service(Service::Api).listening(),
                    "ssh": sim.service(Service::Ssh).listening(),
                },
            }))
        }
        (Method::GET, ["state"]) => {
            let mut st = sim.state();
            sessions::tick(&mut st, now);
            let mut map = serde_json::Map::new();
            for m in MENUS {
                map.insert(m.path.to_owned(), dump_menu(&st, m));
            }
            ok(Value::Object(map))
        }
        (Method::GET, ["menu", ..]) => {
            let Some((menu, item)) = find_menu(&segs[1..]) else {
                return fail(404, "no such menu");
            };
            let mut st = sim.state();
            sessions::tick(&mut st, now);
            match item {
                None => ok(dump_menu(&st, menu)),
                Some(item) => {
                    match resolve(&st, menu, &item).and_then(|id| st.table(menu.path).get(id)) {
                        Some(row) => ok(row_json(&st.render(menu, row, now, Utc::now()))),
                        None => fail(404, "no such item"),
                    }
                }
            }
        }
        (Method::POST, ["bulk", ..]) => {
            // Many rows in one request (fixtures of 10,000 customers).
            let Some((menu, None)) = find_menu(&segs[1..]) else {
                return fail(404, "no such menu");
            };
            let rows: Vec<serde_json::Map<String, Value>> = match body_json(&req) {
                Ok(b) => b,
                Err(r) => return *r,
            };
            let mut st = sim.state();
            let mut ids = Vec::with_capacity(rows.len());
            for row in rows {
                let args = row.into_iter().map(|(k, v)| (k, value_bytes(v))).collect();
                let r = Request {
                    path: menu.path.into(),
                    verb: "add".into(),
                    args,
                    ..Request::default()
                };
                match command::execute(&mut st, &r, Origin::Control, now, Utc::now()) {
                    Ok(Outcome::Ret(id)) => {
                        ids.push(Value::String(String::from_utf8_lossy(&id).into_owned()))
                    }
                    Ok(_) => ids.push(Value::Null),
                    Err(e) => return fail(400, format!("row {}: {e}", ids.len())),
                }
            }
            ok(Value::Array(ids))
        }
        (Method::POST, ["menu", ..]) => {
            let Some((menu, None)) = find_menu(&segs[1..]) else {
                return fail(404, "no such menu");
            };
            let args = match body_args(&req) {
                Ok(a) => a,
                Err(r) => return *r,
            };
            let mut st = sim.state();
            run(
                &mut st,
                &Request {
                    path: menu.path.into(),
                    verb: "add".into(),
                    args,
                    ..Request::default()
                },
            )
        }
        (Method::PATCH, ["menu", ..]) => {
            let Some((menu, Some(item))) = find_menu(&segs[1..]) else {
                return fail(404, "no such menu or item");
            };
            let mut args = match body_args(&req) {
                Ok(a) => a,
                Err(r) => return *r,
            };
            let force = req.uri.query().is_some_and(|q| q.contains("force=true"));
            let mut st = sim.state();
            let Some(id) = resolve(&st, menu, &item) else {
                return fail(404, "no such item");
            };
            if force {
                // A person with a debugger: set any field, read-only ones included.
                let t = st.table_mut(menu.path);
                let Some(row) = t.get(id) else {
                    return fail(404, "no such item");
                };
                let mut props = row.props.clone();
                props.extend(args);
                return match t.replace(id, props) {
                    Ok(()) => ok(json!({})),
                    Err(_) => fail(400, menu.duplicate_error),
                };
            }
            args.insert(0, (".id".into(), super::state::format_id(id).into_bytes()));
            run(
                &mut st,
                &Request {
                    path: menu.path.into(),
                    verb: "set".into(),
                    args,
                    ..Request::default()
                },
            )
        }
        (Method::DELETE, ["menu", ..]) => {
            let Some((menu, Some(item))) = find_menu(&segs[1..]) else {
                return fail(404, "no such menu or item");
            };
            let mut st = sim.state();
            let Some(id) = resolve(&st, menu, &item) else {
                return fail(404, "no such item");
            };
            let args = vec![(".id".into(), super::state::format_id(id).into_bytes())];
            run(
                &mut st,
                &Request {
                    path: menu.path.into(),
                    verb: "remove".into(),
                    args,
                    ..Request::default()
                },
            )
        }
        (Method::POST, ["sessions", "ppp"]) => {
            let b: PppSession = match body_json(&req) {
                Ok(b) => b,
                Err(r) => return *r,
            };
            let mut st = sim.state();
            match sessions::ppp_connect(
                &mut st,
                b.name.as_bytes(),
                &b.caller_id,
                b.address.as_deref(),
                now,
            ) {
                Ok(info) => ok(json!(info)),
                Err(e) => fail(409, e),
            }
        }
        (Method::POST, ["sessions", "hotspot"]) => {
            let b: HotspotSession = match body_json(&req) {
                Ok(b) => b,
                Err(r) => return *r,
            };
            let mut st = sim.state();
            match sessions::hotspot_login(
                &mut st,
                b.user.as_bytes(),
                &b.mac,
                b.address.as_deref(),
                false,
                now,
            ) {
                Ok(info) => ok(json!(info)),
                Err(e) => fail(409, e),
            }
        }
        (Method::DELETE, ["sessions", kind, name]) => {
            let kind = match *kind {
                "ppp" => SessionKind::Ppp,
                "hotspot" => SessionKind::Hotspot,
                _ => return fail(404, "kind must be ppp or hotspot"),
            };
            let mut st = sim.state();
            match sessions::hang_up(&mut st, kind, name.as_bytes(), now) {
                Ok(()) => ok(json!({})),
                Err(e) => fail(404, e),
            }
        }
        (Method::POST, [which @ ("traffic" | "counters")]) => {
            let b: Traffic = match body_json(&req) {
                Ok(b) => b,
                Err(r) => return *r,
            };
            let mut st = sim.state();
            let absolute = *which == "counters";
            match super::traffic::traffic(
                &mut st,
                b.kind,
                b.name.as_bytes(),
                b.up,
                b.down,
                absolute,
                now,
            ) {
                Ok(()) => ok(json!({})),
                Err(e) => fail(404, e),
            }
        }
        (Method::POST, ["reboot"]) => {
            tracing::info!("simulated reboot");
            sim.state().reboot(now);
            for s in Service::ALL {
                sim.service(s).drop_connections().await;
            }
            ok(json!({}))
        }
        (Method::PUT, ["redial"]) => {
            let b: Redial = match body_json(&req) {
                Ok(b) => b,
                Err(r) => return *r,
            };
            sim.state().sessions.redial_delay = b.delay_ms.map(Duration::from_millis);
            ok(json!({}))
        }
        (Method::POST, ["redial", "now"]) => {
            let n = sessions::redial_now(&mut sim.state(), now);
            ok(json!({ "redialed": n }))
        }
        (Method::GET, ["faults"]) => ok(json!(*lock(&sim.faults))),
        (Method::PUT, ["faults"]) => {
            let f: Faults = match body_json(&req) {
                Ok(b) => b,
                Err(r) => return *r,
            };
            *lock(&sim.faults) = f;
            ok(json!({}))
        }
        (Method::POST, ["services", name, action]) => {
            let Some(svc) = service(name) else {
                return fail(404, "service must be rest, api or ssh");
            };
            let ctl = sim.service(svc);
            match *action {
                "stop" => ctl.set_listening(false).await,
                "start" => ctl.set_listening(true).await,
                "drop" => ctl.drop_connections().await,
                _ => return fail(404, "action must be stop, start or drop"),
            }
            ok(json!({}))
        }
        (Method::GET, ["ops"]) => ok(json!(sim.state().ops)),
        (Method::POST, ["ops", "reset"]) => {
            sim.state().ops = Default::default();
            ok(json!({}))
        }
        (Method::PUT, ["version"]) => {
            let b: VersionBody = match body_json(&req) {
                Ok(b) => b,
                Err(r) => return *r,
            };
            match b.version.parse::<RosVersion>() {
                Ok(v) => {
                    sim.state().version = v;
                    ok(json!({}))
                }
                Err(e) => fail(400, e),
            }
        }
        (Method::PUT, ["credentials"]) => {
            let b: CredentialsBody = match body_json(&req) {
                Ok(b) => b,
                Err(r) => return *r,
            };
            *lock(&sim.creds) = super::server::Credentials {
                user: b.user,
                password: b.password,
            };
            ok(json!({}))
        }
        _ => fail(404, "no such control endpoint"),
    }
}
