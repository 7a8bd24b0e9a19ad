//! `easyisp-central mqtt-monitor`: read-only accounts for monitoring tools, made by the CLI
//! beside a running `serve` and picked up by its broker at once.

use super::{Client, central_endpoint, enrolled_agent, site};
use crate::central_api::harness::{Central, central_binary};
use easyisp_mqtt::Endpoint;
use easyisp_protocol::Secret;
use std::process::{Command, Output, Stdio};

const MONITOR_PASSWORD: &str = "Monitor-Secret-55";

fn monitor_cli(c: &Central, args: &[&str], password: Option<&str>) -> Output {
    let mut command = Command::new(central_binary());
    command
        .arg("--data-dir")
        .arg(c.data_dir())
        .arg("mqtt-monitor")
        .args(args)
        .env_remove("EASYISP_MQTT_PASSWORD")
        .stdin(Stdio::null());
    if let Some(password) = password {
        command.env("EASYISP_MQTT_PASSWORD", password);
    }
    command.output().expect("run mqtt-monitor")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn monitors_read_every_sites_status_and_telemetry_and_nothing_else() {
    let c = Central::start().await;
    let admin = c.admin().await;
    let (a, a_login) = enrolled_agent(&c, &admin, "POP A").await;

    for bad in [
        "easyisp-central",
        "0193a4c2-7d1e-7000-8000-000000000001",
        "bad name",
    ] {
        let out = monitor_cli(&c, &["add", bad], Some(MONITOR_PASSWORD));
        assert!(!out.status.success(), "{bad} was accepted");
    }
    let out = monitor_cli(&c, &["add", "noc"], Some("short"));
    assert!(!out.status.success(), "a short password was accepted");

    let out = monitor_cli(&c, &["add", "noc"], Some(MONITOR_PASSWORD));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "", "a given password is not printed");
    let out = monitor_cli(&c, &["add", "grafana"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let generated = text(&out.stdout).trim().to_string();
    assert_eq!(
        generated.len(),
        64,
        "the generated password is printed once"
    );
    let out = monitor_cli(&c, &["list"], None);
    let list = text(&out.stdout);
    assert!(list.contains("monitor\tnoc\t"), "{list}");
    assert!(list.contains("monitor\tgrafana\t"), "{list}");
    assert!(list.contains("central\teasyisp-central\t"), "{list}");
    assert!(list.contains(&format!("agent\t{a}\t")), "{list}");
    assert!(!list.contains("$7$"), "{list}");

    let mut central = Client::connect(&central_endpoint(&c), "central", &["easyisp/v1/site/#"])
        .await
        .unwrap();
    central.ready(&site("probe", "status")).await;
    let mut agent = Client::connect(&a_login, "agent-a", &[&site(&a, "#")])
        .await
        .unwrap();
    agent.ready(&site(&a, "up/probe")).await;

    // A retained status tells when the monitor's subscriptions are in place (the status
    // subscription is asked for last).
    agent
        .publish(&site(&a, "status"), r#"{"v":1,"online":true}"#, true)
        .await;
    central
        .messages_until(&site(&a, "status"), r#"{"v":1,"online":true}"#)
        .await;
    let login = |name: &str, password: &str| Endpoint {
        username: name.into(),
        password: Secret::new(password.into()),
        ..central_endpoint(&c)
    };
    let mut noc = Client::connect(
        &login("noc", MONITOR_PASSWORD),
        "noc",
        &[
            "easyisp/v1/site/+/down/changes",
            "easyisp/v1/site/+/up/changes",
            "easyisp/v1/site/+/telemetry",
            "easyisp/v1/site/+/status",
        ],
    )
    .await
    .expect("the monitor logs in");
    noc.messages_until(&site(&a, "status"), r#"{"v":1,"online":true}"#)
        .await;
    Client::connect(&login("grafana", &generated), "grafana", &[])
        .await
        .expect("the generated password works");

    // Telemetry reaches the monitor; changes in either direction do not.
    agent.publish(&site(&a, "up/changes"), "a-up", false).await;
    agent
        .publish(&site(&a, "telemetry"), r#"{"v":1,"customers":3}"#, false)
        .await;
    central
        .messages_until(&site(&a, "telemetry"), r#"{"v":1,"customers":3}"#)
        .await;
    central
        .publish(&site(&a, "down/changes"), "a-down", false)
        .await;
    central
        .publish(&site(&a, "telemetry"), "marker", false)
        .await;
    let seen = noc.messages_until(&site(&a, "telemetry"), "marker").await;
    assert_eq!(
        seen,
        vec![(
            site(&a, "telemetry"),
            r#"{"v":1,"customers":3}"#.to_string()
        )],
        "the monitor saw something besides telemetry"
    );

    // The monitor cannot write into a site. Its fence: the agent pattern also gives every
    // user a subtree named after itself, which no router has (monitor names are never
    // UUIDs), and central reads it.
    noc.publish(&site(&a, "down/changes"), "forged-by-noc", false)
        .await;
    noc.publish(&site(&a, "status"), "forged-by-noc", true)
        .await;
    noc.publish(&site("noc", "fence"), "fence-noc", false).await;
    let seen = central
        .messages_until(&site("noc", "fence"), "fence-noc")
        .await;
    assert!(seen.iter().all(|(_, p)| p != "forged-by-noc"), "{seen:?}");
    central
        .publish(&site(&a, "down/changes"), "marker-a", false)
        .await;
    let seen = agent
        .messages_until(&site(&a, "down/changes"), "marker-a")
        .await;
    assert!(seen.iter().all(|(_, p)| p != "forged-by-noc"), "{seen:?}");

    // Removing the monitor drops its connection and keeps it out.
    let out = monitor_cli(&c, &["remove", "noc"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    noc.disconnected().await;
    drop(noc);
    assert!(
        Client::connect(&login("noc", MONITOR_PASSWORD), "noc-again", &[])
            .await
            .is_err()
    );
    let out = monitor_cli(&c, &["remove", "noc"], None);
    assert!(
        !out.status.success(),
        "removing a missing monitor is an error"
    );
}
