//! Maintained counts behind the customer list's `total`, updated in the same transaction as
//! every customer change, so no request runs `COUNT(*)` over a million rows.
//!
//! - `customer_counts`: live customers per (tenant, state, connection type, package). Any
//!   combination of those filters sums a few hundred rows at most.
//! - `customer_expiry_counts`: state-0 customers with an expiry, per UTC day of `expires_at`.
//!   Expiry is derived from time, so the split between `active` and `expired` is computed at
//!   request time: expired = the buckets of days before today (all past) + an index range
//!   count over today's bucket up to `now` (at most one day of expiries). Exact at any
//!   instant, and no job has to run when a customer expires.

use super::customer_row::CustomerRow;
use super::{Result, ms};
use chrono::{DateTime, Utc};
use easyisp_protocol::{ConnectionType, CustomerStatus};
use rusqlite::{Connection, ToSql, params};
use std::collections::HashMap;
use uuid::Uuid;

const DAY_MS: i64 = 86_400_000;

/// Where one live customer is counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CountKey {
    state: i64,
    connection_type: &'static str,
    package: Option<Uuid>,
    expiry_day: Option<i64>,
}

/// How `package_id` is stored in the counts tables ("" for none).
fn package_text(package: Option<Uuid>) -> String {
    package.map(|p| p.to_string()).unwrap_or_default()
}

pub fn key_of(row: &CustomerRow) -> Option<CountKey> {
    if row.deleted_at.is_some() {
        return None;
    }
    let state = row.state();
    Some(CountKey {
        state,
        connection_type: row.connection_type.as_str(),
        package: row.package_id,
        expiry_day: if state == 0 {
            row.expires_at.map(|at| ms(at).div_euclid(DAY_MS))
        } else {
            None
        },
    })
}

const UPSERT_COUNTS: &str =
    "INSERT INTO customer_counts (tenant_id, state, connection_type, package_id, n)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (tenant_id, state, connection_type, package_id) DO UPDATE SET n = n + excluded.n";
const UPSERT_EXPIRY: &str =
    "INSERT INTO customer_expiry_counts (tenant_id, day, connection_type, package_id, n)
     VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (tenant_id, day, connection_type, package_id) DO UPDATE SET n = n + excluded.n";
const UPSERT_DAYS: &str = "INSERT INTO customer_expiry_days (tenant_id, day, n) VALUES (?1, ?2, ?3)
     ON CONFLICT (tenant_id, day) DO UPDATE SET n = n + excluded.n";

fn add(conn: &Connection, tenant: &str, key: &CountKey, delta: i64) -> Result<()> {
    let package = package_text(key.package);
    conn.prepare_cached(UPSERT_COUNTS)?.execute(params![
        tenant,
        key.state,
        key.connection_type,
        package,
        delta
    ])?;
    if let Some(day) = key.expiry_day {
        conn.prepare_cached(UPSERT_EXPIRY)?.execute(params![
            tenant,
            day,
            key.connection_type,
            package,
            delta
        ])?;
        conn.prepare_cached(UPSERT_DAYS)?
            .execute(params![tenant, day, delta])?;
    }
    Ok(())
}

/// Moves a customer from its old count bucket to its new one (either may be absent).
pub fn apply(
    conn: &Connection,
    tenant: Uuid,
    old: Option<CountKey>,
    new: Option<CountKey>,
) -> Result<()> {
    if old == new {
        return Ok(());
    }
    let tenant = tenant.to_string();
    if let Some(old) = old {
        add(conn, &tenant, &old, -1)?;
    }
    if let Some(new) = new {
        add(conn, &tenant, &new, 1)?;
    }
    Ok(())
}

