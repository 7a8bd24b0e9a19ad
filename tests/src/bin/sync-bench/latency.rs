//! Scenario 1: one change at a time at central's API (a customer's password, customers
//! round-robin) until the router has it. Three moments per change, from just before the
//! request is sent:
//!
//! - `api`: central answered (the change, its audit row and its outbox row are committed);
//! - `reconcile started`: the agent's first request to the router after the change (the tap):
//!   before it, central, the broker and the agent's apply; after it, the agent's full
//!   reconcile pass (it reads every menu of the router, plans, writes);
//! - `router write`: the agent's write carrying the new password reached the router's REST
//!   port (the tap; exact);
//! - `visible`: the router's state shows it, polled through the simulator's control API every
//!   1 ms after the tap fired (a cross-check of the tap, coarser by the poll).

use crate::system::Pop;
use crate::{Args, ms, percentile};
use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};

pub async fn run(pop: &Pop, args: &Args) -> Result<()> {
    println!(
        "\n== latency: {} password changes at central, one at a time, over {} customers (load {})",
        args.changes,
        pop.customers.len(),
        crate::system::load_average()
    );
    let (mut api_times, mut first_times, mut write_times, mut visible_times) =
        (vec![], vec![], vec![], vec![]);
    let run_started = Instant::now();
    for i in 0..args.changes {
        let (id, name) = &pop.customers[i % pop.customers.len()];
        let password = format!("Lat-{i:06}-{name}");
        let seen = pop.tap.watch(&password);
        let started = Instant::now();
        pop.central.api.set_password(id, &password).await?;
        api_times.push(started.elapsed());
        let at = tokio::time::timeout(args.timeout(), seen)
            .await
            .with_context(|| {
                format!(
                    "change {i} did not reach the router within {:?}\n{}",
                    args.timeout(),
                    pop.agent_log_tail()
                )
            })?
            .context("the tap stopped")?;
        first_times.push(at.first_request.saturating_duration_since(started));
        write_times.push(at.needle.duration_since(started));
        visible_times.push(visible(pop, name, &password, started, args.timeout()).await?);
    }
    let elapsed = run_started.elapsed();
    println!(
        "{} changes in {:.1} s ({:.0} changes/s end to end, sequential)",
        args.changes,
        elapsed.as_secs_f64(),
        args.changes as f64 / elapsed.as_secs_f64()
    );
    println!("| measured from the API request | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (what, times) in [
        ("API answered (committed at central)", &mut api_times),
        (
            "agent's first router request (reconcile started)",
            &mut first_times,
        ),
        ("write reached the router (tap)", &mut write_times),
        (
            "visible in the router's state (1 ms poll)",
            &mut visible_times,
        ),
    ] {
        times.sort();
        println!(
            "| {what} | {:.2} | {:.2} | {:.2} | {:.2} |",
            ms(percentile(times, 50.0)),
            ms(percentile(times, 90.0)),
            ms(percentile(times, 99.0)),
            ms(percentile(times, 100.0))
        );
    }
    println!("target: p50 < 20 ms, p99 < 100 ms (write reached the router)");
    Ok(())
}

/// Polls the router's secret every 1 ms until it has `password`; the time since `started`.
async fn visible(
    pop: &Pop,
    name: &str,
    password: &str,
    started: Instant,
    timeout: Duration,
) -> Result<Duration> {
    loop {
        let row = pop.sim.control.item("ppp/secret", name).await?;
        if row["password"].as_str() == Some(password) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!("the router does not show the new password of {name} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
