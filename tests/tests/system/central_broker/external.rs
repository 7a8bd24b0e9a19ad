//! `serve --broker URL`: central starts no Mosquitto, connects to the given broker, hands its
//! URL to enrolled agents, and keeps writing the account files for that broker to load.

use super::{Client, redeem, router_with_token, site};
use crate::central_api::harness::Central;
use easyisp_mqtt::{BrokerUrl, Endpoint};
use easyisp_protocol::Secret;
use easyisp_tests::mosquitto::{BrokerOptions, Mosquitto};

const CENTRAL_PASSWORD: &str = "External-Broker-Pass-1";

#[tokio::test]
async fn an_external_broker_is_used_as_given_and_gets_the_account_files() {
    let broker = Mosquitto::start_with(BrokerOptions {
        users: vec![("isp-central".into(), CENTRAL_PASSWORD.into())],
        acl: vec![
            "user isp-central".into(),
            "topic readwrite easyisp/v1/site/#".into(),
        ],
    })
    .expect("test broker");
    let url = format!("mqtt://127.0.0.1:{}", broker.port());
    let c = Central::start_with_env(
        &["--broker", &url, "--broker-username", "isp-central"],
        &[("EASYISP_BROKER_PASSWORD", CENTRAL_PASSWORD)],
    )
    .await;
    let data = c.data_dir();
    assert!(
        !data.join("tls").exists(),
        "no certificates for an external broker"
    );
    assert!(!data.join("mosquitto/mosquitto.conf").exists());
    assert!(!data.join("mosquitto/central.secret").exists());

    // Central's own account works on that broker (the same one its sync client uses).
    let central = Endpoint {
        url: BrokerUrl::new(false, "127.0.0.1", broker.port()),
        username: "isp-central".into(),
        password: Secret::new(CENTRAL_PASSWORD.into()),
        ca_pem: None,
    };
    let mut client = Client::connect(&central, "central", &[&site("x", "#")])
        .await
        .expect("central's account on the external broker");
    client.ready(&site("x", "probe")).await;

    let admin = c.admin().await;
    let (router, token) = router_with_token(&c, &admin, "POP External").await;
    let (status, body) = redeem(&c, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mqtt"]["url"], format!("{url}"));
    assert_eq!(body["mqtt"]["username"], router.as_str());
    assert!(body["caCert"].is_null(), "{body}");

    // The files an operator's Mosquitto would load: central's account under its external
    // name, the agent's, and the ACL that confines agents.
    let passwd = std::fs::read_to_string(data.join("mosquitto/passwd")).unwrap();
    assert!(passwd.contains("isp-central:$7$"), "{passwd}");
    assert!(passwd.contains(&format!("{router}:$7$")), "{passwd}");
    let acl = std::fs::read_to_string(data.join("mosquitto/acl")).unwrap();
    assert!(
        acl.contains("pattern readwrite easyisp/v1/site/%u/#"),
        "{acl}"
    );
    assert!(
        acl.contains("user isp-central\ntopic readwrite easyisp/v1/site/#"),
        "{acl}"
    );
}
