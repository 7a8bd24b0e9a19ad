//! Sync storage on real SQLite files: which changes write `sync_down` rows for which routers,
//! births, acks and snapshots (`downstream`), and the upstream apply: duplicates, gaps,
//! rejections, conflicts, ledger idempotency, session maxima, no echo (`upstream`).

mod downstream;
mod upstream;

use super::*;
use crate::storage::{
    CustomerPatch, NewCustomer, PackageInput, Recharge, RouterInput, Storage, system_actor,
};
use chrono::Utc;
use easyisp_protocol::envelope::{ChangeBody, PROTOCOL_VERSION, Status};
use easyisp_protocol::hlc::{Hlc, NodeId};
use easyisp_protocol::ledger::{LedgerEntry, LedgerKind};
use easyisp_protocol::merge::Lww;
use easyisp_protocol::session::{SessionKind, SessionRecord};
use easyisp_protocol::{ConnectionType, CustomerRecord, Money};
use serde_json::{Value, json};

pub(super) struct Fixture {
    _dir: tempfile::TempDir,
    pub(super) storage: Storage,
    pub(super) tenant: Uuid,
}

pub(super) async fn fixture() -> Fixture {
    let (dir, storage, tenant) = crate::storage::test_support::open_with_tenant().await;
    Fixture {
        _dir: dir,
        storage,
        tenant,
    }
}

impl Fixture {
    pub(super) async fn router(&self, name: &str) -> Uuid {
        let input = RouterInput {
            name: name.into(),
            ip_address: "10.0.0.1".into(),
            location: None,
        };
        let view = self
            .storage
            .create_router(self.tenant, system_actor("test"), input)
            .await
            .unwrap();
        view.id
    }

    /// An agent's birth with a fresh epoch, answered by a snapshot that it acknowledges.
    pub(super) async fn synced_router(&self, name: &str) -> Uuid {
        let router = self.router(name).await;
        let presence = self.birth(router, 1, "epoch-1", 0).await;
        assert!(matches!(
            presence,
            Presence::Birth {
                plan: BirthPlan::Snapshot { .. },
                ..
            }
        ));
        let snapshot = self.storage.read_snapshot(router).await.unwrap();
        let ack = self
            .storage
            .record_down_ack(
                router,
                "epoch-1".into(),
                snapshot.high_water,
                Some(snapshot.high_water),
            )
            .await
            .unwrap();
        assert!(matches!(
            ack,
            AckOutcome::Acked {
                snapshot_done: true,
                ..
            }
        ));
        router
    }

    pub(super) async fn birth(
        &self,
        router: Uuid,
        session: u64,
        epoch: &str,
        applied: u64,
    ) -> Presence {
        let status = Status {
            v: PROTOCOL_VERSION,
            router,
            online: true,
            session,
            agent_version: Some("0.1.0".into()),
            started_at: Some(Utc::now()),
            epoch: Some(epoch.into()),
            applied_through: Some(applied),
        };
        self.storage.record_presence(router, status).await.unwrap()
    }

    pub(super) async fn customer(&self, username: &str, router: Option<Uuid>) -> Uuid {
        let input = NewCustomer {
            router_id: router,
            ..crate::storage::test_support::new_customer(username, &format!("Name {username}"))
        };
        self.storage
            .create_customer(self.tenant, system_actor("test"), input)
            .await
            .unwrap()
            .id
    }

    /// `(seq, entity, entity_id)` of a router's outbox rows.
    pub(super) async fn outbox(&self, router: Uuid) -> Vec<(u64, String, Uuid)> {
        self.storage
            .read(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT seq, entity, entity_id FROM sync_down WHERE router_id = ?1 ORDER BY seq",
                )?;
                let rows = stmt
                    .query_map([router.to_string()], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows
                    .into_iter()
                    .map(|(s, e, id)| (s as u64, e, Uuid::parse_str(&id).unwrap()))
                    .collect())
            })
            .await
            .unwrap()
    }

    pub(super) async fn scalar(&self, sql: &'static str, id: Uuid) -> i64 {
        self.storage
            .read(move |conn| Ok(conn.query_row(sql, [id.to_string()], |r| r.get(0))?))
            .await
            .unwrap()
    }

    pub(super) async fn apply(&self, router: Uuid, first: u64, changes: Vec<Value>) -> UpOutcome {
        let last = first + changes.len() as u64 - 1;
        let batch = RawBatch {
            v: 1,
            router,
            epoch: "epoch-1".into(),
            first_seq: first,
            last_seq: last,
            changes,
        };
        self.storage.apply_up_batch(router, batch).await.unwrap()
    }
}

pub(super) fn change(seq: u64, body: ChangeBody) -> Value {
    json!({"seq": seq, "id": Uuid::now_v7(), "body": serde_json::to_value(body).unwrap()})
}

pub(super) fn site_stamp(ms_from_now: i64) -> Hlc {
    Hlc::new(
        (Utc::now().timestamp_millis() + ms_from_now) as u64,
        0,
        NodeId(0xA6E7),
    )
}

pub(super) fn recharge(amount: i64) -> Recharge {
    Recharge {
        amount: Money::from_minor(amount),
        method: None,
        transaction_id: None,
        description: None,
        idempotency_key: None,
    }
}
