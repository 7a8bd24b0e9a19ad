//! The customer list: filters, keyset pagination (`cursor` = the last row's rowid, newest
//! first) alongside `page`, and substring search through the FTS5 trigram index.
//!
//! Search shape (perf-baselines.md 2q): one pass takes candidates newest-first from the FTS
//! index with the `LIMIT` inside the FTS query and checks each by primary key for tenant,
//! deletion and the other filters, in one statement. The pass looks at no more candidates
//! than the page and the capped total need (`SEARCH_TOTAL_CAP` + 1), so for a single-tenant
//! search one pass gives both the page and the total; if the bound is hit before the page
//! fills, the page is returned short with a `nextCursor` to continue from. Terms shorter than
//! 3 characters (below the trigram size) fall back to `LIKE` over the tenant's rows.
//!
//! Totals: without search they are exact, from the maintained counts (see `counts`). With
//! search they are counted up to [`SEARCH_TOTAL_CAP`]; past it `total` is the cap and
//! `totalExact` is false.

use super::counts;
use super::customer_row::{CustomerRow, SELECT};
use super::{Result, Storage};
use chrono::{DateTime, Utc};
use easyisp_protocol::customer::CustomerSummary;
use easyisp_protocol::{ConnectionType, CustomerStatus};
use rusqlite::{Connection, ToSql};
use uuid::Uuid;

/// Search totals are exact up to this many matches.
pub const SEARCH_TOTAL_CAP: u64 = 1000;

#[derive(Debug, Clone, Default)]
pub struct CustomerFilter {
    pub search: Option<String>,
    pub status: Option<CustomerStatus>,
    pub connection_type: Option<ConnectionType>,
    pub package_id: Option<Uuid>,
    /// Keyset cursor: rows strictly older than this rowid.
    pub cursor: Option<i64>,
    /// 1-based page, used when there is no cursor (OFFSET: fine for the first pages only).
    pub page: u32,
    pub page_size: u32,
}

#[derive(Debug, Clone)]
pub struct CustomerPage {
    pub customers: Vec<CustomerSummary>,
    pub total: u64,
    pub total_exact: bool,
    pub next_cursor: Option<String>,
}

/// SQL conditions (after the tenant) for the non-search filters, with their binds.
fn conditions(filter: &CustomerFilter, now_ms: i64, binds: &mut Vec<Box<dyn ToSql>>) -> String {
    let mut sql = String::new();
    let mut push = |sql: &mut String, cond: &str, value: Box<dyn ToSql>| {
        binds.push(value);
        sql.push_str(&cond.replace('?', &format!("?{}", binds.len())));
    };
    match filter.status {
        None => {}
        Some(CustomerStatus::Disabled) => sql.push_str(" AND c.state = 2"),
        Some(CustomerStatus::Suspended) => sql.push_str(" AND c.state = 1"),
        Some(CustomerStatus::Expired) => push(
            &mut sql,
            " AND c.state = 0 AND c.expires_at <= ?",
            Box::new(now_ms),
        ),
        Some(CustomerStatus::Active) => push(
            &mut sql,
            " AND c.state = 0 AND (c.expires_at IS NULL OR c.expires_at > ?)",
            Box::new(now_ms),
        ),
    }
    if let Some(ct) = filter.connection_type {
        push(
            &mut sql,
            " AND c.connection_type = ?",
            Box::new(ct.as_str()),
        );
    }
    if let Some(pkg) = filter.package_id {
        push(&mut sql, " AND c.package_id = ?", Box::new(pkg.to_string()));
    }
    sql
}

fn refs(binds: &[Box<dyn ToSql>]) -> Vec<&dyn ToSql> {
    binds.iter().map(|b| b.as_ref()).collect()
}

