//! The agent's hands on a MikroTik router: one async [`Router`] trait, implemented over REST
//! (`rest`), the classic API (`api`) and the SSH CLI (`ssh`), chosen at run time from the
//! router URL (`url`). `/work/shared/routeros.md` is the wire-level reference.
//!
//! Layering: each transport implements five raw primitives (print a menu with filters and a
//! `.proplist`, add, set by `.id`, remove by `.id`, run a command); the typed operations
//! (secrets, profiles, sessions, …) are default methods shared by all transports, so the three
//! drivers cannot drift apart. Every listing is one request per menu (never one per customer:
//! REST is serial, routeros.md §1.8). Writes are logged at INFO by the transports, with property
//! names only, so a password never reaches a log line.
//!
//! Listings stream: the typed reads go through [`Router::print_each`], which every transport
//! implements by handing over each row as soon as it has arrived, and the row is turned into
//! its typed object at once. A menu of 10,000 rows is thus never held as a reply body, a JSON
//! tree or a list of property maps; a full reconcile ([`each_object`]) does not even keep the
//! typed objects, only those that must change (docs/benchmarks.md, agent memory).
//!
//! `.id`s are only valid until the next reboot (§7.8): callers use ids from a recent listing,
//! and update/remove re-resolve by name (or list+address) when the id has vanished.

pub mod api;
pub mod error;
pub mod objects;
mod ops;
pub mod rest;
pub mod ssh;
pub mod status;
mod tls;
pub mod url;
pub mod value;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use easyisp_protocol::Secret;
use tokio_util::sync::CancellationToken;

pub use error::{Result, RouterError};
pub use objects::*;
pub use status::{Clock, HotspotSession, PppSession, Resources};
/// The process-wide rustls provider (ring), also for the agent's other HTTPS clients.
pub(crate) use tls::install_provider as install_tls_provider;
pub use url::{RouterUrl, Transport};
pub use value::{Id, Row, Text};

use status::{
    CLOCK_PROPLIST, HOTSPOT_ACTIVE_MENU, HOTSPOT_ACTIVE_PROPLIST, INTERFACE_MENU, PPP_ACTIVE_MENU,
    PPP_ACTIVE_PROPLIST, PPPOE_IF_PROPLIST, RESOURCE_PROPLIST,
};

/// Hands each object of menu `O` whose properties equal every `key` pair to `visit` as soon
/// as its row has arrived: a listing that is compared and dropped object by object, never held.
pub async fn each_object<O: RouterObject>(
    router: &dyn Router,
    key: &[(&str, Text)],
    visit: impl FnMut(O) + Send,
) -> Result<()> {
    ops::each(router, key, visit).await
}

/// Identity, version, board and clock in one value (what `probe` prints first).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SystemInfo {
    pub identity: Text,
    pub resources: Resources,
    pub clock: Clock,
}

/// A connection to one router. Object-safe: the agent holds an `Arc<dyn Router>`.
#[async_trait]
pub trait Router: Send + Sync {
    /// `api://admin@192.0.2.1:8728`-style description for logs (no password).
    fn describe(&self) -> String;

    // ------------------------------------------------------------ raw primitives

    /// All rows of `menu` (e.g. `/ppp/secret`) whose properties equal every `query` pair,
    /// restricted to `proplist` (empty = all properties). One request.
    async fn print(
        &self,
        menu: &str,
        query: &[(&str, Text)],
        proplist: &[&str],
    ) -> Result<Vec<Row>>;

    /// [`print`](Router::print), handing each row to `visit` as soon as it has arrived instead
    /// of returning them all: what the typed listings use, so that a big menu is never held as
    /// rows. A failed call may have visited some rows first. The default collects `print`.
    async fn print_each(
        &self,
        menu: &str,
        query: &[(&str, Text)],
        proplist: &[&str],
        visit: &mut (dyn FnMut(Row) + Send),
    ) -> Result<()> {
        for row in self.print(menu, query, proplist).await? {
            visit(row);
        }
        Ok(())
    }

    /// Adds one item and returns its new `.id`.
    async fn add(&self, menu: &str, attrs: &[(&str, Text)]) -> Result<Id>;

    /// Sets properties of the item `id`. `NotFound` when the id does not exist.
    async fn set(&self, menu: &str, id: &Id, attrs: &[(&str, Text)]) -> Result<()>;

    /// Removes the item `id`. `NotFound` when the id does not exist.
    async fn remove(&self, menu: &str, id: &Id) -> Result<()>;

    /// Runs another command of a menu (`/ip/hotspot/user` `reset-counters`, …).
    async fn command(&self, menu: &str, command: &str, args: &[(&str, Text)]) -> Result<Vec<Row>>;

    // ------------------------------------------------------------ system

    async fn identity(&self) -> Result<Text> {
        let row = ops::singleton(self, "/system/identity", &["name"]).await?;
        Ok(row.text("name"))
    }

