//! The `easyisp-agent` binary's command line without a router: help text, and the one-line
//! errors and exit codes of `probe` for bad input. (Having an integration test here also makes
//! `cargo test --workspace` build the binary that the cross-process probe tests run.)

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_easyisp-agent"))
}

#[test]
fn probe_help_explains_every_option() {
    let out = agent().args(["probe", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--router",
        "--json",
        "--known-hosts",
        "--timeout",
        "--config",
        "EASYISP_ROUTER_PASSWORD",
        "fingerprint",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
}

#[test]
fn top_level_help_lists_probe_and_config() {
    let out = agent().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("probe") && help.contains("--config"),
        "{help}"
    );
}

#[test]
fn password_in_the_url_is_refused_without_echoing_it() {
    let out = agent()
        .args(["probe", "--router", "api://admin:hunter2@127.0.0.1"])
        .env("EASYISP_ROUTER_PASSWORD", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("EASYISP_ROUTER_PASSWORD"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn missing_password_variable_is_a_one_line_error() {
    let out = agent()
        .args(["probe", "--router", "api://admin@127.0.0.1"])
        .env_remove("EASYISP_ROUTER_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("EASYISP_ROUTER_PASSWORD"), "{err}");
}

#[test]
fn unreachable_router_exits_3_with_one_line() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let out = agent()
        .args([
            "probe",
            "--router",
            "api://admin@127.0.0.1:1",
            "--timeout",
            "5s",
        ])
        .env("EASYISP_ROUTER_PASSWORD", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: router unreachable"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
