//! Session scenarios: PPPoE and hotspot sessions with their byte counters, reconnects that
//! reset them, and removing active sessions.

use serde_json::json;

use super::super::{Env, T};
use super::*;

pub async fn sessions_and_counters(t: T) {
    let env = Env::start(t).await;
    let r = &env.router;
    r.create_ppp_secret(&secret_spec("sess1", "default"))
        .await
        .unwrap();
    env.sim
        .post("/sessions/ppp", json!({"name": "sess1"}))
        .await;
    env.sim
        .post(
            "/traffic",
            json!({"kind": "ppp", "name": "sess1", "up": 1000, "down": 5000}),
        )
        .await;
    let sessions = r.ppp_sessions().await.unwrap();
    let first = sessions
        .iter()
        .find(|x| x.name == "sess1")
        .expect("session listed")
        .clone();
    assert_eq!(
        first.upload_bytes,
        Some(1000),
        "rx-byte of <pppoe-sess1> is upload"
    );
    assert_eq!(
        first.download_bytes,
        Some(5000),
        "tx-byte of <pppoe-sess1> is download"
    );
    assert!(first.interface_id.is_some());

    // The customer reconnects: new session, new interface, counters from zero.
    env.sim.delete("/sessions/ppp/sess1").await;
    env.sim
        .post("/sessions/ppp", json!({"name": "sess1"}))
        .await;
    env.sim
        .post(
            "/traffic",
            json!({"kind": "ppp", "name": "sess1", "up": 10, "down": 20}),
        )
        .await;
    let sessions = r.ppp_sessions().await.unwrap();
    let second = sessions
        .iter()
        .find(|x| x.name == "sess1")
        .expect("session listed");
    assert_ne!(second.id, first.id);
    assert_ne!(second.interface_id, first.interface_id);
    assert_eq!(
        (second.upload_bytes, second.download_bytes),
        (Some(10), Some(20))
    );

    r.create_hotspot_user(&hotspot_spec("hs1", "default"))
        .await
        .unwrap();
    env.sim
        .post("/sessions/hotspot", json!({"user": "hs1"}))
        .await;
    env.sim
        .post(
            "/traffic",
            json!({"kind": "hotspot", "name": "hs1", "up": 300, "down": 700}),
        )
        .await;
    let hs = r.hotspot_sessions().await.unwrap();
    let h = hs
        .iter()
        .find(|x| x.user == "hs1")
        .expect("hotspot session listed");
    assert_eq!((h.upload_bytes, h.download_bytes), (Some(300), Some(700)));
    assert!(h.mac_address.is_some());
}

pub async fn removing_active_sessions(t: T) {
    let env = Env::start(t).await;
    let r = &env.router;
    r.create_ppp_secret(&secret_spec("drop1", "default"))
        .await
        .unwrap();
    env.sim
        .post("/sessions/ppp", json!({"name": "drop1"}))
        .await;
    let s1 = r.ppp_sessions().await.unwrap();
    let s1 = s1.iter().find(|x| x.name == "drop1").expect("session");
    r.remove_ppp_session(&s1.id).await.unwrap();
    assert!(
        r.ppp_sessions()
            .await
            .unwrap()
            .iter()
            .all(|x| x.name != "drop1")
    );
    // The session is already gone: still success (routeros.md §7.5).
    r.remove_ppp_session(&s1.id).await.unwrap();

    env.sim
        .post("/sessions/ppp", json!({"name": "drop1"}))
        .await;
    assert_eq!(r.disconnect_ppp_user(&"drop1".into()).await.unwrap(), 1);
    assert_eq!(r.disconnect_ppp_user(&"drop1".into()).await.unwrap(), 0);

    r.create_hotspot_user(&hotspot_spec("hs2", "default"))
        .await
        .unwrap();
    env.sim
        .post("/sessions/hotspot", json!({"user": "hs2"}))
        .await;
    let hs = r.hotspot_sessions().await.unwrap();
    let h = hs
        .iter()
        .find(|x| x.user == "hs2")
        .expect("hotspot session");
    r.remove_hotspot_session(&h.id).await.unwrap();
    assert!(
        r.hotspot_sessions()
            .await
            .unwrap()
            .iter()
            .all(|x| x.user != "hs2")
    );
    r.remove_hotspot_session(&h.id).await.unwrap();
}
