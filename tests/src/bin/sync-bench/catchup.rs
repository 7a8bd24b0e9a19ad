//! Scenario 2: the agent is killed (-9), central takes `customers × updates` password changes
//! (`--concurrency` requests in flight), then the agent starts again. Measured: how fast
//! central took the changes, and the time from the agent's start until the router holds
//! every customer's final password and central's outbox for the router is acked.

use crate::Args;
use crate::system::{Pop, run_concurrently};
use anyhow::Result;
use std::time::Instant;

fn password(round: usize, customer: usize) -> String {
    format!("Up-{round:03}-{customer:05}-x")
}

pub async fn run(pop: &mut Pop, args: &Args) -> Result<()> {
    let customers = pop.customers.len();
    let total = customers * args.updates;
    println!(
        "\n== catch-up: agent killed, {total} changes at central ({customers} customers × {} updates, {} in flight), agent restarted (load {})",
        args.updates,
        args.concurrency,
        crate::system::load_average()
    );
    pop.kill_agent().await?;

    // Worker w owns the customers c ≡ w (mod concurrency) and updates them round by round,
    // so no two updates of one customer are ever in flight together and the last round's
    // password is every customer's final state.
    let started = Instant::now();
    let workers = args.concurrency.min(customers);
    let jobs: Vec<Vec<(String, usize)>> = (0..workers)
        .map(|w| {
            (w..customers)
                .step_by(workers)
                .map(|c| (pop.customers[c].0.clone(), c))
                .collect()
        })
        .collect();
    let api = pop.central.api.clone();
    let updates = args.updates;
    run_concurrently(workers, jobs, move |owned| {
        let api = api.clone();
        async move {
            for round in 0..updates {
                for (id, c) in &owned {
                    api.set_password(id, &password(round, *c)).await?;
                }
            }
            Ok(())
        }
    })
    .await?;
    let made = started.elapsed();
    let view = pop.central.api.router_view(&pop.router).await?;
    println!(
        "{total} changes made at central in {:.1} s: {:.0} changes/s; outbox for the router: {} pending changes (load {})",
        made.as_secs_f64(),
        total as f64 / made.as_secs_f64(),
        crate::api::pending_changes(&view).unwrap_or(0),
        crate::system::load_average()
    );

    let restarted = Instant::now();
    pop.start_agent()?;
    let last = updates.saturating_sub(1);
    let (router_at, acked_at) = pop
        .wait_converged(args.timeout(), |c| (updates > 0).then(|| password(last, c)))
        .await?;
    println!(
        "agent restarted: router holds every customer's final state after {:.2} s, outbox acked after {:.2} s (target < 30 s); {:.0} changes/s caught up",
        router_at.as_secs_f64(),
        acked_at.as_secs_f64(),
        total as f64 / router_at.max(acked_at).as_secs_f64()
    );
    println!(
        "(measured from spawning the agent, polled every 50 ms; total {:.2} s)",
        restarted.elapsed().as_secs_f64()
    );
    Ok(())
}
