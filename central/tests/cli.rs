//! A smoke test of the binary itself. Its real purpose is that `cargo test --workspace`
//! builds `target/<profile>/easyisp-central`, which the system tests in `tests/` run.

#[test]
fn the_binary_prints_its_help() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_easyisp-central"))
        .arg("--help")
        .output()
        .expect("run easyisp-central --help");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("tenant") && text.contains("serve"), "{text}");
}
