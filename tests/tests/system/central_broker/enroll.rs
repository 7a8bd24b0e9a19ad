//! Enrollment over HTTP (`POST /api/agents/enroll`), the ACL that confines each agent to its
//! own site, and revocation.

use super::{
    Client, ca_pem, central_endpoint, endpoint_of, enrolled_agent, new_token, redeem,
    router_with_token, site,
};
use crate::central_api::harness::Central;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn redeeming_a_token_returns_the_agents_broker_account_once() {
    let c = Central::start_with(&["--login-failures-per-address", "4"]).await;
    let admin = c.admin().await;
    let (router, token) = router_with_token(&c, &admin, "POP North").await;

    let (status, body) = redeem(&c, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["routerId"], router.as_str());
    assert_eq!(body["tenantId"], c.tenant.as_str());
    assert_eq!(body["routerName"], "POP North");
    assert_eq!(
        body["mqtt"]["url"],
        format!("mqtts://127.0.0.1:{}", c.mqtt_port)
    );
    assert_eq!(body["mqtt"]["username"], router.as_str());
    assert_eq!(body["caCert"], ca_pem(&c).as_str());
    let password = body["mqtt"]["password"].as_str().unwrap().to_string();
    assert!(password.len() >= 32);
    assert!(
        !c.log().contains(&password),
        "the agent's password was logged"
    );
    assert!(!c.log().contains(&token), "the enrollment token was logged");
    Client::connect(&endpoint_of(&body), "agent", &[])
        .await
        .expect("the agent logs in with what enroll returned");

    // The same token again, an unknown one, an expired one: one answer for all.
    let (status, again) = redeem(&c, &token).await;
    assert_eq!(status, 401, "{again}");
    assert_eq!(again["error"]["code"], "enroll_token_invalid");
    let message = again["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("POST /api/routers/:id/enroll"),
        "{message}"
    );
    let (status, unknown) = redeem(&c, &"0".repeat(64)).await;
    assert_eq!((status, &unknown["error"]), (401, &again["error"]));

    let expired = new_token(&c, &admin, &router).await;
    {
        let db = rusqlite::Connection::open(c.data_dir().join("central.sqlite3")).unwrap();
        db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        use sha2::Digest;
        let hash = sha2::Sha256::digest(expired.as_bytes()).to_vec();
        let changed = db
            .execute(
                "UPDATE enroll_tokens SET expires_at = expires_at - 7200000 WHERE token_hash = ?1",
                [hash],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
    let (status, body) = redeem(&c, &expired).await;
    assert_eq!((status, &body["error"]), (401, &again["error"]));

    // A missing token is a client mistake, not a failure of a credential.
    let r = c
        .call(Method::POST, "/api/agents/enroll", None, Some(json!({})))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);

    // Four failures from this address: the fifth attempt waits, even with a good token.
    let (_, fresh) = router_with_token(&c, &admin, "POP South").await;
    let (status, _) = redeem(&c, &"1".repeat(64)).await;
    assert_eq!(status, 401);
    let (status, body) = redeem(&c, &fresh).await;
    assert_eq!(status, 429, "{body}");

    // The router's audit trail shows the enrollment, by the agent.
    let db = rusqlite::Connection::open(c.data_dir().join("central.sqlite3")).unwrap();
    let actions: Vec<String> = db
        .prepare("SELECT action FROM audit WHERE entity = 'router' AND entity_id = ?1 ORDER BY at")
        .unwrap()
        .query_map([&router], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(actions.iter().any(|a| a == "enrolled"), "{actions:?}");
}

#[tokio::test]
async fn each_agent_reads_and_writes_only_its_own_site() {
    let c = Central::start().await;
    let admin = c.admin().await;
    let (a, a_login) = enrolled_agent(&c, &admin, "POP A").await;
    let (b, b_login) = enrolled_agent(&c, &admin, "POP B").await;

    let mut central = Client::connect(&central_endpoint(&c), "central", &["easyisp/v1/site/#"])
        .await
        .unwrap();
    central.ready(&site("probe", "status")).await;
    // A also tries to read every site; the broker delivers only its own.
    let mut agent_a = Client::connect(&a_login, "agent-a", &["easyisp/v1/site/+/#"])
        .await
        .unwrap();
    agent_a.ready(&site(&a, "up/probe")).await;
    let mut agent_b = Client::connect(&b_login, "agent-b", &[&site(&b, "#")])
        .await
        .unwrap();
    agent_b.ready(&site(&b, "up/probe")).await;

    // A's own subtree works both ways.
    agent_a
        .publish(&site(&a, "up/changes"), "a-up-1", false)
        .await;
    central
        .messages_until(&site(&a, "up/changes"), "a-up-1")
        .await;
    central
        .publish(&site(&a, "down/changes"), "a-down-1", false)
        .await;
    agent_a
        .messages_until(&site(&a, "down/changes"), "a-down-1")
        .await;

    // A writes into B's subtree: the broker drops it.
    agent_a
        .publish(&site(&b, "down/changes"), "forged-by-a", false)
        .await;
    agent_a.publish(&site(&a, "up/ack"), "fence-a", false).await;
    central.messages_until(&site(&a, "up/ack"), "fence-a").await;
    central
        .publish(&site(&b, "down/changes"), "marker-b", false)
        .await;
    let seen_by_b = agent_b
        .messages_until(&site(&b, "down/changes"), "marker-b")
        .await;
    assert!(
        seen_by_b.iter().all(|(_, p)| p != "forged-by-a"),
        "B received A's publish: {seen_by_b:?}"
    );
    let seen_by_central = central
        .messages_until(&site(&b, "down/changes"), "marker-b")
        .await;
    assert!(
        seen_by_central.iter().all(|(_, p)| p != "forged-by-a"),
        "A's publish to B's topic reached central: {seen_by_central:?}"
    );

    // B's traffic never reaches A, although A subscribed to every site.
    agent_b
        .publish(&site(&b, "up/changes"), "b-up-1", false)
        .await;
    central
        .messages_until(&site(&b, "up/changes"), "b-up-1")
        .await;
    central
        .publish(&site(&a, "down/changes"), "marker-a", false)
        .await;
    let seen_by_a = agent_a
        .messages_until(&site(&a, "down/changes"), "marker-a")
        .await;
    assert!(
        seen_by_a.iter().all(|(t, _)| !t.contains(&b)),
        "A read B's messages: {seen_by_a:?}"
    );
}

#[tokio::test]
async fn revoking_or_deleting_a_router_drops_its_agent_for_good() {
    let c = Central::start().await;
    let admin = c.admin().await;
    let (a, a_login) = enrolled_agent(&c, &admin, "POP A").await;
    let (b, b_login) = enrolled_agent(&c, &admin, "POP B").await;
    let mut agent_a = Client::connect(&a_login, "agent-a", &[]).await.unwrap();
    let mut agent_b = Client::connect(&b_login, "agent-b", &[]).await.unwrap();

    // Only routers:manage may revoke.
    let viewer = c.operator(&admin, "viewer", "viewer").await;
    let r = c
        .post(&format!("/api/routers/{a}/revoke"), &viewer, json!({}))
        .await;
    assert_eq!(r.status, 403, "{}", r.body);

    let r = c
        .post(&format!("/api/routers/{a}/revoke"), &admin, json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["revoked"], true);
    agent_a.disconnected().await;
    drop(agent_a);
    assert!(
        Client::connect(&a_login, "agent-a-again", &[])
            .await
            .is_err(),
        "a revoked agent cannot log in again"
    );
    let r = c
        .post(&format!("/api/routers/{a}/revoke"), &admin, json!({}))
        .await;
    assert_eq!(r.body["revoked"], false);
    let unknown = uuid::Uuid::now_v7();
    let r = c
        .post(&format!("/api/routers/{unknown}/revoke"), &admin, json!({}))
        .await;
    assert_eq!(r.status, 404);

    // Enrolling again restores access with a new password.
    let token = new_token(&c, &admin, &a).await;
    let (status, body) = redeem(&c, &token).await;
    assert_eq!(status, 200, "{body}");
    Client::connect(&endpoint_of(&body), "agent-a-new", &[])
        .await
        .expect("a re-enrolled agent logs in");

    // Deleting a router revokes its agent too.
    let r = c.delete(&format!("/api/routers/{b}"), &admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
    agent_b.disconnected().await;
    drop(agent_b);
    assert!(
        Client::connect(&b_login, "agent-b-again", &[])
            .await
            .is_err()
    );
}
