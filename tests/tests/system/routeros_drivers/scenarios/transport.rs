//! Connection scenarios: reconnects, wrong passwords, hung routers, TLS and SSH pinning,
//! old and new RouterOS versions, and the `probe` binary.

use std::time::Duration;

use easyisp_agent::routeros::{self, RouterError};
use serde_json::{Value, json};

use super::super::sim::{PASSWORD, Sim};
use super::super::{Env, T, eventually, options, url};
use super::*;

pub async fn reconnects_after_dropped_connection(t: T) {
    let env = Env::start(t).await;
    let r = &env.router;
    r.identity().await.unwrap();
    env.sim
        .post(&format!("/services/{}/drop", service_of(t)), json!({}))
        .await;
    // A read on a dropped connection is retried once on a fresh one.
    r.identity().await.unwrap();
    r.create_ppp_secret(&secret_spec("after-drop", "default"))
        .await
        .unwrap();
    if matches!(t, T::Api | T::ApiSsl) {
        // `/quit` makes the router answer `!fatal` and close the session.
        let e = r.command("", "quit", &[]).await.unwrap_err();
        assert!(matches!(e, RouterError::Unreachable(_)), "{e:?}");
        r.identity().await.unwrap();
    }
    // While the service is down a new connection is refused (Unreachable, retryable) …
    let svc = service_of(t);
    env.sim
        .post(&format!("/services/{svc}/stop"), json!({}))
        .await;
    // The simulator closes its listener asynchronously after the control call returns.
    let refused = eventually(Duration::from_secs(10), || async {
        let attempt = async {
            let fresh = routeros::connect(
                &url(&env.sim, t),
                options(PASSWORD, env.known_hosts.clone()),
            )
            .await?;
            fresh.identity().await
        }
        .await;
        attempt.err()
    })
    .await;
    assert!(refused.is_retryable(), "{refused:?}");
    // … and so is the existing driver, whose connection was dropped.
    let e = r.identity().await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    env.sim
        .post(&format!("/services/{svc}/start"), json!({}))
        .await;
    eventually(Duration::from_secs(10), || async {
        r.identity().await.ok()
    })
    .await;
}

pub async fn wrong_password_is_auth_failed(t: T) {
    let env = Env::start(t).await;
    let res = async {
        let r =
            routeros::connect(&url(&env.sim, t), options("wrong", env.known_hosts.clone())).await?;
        r.identity().await
    }
    .await;
    let e = res.unwrap_err();
    assert!(matches!(e, RouterError::AuthFailed), "{e:?}");
    assert!(!e.is_retryable());
}

pub async fn hung_router_times_out(t: T) {
    let env = Env::start(t).await;
    let mut opts = options(PASSWORD, env.known_hosts.clone());
    // Long enough for a loaded CI machine, short enough to keep the test quick.
    opts.timeout = Duration::from_secs(2);
    let r = routeros::connect(&url(&env.sim, t), opts).await.unwrap();
    r.identity().await.unwrap();
    env.sim
        .put(
            "/faults",
            json!({"hangNext": {"count": 1, "service": service_of(t)}, "restTimeoutMs": 300}),
        )
        .await;
    let e = r.identity().await.unwrap_err();
    assert!(matches!(e, RouterError::Timeout(_)), "{e:?}");
    assert!(e.is_retryable());
    eventually(Duration::from_secs(10), || async {
        r.identity().await.ok()
    })
    .await;
}

pub async fn probe_binary(t: T) {
    let env = Env::start(t).await;
    env.router
        .create_ppp_secret(&secret_spec("p1", "default"))
        .await
        .unwrap();
    env.router
        .create_ppp_secret(&secret_spec("p2", "default"))
        .await
        .unwrap();
    env.sim.post("/sessions/ppp", json!({"name": "p1"})).await;
    env.sim.post("/ops/reset", json!({})).await;
    let out = tokio::process::Command::new(agent_binary())
        .arg("probe")
        .arg("--router")
        .arg(url(&env.sim, t).to_string())
        .arg("--json")
        .arg("--known-hosts")
        .arg(&env.known_hosts)
        .arg("--timeout")
        .arg("10s")
        .env("EASYISP_ROUTER_PASSWORD", PASSWORD)
        .output()
        .await
        .expect("run easyisp-agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "probe failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let sim_info = env.sim.get("/info").await;
    assert_eq!(report["identity"], sim_info["identity"]);
    assert_eq!(report["board"], sim_info["board"]);
    assert_eq!(report["ppp_secrets"], 2);
    assert_eq!(report["ppp_active"], 1);
    assert_eq!(report["hotspot_users"], 0);
    assert!(report["clock"].is_string(), "{report}");
    // Probe only reads.
    let text = tokio::process::Command::new(agent_binary())
        .args(["probe", "--router", &url(&env.sim, t).to_string()])
        .arg("--known-hosts")
        .arg(&env.known_hosts)
        .env("EASYISP_ROUTER_PASSWORD", PASSWORD)
        .output()
        .await
        .expect("run easyisp-agent");
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("identity:        MikroTik"), "{text}");
    assert!(text.contains("ppp secrets:     2"), "{text}");
    assert!(
        text.contains("active sessions: 1 (ppp 1, hotspot 0)"),
        "{text}"
    );

    let ops = env.sim.process.control.ops().await.expect("op counts");
    assert_eq!(ops.total_writes(), 0, "probe wrote to the router: {ops:?}");
    assert!(!ops.reads.is_empty(), "probe read nothing: {ops:?}");

    let out = tokio::process::Command::new(agent_binary())
        .args(["probe", "--router", &url(&env.sim, t).to_string()])
        .arg("--known-hosts")
        .arg(&env.known_hosts)
        .env("EASYISP_ROUTER_PASSWORD", "wrong")
        .output()
        .await
        .expect("run easyisp-agent");
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "error: authentication failed: check the user and EASYISP_ROUTER_PASSWORD"
    );
}

