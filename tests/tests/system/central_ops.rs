//! Operations: `easyisp-central doctor` against a real installation (all OK while serve runs;
//! FAIL for a world-writable data directory, a readable key file and a stopped central), and
//! `GET /metrics` showing customers by status and a router online after its agent's birth.

use crate::central_api::harness::{Central, central_binary};
use crate::central_sync::harness::{Agent, Env, WAIT, eventually};
use easyisp_protocol::envelope::{ClockState, PROTOCOL_VERSION, Telemetry};
use easyisp_protocol::topics::SiteTopic;
use reqwest::Method;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Runs `doctor` (with `--http` when given): exit code and stdout.
fn doctor(data_dir: &Path, http: Option<&str>) -> (i32, String) {
    let mut command = std::process::Command::new(central_binary());
    command.arg("--data-dir").arg(data_dir).arg("doctor");
    if let Some(http) = http {
        command.args(["--http", http]);
    }
    let output = command.output().expect("run easyisp-central doctor");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.code().unwrap_or(-1), stdout)
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[tokio::test]
async fn doctor_is_all_ok_against_a_running_central_and_names_each_problem() {
    let mut c = Central::start().await;
    let data = c.data_dir();
    let http = c.base.trim_start_matches("http://").to_string();

    let (code, out) = doctor(&data, Some(&http));
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().all(|l| l.starts_with("OK   ")), "{out}");
    for check in [
        "OK   data directory",
        "OK   key file",
        "OK   database schema",
        "OK   database integrity",
        "OK   broker certificate expiry",
        "OK   broker certificate names",
        "OK   broker running",
        "OK   broker login",
        "OK   http",
    ] {
        assert!(out.contains(check), "{check} missing from\n{out}");
    }
    // Nothing secret in the report.
    let secret = std::fs::read_to_string(data.join("mosquitto/central.secret")).unwrap();
    assert!(!out.contains(secret.trim()), "{out}");

    chmod(&data, 0o777);
    let (code, out) = doctor(&data, None);
    chmod(&data, 0o700);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL data directory: ") && l.contains("chmod 700")),
        "{out}"
    );

    let key = data.join("customer-secrets.key");
    chmod(&key, 0o644);
    let (code, out) = doctor(&data, None);
    chmod(&key, 0o600);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL key file: ") && l.contains("chmod 600")),
        "{out}"
    );

    c.kill();
    // Mosquitto follows its killed parent; until then its pid is still alive.
    let mut last = String::new();
    eventually(WAIT, "doctor sees central stopped", || {
        let (code, out) = doctor(&data, None);
        let stopped = code == 1
            && out.lines().any(|l| {
                l == "FAIL broker running: central is not running (start it: systemctl start easyisp-central)"
            });
        last = out;
        async move { stopped }
    })
    .await;
    // The data itself is still fine.
    assert!(last.contains("OK   database integrity"), "{last}");
}

async fn metrics(env: &Env) -> String {
    let r = env.central.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.body.as_str().expect("a text body").to_string()
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[tokio::test]
async fn metrics_show_customers_by_status_and_routers_after_a_birth() {
    let env = Env::start().await;
    let tenant = env.tenant();
    for name in ["alice", "bob", "carol"] {
        env.customer(name, None).await;
    }
    let dave = env.customer("dave", None).await;
    let r = env
        .central
        .put_empty(&format!("/api/customers/{dave}/suspend"), &env.admin)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let text = metrics(&env).await;
    for (status, n) in [
        ("active", 3),
        ("suspended", 1),
        ("expired", 0),
        ("disabled", 0),
    ] {
        let line = format!("easyisp_customers{{tenant=\"{tenant}\",status=\"{status}\"}} {n}");
        assert!(has_line(&text, &line), "{line} missing from\n{text}");
    }
    assert!(
        !text.contains("alice"),
        "customer data in /metrics:\n{text}"
    );
    assert!(has_line(&text, "easyisp_broker_connected 1"), "{text}");

    let router = env.router("POP West").await;
    let offline = format!("easyisp_router_online{{router=\"{router}\",tenant=\"{tenant}\"}} 0");
    assert!(has_line(&metrics(&env).await, &offline));

    let agent = Agent::connect(&env, router, "epoch-a", 1, 0).await;
    let online = format!("easyisp_router_online{{router=\"{router}\",tenant=\"{tenant}\"}} 1");
    eventually(WAIT, "router online in /metrics", || async {
        has_line(&metrics(&env).await, &online)
    })
    .await;

    agent
        .publish(
            SiteTopic::Telemetry,
            &Telemetry {
                v: PROTOCOL_VERSION,
                router,
                at: chrono::Utc::now(),
                router_reachable: false,
                customers: 4,
                active_sessions: 2,
                outbox_depth: 7,
                last_reconcile: None,
                clock: ClockState::Unsynchronised,
                mass_cutoff_hold: None,
            },
        )
        .await;
    let expected = [
        format!("easyisp_agent_outbox_depth{{router=\"{router}\"}} 7"),
        format!("easyisp_agent_router_reachable{{router=\"{router}\"}} 0"),
        format!("easyisp_agent_clock_synchronised{{router=\"{router}\"}} 0"),
        format!("easyisp_active_sessions{{tenant=\"{tenant}\"}} 2"),
    ];
    eventually(WAIT, "telemetry in /metrics", || async {
        let text = metrics(&env).await;
        expected.iter().all(|line| has_line(&text, line))
    })
    .await;
    let text = metrics(&env).await;
    // The birth made central owe the agent a snapshot; depth and lag are reported.
    assert!(
        text.lines().any(|l| l.starts_with(&format!(
            "easyisp_sync_outbox_depth{{router=\"{router}\"}} "
        ))),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("easyisp_sync_lag_seconds{{router=\"{router}\"}} "))),
        "{text}"
    );
    agent.shutdown().await;

    // Doctor with an external broker checks what is central's own and says so.
    let (code, out) = doctor(&env.central.data_dir(), None);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("OK   broker (external broker mqtt://"),
        "{out}"
    );
}
