//! Create/update/remove/list scenarios: every object type, adoption, duplicate and invalid
//! values, ids renumbered by a reboot, non-UTF-8 names, and one-request listings.

use std::time::Duration;

use easyisp_agent::routeros::{
    AddressListEntrySpec, DhcpLeaseSpec, HotspotUserProfileSpec, RouterError, SimpleQueueSpec, Text,
};
use serde_json::{Value, json};

use super::super::{Env, T};
use super::*;

pub async fn identity(t: T) {
    let env = Env::start(t).await;
    let info = env.router.system_info().await.unwrap();
    let sim_info = env.sim.get("/info").await;
    assert_eq!(info.identity, s(&sim_info, "identity").as_str());
    assert_eq!(
        info.resources.board_name.as_deref(),
        Some(s(&sim_info, "board").as_str())
    );
    assert!(
        s(&sim_info, "version").starts_with(&info.resources.version[..1]),
        "{:?} vs {sim_info}",
        info.resources.version
    );
    assert!(info.resources.version_number().is_some());
    assert!(info.clock.date_time.is_some(), "{:?}", info.clock);
}

pub async fn ppp_crud(t: T) {
    let env = Env::start(t).await;
    let r = &env.router;
    let p10 = r
        .create_ppp_profile(&profile_spec("10M", "5M/10M"))
        .await
        .unwrap();
    r.create_ppp_profile(&profile_spec("20M", "10M/20M"))
        .await
        .unwrap();
    let id = r
        .create_ppp_secret(&secret_spec("cust1", "10M"))
        .await
        .unwrap();

    let listed = r.ppp_secrets().await.unwrap();
    let c = listed.iter().find(|x| x.name == "cust1").expect("listed");
    assert_eq!(c.id, id);
    assert_eq!(c.profile, "10M");
    assert_eq!(
        c.comment.as_ref().map(Text::to_string_lossy).as_deref(),
        Some("easyisp:cust1")
    );
    assert!(!c.disabled);
    assert_eq!(c.service, "pppoe");

    let mut spec = secret_spec("cust1", "20M");
    spec.disabled = true;
    assert_eq!(r.update_ppp_secret(&id, &spec).await.unwrap(), id);
    let on_router = env.sim.get("/menu/ppp/secret/cust1").await;
    assert_eq!(s(&on_router, "profile"), "20M");
    assert!(is_true(&on_router, "disabled"), "{on_router}");

    let found = r
        .find_ppp_secret(&"cust1".into())
        .await
        .unwrap()
        .expect("found");
    assert!(found.disabled);
    assert!(r.find_ppp_secret(&"nobody".into()).await.unwrap().is_none());

    r.remove_ppp_secret(&found).await.unwrap();
    assert!(env.sim.get_status("/menu/ppp/secret/cust1").await == 404);
    // Removing what is already gone is success: the desired state holds.
    r.remove_ppp_secret(&found).await.unwrap();

    let profiles = r.ppp_profiles().await.unwrap();
    let p = profiles
        .iter()
        .find(|p| p.name == "10M")
        .expect("profile listed");
    assert_eq!(p.id, p10);
    assert_eq!(p.rate_limit.as_deref(), Some("5M/10M"));
    assert!(profiles.iter().any(|p| p.builtin && p.name == "default"));
    r.update_ppp_profile(&p10, &profile_spec("10M", "6M/12M"))
        .await
        .unwrap();
    assert_eq!(
        s(&env.sim.get("/menu/ppp/profile/10M").await, "rate-limit"),
        "6M/12M"
    );
    r.remove_ppp_profile(p).await.unwrap();
    assert_eq!(env.sim.get_status("/menu/ppp/profile/10M").await, 404);
}