    async fn resources(&self) -> Result<Resources> {
        Resources::from_row(&ops::singleton(self, "/system/resource", RESOURCE_PROPLIST).await?)
    }

    async fn clock(&self) -> Result<Clock> {
        Clock::from_row(&ops::singleton(self, "/system/clock", CLOCK_PROPLIST).await?)
    }

    async fn system_info(&self) -> Result<SystemInfo> {
        Ok(SystemInfo {
            identity: self.identity().await?,
            resources: self.resources().await?,
            clock: self.clock().await?,
        })
    }

    /// Number of rows in a menu (one request, `.id` only).
    async fn count(&self, menu: &str) -> Result<usize> {
        Ok(self.print(menu, &[], &[".id"]).await?.len())
    }

    // ------------------------------------------------------------ PPP

    async fn ppp_secrets(&self) -> Result<Vec<PppSecret>> {
        ops::list(self).await
    }
    async fn find_ppp_secret(&self, name: &Text) -> Result<Option<PppSecret>> {
        ops::find_one(self, &[("name", name.clone())]).await
    }
    async fn create_ppp_secret(&self, spec: &PppSecretSpec) -> Result<Id> {
        ops::create(self, spec).await
    }
    /// Writes every property of `spec` except its key (name): updates never rename.
    /// Returns the id actually written (re-resolved by name if `id` vanished).
    async fn update_ppp_secret(&self, id: &Id, spec: &PppSecretSpec) -> Result<Id> {
        ops::update(self, id, spec).await
    }
    async fn remove_ppp_secret(&self, secret: &PppSecret) -> Result<()> {
        ops::remove_object(self, secret).await
    }

    async fn ppp_profiles(&self) -> Result<Vec<PppProfile>> {
        ops::list(self).await
    }
    async fn create_ppp_profile(&self, spec: &PppProfileSpec) -> Result<Id> {
        ops::create(self, spec).await
    }
    async fn update_ppp_profile(&self, id: &Id, spec: &PppProfileSpec) -> Result<Id> {
        ops::update(self, id, spec).await
    }
    async fn remove_ppp_profile(&self, profile: &PppProfile) -> Result<()> {
        ops::remove_object(self, profile).await
    }

    // ------------------------------------------------------------ hotspot

    async fn hotspot_users(&self) -> Result<Vec<HotspotUser>> {
        ops::list(self).await
    }
    async fn find_hotspot_user(&self, name: &Text) -> Result<Option<HotspotUser>> {
        ops::find_one(self, &[("name", name.clone())]).await
    }
    async fn create_hotspot_user(&self, spec: &HotspotUserSpec) -> Result<Id> {
        ops::create(self, spec).await
    }
    async fn update_hotspot_user(&self, id: &Id, spec: &HotspotUserSpec) -> Result<Id> {
        ops::update(self, id, spec).await
    }
    async fn remove_hotspot_user(&self, user: &HotspotUser) -> Result<()> {
        ops::remove_object(self, user).await
    }

    async fn hotspot_user_profiles(&self) -> Result<Vec<HotspotUserProfile>> {
        ops::list(self).await
    }
    async fn create_hotspot_user_profile(&self, spec: &HotspotUserProfileSpec) -> Result<Id> {
        ops::create(self, spec).await
    }
    async fn update_hotspot_user_profile(
        &self,
        id: &Id,
        spec: &HotspotUserProfileSpec,
    ) -> Result<Id> {
        ops::update(self, id, spec).await
    }
    async fn remove_hotspot_user_profile(&self, profile: &HotspotUserProfile) -> Result<()> {
        ops::remove_object(self, profile).await
    }

    // ------------------------------------------------------------ queues, leases, lists

    async fn simple_queues(&self) -> Result<Vec<SimpleQueue>> {
        ops::list(self).await
    }
    async fn create_simple_queue(&self, spec: &SimpleQueueSpec) -> Result<Id> {
        ops::create(self, spec).await
    }
    async fn update_simple_queue(&self, id: &Id, spec: &SimpleQueueSpec) -> Result<Id> {
        ops::update(self, id, spec).await
    }
    async fn remove_simple_queue(&self, queue: &SimpleQueue) -> Result<()> {
        ops::remove_object(self, queue).await
    }

    async fn dhcp_leases(&self) -> Result<Vec<DhcpLease>> {
        ops::list(self).await
    }
    async fn create_dhcp_lease(&self, spec: &DhcpLeaseSpec) -> Result<Id> {
        ops::create(self, spec).await
    }
    async fn update_dhcp_lease(&self, id: &Id, spec: &DhcpLeaseSpec) -> Result<Id> {
        ops::update(self, id, spec).await
    }
    async fn remove_dhcp_lease(&self, lease: &DhcpLease) -> Result<()> {
        ops::remove_object(self, lease).await
    }