/// RouterOS before 6.43 only knows the MD5 challenge login and prints old-style dates.
pub async fn old_router_challenge_login(t: T) {
    let env = Env::start_version(t, "6.40").await;
    let info = env.router.system_info().await.unwrap();
    assert!(
        info.resources.version.starts_with("6.40"),
        "{:?}",
        info.resources
    );
    assert!(
        info.clock.date_time.is_some(),
        "old date format parsed: {:?}",
        info.clock
    );
    env.router
        .create_ppp_secret(&secret_spec("v6cust", "default"))
        .await
        .unwrap();
    assert!(
        env.router
            .find_ppp_secret(&"v6cust".into())
            .await
            .unwrap()
            .is_some()
    );
    let e = routeros::connect(&url(&env.sim, t), options("wrong", env.known_hosts.clone()))
        .await
        .err()
        .expect("wrong password refused");
    assert!(matches!(e, RouterError::AuthFailed), "{e:?}");
}

/// 7.18+ answers an empty print with `!empty` before `!done`.
pub async fn empty_replies(t: T, version: &str) {
    let env = Env::start_version(t, version).await;
    assert!(env.router.ppp_secrets().await.unwrap().is_empty());
    assert!(
        env.router
            .find_ppp_secret(&"none".into())
            .await
            .unwrap()
            .is_none()
    );
    assert!(env.router.ppp_sessions().await.unwrap().is_empty());
    env.router
        .create_ppp_secret(&secret_spec("one", "default"))
        .await
        .unwrap();
    assert_eq!(env.router.ppp_secrets().await.unwrap().len(), 1);
}

/// The SSH host key is recorded on first use; a different key for the same address later is
/// refused with a pinning error.
pub async fn ssh_host_key_pinning() {
    let env = Env::start(T::Ssh).await;
    let recorded = std::fs::read_to_string(&env.known_hosts).expect("key recorded on first use");
    let port = env.sim.ports().ssh;
    assert!(
        recorded.contains(&format!("[127.0.0.1]:{port}")),
        "{recorded}"
    );
    // Same address, same key: accepted again.
    env.other(T::Ssh).await.identity().await.unwrap();

    // Another simulator has another host key: pretend it is the same router.
    let other = Sim::start().await;
    let other_port = other.ports().ssh;
    let forged = recorded.replace(&format!("]:{port} "), &format!("]:{other_port} "));
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("known_hosts");
    std::fs::write(&kh, forged).unwrap();
    let e = routeros::connect(&url(&other, T::Ssh), options(PASSWORD, kh))
        .await
        .err()
        .expect("a changed host key is refused");
    assert!(matches!(e, RouterError::Pinning(_)), "{e:?}");
    assert!(!e.is_retryable());
}

/// A pinned fingerprint that does not match the router's certificate is refused.
pub async fn tls_pinning(t: T) {
    let env = Env::start(t).await;
    let mut u = url(&env.sim, t);
    u.fingerprint = Some([0x42; 32]);
    let res = async {
        let r = routeros::connect(&u, options(PASSWORD, env.known_hosts.clone())).await?;
        r.identity().await
    }
    .await;
    let e = res.unwrap_err();
    assert!(matches!(e, RouterError::Pinning(_)), "{t:?}: {e:?}");
    // Without a pin, the self-signed certificate is not trusted, and the error names its
    // fingerprint so the technician can pin it.
    u.fingerprint = None;
    let res = async {
        let r = routeros::connect(&u, options(PASSWORD, env.known_hosts.clone())).await?;
        r.identity().await
    }
    .await;
    let e = res.unwrap_err().to_string();
    assert!(
        e.contains(&env.sim.ports().rest_tls_fingerprint),
        "{t:?}: {e}"
    );
}