fn list_plain(
    conn: &Connection,
    tenant: Uuid,
    filter: &CustomerFilter,
    now: DateTime<Utc>,
) -> Result<(Vec<CustomerRow>, bool)> {
    let mut binds: Vec<Box<dyn ToSql>> = vec![Box::new(tenant.to_string())];
    let mut sql = String::from(SELECT);
    if filter.status.is_some() && filter.connection_type.is_none() && filter.package_id.is_none() {
        // Walk the state index in rowid order; the planner would otherwise sort all expired rows.
        sql = sql.replacen(
            "FROM customers c",
            "FROM customers c INDEXED BY customers_state",
            1,
        );
    }
    sql.push_str(" WHERE c.tenant_id = ?1 AND c.deleted_at IS NULL");
    sql.push_str(&conditions(filter, now.timestamp_millis(), &mut binds));
    if let Some(cursor) = filter.cursor {
        binds.push(Box::new(cursor));
        sql.push_str(&format!(" AND c.rowid < ?{}", binds.len()));
    }
    binds.push(Box::new(i64::from(filter.page_size) + 1));
    sql.push_str(&format!(" ORDER BY c.rowid DESC LIMIT ?{}", binds.len()));
    if filter.cursor.is_none() && filter.page > 1 {
        binds.push(Box::new(
            i64::from(filter.page - 1) * i64::from(filter.page_size),
        ));
        sql.push_str(&format!(" OFFSET ?{}", binds.len()));
    }
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(refs(&binds).as_slice())?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(CustomerRow::read(row)?);
    }
    let more = out.len() > filter.page_size as usize;
    out.truncate(filter.page_size as usize);
    Ok((out, more))
}

fn fts_phrase(term: &str) -> String {
    format!("\"{}\"", term.replace('"', "\"\""))
}

