//! Scenario 3: `--routers` routers through central's one managed broker, each with
//! `--router-customers` customers and an in-process agent (`fake_agent`). Enrolled through the
//! API as a real agent is; the first connection of every agent gets a snapshot. Then two
//! phases, each `routers × router-customers × fanout-updates` password changes made over the
//! API with `--concurrency` requests in flight, customers interleaved across routers:
//!
//! - live: made while every agent is connected; measured from the first request until the
//!   agents have applied and acked every change;
//! - reconnect: made while every agent is offline (clean stop, offline status), then all
//!   agents connect at once; measured from the reconnect until every change is acked.

use crate::api::{Api, pending_changes, text};
use crate::fake_agent::{Counters, FakeAgent};
use crate::system::{Central, run_concurrently};
use crate::{Args, ms};
use anyhow::{Context, Result, bail};
use easyisp_mqtt::Endpoint;
use easyisp_protocol::Secret;
use reqwest::Method;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Running {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<Result<FakeAgent>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn start_all(agents: Vec<FakeAgent>, counters: &Arc<Counters>) -> Running {
    let stop = CancellationToken::new();
    let tasks = agents
        .into_iter()
        .map(|agent| tokio::spawn(agent.run(counters.clone(), stop.child_token())))
        .collect();
    Running { stop, tasks }
}

async fn stop_all(mut running: Running) -> Result<Vec<FakeAgent>> {
    running.stop.cancel();
    let mut agents = Vec::new();
    for task in std::mem::take(&mut running.tasks) {
        agents.push(task.await??);
    }
    Ok(agents)
}

pub async fn run(args: &Args) -> Result<()> {
    let (routers, per_router) = (args.routers, args.router_customers);
    println!(
        "\n== fan-out: {routers} routers × {per_router} customers through one broker, in-process agents (load {})",
        crate::system::load_average()
    );
    let central = Central::start(args, "central-fanout.log").await?;
    let api = central.api.clone();
    let package = api.package("Bench 10").await?;

    let started = Instant::now();
    let mut agents = Vec::with_capacity(routers);
    for r in 0..routers {
        let router = api.router(&format!("Bench POP {r:03}")).await?;
        agents.push(enroll(&api, &router).await?);
    }
    println!(
        "setup: {routers} routers created and enrolled in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Customer n lives on router n % routers, so consecutive changes hit different routers.
    let started = Instant::now();
    let total_customers = routers * per_router;
    let router_ids: Vec<String> = agents.iter().map(|a| a.router.to_string()).collect();
    let specs: Vec<(String, String)> = (0..total_customers)
        .map(|n| (format!("fan{n:06}"), router_ids[n % routers].clone()))
        .collect();
    let (api2, package2) = (api.clone(), package.clone());
    let customers = run_concurrently(args.concurrency, specs, move |(name, router)| {
        let (api, package) = (api2.clone(), package2.clone());
        async move {
            api.customer(&name, &format!("Init-{name}-pw"), &package, &router)
                .await
        }
    })
    .await?;
    println!(
        "setup: {total_customers} customers created in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let running = start_all(agents, &counters);
    wait_for(
        &counters.snapshots,
        routers as u64,
        args.timeout(),
        "snapshots",
    )
    .await?;
    println!(
        "{routers} agents connected and acked their snapshots ({per_router} customers each) in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let total = (total_customers * args.fanout_updates) as u64;
    println!(
        "| phase | changes | made at central in s (changes/s) | all delivered and acked after s | delivered and acked changes/s | lag after the last API answer ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|");

    // Live: agents connected while the changes are made.
    let before = Counters::get(&counters.changes);
    let started = Instant::now();
    make_changes(&api, &customers, args, "live").await?;
    let made = started.elapsed();
    wait_for(
        &counters.changes,
        before + total,
        args.timeout(),
        "live changes",
    )
    .await?;
    let done = started.elapsed();
    println!(
        "| live | {total} | {:.2} ({:.0}) | {:.2} | {:.0} | {:.0} |",
        made.as_secs_f64(),
        total as f64 / made.as_secs_f64(),
        done.as_secs_f64(),
        total as f64 / done.as_secs_f64(),
        ms(done - made)
    );
    all_acked(&api, args.timeout()).await?;

    // Reconnect: changes made while every agent is offline, then all reconnect at once.
    let agents = stop_all(running).await?;
    wait_offline(&api, args.timeout()).await?;
    let started = Instant::now();
    make_changes(&api, &customers, args, "reconnect").await?;
    let made = started.elapsed();
    let before = Counters::get(&counters.changes);
    let started = Instant::now();
    let running = start_all(agents, &counters);
    wait_for(
        &counters.changes,
        before + total,
        args.timeout(),
        "reconnect changes",
    )
    .await?;
    let done = started.elapsed();
    println!(
        "| reconnect (all {routers} at once) | {total} | {:.2} ({:.0}) | {:.2} | {:.0} | |",
        made.as_secs_f64(),
        total as f64 / made.as_secs_f64(),
        done.as_secs_f64(),
        total as f64 / done.as_secs_f64(),
    );
    all_acked(&api, args.timeout()).await?;
    println!(
        "batches applied {}, duplicate batches {}, gaps {} (load {})",
        Counters::get(&counters.batches),
        Counters::get(&counters.duplicate_batches),
        Counters::get(&counters.gaps),
        crate::system::load_average()
    );
    stop_all(running).await?;
    drop(central);
    Ok(())
}

/// Redeems an enrollment token as `easyisp-agent enroll` does.
async fn enroll(api: &Api, router: &str) -> Result<FakeAgent> {
    let token = api.enroll_token(router).await?;
    let reply = api
        .call(
            Method::POST,
            "/api/agents/enroll",
            Some(json!({ "token": token })),
            200,
        )
        .await?;
    let mqtt = &reply["mqtt"];
    let endpoint = Endpoint {
        url: text(mqtt, "url")?.parse()?,
        username: text(mqtt, "username")?,
        password: Secret::new(text(mqtt, "password")?),
        ca_pem: reply["caCert"].as_str().map(str::to_owned),
    };
    Ok(FakeAgent::new(Uuid::parse_str(router)?, endpoint))
}

/// `fanout_updates` rounds of a password change for every customer; worker w owns the
/// customers n ≡ w (mod concurrency), so one customer's changes never overlap.
async fn make_changes(api: &Api, customers: &[String], args: &Args, phase: &str) -> Result<()> {
    let workers = args.concurrency.min(customers.len());
    let jobs: Vec<Vec<(String, usize)>> = (0..workers)
        .map(|w| {
            (w..customers.len())
                .step_by(workers)
                .map(|n| (customers[n].clone(), n))
                .collect()
        })
        .collect();
    let (api, updates, phase) = (api.clone(), args.fanout_updates, phase.to_string());
    run_concurrently(workers, jobs, move |owned| {
        let (api, phase) = (api.clone(), phase.clone());
        async move {
            for round in 0..updates {
                for (id, n) in &owned {
                    api.set_password(id, &format!("Fan-{phase}-{round}-{n:06}"))
                        .await?;
                }
            }
            Ok(())
        }
    })
    .await?;
    Ok(())
}

async fn wait_for(counter: &AtomicU64, target: u64, timeout: Duration, what: &str) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while counter.load(Ordering::Relaxed) < target {
        if Instant::now() > deadline {
            bail!(
                "{what}: {} of {target} within {timeout:?}",
                counter.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Central shows no pending change for any router.
async fn all_acked(api: &Api, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let routers = api.routers().await?;
        let pending: u64 = routers.iter().filter_map(pending_changes).sum();
        if pending == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("central still shows {pending} pending changes after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Central has seen every agent's offline status.
async fn wait_offline(api: &Api, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let routers = api.routers().await?;
        if routers.iter().all(|r| r["status"] == "offline") {
            return Ok(());
        }
        if Instant::now() > deadline {
            let online = routers.iter().filter(|r| r["status"] != "offline").count();
            return Err(anyhow::anyhow!("{online} routers not offline"))
                .context("central did not see every agent's offline status");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