pub async fn hotspot_crud(t: T) {
    let env = Env::start(t).await;
    let r = &env.router;
    let prof = HotspotUserProfileSpec {
        name: "1H".into(),
        rate_limit: Some("1M/2M".into()),
        shared_users: Some("1".into()),
        ..Default::default()
    };
    let pid = r.create_hotspot_user_profile(&prof).await.unwrap();
    let uid = r
        .create_hotspot_user(&hotspot_spec("voucher1", "1H"))
        .await
        .unwrap();
    let users = r.hotspot_users().await.unwrap();
    let u = users.iter().find(|u| u.name == "voucher1").expect("listed");
    assert_eq!(u.id, uid);
    assert_eq!(u.profile, "1H");
    assert_eq!(u.limit_uptime, Some(Duration::from_secs(3600)));
    assert_eq!(u.limit_bytes_total, Some(1_000_000_000));

    let mut spec = hotspot_spec("voucher1", "1H");
    spec.disabled = true;
    r.update_hotspot_user(&uid, &spec).await.unwrap();
    assert!(is_true(
        &env.sim.get("/menu/ip/hotspot/user/voucher1").await,
        "disabled"
    ));

    let profiles = r.hotspot_user_profiles().await.unwrap();
    let p = profiles
        .iter()
        .find(|p| p.name == "1H")
        .expect("profile listed");
    assert_eq!(p.id, pid);
    assert_eq!(p.rate_limit.as_deref(), Some("1M/2M"));
    let prof2 = HotspotUserProfileSpec {
        rate_limit: Some("2M/4M".into()),
        ..prof.clone()
    };
    r.update_hotspot_user_profile(&pid, &prof2).await.unwrap();
    assert_eq!(
        s(
            &env.sim.get("/menu/ip/hotspot/user/profile/1H").await,
            "rate-limit"
        ),
        "2M/4M"
    );

    let u = r
        .find_hotspot_user(&"voucher1".into())
        .await
        .unwrap()
        .expect("found");
    r.remove_hotspot_user(&u).await.unwrap();
    assert_eq!(
        env.sim.get_status("/menu/ip/hotspot/user/voucher1").await,
        404
    );
    r.remove_hotspot_user_profile(p).await.unwrap();
    assert_eq!(
        env.sim.get_status("/menu/ip/hotspot/user/profile/1H").await,
        404
    );
}

pub async fn queues_leases_and_lists(t: T) {
    let env = Env::start(t).await;
    let r = &env.router;
    let q = SimpleQueueSpec {
        name: "dhcp-cust9".into(),
        target: "100.64.0.9/32".into(),
        max_limit: Some("5M/10M".into()),
        comment: Some("easyisp:cust9".into()),
        ..Default::default()
    };
    let qid = r.create_simple_queue(&q).await.unwrap();
    let queues = r.simple_queues().await.unwrap();
    let got = queues
        .iter()
        .find(|x| x.name == "dhcp-cust9")
        .expect("queue listed");
    assert_eq!(got.id, qid);
    assert!(got.max_limit.is_some());
    let q2 = SimpleQueueSpec {
        max_limit: Some("10M/20M".into()),
        ..q.clone()
    };
    r.update_simple_queue(&qid, &q2).await.unwrap();
    let on_router = env.sim.get("/menu/queue/simple/dhcp-cust9").await;
    assert!(
        matches!(
            s(&on_router, "max-limit").as_str(),
            "10M/20M" | "10000000/20000000"
        ),
        "{on_router}"
    );
    r.remove_simple_queue(got).await.unwrap();
    assert!(
        r.simple_queues()
            .await
            .unwrap()
            .iter()
            .all(|x| x.name != "dhcp-cust9")
    );

    let a = AddressListEntrySpec {
        list: "expired".into(),
        address: "100.64.0.9".into(),
        comment: Some("easyisp:cust9".into()),
        disabled: false,
    };
    let aid = r.create_address_list_entry(&a).await.unwrap();
    let entries = r.address_list_entries().await.unwrap();
    let e = entries
        .iter()
        .find(|e| e.list == "expired" && e.address == "100.64.0.9")
        .expect("entry listed");
    assert_eq!(e.id, aid);
    let a2 = AddressListEntrySpec {
        comment: Some("easyisp:cust9 moved".into()),
        ..a.clone()
    };
    r.update_address_list_entry(&aid, &a2).await.unwrap();
    let entries = r.address_list_entries().await.unwrap();
    let e = entries
        .iter()
        .find(|e| e.id == aid)
        .expect("entry still listed");
    assert_eq!(
        e.comment.as_ref().map(Text::to_string_lossy).as_deref(),
        Some("easyisp:cust9 moved")
    );
    r.remove_address_list_entry(e).await.unwrap();
    assert!(
        r.address_list_entries()
            .await
            .unwrap()
            .iter()
            .all(|x| x.id != aid)
    );

    let lease = DhcpLeaseSpec {
        address: "192.168.88.50".into(),
        mac_address: "AA:BB:CC:00:00:01".into(),
        comment: Some("easyisp:cust10".into()),
        ..Default::default()
    };
    let lid = r.create_dhcp_lease(&lease).await.unwrap();
    let leases = r.dhcp_leases().await.unwrap();
    let l = leases.iter().find(|l| l.id == lid).expect("lease listed");
    assert_eq!(l.address.as_deref(), Some("192.168.88.50"));
    let lease2 = DhcpLeaseSpec {
        block_access: true,
        ..lease.clone()
    };
    r.update_dhcp_lease(&lid, &lease2).await.unwrap();
    let l = r
        .dhcp_leases()
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.id == lid)
        .expect("lease");
    assert!(l.block_access);
    r.remove_dhcp_lease(&l).await.unwrap();
    assert!(r.dhcp_leases().await.unwrap().iter().all(|x| x.id != lid));
}

