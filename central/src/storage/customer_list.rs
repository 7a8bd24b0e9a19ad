//! The customer list: filters, keyset pagination (`cursor` = the last row's rowid, newest
//! first) alongside `page`, and substring search through the FTS5 trigram index.
//!
//! Search shape (perf-baselines.md 2q): one pass takes the term's matches newest-first from
//! the FTS index and checks each by primary key for tenant, deletion and the other filters,
//! in one statement. The pass looks at no more matches than the page and the capped total
//! need (`SEARCH_TOTAL_CAP` + 1), so for a single-tenant search one pass gives both the page
//! and the total; if the bound is hit before the page fills, the page is returned short with
//! a `nextCursor` to continue from. What the index is asked for is `customer_search`'s call:
//! the whole term as a phrase, with the `LIMIT` inside the FTS query, or only its rarest
//! trigrams, whose rows are checked for the term before they count. Terms shorter than 3
//! characters (below the trigram size) fall back to `LIKE` over the tenant's rows.
//!
//! Totals: without search they are exact, from the maintained counts (see `counts`). With
//! search they are counted up to [`SEARCH_TOTAL_CAP`]; past it `total` is the cap and
//! `totalExact` is false.

use super::counts;
use super::customer_row::{CustomerRow, SELECT};
use super::customer_search::{self, Fallback, Lookup};
use super::{Result, Storage};
use chrono::{DateTime, Utc};
use easyisp_protocol::customer::CustomerSummary;
use easyisp_protocol::{ConnectionType, CustomerStatus};
use rusqlite::types::Type;
use rusqlite::{Connection, Row, ToSql};
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

/// The result of one search pass over the term's matches newest-first below the cursor, at
/// most `limit` of them.
struct Matches {
    /// How many matches the pass looks at, at most.
    limit: usize,
    /// Rowids of the candidates that are the tenant's live customers passing the filters.
    rowids: Vec<i64>,
    /// Matches of the term looked at, whether or not they are the tenant's and pass the
    /// filters.
    examined: usize,
    /// The oldest match looked at: where a pass cut short by `limit` continues.
    last: Option<i64>,
}

/// One pass over the search index: up to `limit` matches of the term newest-first below
/// `below`, each checked by primary key for tenant, deletion and the other filters in the same
/// statement. A phrase lookup has the `LIMIT` inside its FTS query (perf-baselines 2q); a
/// trigram lookup reads candidates without one, checks each for the term and stops after
/// `limit` matches, so the pass sees the same rows the phrase would. Terms shorter than a
/// trigram scan the tenant's rows with `LIKE` instead.
fn matches(
    conn: &Connection,
    tenant: Uuid,
    lookup: &mut Lookup,
    filter: &CustomerFilter,
    now: DateTime<Utc>,
    below: i64,
    limit: usize,
) -> Result<Matches> {
    let mut found = Matches {
        limit,
        rowids: Vec::new(),
        examined: 0,
        last: None,
    };
    let mut below = below;
    // A trigram lookup that falls back goes on with the phrase below the last candidate it
    // read: every match above it was a candidate. The phrase never falls back.
    while let Some(resume) = read_matches(conn, tenant, lookup, filter, now, below, &mut found)? {
        lookup.fall_back();
        below = resume;
    }
    Ok(found)
}

