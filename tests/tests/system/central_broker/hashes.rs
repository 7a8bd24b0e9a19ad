//! Mosquitto itself accepts the `$7$` hashes central writes, and refuses wrong passwords.

use super::Client;
use easyisp_central::broker::passwd;
use easyisp_mqtt::{BrokerUrl, Endpoint};
use easyisp_protocol::Secret;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mosquitto() -> std::path::PathBuf {
    let sbin = std::path::Path::new("/usr/sbin/mosquitto");
    if sbin.exists() {
        sbin.to_path_buf()
    } else {
        "mosquitto".into()
    }
}

#[tokio::test]
async fn real_mosquitto_accepts_our_password_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let port = easyisp_tests::mosquitto::free_port().unwrap();
    let password = Secret::new("Zebra-Lamp-42-broker".to_string());
    let generated = passwd::generate_password().unwrap();
    let passwd_file = dir.path().join("passwd");
    std::fs::write(
        &passwd_file,
        format!(
            "alice:{}\nrouter:{}\n",
            passwd::hash(&password).unwrap(),
            passwd::hash(&generated).unwrap()
        ),
    )
    .unwrap();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nuser root\n",
            passwd_file.display()
        ),
    )
    .unwrap();
    let _broker = Killed(
        Command::new(mosquitto())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let login = |user: &str, password: &str| Endpoint {
        url: BrokerUrl::new(false, "127.0.0.1", port),
        username: user.into(),
        password: Secret::new(password.into()),
        ca_pem: None,
    };
    Client::connect(&login("alice", password.expose()), "alice", &[])
        .await
        .expect("alice logs in with her password");
    Client::connect(&login("router", generated.expose()), "router", &[])
        .await
        .expect("a generated password logs in");
    let refused = Client::connect(&login("alice", "Zebra-Lamp-42-wrong"), "alice", &[]).await;
    assert!(refused.is_err(), "a wrong password is refused");
    let refused = Client::connect(&login("mallory", password.expose()), "mallory", &[]).await;
    assert!(refused.is_err(), "an unknown user is refused");
}