pub async fn adopt_listing(t: T) {
    let env = Env::start(t).await;
    // Secrets a person made at the router before EasyISP arrived.
    env.sim
        .post(
            "/menu/ppp/secret",
            json!({"name": "legacy1", "password": "x", "service": "pppoe"}),
        )
        .await;
    env.sim
        .post(
            "/menu/ppp/secret",
            json!({"name": "legacy2", "password": "y", "comment": "Mrs Smith, flat 4"}),
        )
        .await;
    env.router
        .create_ppp_secret(&secret_spec("ours", "default"))
        .await
        .unwrap();
    let all = env.router.ppp_secrets().await.unwrap();
    let unowned: Vec<String> = all
        .iter()
        .filter(|x| {
            !x.comment
                .as_ref()
                .is_some_and(|c| c.to_string_lossy().starts_with("easyisp:"))
        })
        .map(|x| x.name.to_string_lossy())
        .collect();
    assert!(unowned.contains(&"legacy1".to_string()), "{unowned:?}");
    assert!(unowned.contains(&"legacy2".to_string()), "{unowned:?}");
    assert!(!unowned.contains(&"ours".to_string()));
    let l2 = all.iter().find(|x| x.name == "legacy2").expect("legacy2");
    assert_eq!(
        l2.comment.as_ref().map(Text::to_string_lossy).as_deref(),
        Some("Mrs Smith, flat 4")
    );
}

pub async fn duplicates_are_already_exists(t: T) {
    let env = Env::start(t).await;
    let r = &env.router;
    r.create_ppp_secret(&secret_spec("dup", "default"))
        .await
        .unwrap();
    let e = r
        .create_ppp_secret(&secret_spec("dup", "default"))
        .await
        .unwrap_err();
    assert!(matches!(e, RouterError::AlreadyExists(_)), "{e:?}");
    assert!(!e.is_retryable());
    r.create_hotspot_user(&hotspot_spec("hdup", "default"))
        .await
        .unwrap();
    let e = r
        .create_hotspot_user(&hotspot_spec("hdup", "default"))
        .await
        .unwrap_err();
    assert!(matches!(e, RouterError::AlreadyExists(_)), "{e:?}");
    let a = AddressListEntrySpec {
        list: "expired".into(),
        address: "100.64.0.77".into(),
        comment: None,
        disabled: false,
    };
    r.create_address_list_entry(&a).await.unwrap();
    let e = r.create_address_list_entry(&a).await.unwrap_err();
    assert!(matches!(e, RouterError::AlreadyExists(_)), "{e:?}");
}

pub async fn bad_profile_is_invalid_value(t: T) {
    let env = Env::start(t).await;
    let e = env
        .router
        .create_ppp_secret(&secret_spec("c1", "no-such-profile"))
        .await
        .unwrap_err();
    assert!(matches!(e, RouterError::InvalidValue { .. }), "{e:?}");
    assert!(!e.is_retryable());
    let e = env
        .router
        .create_hotspot_user(&hotspot_spec("h1", "no-such-profile"))
        .await
        .unwrap_err();
    assert!(matches!(e, RouterError::InvalidValue { .. }), "{e:?}");
    assert_eq!(env.sim.get_status("/menu/ppp/secret/c1").await, 404);
}