/// Adds to `found` the matches of `lookup` below `below` until it has looked at its limit.
/// Returns where to go on with the phrase when a trigram lookup falls back ([`Fallback`]).
fn read_matches(
    conn: &Connection,
    tenant: Uuid,
    lookup: &mut Lookup,
    filter: &CustomerFilter,
    now: DateTime<Utc>,
    below: i64,
    found: &mut Matches,
) -> Result<Option<i64>> {
    let (candidates, query, mut checked) = match lookup {
        Lookup::Nothing => return Ok(None),
        Lookup::Like(pattern) => (
            "SELECT c.rowid FROM customers c WHERE c.tenant_id = ?1 AND c.deleted_at IS NULL AND c.rowid < ?2
               AND (c.username LIKE ?4 ESCAPE '\\' OR c.name LIKE ?4 ESCAPE '\\' OR c.phone LIKE ?4 ESCAPE '\\')
             ORDER BY c.rowid DESC LIMIT ?3",
            pattern.clone(),
            None,
        ),
        Lookup::Phrase(query) => (FTS_CANDIDATES, query.clone(), None),
        Lookup::Trigrams {
            query,
            needle,
            walk_saved,
            ..
        } => (
            FTS_CANDIDATES,
            query.clone(),
            Some((needle, Fallback::new(*walk_saved))),
        ),
    };
    // A checked lookup cannot limit its candidates, only its matches (a negative LIMIT is none).
    let sql_limit = match checked {
        Some(_) => -1,
        None => found.limit.saturating_sub(found.examined) as i64,
    };
    let mut binds: Vec<Box<dyn ToSql>> = vec![
        Box::new(tenant.to_string()),
        Box::new(below),
        Box::new(sql_limit),
        Box::new(query),
    ];
    let cond = conditions(filter, now.timestamp_millis(), &mut binds);
    let columns = if checked.is_some() {
        ", c.username, c.name, c.phone"
    } else {
        ""
    };
    let sql = format!(
        "SELECT m.rowid, c.rowid IS NOT NULL AND c.tenant_id = ?1 AND c.deleted_at IS NULL{cond}{columns}
         FROM ({candidates}) m LEFT JOIN customers c ON c.rowid = m.rowid
         ORDER BY m.rowid DESC"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(refs(&binds).as_slice())?;
    while found.examined < found.limit {
        let Some(row) = rows.next()? else { break };
        let rowid: i64 = row.get(0)?;
        if let Some((needle, fallback)) = checked.as_mut() {
            let has_term = needle.found_in([text(row, 2)?, text(row, 3)?, text(row, 4)?]);
            if fallback.after(rowid, has_term) {
                return Ok(Some(rowid));
            }
            if !has_term {
                continue;
            }
        }
        found.examined += 1;
        found.last = Some(rowid);
        if row.get::<_, Option<bool>>(1)?.unwrap_or(false) {
            found.rowids.push(rowid);
        }
    }
    Ok(None)
}

/// Candidates newest-first below the cursor from the search index.
const FTS_CANDIDATES: &str =
    "SELECT rowid FROM customers_fts WHERE customers_fts MATCH ?4 AND rowid < ?2
     ORDER BY rowid DESC LIMIT ?3";

/// Column `i` of `row` as text, without copying it.
fn text<'r>(row: &'r Row<'_>, i: usize) -> Result<Option<&'r str>> {
    row.get_ref(i)?
        .as_str_or_null()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)).into())
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
    lookup: &mut Lookup,
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
    let found = matches(conn, tenant, lookup, filter, now, below, limit)?;
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

/// The number of matches, counted up to just past [`SEARCH_TOTAL_CAP`].
fn search_total(
    conn: &Connection,
    tenant: Uuid,
    lookup: &mut Lookup,
    filter: &CustomerFilter,
    now: DateTime<Utc>,
) -> Result<u64> {
    // A trigram lookup that falls back counts again with the phrase, which never falls back.
    loop {
        match count_matches(conn, tenant, lookup, filter, now)? {
            Some(n) => return Ok(n),
            None => lookup.fall_back(),
        }
    }
}

