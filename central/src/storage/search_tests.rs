//! Search by the rarest trigrams answers exactly what the index's phrase query answers: the
//! folded-substring check agrees with FTS5 on tricky text, and a search whose lookup checks
//! its candidates keeps pages, cursors and capped totals equal to the phrase's.

use super::customer_list::search_page;
use super::customer_search::{Lookup, Needle, fts_phrase, lookup};
use super::*;
use easyisp_protocol::CustomerStatus;
use rusqlite::Connection;

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn text(&mut self, alphabet: &[char], len: usize) -> String {
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len())])
            .collect()
    }
}

/// Characters the tokenizer treats specially: ASCII case, the Kelvin sign and long s (which
/// fold to ASCII), dotted capital I (which does not), final sigma, capital sharp s, U+FFFF
/// (read as U+FFFD), NUL (dropped), a quote.
const TRICKY: [char; 24] = [
    'a', 'A', 'b', 'B', 'k', 'K', '\u{212A}', 's', 'S', '\u{17F}', 'i', 'I', '\u{130}', 'σ', 'Σ',
    'ς', 'ß', '\u{1E9E}', 'é', 'É', '\u{FFFF}', '\u{FFFD}', '\0', '"',
];

#[test]
fn the_needle_agrees_with_the_phrase_query_on_tricky_text() {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(
        "CREATE VIRTUAL TABLE t USING fts5(username, name, phone, tokenize='trigram');",
    )
    .unwrap();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut rows: Vec<[Option<String>; 3]> = Vec::new();
    for rowid in 0..400 {
        let column = |rng: &mut Rng| {
            let len = rng.below(9);
            (rng.below(5) > 0).then(|| rng.text(&TRICKY, len))
        };
        let row = [column(&mut rng), column(&mut rng), column(&mut rng)];
        conn.execute(
            "INSERT INTO t (rowid, username, name, phone) VALUES (?1, ?2, ?3, ?4)",
            (rowid, &row[0], &row[1], &row[2]),
        )
        .unwrap();
        rows.push(row);
    }
    // Terms without NUL: with one, a search keeps the phrase query and no check (`lookup`).
    let alphabet: Vec<char> = TRICKY.iter().copied().filter(|c| *c != '\0').collect();
    let mut checked = 0;
    for _ in 0..600 {
        let len = 3 + rng.below(3);
        let term = rng.text(&alphabet, len);
        let mut stmt = conn
            .prepare_cached("SELECT rowid FROM t WHERE t MATCH ?1 ORDER BY rowid")
            .unwrap();
        let by_index: Vec<i64> = stmt
            .query_map([fts_phrase(&term)], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let mut needle = Needle::new(&term);
        let by_needle: Vec<i64> = (0i64..)
            .zip(&rows)
            .filter(|(_, row)| {
                needle.found_in([row[0].as_deref(), row[1].as_deref(), row[2].as_deref()])
            })
            .map(|(rowid, _)| rowid)
            .collect();
        assert_eq!(by_needle, by_index, "term {term:?}");
        checked += usize::from(!by_index.is_empty());
    }
    assert!(checked > 50, "only {checked} terms matched anything");
}

fn customer(username: &str, name: &str, disabled: bool) -> NewCustomer {
    NewCustomer {
        phone: Some("+254700000001".into()),
        disabled,
        ..test_support::new_customer(username, name)
    }
}

fn search(term: &str, status: Option<CustomerStatus>) -> CustomerFilter {
    CustomerFilter {
        search: Some(term.into()),
        status,
        page: 1,
        page_size: 20,
        ..CustomerFilter::default()
    }
}

/// One page of a search, its term looked up by `lookup` or, with `trigrams`, by those
/// trigrams alone (as a lookup that never falls back).
async fn page_of(
    storage: &Storage,
    tenant: Uuid,
    filter: CustomerFilter,
    trigrams: Option<&str>,
) -> CustomerPage {
    let Some(query) = trigrams.map(str::to_string) else {
        return storage
            .list_customers(tenant, filter, Utc::now())
            .await
            .unwrap();
    };
    storage
        .read(move |conn| {
            let term = filter.search.clone().unwrap_or_default();
            let mut forced = Lookup::Trigrams {
                query,
                needle: Needle::new(&term),
                walk_saved: f64::INFINITY,
                phrase: fts_phrase(&term),
            };
            search_page(conn, tenant, &mut forced, &filter, Utc::now())
        })
        .await
        .unwrap()
}

/// Every page of a search by cursor: the names in order, and each page's total.
async fn walk(
    storage: &Storage,
    tenant: Uuid,
    mut filter: CustomerFilter,
    trigrams: Option<&str>,
) -> (Vec<String>, Vec<(u64, bool)>) {
    let (mut names, mut totals) = (Vec::new(), Vec::new());
    loop {
        let page = page_of(storage, tenant, filter.clone(), trigrams).await;
        names.extend(page.customers.iter().map(|c| c.name.clone()));
        totals.push((page.total, page.total_exact));
        match page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor.parse().unwrap()),
            None => return (names, totals),
        }
    }
}

