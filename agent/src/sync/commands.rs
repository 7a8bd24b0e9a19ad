//! Central's commands (`down/cmd`): hang up a customer now, read a customer's live session,
//! release a held mass cut-off. (`resync` is answered by the connection task, which owns the
//! MQTT client.) Each runs in its own task so a slow router never holds up the sync stream.

use crate::daemon::{Shared, state};
use crate::replica::store;
use crate::routeros::{HotspotSession, PppSession, Router, RouterError, Text};
use chrono::{DateTime, Utc};
use easyisp_protocol::customer::{ConnectionType, CustomerRecord};
use easyisp_protocol::envelope::{CommandKind, CommandOutcome};
use easyisp_protocol::session::{SessionKind, SessionRecord};
use std::sync::Arc;
use uuid::Uuid;

/// Whether a command is past its deadline (then it is ignored, not answered).
pub fn expired(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    expires_at <= now
}

/// Runs one command and says how it went.
pub async fn execute(shared: &Shared, command: &CommandKind) -> CommandOutcome {
    match command {
        CommandKind::Disconnect { customer_id } => disconnect(shared, *customer_id).await,
        CommandKind::LiveStatus { customer_id } => live_status(shared, *customer_id).await,
        CommandKind::ConfirmMassCutoff => confirm_mass_cutoff(shared).await,
        CommandKind::Resync => CommandOutcome::Done,
    }
}

/// The customer, if it is one of this router's.
async fn our_customer(shared: &Shared, id: Uuid) -> Result<CustomerRecord, String> {
    let router = shared.config.router_id;
    let customer = shared
        .replica
        .read(move |c| store::load_customer(c, id))
        .await
        .map_err(|e| e.to_string())?;
    match customer {
        Some(c) if c.router() == Some(router) && !c.username().is_empty() => Ok(c),
        Some(_) => Err(format!("customer {id} is not served by this router")),
        None => Err(format!("customer {id} is not in this router's replica")),
    }
}

async fn router(shared: &Shared) -> Result<Arc<dyn Router>, String> {
    shared.router.get().await.map_err(|e| e.to_string())
}

async fn failed_on_router(shared: &Shared, e: RouterError) -> CommandOutcome {
    shared.router.reset_if(&e).await;
    CommandOutcome::Failed(format!("router: {e}"))
}

async fn disconnect(shared: &Shared, id: Uuid) -> CommandOutcome {
    let customer = match our_customer(shared, id).await {
        Ok(c) => c,
        Err(e) => return CommandOutcome::Failed(e),
    };
    let kind = match customer.connection_type() {
        ConnectionType::Pppoe => SessionKind::Pppoe,
        ConnectionType::Hotspot => SessionKind::Hotspot,
        ConnectionType::Dhcp | ConnectionType::Static => {
            return CommandOutcome::Failed(
                "DHCP and static customers have no session to hang up".into(),
            );
        }
    };
    let router = match router(shared).await {
        Ok(r) => r,
        Err(e) => return CommandOutcome::Failed(format!("router unreachable: {e}")),
    };
    let name = Text::from(customer.username());
    let dropped = match kind {
        SessionKind::Pppoe => router.disconnect_ppp_user(&name).await,
        SessionKind::Hotspot => router.disconnect_hotspot_user(&name).await,
    };
    match dropped {
        Ok(count) => {
            // The counters task ends those sessions with `Admin-Reset`.
            if count > 0
                && let Ok(mut kicked) = shared.kicked.lock()
            {
                kicked.push((kind, customer.username().to_string()));
            }
            tracing::info!(customer = %id, sessions = count, "hung up the customer on central's command");
            CommandOutcome::Done
        }
        Err(e) => failed_on_router(shared, e).await,
    }
}

async fn live_status(shared: &Shared, id: Uuid) -> CommandOutcome {
    let customer = match our_customer(shared, id).await {
        Ok(c) => c,
        Err(e) => return CommandOutcome::Failed(e),
    };
    let router = match router(shared).await {
        Ok(r) => r,
        Err(e) => return CommandOutcome::Failed(format!("router unreachable: {e}")),
    };
    let name = customer.username().to_string();
    let now = Utc::now();
    let live = match customer.connection_type() {
        ConnectionType::Hotspot => router.hotspot_sessions().await.map(|sessions| {
            sessions
                .into_iter()
                .find(|s| s.user.as_bytes() == name.as_bytes())
                .map(|s| live_hotspot(&s))
        }),
        _ => router.ppp_sessions().await.map(|sessions| {
            sessions
                .into_iter()
                .find(|s| s.name.as_bytes() == name.as_bytes())
                .map(|s| live_ppp(&s))
        }),
    };
    let live = match live {
        Ok(live) => live,
        Err(e) => return failed_on_router(shared, e).await,
    };
    let Some(live) = live else {
        return CommandOutcome::LiveStatus(None);
    };
    let tracked = shared
        .replica
        .read(store::active_sessions)
        .await
        .unwrap_or_default();
    let record = session_record(shared, &customer, &live, &tracked, now);
    CommandOutcome::LiveStatus(Some(Box::new(record)))
}

