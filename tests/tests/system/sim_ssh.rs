//! Conformance of the simulator's SSH CLI (routeros.md §3) with a libssh2 client (the `ssh2`
//! crate the agent uses): password auth with the `+cet1024w` suffix, host key fingerprint,
//! exec channels, `print terse`/`detail`/`as-value`, `[find]`, escapes and error texts.

use std::io::Read;
use std::net::TcpStream;

use easyisp_tests::sim_harness::{SimOptions, SimProcess};

/// Runs one exec-channel command with libssh2 and returns its output.
fn exec(port: u16, user: &str, password: &str, cmd: &str) -> (String, Vec<u8>) {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("tcp");
    let mut sess = ssh2::Session::new().expect("session");
    sess.set_tcp_stream(tcp);
    sess.set_timeout(10_000);
    sess.handshake().expect("handshake");
    let hash = hex::encode(
        sess.host_key_hash(ssh2::HashType::Sha256)
            .expect("host key hash"),
    );
    sess.userauth_password(user, password)
        .expect("password auth");
    let mut ch = sess.channel_session().expect("channel");
    ch.exec(cmd).expect("exec");
    let mut out = Vec::new();
    ch.read_to_end(&mut out).expect("read");
    let _ = ch.wait_close();
    (hash, out)
}

async fn run(sim: &SimProcess, cmd: &str) -> String {
    let port = sim.ports.ssh;
    let pw = sim.options.password.clone();
    let cmd = cmd.to_owned();
    let out = tokio::task::spawn_blocking(move || exec(port, "admin+cet1024w", &pw, &cmd).1)
        .await
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn libssh2_logs_in_with_the_console_suffix_and_sees_the_announced_host_key() {
    let sim = SimProcess::start(SimOptions::default()).await.unwrap();
    let port = sim.ports.ssh;
    let pw = sim.options.password.clone();
    let (hash, out) = tokio::task::spawn_blocking(move || {
        exec(port, "admin+cet1024w", &pw, "/system identity print")
    })
    .await
    .unwrap();
    assert_eq!(hash, sim.ports.ssh_host_key_fingerprint);
    assert!(
        String::from_utf8_lossy(&out).contains("name=\"MikroTik\""),
        "{out:?}"
    );
    let bad = tokio::task::spawn_blocking(move || {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut sess = ssh2::Session::new().unwrap();
        sess.set_tcp_stream(tcp);
        sess.handshake().unwrap();
        sess.userauth_password("admin", "wrong").is_err()
    })
    .await
    .unwrap();
    assert!(bad, "a wrong password is refused");
}

#[tokio::test]
async fn cli_adds_finds_sets_and_prints_in_console_formats() {
    let sim = SimProcess::start(SimOptions::default()).await.unwrap();
    // A hostile password, escaped the PEAR2 way: every non-alphanumeric byte as \XX.
    let out = run(
        &sim,
        r#"/ppp secret add name="cust1" password="a\22b\24c\3Bd\5C" service=pppoe comment="easyisp:42""#,
    )
    .await;
    assert_eq!(out, "", "a successful add prints nothing");
    let secret = sim.control.secret("cust1").await.unwrap().unwrap();
    assert_eq!(secret["password"], "a\"b$c;d\\");

    let out = run(&sim, r#":put [/ppp secret add name="cust2" disabled=yes]"#).await;
    assert!(out.trim().starts_with('*'), "{out:?}");
    let out = run(
        &sim,
        r#"/ppp secret print terse without-paging where name="cust1""#,
    )
    .await;
    assert!(out.contains("name=cust1"), "{out}");
    assert!(
        out.contains("password=a\"b$c;d\\"),
        "terse is unquoted: {out}"
    );
    assert!(out.contains("service=pppoe"));
    let out = run(&sim, "/ppp secret print terse where disabled").await;
    assert!(
        out.contains("name=cust2") && !out.contains("name=cust1"),
        "{out}"
    );
    assert!(
        out.lines().next().unwrap().contains(" X "),
        "disabled flag: {out}"
    );
    let out = run(&sim, r#"/ppp secret print detail where name="cust1""#).await;
    assert!(out.contains(";;; easyisp:42"), "{out}");
    assert!(
        out.contains("name=\"cust1\"") && out.contains("limit-bytes-in=0"),
        "{out}"
    );
    let out = run(
        &sim,
        r#":put [/ppp secret print as-value where name="cust1"]"#,
    )
    .await;
    assert!(
        out.starts_with(".id=*") && out.contains(";name=cust1;"),
        "{out}"
    );
    let out = run(
        &sim,
        r#":put [:serialize to=json [/ppp secret print as-value where name="cust1"]]"#,
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v[0]["name"], "cust1");

    let out = run(&sim, r#"/ppp secret set [find name="cust1"] profile="default-encryption"; /ppp secret disable [find where name="cust1"]"#).await;
    assert_eq!(out, "");
    let secret = sim.control.secret("cust1").await.unwrap().unwrap();
    assert_eq!(
        (secret["profile"].as_str(), secret["disabled"].as_str()),
        (Some("default-encryption"), Some("true"))
    );
    let out = run(&sim, r#"/ppp secret remove [find name="nobody"]"#).await;
    assert_eq!(out, "", "empty find is a silent no-op");
    let out = run(&sim, "/interface print count-only where type=ether").await;
    assert_eq!(out.trim(), "5");
}

#[tokio::test]
async fn cli_errors_are_printed_as_routeros_text() {
    let sim = SimProcess::start(SimOptions::default()).await.unwrap();
    run(&sim, "/ppp secret add name=dup").await;
    let out = run(&sim, "/ppp secret add name=dup").await;
    assert_eq!(
        out.trim(),
        "failure: secret with the same name already exists"
    );
    let out = run(&sim, "/ppp secret add name=x profile=nope").await;
    assert_eq!(out.trim(), "input does not match any value of profile");
    let out = run(&sim, "/ppp secret set *FFFF comment=x").await;
    assert_eq!(out.trim(), "no such item");
    let out = run(&sim, "/ppp secrte print").await;
    assert!(
        out.starts_with("bad command name secrte (line 1 column"),
        "{out}"
    );
    let out = run(&sim, "/ppp secret add name=y bogus=1").await;
    assert!(
        out.starts_with("expected end of command (line 1 column"),
        "{out}"
    );
    let out = run(&sim, r#"/ppp secret add name="unterminated"#).await;
    assert!(out.starts_with("syntax error"), "{out}");
    run(
        &sim,
        "/ip firewall address-list add list=expired address=100.64.0.5",
    )
    .await;
    let out = run(
        &sim,
        "/ip firewall address-list add list=expired address=100.64.0.5",
    )
    .await;
    assert_eq!(out.trim(), "failure: already have such entry");
    let out = run(
        &sim,
        r#"/ip hotspot user add name="u" password="p"; /ip hotspot user add name="u""#,
    )
    .await;
    assert_eq!(
        out.trim(),
        "failure: already have user with this name for this server"
    );
}
