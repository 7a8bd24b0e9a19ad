//! The Mosquitto harness itself: a real broker per test, and the per-router ACL rule that the
//! protocol crate names actually confines one agent to its own subtree.

use easyisp_protocol::topics::{AGENT_ACL_PATTERN, SiteTopic};
use easyisp_tests::mosquitto::{BrokerOptions, Mosquitto};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use std::time::Duration;
use tokio::time::timeout;
use uuid::Uuid;

fn client(
    broker: &Mosquitto,
    id: &str,
    credentials: Option<(&str, &str)>,
) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(id, "127.0.0.1", broker.port());
    options.set_keep_alive(Duration::from_secs(5));
    if let Some((user, password)) = credentials {
        options.set_credentials(user, password);
    }
    AsyncClient::new(options, 64)
}

/// Polls the event loop until a publish arrives or `wait` passes.
async fn next_publish(events: &mut EventLoop, wait: Duration) -> Option<(String, Vec<u8>)> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match timeout(left, events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                return Some((p.topic, p.payload.to_vec()));
            }
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("mqtt connection failed: {e}"),
            Err(_) => return None,
        }
    }
}

/// Polls until the SUBACK for our subscription arrives, so later publishes are not missed.
async fn wait_for_suback(events: &mut EventLoop) {
    timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Event::Incoming(Packet::SubAck(_))) = events.poll().await {
                return;
            }
        }
    })
    .await
    .expect("SUBACK within 5 s");
}

#[tokio::test]
async fn a_message_goes_through_a_per_test_broker() {
    let broker = Mosquitto::start().expect("broker starts");
    let (sub, mut sub_events) = client(&broker, "sub", None);
    sub.subscribe("t/#", QoS::AtLeastOnce).await.unwrap();
    wait_for_suback(&mut sub_events).await;

    let (publisher, mut pub_events) = client(&broker, "pub", None);
    publisher
        .publish("t/1", QoS::AtLeastOnce, false, b"hello".to_vec())
        .await
        .unwrap();
    tokio::spawn(async move { while pub_events.poll().await.is_ok() {} });

    let got = next_publish(&mut sub_events, Duration::from_secs(5)).await;
    assert_eq!(got, Some(("t/1".to_string(), b"hello".to_vec())));
}

#[tokio::test]
async fn an_agent_cannot_read_or_write_another_routers_topics() {
    let (router_a, router_b) = (Uuid::now_v7(), Uuid::now_v7());
    let options = BrokerOptions {
        users: vec![
            (router_a.to_string(), "secret-a-1234".into()),
            (router_b.to_string(), "secret-b-1234".into()),
        ],
        acl: vec![AGENT_ACL_PATTERN.to_string()],
    };
    let broker = Mosquitto::start_with(options).expect("broker starts");
    let (a_name, b_name) = (router_a.to_string(), router_b.to_string());

    // Agent A listens on its own subtree and, illegitimately, on B's.
    let (a, mut a_events) = client(&broker, &a_name, Some((&a_name, "secret-a-1234")));
    a.subscribe(format!("easyisp/v1/site/{router_a}/#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    wait_for_suback(&mut a_events).await;
    a.subscribe(format!("easyisp/v1/site/{router_b}/#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    wait_for_suback(&mut a_events).await;

    // B publishes on its own topic (A must not see it) and into A's subtree (must be dropped).
    let (b, mut b_events) = client(&broker, &b_name, Some((&b_name, "secret-b-1234")));
    b.publish(
        SiteTopic::Telemetry.for_router(router_b),
        QoS::AtLeastOnce,
        false,
        b"b-own".to_vec(),
    )
    .await
    .unwrap();
    b.publish(
        SiteTopic::DownCmd.for_router(router_a),
        QoS::AtLeastOnce,
        false,
        b"forged".to_vec(),
    )
    .await
    .unwrap();
    // Then A publishes on its own topic, which A must see: once it arrives, anything B sent
    // before it would have arrived too.
    a.publish(
        SiteTopic::Telemetry.for_router(router_a),
        QoS::AtLeastOnce,
        false,
        b"a-own".to_vec(),
    )
    .await
    .unwrap();
    tokio::spawn(async move { while b_events.poll().await.is_ok() {} });

    let mut seen = Vec::new();
    while let Some((_, payload)) = next_publish(&mut a_events, Duration::from_secs(2)).await {
        seen.push(String::from_utf8_lossy(&payload).to_string());
        if payload == b"a-own" {
            break;
        }
    }
    assert_eq!(
        seen,
        vec!["a-own".to_string()],
        "A saw only its own message; broker log:\n{}",
        broker.log()
    );
}
