//! central-bench: seeds N customers (default 1,000,000) in one tenant through the storage
//! import path (`Storage::prepare_customer_import` / `commit_customer_import`), serves the API in-process, and prints p50/p99 latencies over real HTTP for the
//! list, a deep keyset page, searches, each filter, detail and create. Not a test.
//!
//! `cargo run --release -p easyisp-central --bin central-bench -- --customers 1000000`

use anyhow::Context;
use clap::Parser;
use easyisp_central::api::ApiConfig;
use easyisp_central::server::{ServeConfig, serve};
use easyisp_central::storage::{NewCustomer, PackageInput, Storage, StorageOptions, system_actor};
use easyisp_protocol::money::Money;
use easyisp_protocol::package::Speed;
use easyisp_protocol::{ConnectionType, Secret};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
struct Args {
    /// Customers to seed in one tenant.
    #[arg(long, default_value_t = 1_000_000)]
    customers: usize,
    /// Requests per read measurement.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Customers created over HTTP in the create measurement.
    #[arg(long, default_value_t = 10_000)]
    creates: usize,
    /// Customers per import batch (one transaction each) while seeding. Larger batches
    /// rewrite the pages of the expiry index fewer times (its inserts land all over it).
    #[arg(long, default_value_t = 20_000)]
    batch: usize,
    /// Use `synchronous=NORMAL` instead of FULL (faster; a power cut may lose the last commits).
    #[arg(long)]
    normal: bool,
    /// Data directory (default: a fresh temporary one).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
}

const FIRST: [&str; 20] = [
    "John", "Mary", "Peter", "Grace", "James", "Faith", "David", "Mercy", "Joseph", "Ann",
    "Daniel", "Joy", "Samuel", "Esther", "Brian", "Ruth", "Kevin", "Lucy", "Dennis", "Alice",
];
const SYLLABLES: [&str; 24] = [
    "ka", "mo", "wa", "ni", "ru", "to", "ze", "vu", "li", "ba", "ngo", "chi", "so", "ke", "ma",
    "ri", "zo", "no", "ta", "ju", "we", "si", "ge", "ho",
];

/// A small deterministic generator (xorshift) so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn last_name(rng: &mut Rng) -> String {
    let mut name = String::new();
    for _ in 0..3 {
        name.push_str(SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize]);
    }
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn customer(i: usize, rng: &mut Rng, packages: &[uuid::Uuid]) -> NewCustomer {
    let now = chrono::Utc::now();
    let days = rng.below(360) as i64 - 180;
    NewCustomer {
        username: format!("u{i:07}"),
        password: Secret::new(format!("pw-{:012}", rng.next() % 1_000_000_000_000)),
        name: format!(
            "{} {}",
            FIRST[rng.below(FIRST.len() as u64) as usize],
            last_name(rng)
        ),
        email: None,
        phone: Some(format!("+2547{:08}", rng.below(100_000_000))),
        connection_type: ConnectionType::ALL[rng.below(4) as usize],
        package_id: Some(packages[rng.below(packages.len() as u64) as usize]),
        router_id: None,
        expires_at: Some(now + chrono::Duration::days(days)),
        location: Some("Nairobi".into()),
        latitude: None,
        longitude: None,
        apartment_number: None,
        house_number: None,
        disabled: rng.below(100) == 0,
        auto_renew: false,
        static_ip: None,
        mac_bindings: Vec::new(),
        tags: Vec::new(),
    }
}

struct Stats {
    name: String,
    latencies: Vec<Duration>,
    elapsed: Duration,
    errors: usize,
}

impl Stats {
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.latencies.clone();
        v.sort();
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        v[i].as_secs_f64() * 1000.0
    }
    fn row(&self) -> String {
        format!(
            "| {} | {} | {:.2} | {:.2} | {:.0} | {} |",
            self.name,
            self.latencies.len(),
            self.pct(0.5),
            self.pct(0.99),
            self.latencies.len() as f64 / self.elapsed.as_secs_f64(),
            self.errors
        )
    }
}

