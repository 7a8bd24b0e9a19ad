//! MQTT topic names. Everything lives under `easyisp/v1/site/{router_id}/`; the router id is
//! also the agent's MQTT username, so one ACL line confines every agent to its own subtree.

use uuid::Uuid;

pub const ROOT: &str = "easyisp/v1/site";

/// Central subscribes here: every site's every topic.
pub const ALL_SITES: &str = "easyisp/v1/site/+/#";
/// Monitoring tools: every site's presence.
pub const ALL_STATUS: &str = "easyisp/v1/site/+/status";
/// Monitoring tools: every site's periodic health.
pub const ALL_TELEMETRY: &str = "easyisp/v1/site/+/telemetry";
/// The Mosquitto ACL rule that confines an agent (username = router id) to its subtree.
pub const AGENT_ACL_PATTERN: &str = "pattern readwrite easyisp/v1/site/%u/#";

/// The topics of one site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SiteTopic {
    /// Retained presence; the agent's Last Will sets it offline.
    Status,
    /// Periodic health, QoS 0.
    Telemetry,
    /// Agent → central change batches.
    UpChanges,
    /// Agent → central: cumulative ack of `DownChanges`.
    UpAck,
    /// Agent → central: "send me a snapshot".
    UpResync,
    /// Agent → central: result of a command.
    UpCmdResult,
    /// Central → agent change batches.
    DownChanges,
    /// Central → agent: cumulative ack of `UpChanges`.
    DownAck,
    /// Central → agent: snapshot chunks.
    DownSnapshot,
    /// Central → agent: commands (disconnect, live status, resync, confirm mass cut-off).
    DownCmd,
}

impl SiteTopic {
    pub const ALL: [SiteTopic; 10] = [
        SiteTopic::Status,
        SiteTopic::Telemetry,
        SiteTopic::UpChanges,
        SiteTopic::UpAck,
        SiteTopic::UpResync,
        SiteTopic::UpCmdResult,
        SiteTopic::DownChanges,
        SiteTopic::DownAck,
        SiteTopic::DownSnapshot,
        SiteTopic::DownCmd,
    ];

    pub fn suffix(self) -> &'static str {
        match self {
            SiteTopic::Status => "status",
            SiteTopic::Telemetry => "telemetry",
            SiteTopic::UpChanges => "up/changes",
            SiteTopic::UpAck => "up/ack",
            SiteTopic::UpResync => "up/resync",
            SiteTopic::UpCmdResult => "up/cmd-result",
            SiteTopic::DownChanges => "down/changes",
            SiteTopic::DownAck => "down/ack",
            SiteTopic::DownSnapshot => "down/snapshot",
            SiteTopic::DownCmd => "down/cmd",
        }
    }

    /// The full topic for one router: `easyisp/v1/site/{router}/{suffix}`.
    pub fn for_router(self, router: Uuid) -> String {
        format!("{ROOT}/{router}/{}", self.suffix())
    }

    /// Whether central (rather than the agent) publishes on this topic.
    pub fn is_downstream(self) -> bool {
        matches!(
            self,
            SiteTopic::DownChanges
                | SiteTopic::DownAck
                | SiteTopic::DownSnapshot
                | SiteTopic::DownCmd
        )
    }
}

/// The filter an agent subscribes to for everything central sends it.
pub fn downstream_filter(router: Uuid) -> String {
    format!("{ROOT}/{router}/down/#")
}

/// Splits a received topic into its router id and kind; `None` for anything else.
pub fn parse(topic: &str) -> Option<(Uuid, SiteTopic)> {
    let rest = topic.strip_prefix(ROOT)?.strip_prefix('/')?;
    let (router, suffix) = rest.split_once('/')?;
    let router = Uuid::parse_str(router).ok()?;
    let kind = SiteTopic::ALL.into_iter().find(|t| t.suffix() == suffix)?;
    Some((router, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip() {
        let router = Uuid::from_u128(0x1234);
        for kind in SiteTopic::ALL {
            let topic = kind.for_router(router);
            assert!(topic.starts_with("easyisp/v1/site/00000000-0000-0000-0000-000000001234/"));
            assert_eq!(parse(&topic), Some((router, kind)));
        }
        assert_eq!(parse("easyisp/v1/site/not-a-uuid/status"), None);
        assert_eq!(
            parse("easyisp/v2/site/00000000-0000-0000-0000-000000001234/status"),
            None
        );
        assert_eq!(
            parse("easyisp/v1/site/00000000-0000-0000-0000-000000001234/up/other"),
            None
        );
    }
}
