//! `serve --mqtt` starts a managed Mosquitto that speaks TLS with central's CA and accepts
//! only known accounts.

use super::{Client, ca_pem, central_endpoint};
use crate::central_api::harness::Central;
use easyisp_mqtt::BrokerUrl;
use easyisp_protocol::Secret;
use std::os::unix::fs::PermissionsExt;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A CA that has nothing to do with central's.
fn stranger_ca() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

#[tokio::test]
async fn managed_broker_speaks_tls_with_centrals_ca_and_checks_passwords() {
    let c = Central::start().await;
    let data = c.data_dir();
    for private in [
        "tls/ca.key",
        "tls/server.key",
        "mosquitto/passwd",
        "mosquitto/central.secret",
    ] {
        assert_eq!(mode(&data.join(private)), 0o600, "{private}");
    }
    let conf = std::fs::read_to_string(data.join("mosquitto/mosquitto.conf")).unwrap();
    for line in [
        "allow_anonymous false",
        "persistence false",
        "set_tcp_nodelay true",
        &format!("listener {} 127.0.0.1", c.mqtt_port),
    ] {
        assert!(conf.lines().any(|l| l == line), "{line} in {conf}");
    }
    let passwd = std::fs::read_to_string(data.join("mosquitto/passwd")).unwrap();
    assert!(passwd.starts_with("easyisp-central:$7$"), "{passwd}");
    let secret = std::fs::read_to_string(data.join("mosquitto/central.secret")).unwrap();
    assert!(
        !c.log().contains(secret.trim()),
        "central logged its broker password"
    );

    let central = central_endpoint(&c);
    let mut client = Client::connect(&central, "central", &["easyisp/v1/site/#"])
        .await
        .expect("central's account logs in over TLS");
    client.ready("easyisp/v1/site/probe/status").await;

    let mut wrong = central.clone();
    wrong.password = Secret::new("not-the-password".into());
    assert!(
        Client::connect(&wrong, "wrong", &[]).await.is_err(),
        "wrong password"
    );

    let mut plain = central.clone();
    plain.url = BrokerUrl::new(false, "127.0.0.1", c.mqtt_port);
    assert!(
        Client::connect(&plain, "plain", &[]).await.is_err(),
        "plain MQTT on the TLS port"
    );

    let mut untrusted = central.clone();
    untrusted.ca_pem = Some(stranger_ca());
    assert!(
        Client::connect(&untrusted, "untrusted", &[]).await.is_err(),
        "a client trusting another CA refuses the broker"
    );

    // The certificate names localhost too.
    let mut by_name = central.clone();
    by_name.url = BrokerUrl::new(true, "localhost", c.mqtt_port);
    Client::connect(&by_name, "by-name", &[])
        .await
        .expect("localhost is in the server certificate");
    assert_eq!(central.ca_pem.as_deref(), Some(ca_pem(&c).as_str()));
}