/// Runs `n` requests from `concurrency` workers; `make(i)` builds request i.
async fn measure<F>(name: &str, n: usize, concurrency: usize, make: F) -> Stats
where
    F: Fn(usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (make, next) = (make.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                match make(i).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                    }
                    _ => errors += 1,
                }
                lat.push(t.elapsed());
            }
            (lat, errors)
        }));
    }
    let mut stats = Stats {
        name: name.into(),
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
        errors: 0,
    };
    for w in workers {
        if let Ok((lat, errors)) = w.await {
            stats.latencies.extend(lat);
            stats.errors += errors;
        }
    }
    stats.elapsed = started.elapsed();
    println!("{}", stats.row());
    stats
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let temp = tempfile_dir()?;
    let dir = args.data_dir.clone().unwrap_or_else(|| temp.clone());
    let options = StorageOptions {
        synchronous_full: !args.normal,
        ..StorageOptions::default()
    };
    let storage = Storage::open(&dir, options.clone())?;
    let hash = easyisp_central::secrets::hash_password(&Secret::new("bench-admin-pass".into()))?;
    let tenant = storage
        .create_tenant(
            format!("bench-{}", uuid::Uuid::now_v7()),
            Some("254".into()),
            "admin".into(),
            hash,
        )
        .await?;
    let mut packages = Vec::new();
    for i in 0..10u32 {
        let input = PackageInput {
            name: format!("{} Mbps", (i + 1) * 5),
            price: Money::from_minor(i64::from(i + 1) * 100_000),
            download_speed: Speed::from_mbps((i + 1) * 5),
            upload_speed: Speed::from_mbps((i + 1) * 5),
            validity_days: 30,
            data_limit: None,
            session_time_limit: None,
            burst: None,
        };
        packages.push(
            storage
                .create_package(tenant, system_actor("bench"), input)
                .await?
                .id,
        );
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    let cpu_at_start = cpu_seconds();
    let batch = args.batch.max(1);
    let mut seeded = 0;
    // The import path: batch k+1 is prepared (ids, encrypted passwords, audit JSON, on all
    // cores) while the writer commits batch k.
    let mut prepared: Option<easyisp_central::storage::PreparedImport> = None;
    while seeded < args.customers || prepared.is_some() {
        let inputs: Vec<NewCustomer> = (seeded..args.customers.min(seeded + batch))
            .map(|i| customer(i, &mut rng, &packages))
            .collect();
        seeded += inputs.len();
        let prepare = async {
            if inputs.is_empty() {
                return Ok(None);
            }
            storage
                .prepare_customer_import(tenant, system_actor("bench seed"), inputs)
                .await
                .map(Some)
        };
        let commit = async {
            match prepared.take() {
                Some(batch) => storage.commit_customer_import(batch).await.map(|_| ()),
                None => Ok(()),
            }
        };
        let (next, committed) = tokio::join!(prepare, commit);
        committed?;
        prepared = next?;
    }
    let imported = started.elapsed();
    storage.optimize_search_index().await?;
    let seed_time = started.elapsed();
    let seed_cpu = cpu_seconds() - cpu_at_start;
    println!(
        "seeded {} customers in {:.1} s ({:.0} rows/s, with audit, counts and FTS; \
         {:.1} s import + {:.1} s search index merge; {:.1} s CPU, load average {})",
        args.customers,
        seed_time.as_secs_f64(),
        args.customers as f64 / seed_time.as_secs_f64(),
        imported.as_secs_f64(),
        (seed_time - imported).as_secs_f64(),
        seed_cpu,
        load_average()
    );
    let ids = storage.sample_customer_ids(tenant, 10_000).await?;
    storage.shutdown();
    drop(storage);

    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    drop(listener);
    let cancel = CancellationToken::new();
    let config = ServeConfig {
        data_dir: dir.clone(),
        http: addr,
        // The bench measures the HTTP API; the managed broker only has to start.
        broker: {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            easyisp_central::broker::BrokerMode::Managed {
                listen,
                advertise: easyisp_central::broker::default_advertise(listen),
            }
        },
        api: ApiConfig {
            customer_create_per_minute: 0,
            ..ApiConfig::default()
        },
        storage: options,
        retention_days: 90,
        retention_interval: Duration::from_secs(3600),
    };
    let server = tokio::spawn(serve(config, cancel.clone()));
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("{base}/api/health"))
        .send()
        .await
        .is_err()
    {
        anyhow::ensure!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let login: Value = client
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"tenant": tenant, "username": "admin", "password": "bench-admin-pass"}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().context("login token")?.to_string();
    let max_rowid = args.customers as u64 + 1;

    println!(
        "\n| request | n | p50 ms | p99 ms | req/s | errors |\n|---|---:|---:|---:|---:|---:|"
    );
    let (n, c) = (args.requests, args.concurrency);
    let get = |path: String| {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        move |_: usize| client.get(format!("{base}{path}")).bearer_auth(&token)
    };
    measure("list page 1", n, c, get("/api/customers".into())).await;
    {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        let rng = std::sync::Mutex::new(Rng(42));
        measure("deep keyset page (cursor 10-90 % deep)", n, c, move |_| {
            let r = rng
                .lock()
                .map(|mut r| r.below(max_rowid * 8 / 10))
                .unwrap_or(0)
                + max_rowid / 10;
            client
                .get(format!("{base}/api/customers?cursor={r}"))
                .bearer_auth(&token)
        })
        .await;
    }
    for (label, terms) in [
        (
            "search name substring (3-letter)",
            vec!["kam", "wan", "zot", "rit", "nga"],
        ),
        (
            "search name substring (rare, full)",
            vec!["Kamowa", "Vulito", "Ngochiso", "Zevuba"],
        ),
        (
            "search phone digits",
            vec!["2345678", "7001234", "9988776", "5550123"],
        ),
        ("search no match", vec!["qqxz", "zzqq"]),
    ] {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        measure(label, n, c, move |i| {
            client
                .get(format!(
                    "{base}/api/customers?search={}",
                    terms[i % terms.len()]
                ))
                .bearer_auth(&token)
        })
        .await;
    }
    for filter in [
        "status=active",
        "status=expired",
        "status=suspended",
        "status=disabled",
        "connectionType=HOTSPOT",
    ] {
        measure(
            &format!("filter {filter}"),
            n,
            c,
            get(format!("/api/customers?{filter}")),
        )
        .await;
    }
    measure(
        "filter packageId",
        n,
        c,
        get(format!("/api/customers?packageId={}", packages[3])),
    )
    .await;
    {
        let (client, base, token, ids) =
            (client.clone(), base.clone(), token.clone(), Arc::new(ids));
        measure("customer detail", n, c, move |i| {
            client
                .get(format!("{base}/api/customers/{}", ids[i % ids.len()]))
                .bearer_auth(&token)
        })
        .await;
    }
    {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        let cpu_before = cpu_seconds();
        let stats = measure("create customer (POST)", args.creates, c.max(16), move |i| {
            client
                .post(format!("{base}/api/customers"))
                .bearer_auth(&token)
                .json(&json!({"username": format!("new{i:07}"), "password": "Zebra-Lamp-42", "name": format!("New Customer {i}"),
                    "phone": format!("+2547{:08}", i), "packageId": packages[i % packages.len()]}))
        })
        .await;
        println!(
            "\ncreates: {:.0}/s over HTTP ({:.0} µs CPU per create, client included; load average {})",
            stats.latencies.len() as f64 / stats.elapsed.as_secs_f64(),
            (cpu_seconds() - cpu_before) * 1e6 / args.creates.max(1) as f64,
            load_average()
        );
    }
    cancel.cancel();
    let _ = server.await;
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    Ok(())
}

/// CPU time (user + system) this process has used so far, in seconds: steadier than wall
/// time on a machine shared with other work.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The 1-minute load average, as the kernel reports it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("central-bench-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
