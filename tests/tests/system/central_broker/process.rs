//! The Mosquitto child under kill -9: central restarts it, and it never outlives central.

use super::{Client, central_endpoint, eventually, site};
use crate::central_api::harness::Central;

fn mosquitto_pid(c: &Central) -> Option<i32> {
    std::fs::read_to_string(c.data_dir().join("mosquitto/mosquitto.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Running, and not a zombie waiting to be reaped.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

fn kill9(pid: i32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test]
async fn a_killed_mosquitto_is_restarted_and_clients_reconnect() {
    let c = Central::start().await;
    let first = mosquitto_pid(&c).expect("mosquitto wrote its pid file");
    assert!(alive(first));
    let mut client = Client::connect(&central_endpoint(&c), "central", &[&site("x", "#")])
        .await
        .unwrap();
    client.ready(&site("x", "probe")).await;

    kill9(first);
    client.disconnected().await;
    client.reconnected().await;
    // The subscriptions come back with the connection.
    client.ready(&site("x", "probe")).await;
    let second = mosquitto_pid(&c).expect("pid file of the new mosquitto");
    assert_ne!(first, second);
    assert!(alive(second));
    assert!(
        c.log()
            .contains("mosquitto exited unexpectedly; restarting it"),
        "{}",
        c.log()
    );
}

#[tokio::test]
async fn mosquitto_does_not_outlive_a_killed_central() {
    let mut c = Central::start().await;
    let pid = mosquitto_pid(&c).expect("mosquitto wrote its pid file");
    assert!(alive(pid));
    c.kill();
    eventually("mosquitto exits after central was killed", || !alive(pid)).await;
    // Nothing holds the broker's port any more.
    let port = c.mqtt_port;
    eventually("the MQTT port is free", || {
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
    })
    .await;
}