/// The names the phrase query finds among the tenant's live customers, newest first.
async fn phrase_names(
    storage: &Storage,
    term: &str,
    status: Option<CustomerStatus>,
) -> Vec<String> {
    let phrase = fts_phrase(term);
    let disabled_only = status == Some(CustomerStatus::Disabled);
    storage
        .read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT c.name FROM customers_fts f JOIN customers c ON c.rowid = f.rowid
                 WHERE customers_fts MATCH ?1 AND c.deleted_at IS NULL AND (?2 = 0 OR c.state = 2)
                 ORDER BY c.rowid DESC",
            )?;
            let names = stmt
                .query_map((phrase, disabled_only), |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(names)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_search_by_rare_trigrams_pages_and_counts_as_the_phrase_does() {
    let (_dir, storage, tenant) = test_support::open_with_tenant().await;
    let actor = system_actor("test");
    // Matches (every tenth disabled, in several cases), every fourth row one with the common
    // trigrams of "qabcab" only, and every 47th one with all of its trigrams but not the term
    // (disabled, so a lost check would show in the disabled total).
    let (mut batch, mut matching, mut matching_disabled) = (Vec::new(), 0, 0);
    for i in 0..1450 {
        let input = if i % 4 == 3 {
            customer(&format!("c{i:04}"), &format!("Abcab {i}"), false)
        } else if i % 47 == 0 {
            customer(&format!("f{i:04}"), &format!("Qab abcxbcab {i}"), true)
        } else {
            let name = match i % 3 {
                0 => format!("Qabcab {i}"),
                1 => format!("Ann QABCAB {i}"),
                _ => format!("x-qAbCaB {i}"),
            };
            matching += 1;
            matching_disabled += usize::from(i % 10 == 0);
            customer(&format!("m{i:04}"), &name, i % 10 == 0)
        };
        batch.push(input);
    }
    storage
        .import_customers(tenant, actor.clone(), batch)
        .await
        .unwrap();

    // Whatever the lookup chooses, and by "qab" alone (its rows hold false candidates):
    for trigrams in [None, Some("\"qab\"")] {
        // Past the cap: the total is the cap, and the pages walk every match once.
        let (names, totals) = walk(&storage, tenant, search("QabCab", None), trigrams).await;
        assert_eq!(names, phrase_names(&storage, "QabCab", None).await);
        assert_eq!(names.len(), matching);
        assert!(matching as u64 > SEARCH_TOTAL_CAP);
        assert!(names.iter().all(|n| !n.contains("abcxbcab")));
        assert!(
            totals.iter().all(|t| *t == (SEARCH_TOTAL_CAP, false)),
            "{totals:?}"
        );

        // Below the cap with a filter: the pass cannot settle the total, the count does.
        let disabled = Some(CustomerStatus::Disabled);
        let (names, totals) = walk(&storage, tenant, search("qabcab", disabled), trigrams).await;
        assert_eq!(names, phrase_names(&storage, "qabcab", disabled).await);
        assert_eq!(names.len(), matching_disabled);
        let exact = (matching_disabled as u64, true);
        assert!(totals.iter().all(|t| *t == exact), "{totals:?}");
        let second = CustomerFilter {
            page: 2,
            ..search("qabcab", disabled)
        };
        let page = page_of(&storage, tenant, second, trigrams).await;
        assert_eq!(page.customers[0].name, names[20]);
    }

    // A term one of whose trigrams is in no row finds nothing, from any cursor.
    for cursor in [None, Some(500)] {
        let filter = CustomerFilter {
            cursor,
            ..search("qabcabz", None)
        };
        let page = storage
            .list_customers(tenant, filter, Utc::now())
            .await
            .unwrap();
        assert_eq!(
            (page.total, page.total_exact, page.customers.len()),
            (0, true, 0)
        );
    }
}

#[tokio::test]
async fn a_lookup_whose_candidates_mostly_lack_the_term_answers_as_the_phrase_does() {
    let (_dir, storage, tenant) = test_support::open_with_tenant().await;
    // "qxj" and "vkz" look rare and independent, so few rows should hold both; but every
    // tenth row does, and only one in six of those holds "qxjvkz". The phrase's other
    // trigrams are in nearly every row, yet checking hundreds of candidates costs more.
    let mut batch = Vec::new();
    for i in 0..3600 {
        let name = match (i % 10, i % 60) {
            (0, 0) => format!("Qxjvkz {i}"),
            (0, _) => format!("qxj vkz {i}"),
            _ => format!("xjvk {i}"),
        };
        batch.push(customer(&format!("u{i:05}"), &name, i % 7 == 0));
    }
    storage
        .import_customers(tenant, system_actor("test"), batch)
        .await
        .unwrap();
    let looked_up = storage.read(|conn| lookup(conn, "qxjVKZ")).await.unwrap();
    assert!(
        matches!(looked_up, Lookup::Trigrams { .. }),
        "{looked_up:?}"
    );
    for status in [None, Some(CustomerStatus::Disabled)] {
        let (names, totals) = walk(&storage, tenant, search("qxjVKZ", status), None).await;
        assert_eq!(names, phrase_names(&storage, "qxjVKZ", status).await);
        assert!(!names.is_empty());
        let exact = (names.len() as u64, true);
        assert!(totals.iter().all(|t| *t == exact), "{totals:?}");
    }
}

#[tokio::test]
async fn the_rare_trigram_of_a_term_is_the_one_asked_for() {
    let (_dir, storage, tenant) = test_support::open_with_tenant().await;
    // "abc", "bca" and "cab" are in every row, "qab" in few, some of them false candidates.
    let mut batch = Vec::new();
    for i in 0..600 {
        let name = match i % 100 {
            7 => format!("QabcAbc {i}"),
            19 => format!("Qab abcxbcab {i}"),
            _ => format!("Abcabc {i}"),
        };
        batch.push(customer(&format!("u{i:03}"), &name, false));
    }
    storage
        .import_customers(tenant, system_actor("test"), batch)
        .await
        .unwrap();
    let looked_up = storage.read(|conn| lookup(conn, "qabCABC")).await.unwrap();
    match &looked_up {
        Lookup::Trigrams { query, .. } => assert_eq!(query, "\"qab\""),
        other => panic!("expected a checked trigram lookup, got {other:?}"),
    }
    let (names, totals) = walk(&storage, tenant, search("qabCABC", None), None).await;
    assert_eq!(names, phrase_names(&storage, "qabCABC", None).await);
    assert_eq!((names.len(), totals[0]), (6, (6, true)));
}

#[tokio::test]
async fn a_term_of_bunched_and_everyday_trigrams_keeps_the_phrase() {
    let (_dir, storage, tenant) = test_support::open_with_tenant().await;
    // Sequential usernames: "t01", "012" and "123" come in bunches (never chosen), "cus",
    // "ust" and "st0" are in every row (not worth choosing).
    let batch = (0..1000)
        .map(|i| customer(&format!("cust{i:04}"), &format!("Name {}", i % 7), false))
        .collect();
    storage
        .import_customers(tenant, system_actor("test"), batch)
        .await
        .unwrap();
    let looked_up = storage.read(|conn| lookup(conn, "Cust0123")).await.unwrap();
    assert!(matches!(looked_up, Lookup::Phrase(_)), "{looked_up:?}");
    let (names, _) = walk(&storage, tenant, search("Cust0123", None), None).await;
    assert_eq!(names, ["Name 4"]);
}