    async fn address_list_entries(&self) -> Result<Vec<AddressListEntry>> {
        ops::list(self).await
    }
    async fn create_address_list_entry(&self, spec: &AddressListEntrySpec) -> Result<Id> {
        ops::create(self, spec).await
    }
    async fn update_address_list_entry(&self, id: &Id, spec: &AddressListEntrySpec) -> Result<Id> {
        ops::update(self, id, spec).await
    }
    async fn remove_address_list_entry(&self, entry: &AddressListEntry) -> Result<()> {
        ops::remove_object(self, entry).await
    }

    // ------------------------------------------------------------ sessions

    /// Active PPP sessions with counters: two requests (`/ppp/active`, `/interface`).
    async fn ppp_sessions(&self) -> Result<Vec<PppSession>> {
        let mut join = status::PppJoin::default();
        self.print_each(PPP_ACTIVE_MENU, &[], PPP_ACTIVE_PROPLIST, &mut |row| {
            join.active(&row)
        })
        .await?;
        self.print_each(
            INTERFACE_MENU,
            &[("type", Text::from("pppoe-in"))],
            PPPOE_IF_PROPLIST,
            &mut |row| join.interface(&row),
        )
        .await?;
        join.finish()
    }

    async fn hotspot_sessions(&self) -> Result<Vec<HotspotSession>> {
        let mut sessions = Vec::new();
        self.each_hotspot_session(&mut |s| sessions.push(s)).await?;
        Ok(sessions)
    }

    /// Active hotspot sessions, each handed to `visit` as its row arrives (none is kept). A
    /// row that does not parse is the error, once the listing has been read to its end.
    async fn each_hotspot_session(
        &self,
        visit: &mut (dyn FnMut(HotspotSession) + Send),
    ) -> Result<()> {
        let mut failed = None;
        self.print_each(
            HOTSPOT_ACTIVE_MENU,
            &[],
            HOTSPOT_ACTIVE_PROPLIST,
            &mut |row| match HotspotSession::from_row(&row) {
                Ok(s) => visit(s),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            },
        )
        .await?;
        failed.map_or(Ok(()), Err)
    }

    /// Drops one PPP session. A session that already ended counts as success (§7.5).
    async fn remove_ppp_session(&self, id: &Id) -> Result<()> {
        ops::remove_session(self, PPP_ACTIVE_MENU, id).await
    }

    async fn remove_hotspot_session(&self, id: &Id) -> Result<()> {
        ops::remove_session(self, HOTSPOT_ACTIVE_MENU, id).await
    }

    /// Drops every PPP session of `name`; returns how many were removed.
    async fn disconnect_ppp_user(&self, name: &Text) -> Result<usize> {
        let rows = self
            .print(PPP_ACTIVE_MENU, &[("name", name.clone())], &[".id"])
            .await?;
        for r in &rows {
            self.remove_ppp_session(&r.id()?).await?;
        }
        Ok(rows.len())
    }

    async fn disconnect_hotspot_user(&self, user: &Text) -> Result<usize> {
        let rows = self
            .print(HOTSPOT_ACTIVE_MENU, &[("user", user.clone())], &[".id"])
            .await?;
        for r in &rows {
            self.remove_hotspot_session(&r.id()?).await?;
        }
        Ok(rows.len())
    }
}

/// What a driver needs besides the URL.
#[derive(Clone)]
pub struct ConnectOptions {
    pub password: Secret<String>,
    /// Per-request timeout (and connect timeout).
    pub timeout: Duration,
    /// SSH: known-hosts file; the key is recorded there on first use and enforced after.
    pub known_hosts: Option<PathBuf>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("password", &self.password)
            .field("timeout", &self.timeout)
            .field("known_hosts", &self.known_hosts)
            .finish()
    }
}

impl ConnectOptions {
    pub fn new(password: Secret<String>) -> Self {
        ConnectOptions {
            password,
            timeout: Duration::from_secs(30),
            known_hosts: None,
        }
    }
}

/// Opens the driver the URL names. API and SSH log in here; REST on the first request.
pub async fn connect(url: &RouterUrl, opts: ConnectOptions) -> Result<Arc<dyn Router>> {
    match url.transport {
        Transport::RestHttp | Transport::RestHttps => {
            Ok(Arc::new(rest::RestRouter::new(url.clone(), opts)?))
        }
        Transport::Api | Transport::ApiSsl => {
            Ok(Arc::new(api::ApiRouter::connect(url.clone(), opts).await?))
        }
        Transport::Ssh => Ok(Arc::new(ssh::SshRouter::connect(url.clone(), opts).await?)),
    }
}

/// Runs `fut` unless `token` is cancelled first (then `Cancelled`). Dropping a driver future is
/// safe: the API driver marks a connection broken if a frame was cut mid-write.
pub async fn cancellable<T>(
    token: &CancellationToken,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        _ = token.cancelled() => Err(RouterError::Cancelled),
        r = fut => r,
    }
}