pub async fn vanished_id_is_re_resolved_after_reboot(t: T) {
    let env = Env::start(t).await;
    let r = &env.router;
    let old = r
        .create_ppp_secret(&secret_spec("rb1", "default"))
        .await
        .unwrap();
    let before = r
        .find_ppp_secret(&"rb1".into())
        .await
        .unwrap()
        .expect("rb1");
    env.sim.post("/reboot", json!({})).await;
    let mut spec = secret_spec("rb1", "default");
    spec.comment = Some("easyisp:rb1 after reboot".into());
    let new = r.update_ppp_secret(&old, &spec).await.unwrap();
    assert_ne!(new, old, "the simulator renumbers ids on reboot");
    assert_eq!(
        s(&env.sim.get("/menu/ppp/secret/rb1").await, "comment"),
        "easyisp:rb1 after reboot"
    );
    // Removing by the stale id also finds the secret by name.
    env.sim.post("/reboot", json!({})).await;
    r.remove_ppp_secret(&before).await.unwrap();
    assert_eq!(env.sim.get_status("/menu/ppp/secret/rb1").await, 404);
}

pub async fn non_utf8_names_survive(t: T) {
    let env = Env::start(t).await;
    // Written with raw bytes over the API, as WinBox on a cp1252 machine would.
    let api = env.other(T::Api).await;
    let name = Text::new(b"caf\xe9-\xff1".to_vec());
    let mut spec = secret_spec("x", "default");
    spec.name = name.clone();
    spec.comment = Some(Text::new(b"Jos\xe9 P\xe9rez".to_vec()));
    api.create_ppp_secret(&spec).await.unwrap();

    let r = &env.router;
    let all = r.ppp_secrets().await.unwrap();
    let got = all
        .iter()
        .find(|x| x.name == name)
        .expect("listed with its raw bytes");
    assert_eq!(
        got.comment.as_ref().map(Text::as_bytes),
        Some(&b"Jos\xe9 P\xe9rez"[..])
    );
    let found = r
        .find_ppp_secret(&name)
        .await
        .unwrap()
        .expect("found by raw name");
    assert_eq!(found.id, got.id);
    // Updating it must not corrupt the name.
    let mut upd = spec.clone();
    upd.disabled = true;
    upd.comment = Some("easyisp:cafe".into());
    r.update_ppp_secret(&found.id, &upd).await.unwrap();
    let again = api
        .find_ppp_secret(&name)
        .await
        .unwrap()
        .expect("still there, same bytes");
    assert!(again.disabled);
    r.remove_ppp_secret(&again).await.unwrap();
    assert!(api.find_ppp_secret(&name).await.unwrap().is_none());
}

/// A reconcile reads whole tables: listing 10,000 secrets is one request per menu, whatever
/// the transport (REST is serial on a real router, routeros.md §1.8).
pub async fn listing_10k_secrets_is_one_request(t: T) {
    let env = Env::start(t).await;
    let rows: Vec<Value> = (0..10_000)
        .map(|i| json!({"name": format!("bulk{i:05}"), "password": "p", "service": "pppoe"}))
        .collect();
    env.sim
        .process
        .control
        .bulk_add("ppp/secret", rows)
        .await
        .expect("bulk add");
    env.sim
        .process
        .control
        .reset_ops()
        .await
        .expect("reset ops");
    let started = std::time::Instant::now();
    let secrets = env.router.ppp_secrets().await.unwrap();
    let took = started.elapsed();
    assert_eq!(secrets.len(), 10_000);
    assert!(secrets.iter().any(|x| x.name == "bulk09999"));
    let ops = env.sim.process.control.ops().await.expect("op counts");
    let reads: u64 = ops.reads.values().sum();
    assert_eq!(reads, 1, "one request for the whole table: {ops:?}");
    // Timing is for benchmarks, not tests (STYLE.md); this only catches a pathological path.
    eprintln!("{t:?}: listed 10,000 secrets in {took:?}");
    assert!(took < Duration::from_secs(60), "listing took {took:?}");
}
