//! `easyisp-agent enroll` against the real `easyisp-central serve` (with its managed, TLS
//! Mosquitto): the config it writes works, an existing config is kept unless `--force`, a
//! spent token is refused with a message that says what to do, a router that does not answer
//! is a warning, and re-enrolling rotates the broker password.

use super::*;
use crate::central_api::harness::Central as CentralServer;
use easyisp_agent::config::Config;

fn enroll(
    config: &std::path::Path,
    central: &CentralServer,
    token: &str,
    router: &str,
    password: &str,
    force: bool,
) -> std::process::Output {
    let mut command = std::process::Command::new(workspace_bin("easyisp-agent"));
    command
        .arg("--config")
        .arg(config)
        .args(["enroll", "--central", &central.base, "--token", token])
        .args(["--router", router])
        .arg("--data-dir")
        .arg(config.with_file_name("data"))
        .env("EASYISP_ROUTER_PASSWORD", password)
        .stdin(Stdio::null());
    if force {
        command.arg("--force");
    }
    command.output().expect("enroll runs")
}

async fn new_token(central: &CentralServer, admin: &str, router: &str) -> String {
    let r = central
        .post(
            &format!("/api/routers/{router}/enroll"),
            admin,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["token"].as_str().expect("token").to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[tokio::test]
async fn enroll_writes_a_working_config_once_and_refuses_a_spent_token() {
    install_crypto_provider();
    let central = CentralServer::start().await;
    let admin = central.admin().await;
    let (_, router) = central.package_and_router(&admin).await;
    let sim = SimProcess::start(SimOptions::default())
        .await
        .expect("simulator starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("etc").join("agent.toml");
    let router_url = sim.router_url("rest+http");
    let password = sim.options.password.clone();

    let token = new_token(&central, &admin, &router).await;
    let out = enroll(&config, &central, &token, &router_url, &password, false);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Enrolled router"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let loaded = Config::load(&config).expect("the written config loads");
    assert_eq!(loaded.router_id.to_string(), router);
    assert_eq!(loaded.router_password.expose(), &password);
    assert_eq!(loaded.data_dir, dir.path().join("etc").join("data"));
    let broker = loaded.central.clone().expect("[central] written");
    assert_eq!(broker.broker.username, router);
    let written = std::fs::read(&config).unwrap();

    // Enrolled already: refused without --force, before the token is spent.
    let token = new_token(&central, &admin, &router).await;
    let out = enroll(&config, &central, &token, &router_url, &password, false);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&config).unwrap(), written, "config untouched");

    // The token is still good: use it once, then it is spent.
    let out = enroll(
        &config,
        &central,
        &token,
        &router_url,
        "wrong-password",
        true,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: the router did not answer"),
        "a router refusing the credentials is a warning: {}",
        stderr(&out)
    );
    let out = enroll(&config, &central, &token, &router_url, &password, true);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("create a new one"),
        "a spent token says what to do: {}",
        stderr(&out)
    );
    let spent = Config::load(&config).expect("config still loads");
    assert_eq!(
        spent.router_password.expose(),
        "wrong-password",
        "a failed enroll writes nothing"
    );

    // A fresh token fixes it; the broker password was rotated.
    let token = new_token(&central, &admin, &router).await;
    let out = enroll(&config, &central, &token, &router_url, &password, true);
    assert!(out.status.success(), "{}", stderr(&out));
    let again = Config::load(&config).expect("config loads");
    let rotated = again.central.expect("[central]").broker.password;
    assert_ne!(rotated.expose(), broker.broker.password.expose());

    // And the agent runs on it: central sees the router online.
    let mut agent = Command::new(workspace_bin("easyisp-agent"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("agent starts");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = central.get(&format!("/api/routers/{router}"), &admin).await;
        if r.body["status"] == "online" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "router online at central: {}\n{}",
            r.body,
            central.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = agent.start_kill();
}