/// A session as the router shows it right now.
#[derive(Debug, Clone, PartialEq)]
struct Live {
    kind: SessionKind,
    router_session: String,
    uptime_secs: Option<u64>,
    bytes_in: u64,
    bytes_out: u64,
    address: Option<String>,
    mac: Option<String>,
}

fn live_ppp(s: &PppSession) -> Live {
    Live {
        kind: SessionKind::Pppoe,
        router_session: s.session_id.clone().unwrap_or_else(|| s.id.to_string()),
        uptime_secs: s.uptime.map(|d| d.as_secs()),
        bytes_in: s.upload_bytes.unwrap_or(0),
        bytes_out: s.download_bytes.unwrap_or(0),
        address: s.address.clone(),
        mac: s.caller_id.clone(),
    }
}

fn live_hotspot(s: &HotspotSession) -> Live {
    Live {
        kind: SessionKind::Hotspot,
        router_session: s.id.to_string(),
        uptime_secs: s.uptime.map(|d| d.as_secs()),
        bytes_in: s.upload_bytes.unwrap_or(0),
        bytes_out: s.download_bytes.unwrap_or(0),
        address: s.address.clone(),
        mac: s.mac_address.clone(),
    }
}

/// The live session as a record: the one the counters task tracks (same id and totals, brought
/// up to the router's current counters), or a fresh one if the poll has not seen it yet.
fn session_record(
    shared: &Shared,
    customer: &CustomerRecord,
    live: &Live,
    tracked: &[(SessionRecord, String, u64, u64)],
    now: DateTime<Utc>,
) -> SessionRecord {
    let known = tracked.iter().find(|(r, router_session, ..)| {
        r.kind == live.kind
            && r.username == customer.username()
            && *router_session == live.router_session
    });
    if let Some((record, _, raw_in, raw_out)) = known {
        let mut record = record.clone();
        // Counters below the last poll's mean the router reset them: keep the tracked totals.
        record.input_octets += live.bytes_in.saturating_sub(*raw_in);
        record.output_octets += live.bytes_out.saturating_sub(*raw_out);
        record.framed_ip = live.address.clone().or(record.framed_ip);
        record.mac_address = live.mac.clone().or(record.mac_address);
        record.updated_at = now;
        return record;
    }
    let started = live
        .uptime_secs
        .and_then(|s| i64::try_from(s).ok())
        .map_or(now, |s| now - chrono::Duration::seconds(s));
    SessionRecord {
        id: Uuid::now_v7(),
        tenant_id: shared.config.tenant_id,
        router_id: shared.config.router_id,
        customer_id: Some(customer.id),
        username: customer.username().to_string(),
        kind: live.kind,
        session_id: live.router_session.clone(),
        start_time: started,
        stop_time: None,
        input_octets: live.bytes_in,
        output_octets: live.bytes_out,
        framed_ip: live.address.clone(),
        mac_address: live.mac.clone(),
        terminate_cause: None,
        updated_at: now,
    }
}

async fn confirm_mass_cutoff(shared: &Shared) -> CommandOutcome {
    let confirmed = shared
        .replica
        .write(|tx| {
            if state::held(tx)?.is_none() {
                return Ok(false);
            }
            state::set_json(tx, state::MASS_CUTOFF_CONFIRMED, &true)?;
            Ok(true)
        })
        .await;
    match confirmed {
        Ok(true) => {
            tracing::info!("mass cut-off confirmed by central; reconciling");
            shared.reconcile_now.notify_one();
            CommandOutcome::Done
        }
        Ok(false) => CommandOutcome::Failed("no mass cut-off is held".into()),
        Err(e) => CommandOutcome::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_at_or_past_its_deadline_is_expired() {
        let now = Utc::now();
        assert!(expired(now, now));
        assert!(expired(now - chrono::Duration::seconds(1), now));
        assert!(!expired(now + chrono::Duration::seconds(1), now));
    }
}