/// [`search_total`] with the lookup as it stands, or `None` when a trigram lookup falls back.
fn count_matches(
    conn: &Connection,
    tenant: Uuid,
    lookup: &mut Lookup,
    filter: &CustomerFilter,
    now: DateTime<Utc>,
) -> Result<Option<u64>> {
    let mut binds: Vec<Box<dyn ToSql>> = vec![Box::new(tenant.to_string())];
    let (source, mut checked) = match lookup {
        Lookup::Nothing => return Ok(Some(0)),
        Lookup::Like(pattern) => {
            binds.push(Box::new(pattern.clone()));
            (
                "customers c WHERE c.tenant_id = ?1 AND c.deleted_at IS NULL
                   AND (c.username LIKE ?2 ESCAPE '\\' OR c.name LIKE ?2 ESCAPE '\\' OR c.phone LIKE ?2 ESCAPE '\\')",
                None,
            )
        }
        Lookup::Phrase(query) => {
            binds.push(Box::new(query.clone()));
            (FTS_SOURCE, None)
        }
        Lookup::Trigrams {
            query,
            needle,
            walk_saved,
            ..
        } => {
            binds.push(Box::new(query.clone()));
            (FTS_SOURCE, Some((needle, Fallback::new(*walk_saved))))
        }
    };
    let cap = SEARCH_TOTAL_CAP + 1;
    let cond = conditions(filter, now.timestamp_millis(), &mut binds);
    let Some((needle, fallback)) = checked.as_mut() else {
        let sql = format!("SELECT COUNT(*) FROM (SELECT c.rowid FROM {source}{cond} LIMIT {cap})");
        let n: i64 = conn
            .prepare_cached(&sql)?
            .query_row(refs(&binds).as_slice(), |r| r.get(0))?;
        return Ok(Some(n.max(0) as u64));
    };
    // A checked lookup counts its candidates that hold the term, up to the same bound.
    let sql = format!("SELECT c.rowid, c.username, c.name, c.phone FROM {source}{cond}");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(refs(&binds).as_slice())?;
    let mut n = 0;
    while n < cap {
        let Some(row) = rows.next()? else { break };
        let has_term = needle.found_in([text(row, 1)?, text(row, 2)?, text(row, 3)?]);
        if fallback.after(row.get(0)?, has_term) {
            return Ok(None);
        }
        n += u64::from(has_term);
    }
    Ok(Some(n))
}

const FTS_SOURCE: &str = "customers c JOIN customers_fts f ON f.rowid = c.rowid
     WHERE customers_fts MATCH ?2 AND c.tenant_id = ?1 AND c.deleted_at IS NULL";

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
                .filter(|t| !t.is_empty());
            match term {
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
                    Ok(page(&rows, more, None, total, true, now))
                }
                Some(term) => {
                    let mut lookup = customer_search::lookup(conn, term)?;
                    search_page(conn, tenant, &mut lookup, &filter, now)
                }
            }
        })
        .await
    }
}

/// A page of search results for `filter`, the term looked up as `lookup` says.
pub(super) fn search_page(
    conn: &Connection,
    tenant: Uuid,
    lookup: &mut Lookup,
    filter: &CustomerFilter,
    now: DateTime<Utc>,
) -> Result<CustomerPage> {
    let SearchPage {
        rows,
        more,
        resume,
        known_total,
    } = list_search(conn, tenant, lookup, filter, now)?;
    let n = match known_total {
        Some(n) => n,
        None => search_total(conn, tenant, lookup, filter, now)?,
    };
    Ok(page(
        &rows,
        more,
        resume,
        n.min(SEARCH_TOTAL_CAP),
        n <= SEARCH_TOTAL_CAP,
        now,
    ))
}

fn page(
    rows: &[CustomerRow],
    more: bool,
    resume: Option<i64>,
    total: u64,
    total_exact: bool,
    now: DateTime<Utc>,
) -> CustomerPage {
    let next_cursor = match resume {
        Some(rowid) => Some(rowid.to_string()),
        None if more => rows.last().map(|r| r.rowid.to_string()),
        None => None,
    };
    CustomerPage {
        customers: rows.iter().map(|r| r.summary(now)).collect(),
        total,
        total_exact,
        next_cursor,
    }
}