fn like_pattern(term: &str) -> String {
    let escaped = term
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// The matches of one search pass: candidates newest-first below the cursor, at most `limit`.
struct Matches {
    /// Rowids of the candidates that are the tenant's live customers passing the filters.
    rowids: Vec<i64>,
    /// Candidates looked at (matching or not).
    examined: usize,
    /// The oldest candidate looked at: where a pass cut short by `limit` continues.
    last: Option<i64>,
}

/// One pass over the search index: up to `limit` candidates newest-first below `below`, from
/// the FTS5 trigram index with the `LIMIT` inside its query (perf-baselines 2q), each checked
/// by primary key for tenant, deletion and the other filters in the same statement. Terms
/// shorter than a trigram scan the tenant's rows with `LIKE` instead.
fn matches(
    conn: &Connection,
    tenant: Uuid,
    term: &str,
    filter: &CustomerFilter,
    now: DateTime<Utc>,
    below: i64,
    limit: usize,
) -> Result<Matches> {
    let mut binds: Vec<Box<dyn ToSql>> = vec![
        Box::new(tenant.to_string()),
        Box::new(below),
        Box::new(limit as i64),
    ];
    let candidates = if term.chars().count() >= 3 {
        binds.push(Box::new(fts_phrase(term)));
        "SELECT rowid FROM customers_fts WHERE customers_fts MATCH ?4 AND rowid < ?2
         ORDER BY rowid DESC LIMIT ?3"
    } else {
        binds.push(Box::new(like_pattern(term)));
        "SELECT c.rowid FROM customers c WHERE c.tenant_id = ?1 AND c.deleted_at IS NULL AND c.rowid < ?2
           AND (c.username LIKE ?4 ESCAPE '\\' OR c.name LIKE ?4 ESCAPE '\\' OR c.phone LIKE ?4 ESCAPE '\\')
         ORDER BY c.rowid DESC LIMIT ?3"
    };
    let cond = conditions(filter, now.timestamp_millis(), &mut binds);
    let sql = format!(
        "SELECT m.rowid, c.rowid IS NOT NULL AND c.tenant_id = ?1 AND c.deleted_at IS NULL{cond}
         FROM ({candidates}) m LEFT JOIN customers c ON c.rowid = m.rowid
         ORDER BY m.rowid DESC"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(refs(&binds).as_slice())?;
    let mut found = Matches {
        rowids: Vec::new(),
        examined: 0,
        last: None,
    };
    while let Some(row) = rows.next()? {
        let rowid: i64 = row.get(0)?;
        found.examined += 1;
        found.last = Some(rowid);
        if row.get::<_, Option<bool>>(1)?.unwrap_or(false) {
            found.rowids.push(rowid);
        }
    }
    Ok(found)
}

/// One page of search results.
struct SearchPage {
    rows: Vec<CustomerRow>,
    /// More matches may follow.
    more: bool,
    /// Where to continue when the work bound cut the page short.
    resume: Option<i64>,
    /// The total when the pass itself shows it: exact when it saw every match, or more than
    /// the cap.
    known_total: Option<u64>,
}

/// Searches newest-first from the cursor in one pass over the index. The pass looks at no
/// more candidates than the page and the capped total need; when that bound is hit before
/// the page fills, the page is returned short with a cursor to continue from.
fn list_search(
    conn: &Connection,
    tenant: Uuid,
    term: &str,
    filter: &CustomerFilter,
    now: DateTime<Utc>,
) -> Result<SearchPage> {
    let skip = if filter.cursor.is_none() {
        (filter.page.max(1) - 1) as usize * filter.page_size as usize
    } else {
        0
    };
    let want = skip + filter.page_size as usize + 1;
    let limit = want.max(SEARCH_TOTAL_CAP as usize + 1);
    let below = filter.cursor.unwrap_or(i64::MAX);
    let found = matches(conn, tenant, term, filter, now, below, limit)?;
    let exhausted = found.examined < limit;
    let known_total = match filter.cursor {
        // Starting from the newest and running out of candidates means every match was seen.
        None if exhausted => Some(found.rowids.len() as u64),
        None if found.rowids.len() as u64 > SEARCH_TOTAL_CAP => Some(found.rowids.len() as u64),
        _ => None,
    };
    let mut load = conn.prepare_cached(&format!("{SELECT} WHERE c.rowid = ?1"))?;
    let mut rows = Vec::new();
    for rowid in found
        .rowids
        .iter()
        .skip(skip)
        .take(filter.page_size as usize)
    {
        let mut result = load.query([rowid])?;
        if let Some(row) = result.next()? {
            rows.push(CustomerRow::read(row)?);
        }
    }
    let page_full = found.rowids.len() >= want;
    if !page_full && !exhausted {
        return Ok(SearchPage {
            rows,
            more: true,
            resume: found.last,
            known_total,
        });
    }
    Ok(SearchPage {
        rows,
        more: page_full,
        resume: None,
        known_total,
    })
}

fn search_total(
    conn: &Connection,
    tenant: Uuid,
    term: &str,
    filter: &CustomerFilter,
    now: DateTime<Utc>,
) -> Result<u64> {
    let mut binds: Vec<Box<dyn ToSql>> = vec![Box::new(tenant.to_string())];
    let source = if term.chars().count() >= 3 {
        binds.push(Box::new(fts_phrase(term)));
        "customers c JOIN customers_fts f ON f.rowid = c.rowid
         WHERE customers_fts MATCH ?2 AND c.tenant_id = ?1 AND c.deleted_at IS NULL"
    } else {
        binds.push(Box::new(like_pattern(term)));
        "customers c WHERE c.tenant_id = ?1 AND c.deleted_at IS NULL
           AND (c.username LIKE ?2 ESCAPE '\\' OR c.name LIKE ?2 ESCAPE '\\' OR c.phone LIKE ?2 ESCAPE '\\')"
    };
    let cond = conditions(filter, now.timestamp_millis(), &mut binds);
    let sql = format!(
        "SELECT COUNT(*) FROM (SELECT c.rowid FROM {source}{cond} LIMIT {})",
        SEARCH_TOTAL_CAP + 1
    );
    let n: i64 = conn
        .prepare_cached(&sql)?
        .query_row(refs(&binds).as_slice(), |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

impl Storage {
    pub async fn list_customers(
        &self,
        tenant: Uuid,
        filter: CustomerFilter,
        now: DateTime<Utc>,
    ) -> Result<CustomerPage> {
        self.read(move |conn| {
            let term = filter
                .search
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            let (rows, more, resume, total, exact) = match &term {
                None => {
                    let (rows, more) = list_plain(conn, tenant, &filter, now)?;
                    let total = counts::total(
                        conn,
                        tenant,
                        filter.status,
                        filter.connection_type,
                        filter.package_id,
                        now,
                    )?;
                    (rows, more, None, total, true)
                }
                Some(term) => {
                    let SearchPage {
                        rows,
                        more,
                        resume,
                        known_total,
                    } = list_search(conn, tenant, term, &filter, now)?;
                    let n = match known_total {
                        Some(n) => n,
                        None => search_total(conn, tenant, term, &filter, now)?,
                    };
                    (
                        rows,
                        more,
                        resume,
                        n.min(SEARCH_TOTAL_CAP),
                        n <= SEARCH_TOTAL_CAP,
                    )
                }
            };
            let next_cursor = match resume {
                Some(rowid) => Some(rowid.to_string()),
                None if more => rows.last().map(|r| r.rowid.to_string()),
                None => None,
            };
            Ok(CustomerPage {
                customers: rows.iter().map(|r| r.summary(now)).collect(),
                total,
                total_exact: exact,
                next_cursor,
            })
        })
        .await
    }
}
