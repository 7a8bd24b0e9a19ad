//! The daemon's Prometheus metrics. Counters live in atomics the tasks bump ([`Metrics`], in
//! `Shared`); gauges are read from the replica when scraped ([`Snapshot`]); [`render`] writes
//! the text exposition format 0.0.4. Rendering is pure; `metrics_task` serves it over HTTP.
//!
//! Nothing here holds a name of a customer or a secret: labels are fixed words.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The counters and the one live gauge (broker connection) the daemon's tasks update.
#[derive(Debug, Default)]
pub struct Metrics {
    router_errors: AtomicU64,
    reconciles_ok: AtomicU64,
    reconciles_failed: AtomicU64,
    broker_connected: AtomicBool,
}

impl Metrics {
    /// A reconcile pass ended: `clean` when every operation succeeded; `router_errors` counts
    /// the failed operations plus one when the router could not be reached at all.
    pub fn reconciled(&self, clean: bool, router_errors: u64) {
        let counter = if clean {
            &self.reconciles_ok
        } else {
            &self.reconciles_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.router_errors
            .fetch_add(router_errors, Ordering::Relaxed);
    }

    /// A request to the router failed outside a reconcile (session counters).
    pub fn router_error(&self) {
        self.router_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_broker_connected(&self, connected: bool) {
        self.broker_connected.store(connected, Ordering::Relaxed);
    }

    pub fn router_errors(&self) -> u64 {
        self.router_errors.load(Ordering::Relaxed)
    }

    pub fn reconciles(&self) -> (u64, u64) {
        (
            self.reconciles_ok.load(Ordering::Relaxed),
            self.reconciles_failed.load(Ordering::Relaxed),
        )
    }

    pub fn broker_connected(&self) -> bool {
        self.broker_connected.load(Ordering::Relaxed)
    }
}

/// Everything one scrape shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Every status, zeros included, so a series never vanishes.
    pub customers_by_status: BTreeMap<String, u64>,
    pub active_sessions: u64,
    /// Whether the last reconcile reached the router (`false` before the first).
    pub router_reachable: bool,
    pub router_errors_total: u64,
    /// The last reconcile pass: its duration and when it ran (Unix seconds).
    pub last_reconcile: Option<(Duration, i64)>,
    pub reconciles_ok: u64,
    pub reconciles_failed: u64,
    pub outbox_depth: u64,
    /// Age of the oldest change central has not acknowledged (zero when none waits).
    pub outbox_oldest_age: Duration,
    /// `None` when the agent runs standalone (no `[central]` section).
    pub sync: Option<SyncSnapshot>,
    pub clock_synchronised: bool,
    pub mass_cutoff_held: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncSnapshot {
    pub applied_seq: u64,
    pub broker_connected: bool,
}

/// The Prometheus text format (version 0.0.4) of `s`.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(2048);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, String)]| {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let flag = |b: bool| u8::from(b).to_string();
    family(
        "easyisp_agent_build_info",
        "gauge",
        "The agent's version.",
        &[(
            &format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")),
            "1".into(),
        )],
    );
    let by_status: Vec<(String, String)> = s
        .customers_by_status
        .iter()
        .map(|(status, n)| (format!("{{status=\"{}\"}}", escape(status)), n.to_string()))
        .collect();
    let by_status: Vec<(&str, String)> = by_status
        .iter()
        .map(|(l, v)| (l.as_str(), v.clone()))
        .collect();
    family(
        "easyisp_agent_customers",
        "gauge",
        "This router's customers in the replica, by status.",
        &by_status,
    );
    family(
        "easyisp_agent_active_sessions",
        "gauge",
        "PPPoE and hotspot sessions active on the router at the last counter poll.",
        &[("", s.active_sessions.to_string())],
    );
    family(
        "easyisp_agent_router_reachable",
        "gauge",
        "1 when the last reconcile reached the router.",
        &[("", flag(s.router_reachable))],
    );
    family(
        "easyisp_agent_router_errors_total",
        "counter",
        "Failed router requests: unreachable passes, failed operations, failed counter polls.",
        &[("", s.router_errors_total.to_string())],
    );
    if let Some((duration, at)) = s.last_reconcile {
        family(
            "easyisp_agent_reconcile_duration_seconds",
            "gauge",
            "Duration of the last reconcile pass.",
            &[("", seconds(duration))],
        );
        family(
            "easyisp_agent_last_reconcile_timestamp_seconds",
            "gauge",
            "When the last reconcile pass ran (Unix time).",
            &[("", at.to_string())],
        );
    }
    family(
        "easyisp_agent_reconcile_total",
        "counter",
        "Reconcile passes since the agent started, by result.",
        &[
            ("{result=\"ok\"}", s.reconciles_ok.to_string()),
            ("{result=\"failed\"}", s.reconciles_failed.to_string()),
        ],
    );
    family(
        "easyisp_agent_outbox_depth",
        "gauge",
        "Local changes waiting for central's acknowledgement.",
        &[("", s.outbox_depth.to_string())],
    );
    family(
        "easyisp_agent_outbox_oldest_age_seconds",
        "gauge",
        "Age of the oldest change waiting for central's acknowledgement (0 when none waits).",
        &[("", seconds(s.outbox_oldest_age))],
    );
    if let Some(sync) = &s.sync {
        family(
            "easyisp_agent_sync_applied_seq",
            "gauge",
            "The last change from central applied to the replica.",
            &[("", sync.applied_seq.to_string())],
        );
        family(
            "easyisp_agent_broker_connected",
            "gauge",
            "1 while the agent is connected to central's broker.",
            &[("", flag(sync.broker_connected))],
        );
    }
    family(
        "easyisp_agent_clock_synchronised",
        "gauge",
        "1 when the system clock is trusted (NTP-synchronised or assumed so).",
        &[("", flag(s.clock_synchronised))],
    );
    family(
        "easyisp_agent_mass_cutoff_held",
        "gauge",
        "1 while a mass cut-off waits for `easyisp-agent confirm-cutoff`.",
        &[("", flag(s.mass_cutoff_held))],
    );
    out
}

fn seconds(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            customers_by_status: [("ACTIVE".to_string(), 3), ("EXPIRED".to_string(), 0)]
                .into_iter()
                .collect(),
            active_sessions: 2,
            router_reachable: true,
            router_errors_total: 4,
            last_reconcile: Some((Duration::from_millis(1250), 1_700_000_000)),
            reconciles_ok: 7,
            reconciles_failed: 1,
            outbox_depth: 5,
            outbox_oldest_age: Duration::from_secs(12),
            sync: Some(SyncSnapshot {
                applied_seq: 42,
                broker_connected: true,
            }),
            clock_synchronised: true,
            mass_cutoff_held: false,
        }
    }

    #[test]
    fn every_metric_is_rendered_with_help_type_and_value() {
        let text = render(&snapshot());
        for line in [
            "easyisp_agent_customers{status=\"ACTIVE\"} 3",
            "easyisp_agent_customers{status=\"EXPIRED\"} 0",
            "easyisp_agent_active_sessions 2",
            "easyisp_agent_router_reachable 1",
            "easyisp_agent_router_errors_total 4",
            "easyisp_agent_reconcile_duration_seconds 1.250",
            "easyisp_agent_last_reconcile_timestamp_seconds 1700000000",
            "easyisp_agent_reconcile_total{result=\"ok\"} 7",
            "easyisp_agent_reconcile_total{result=\"failed\"} 1",
            "easyisp_agent_outbox_depth 5",
            "easyisp_agent_outbox_oldest_age_seconds 12.000",
            "easyisp_agent_sync_applied_seq 42",
            "easyisp_agent_broker_connected 1",
            "easyisp_agent_clock_synchronised 1",
            "easyisp_agent_mass_cutoff_held 0",
            "# TYPE easyisp_agent_router_errors_total counter",
            "# TYPE easyisp_agent_customers gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn every_sample_line_follows_its_help_and_type() {
        let text = render(&snapshot());
        let mut typed = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(typed.contains(name), "{name} has no TYPE before it");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
    }

    #[test]
    fn a_standalone_agent_shows_no_broker_metrics_and_no_reconcile_before_the_first() {
        let text = render(&Snapshot {
            sync: None,
            last_reconcile: None,
            ..snapshot()
        });
        assert!(!text.contains("easyisp_agent_broker_connected"));
        assert!(!text.contains("easyisp_agent_sync_applied_seq"));
        assert!(!text.contains("easyisp_agent_reconcile_duration_seconds"));
        assert!(text.contains("easyisp_agent_reconcile_total{result=\"ok\"} 7"));
    }

    #[test]
    fn counters_add_up_from_the_tasks() {
        let m = Metrics::default();
        m.reconciled(true, 0);
        m.reconciled(false, 3);
        m.router_error();
        m.set_broker_connected(true);
        assert_eq!(m.reconciles(), (1, 1));
        assert_eq!(m.router_errors(), 4);
        assert!(m.broker_connected());
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