/// The count changes of a batch of new customers, summed per row of each counts table, so a
/// bulk import writes each touched row once. Expiries spread over a year make thousands of
/// distinct keys per batch (day x type x package), but only a few hundred rows of
/// `customer_counts` and `customer_expiry_days`: summing per [`CountKey`] instead wrote all
/// three tables once per key.
#[derive(Debug, Default)]
pub struct BatchDeltas {
    counts: HashMap<(i64, &'static str, Option<Uuid>), i64>,
    expiry: HashMap<(i64, &'static str, Option<Uuid>), i64>,
    days: HashMap<i64, i64>,
}

impl BatchDeltas {
    /// Counts one more customer in `key`'s buckets.
    pub fn add(&mut self, key: &CountKey) {
        let CountKey {
            state,
            connection_type,
            package,
            expiry_day,
        } = key;
        *self
            .counts
            .entry((*state, *connection_type, *package))
            .or_default() += 1;
        if let Some(day) = *expiry_day {
            *self
                .expiry
                .entry((day, *connection_type, *package))
                .or_default() += 1;
            *self.days.entry(day).or_default() += 1;
        }
    }

    /// Writes the sums, with the same statements [`apply`] uses.
    pub fn write(self, conn: &Connection, tenant: Uuid) -> Result<()> {
        let tenant = tenant.to_string();
        let mut counts = conn.prepare_cached(UPSERT_COUNTS)?;
        for ((state, connection_type, package), n) in self.counts {
            let package = package_text(package);
            counts.execute(params![tenant, state, connection_type, package, n])?;
        }
        let mut expiry = conn.prepare_cached(UPSERT_EXPIRY)?;
        for ((day, connection_type, package), n) in self.expiry {
            let package = package_text(package);
            expiry.execute(params![tenant, day, connection_type, package, n])?;
        }
        let mut days = conn.prepare_cached(UPSERT_DAYS)?;
        for (day, n) in self.days {
            days.execute(params![tenant, day, n])?;
        }
        Ok(())
    }
}

/// The exact number of live customers matching the filters at `now`.
pub fn total(
    conn: &Connection,
    tenant: Uuid,
    status: Option<CustomerStatus>,
    connection_type: Option<ConnectionType>,
    package: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<u64> {
    let tenant_text = tenant.to_string();
    let ct = connection_type.map(|c| c.as_str());
    let pkg = package.map(|p| p.to_string());
    let sum_states = |states: &[i64]| -> Result<i64> {
        let mut sql =
            String::from("SELECT COALESCE(SUM(n), 0) FROM customer_counts WHERE tenant_id = ?1");
        let list: Vec<String> = states.iter().map(i64::to_string).collect();
        sql.push_str(&format!(" AND state IN ({})", list.join(",")));
        filtered(conn, sql, &tenant_text, ct, pkg.as_deref(), &[])
    };
    let expired = || -> Result<i64> {
        let now_ms = ms(now);
        let today = now_ms.div_euclid(DAY_MS);
        let table = if ct.is_none() && pkg.is_none() {
            "customer_expiry_days"
        } else {
            "customer_expiry_counts"
        };
        let past = filtered(
            conn,
            format!("SELECT COALESCE(SUM(n), 0) FROM {table} WHERE tenant_id = ?1 AND day < ?2"),
            &tenant_text,
            ct,
            pkg.as_deref(),
            &[&today],
        )?;
        let today_start = today * DAY_MS;
        let recent = filtered(
            conn,
            "SELECT COUNT(*) FROM customers INDEXED BY customers_state_expiry
             WHERE tenant_id = ?1 AND deleted_at IS NULL AND state = 0
               AND expires_at >= ?2 AND expires_at <= ?3"
                .into(),
            &tenant_text,
            ct,
            pkg.as_deref(),
            &[&today_start, &now_ms],
        )?;
        Ok(past + recent)
    };
    let n = match status {
        None => sum_states(&[0, 1, 2])?,
        Some(CustomerStatus::Disabled) => sum_states(&[2])?,
        Some(CustomerStatus::Suspended) => sum_states(&[1])?,
        Some(CustomerStatus::Expired) => expired()?,
        Some(CustomerStatus::Active) => sum_states(&[0])? - expired()?,
    };
    Ok(n.max(0) as u64)
}

/// Runs a count query with the optional connection-type and package filters appended.
/// `extra` binds ?2, ?3, ...; the filters take the numbers after them.
fn filtered(
    conn: &Connection,
    mut sql: String,
    tenant: &str,
    ct: Option<&str>,
    pkg: Option<&str>,
    extra: &[&dyn ToSql],
) -> Result<i64> {
    let mut binds: Vec<&dyn ToSql> = vec![&tenant];
    binds.extend_from_slice(extra);
    if let Some(ct) = &ct {
        binds.push(ct);
        sql.push_str(&format!(" AND connection_type = ?{}", binds.len()));
    }
    let pkg_text;
    if let Some(pkg) = pkg {
        pkg_text = pkg.to_string();
        binds.push(&pkg_text);
        sql.push_str(&format!(" AND package_id = ?{}", binds.len()));
    }
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(binds.as_slice(), |r| r.get(0))?)
}
