//! How a search term is looked up in the customer search index, and the check of each
//! candidate the index returns. `customer_list` runs the lookup; this module decides what to
//! ask the index for.
//!
//! A term of three or more characters matches a customer whose username, name or phone
//! contains it, case folded as the index's trigram tokenizer folds (`search_fold`): exactly
//! what the index's phrase query for the term matches. That query walks the doclist of every
//! trigram of the term, so a rare name built of common syllables ("Ngochiso": six trigrams,
//! two of them in about 10 % of all customers) cost 4–10 ms at a million customers.
//!
//! So a term of at least [`MIN_TRIGRAMS`] distinct trigrams is looked up by its rarest few
//! only: each trigram is probed for how common it is ([`PROBE_POINTS`] short reads of the
//! index spread over the table), [`choose`] picks those worth walking, and each candidate row
//! is checked for the folded term ([`Needle`]). The probes only steer the cost: whichever
//! trigrams are chosen, their rows are a superset of the phrase's matches, and the check
//! keeps exactly those. A trigram the probes cannot judge, found in bunches (sequential
//! usernames: "u01" in one tenth of the table and nowhere else), is never chosen; the phrase
//! keeps it cheap (FTS5 skips the other doclists from bunch to bunch). Where the choice still
//! turns out worse than the phrase (trigrams that occur together far more often than
//! independent ones would), the lookup notices from the candidates without the term
//! ([`Fallback`]) and the search goes on with the phrase.
//!
//! FTS5 stores no per-term document counts: an `fts5vocab` table counts them by walking the
//! whole doclist, which for a common trigram costs as much as the search it should avoid
//! (2.6–5 ms for one trigram in 12 % of a million customers). Probing only the newest rows
//! was cheaper but misled whenever the newest customers differ from the rest (sequential
//! usernames or phones).

use super::Result;
use super::search_fold;
use rusqlite::Connection;

/// Points of the table, evenly spread over its rowids from the first, at which each trigram
/// is probed.
const PROBE_POINTS: i64 = 4;

/// Rows containing the trigram a probe reads from its point on, in rowid order: enough to
/// tell a trigram in 10 % of the rows from one in 0.3 %, few enough to cost microseconds.
const PROBE_ROWS: i64 = 8;

/// Distinct trigrams a term needs before any is left out.
const MIN_TRIGRAMS: usize = 4;

/// Distinct trigrams probed at most, spread over a longer term; the others are not chosen.
const MAX_PROBED: usize = 8;

/// Candidates without the term a checked lookup reads at least before it may fall back to
/// the phrase query ([`Fallback`]): checking that many costs well under a millisecond, less
/// than falling back would, and candidates without the term often come in runs (sequential
/// usernames) that would make fewer look like a flood.
const FALSE_CANDIDATES: usize = 256;

/// What a candidate row costs the choice of trigrams ([`choose`]), in units of one doclist
/// entry the index steps over while it intersects doclists: measured on a million customers,
/// 7–12 ns per entry stepped over, and 0.7 µs to read a candidate whose page is in SQLite's
/// cache, 2–3 µs one from anywhere in the table. The choice counts every candidate, though
/// the matches among them are read by the phrase too, and its candidates are a rough
/// estimate; a lower cost than a cold read gave the best choices for the benchmark's names
/// and phone numbers.
const CHECK_COST: f64 = 128.0;

/// What a candidate without the term costs [`Fallback`], in the same units: a row read from
/// anywhere in the table, for nothing.
const FALSE_CANDIDATE_COST: f64 = 256.0;

/// Local shares of one trigram at two probe points further apart than this factor mark it
/// as found in bunches: its mean share says little.
const BUNCHED: f64 = 16.0;

/// How one search term is looked up.
#[derive(Debug)]
pub(super) enum Lookup {
    /// Shorter than a trigram: `LIKE` over the tenant's rows, with this pattern.
    Like(String),
    /// The index's query for the whole term as one phrase: its matches are the result.
    Phrase(String),
    /// The index's query for some of the term's trigrams: its rows are candidates, and
    /// only those the needle is found in match. `walk_saved` is what the phrase query would
    /// walk on top of `query`, in doclist entries per row; when the candidates without the
    /// term cost more than that, a pass falls back to `phrase` ([`Fallback`]).
    Trigrams {
        query: String,
        needle: Needle,
        walk_saved: f64,
        phrase: String,
    },
    /// A trigram of the term is in no row at all: nothing matches.
    Nothing,
}

impl Lookup {
    /// Turns a trigram lookup whose candidates mostly lacked the term into the phrase query.
    pub(super) fn fall_back(&mut self) {
        if let Lookup::Trigrams { phrase, .. } = self {
            *self = Lookup::Phrase(std::mem::take(phrase));
        }
    }
}

/// Watches the candidates of one pass of a trigram lookup, and says when checking those
/// without the term has cost more than walking the phrase's other doclists over the same
/// stretch of rows would have: then the phrase is the cheaper way on.
#[derive(Debug)]
pub(super) struct Fallback {
    walk_saved: f64,
    start: Option<i64>,
    without_term: usize,
}

impl Fallback {
    pub(super) fn new(walk_saved: f64) -> Fallback {
        Fallback {
            walk_saved,
            start: None,
            without_term: 0,
        }
    }

    /// Records the candidate at `rowid` (candidates come in rowid order, either way);
    /// true when the pass should fall back to the phrase.
    pub(super) fn after(&mut self, rowid: i64, has_term: bool) -> bool {
        let start = *self.start.get_or_insert(rowid);
        if has_term {
            return false;
        }
        self.without_term += 1;
        let rows = start.abs_diff(rowid) as f64 + 1.0;
        self.without_term > FALSE_CANDIDATES
            && self.without_term as f64 * FALSE_CANDIDATE_COST > self.walk_saved * rows
    }
}

/// The folded term, looked for in a candidate's folded columns.
#[derive(Debug)]
pub(super) struct Needle {
    folded: String,
    scratch: String,
}

impl Needle {
    pub(super) fn new(term: &str) -> Needle {
        Needle {
            folded: search_fold::fold(term),
            scratch: String::new(),
        }
    }

    /// Whether one of the columns (username, name, phone), folded, contains the term: the
    /// same answer the index's phrase query gives for the row.
    pub(super) fn found_in(&mut self, columns: [Option<&str>; 3]) -> bool {
        columns.into_iter().flatten().any(|text| {
            self.scratch.clear();
            search_fold::fold_into(text, &mut self.scratch);
            self.scratch.contains(&self.folded)
        })
    }
}

/// The index query for `text` as one phrase. FTS5 reads a quoted string as a phrase of the
/// tokens the trigram tokenizer makes of it; a quote inside is doubled.
pub(super) fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

fn like_pattern(term: &str) -> String {
    let escaped = term
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Decides how to look `term` up, probing the index for how common each of its trigrams is
/// when it has at least [`MIN_TRIGRAMS`] distinct ones.
pub(super) fn lookup(conn: &Connection, term: &str) -> Result<Lookup> {
    let chars: Vec<char> = term.chars().collect();
    if chars.len() < 3 {
        return Ok(Lookup::Like(like_pattern(term)));
    }
    // One trigram is its own phrase. The tokenizer drops NUL, so a term with one is not the
    // run of trigrams below: it keeps the phrase query too.
    if chars.len() == 3 || chars.contains(&'\0') {
        return Ok(Lookup::Phrase(fts_phrase(term)));
    }
    // Each distinct trigram (as folded) once, spelled as in the term, with where it starts.
    let mut trigrams: Vec<Trigram> = Vec::new();
    for (start, window) in chars.windows(3).enumerate() {
        let spelled: String = window.iter().collect();
        let folded = search_fold::fold(&spelled);
        match trigrams.iter_mut().find(|t| t.folded == folded) {
            Some(trigram) => trigram.starts.push(start),
            None => trigrams.push(Trigram {
                folded,
                spelled,
                starts: vec![start],
                // Until probed: in every row, so never chosen.
                share: 1.0,
                bunched: false,
            }),
        }
    }
    if trigrams.len() < MIN_TRIGRAMS {
        return Ok(Lookup::Phrase(fts_phrase(term)));
    }
    let (first, last): (Option<i64>, Option<i64>) = conn
        .prepare_cached(
            "SELECT (SELECT min(rowid) FROM customers), (SELECT max(rowid) FROM customers)",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(Lookup::Nothing);
    };
    let mut probe = conn.prepare_cached(
        "SELECT count(*), min(rowid), max(rowid) FROM (
             SELECT rowid FROM customers_fts WHERE customers_fts MATCH ?1 AND rowid >= ?2
             ORDER BY rowid LIMIT ?3)",
    )?;
    let probed = trigrams.len().min(MAX_PROBED);
    for k in 0..probed {
        // Spread over the term: all of them, or the first, the last and evenly between.
        let i = if probed == trigrams.len() {
            k
        } else {
            k * (trigrams.len() - 1) / (probed - 1)
        };
        let mut probes = Vec::with_capacity(PROBE_POINTS as usize);
        for from in points(first, last) {
            let (found, at, to): (i64, Option<i64>, Option<i64>) = probe
                .query_row((fts_phrase(&trigrams[i].spelled), from, PROBE_ROWS), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
            probes.push(Probe {
                from,
                found,
                at: at.unwrap_or(from),
                to: to.unwrap_or(from),
            });
        }
        // The first probe starts at the first row: finding nothing anywhere, the trigram is
        // in no row, and the whole term needs every one of its trigrams.
        if probes.iter().all(|p| p.found == 0) {
            return Ok(Lookup::Nothing);
        }
        trigrams[i].share = share(&probes, last);
        trigrams[i].bunched = bunched(&probes, last);
    }
    let (chosen, candidates) = choose(&trigrams, chars.len());
    // Per row: the doclist entries each way walks, and the checks the trigrams' candidates
    // cost. The phrase's matches cost a primary-key read either way.
    let walk_all: f64 = trigrams.iter().map(Trigram::walk).sum();
    let walk_chosen: f64 = chosen.iter().map(|&i| trigrams[i].share).sum();
    if chosen.is_empty() || walk_chosen + candidates * CHECK_COST >= walk_all {
        return Ok(Lookup::Phrase(fts_phrase(term)));
    }
    let query = chosen
        .iter()
        .map(|&i| fts_phrase(&trigrams[i].spelled))
        .collect::<Vec<_>>()
        .join(" AND ");
    Ok(Lookup::Trigrams {
        query,
        needle: Needle::new(term),
        walk_saved: walk_all - walk_chosen,
        phrase: fts_phrase(term),
    })
}

/// One distinct trigram of a term.
#[derive(Debug, Clone)]
struct Trigram {
    folded: String,
    /// As spelled in the term (the index folds it the same way).
    spelled: String,
    /// Where it starts in the term, in characters.
    starts: Vec<usize>,
    /// The estimated share of all rows that contain it.
    share: f64,
    /// Found in bunches ([`bunched`]): never chosen, and its `share` not relied on.
    bunched: bool,
}

impl Trigram {
    /// The doclist entries per row the phrase query walks for it: none for a bunched one,
    /// whose doclist the phrase skips through (the probes cannot tell its share anyway).
    fn walk(&self) -> f64 {
        if self.bunched { 0.0 } else { self.share }
    }
}

/// The points a trigram is probed from: [`PROBE_POINTS`] rowids evenly spread over
/// `first..=last`, starting with `first`.
fn points(first: i64, last: i64) -> impl Iterator<Item = i64> {
    let rows = last - first + 1;
    (0..PROBE_POINTS).map(move |j| first + j * rows / PROBE_POINTS)
}

/// What one probe saw: `found` rows containing the trigram (at most [`PROBE_ROWS`]) from rowid
/// `from` on, the first of them at `at` and the last at `to`.
#[derive(Debug, Clone, Copy)]
struct Probe {
    from: i64,
    found: i64,
    at: i64,
    to: i64,
}

/// The share of rows that contain the trigram near a probe's point: the rows it read to
/// find [`PROBE_ROWS`] of them, or every row from its point to `last` when it found fewer.
fn near(probe: &Probe, last: i64) -> f64 {
    let rows = if probe.found >= PROBE_ROWS {
        probe.to - probe.from + 1
    } else {
        last - probe.from + 1
    };
    (probe.found as f64 / rows.max(1) as f64).min(1.0)
}

/// The estimated share (0..=1) of all rows that contain a trigram: the mean of its share near
/// each probe's point.
fn share(probes: &[Probe], last: i64) -> f64 {
    probes.iter().map(|p| near(p, last)).sum::<f64>() / probes.len().max(1) as f64
}

/// Whether the probes (one per point, in order) found the trigram in bunches: none of its
/// rows between one point and the next, or far denser near one point than near another. A
/// trigram spread evenly over the table leaves no stretch of a quarter of it empty unless it
/// is in a handful of rows, and asking for one of those costs nothing.
fn bunched(probes: &[Probe], last: i64) -> bool {
    let empty_stretch = probes.iter().enumerate().any(|(j, p)| {
        let next = probes.get(j + 1).map_or(last + 1, |n| n.from);
        p.found == 0 || p.at >= next
    });
    let (low, high) = probes
        .iter()
        .map(|p| near(p, last))
        .fold((f64::MAX, 0.0f64), |(lo, hi), s| (lo.min(s), hi.max(s)));
    empty_stretch || high > low * BUNCHED
}

/// Which trigrams of a term `len` characters long to ask the index for: greedily the one
/// that gains most, while one gains anything. Walking a trigram's doclist costs one entry per
/// row that contains it (its share); each candidate row the chosen trigrams let through
/// costs a check ([`CHECK_COST`] entries). A trigram cuts the candidates to its conditional
/// share: its own share if none of its characters is covered by a chosen trigram, none at
/// all if all three are, and in between share^(uncovered / 3), taking characters to occur
/// independently. Adjacent trigrams ("123", "234") mostly occur together: taken as
/// independent, they looked like a hundred candidates and were a thousand. Bunched trigrams
/// are not chosen. Returns the chosen trigrams and the share of rows expected to be
/// candidates.
fn choose(trigrams: &[Trigram], len: usize) -> (Vec<usize>, f64) {
    let mut chosen: Vec<usize> = Vec::new();
    let mut covered = vec![false; len];
    let mut candidates = 1.0;
    loop {
        let best = trigrams
            .iter()
            .enumerate()
            .filter(|(i, t)| !t.bunched && !chosen.contains(i))
            .map(|(i, t)| {
                let uncovered = t
                    .starts
                    .iter()
                    .map(|&s| {
                        (s..s + 3)
                            .filter(|&p| !covered.get(p).copied().unwrap_or(true))
                            .count()
                    })
                    .max()
                    .unwrap_or(0);
                let conditional = t.share.powf(uncovered as f64 / 3.0);
                let gain = candidates * (1.0 - conditional) * CHECK_COST - t.share;
                (i, gain, conditional)
            })
            // Of equal gains, the trigram found first in the term.
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
        let Some((i, gain, conditional)) = best else {
            break;
        };
        if gain <= 0.0 {
            break;
        }
        chosen.push(i);
        candidates *= conditional;
        for &s in &trigrams[i].starts {
            for p in covered.iter_mut().skip(s).take(3) {
                *p = true;
            }
        }
    }
    (chosen, candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The distinct trigrams of `term`, with the given shares in their order.
    fn trigrams(term: &str, shares: &[f64]) -> Vec<Trigram> {
        let chars: Vec<char> = term.chars().collect();
        let mut out: Vec<Trigram> = Vec::new();
        for (start, window) in chars.windows(3).enumerate() {
            let spelled: String = window.iter().collect();
            match out.iter_mut().find(|t| t.spelled == spelled) {
                Some(t) => t.starts.push(start),
                None => out.push(Trigram {
                    folded: spelled.clone(),
                    spelled,
                    starts: vec![start],
                    share: shares[out.len()],
                    bunched: false,
                }),
            }
        }
        assert_eq!(out.len(), shares.len());
        out
    }

    fn chosen(term: &str, shares: &[f64]) -> Vec<String> {
        let trigrams = trigrams(term, shares);
        choose(&trigrams, term.chars().count())
            .0
            .into_iter()
            .map(|i| trigrams[i].spelled.clone())
            .collect()
    }

    #[test]
    fn the_rarest_trigrams_are_chosen_and_common_ones_left_out() {
        // "ngochiso" at a million customers: ngo, goc, och, chi, his, iso.
        let shares = [0.12, 0.0035, 0.024, 0.12, 0.007, 0.017];
        assert_eq!(chosen("ngochiso", &shares), ["goc", "his"]);
    }

    #[test]
    fn a_trigram_in_few_rows_is_asked_for_alone() {
        assert_eq!(chosen("abcde", &[0.1, 0.00001, 0.1]), ["bcd"]);
    }

    #[test]
    fn an_overlapping_trigram_gives_way_to_a_disjoint_one() {
        // Phone digits: "123" and "234" are the rarest, but mostly occur together.
        let shares = [0.03, 0.021, 0.02, 0.01, 0.0099];
        let picked = chosen("7001234", &shares);
        assert_eq!(picked[..2], ["234", "001"]);
    }

    #[test]
    fn a_trigram_whose_characters_are_all_covered_is_never_added() {
        // "bcd" sits inside "abc" + "cde": it cannot thin the candidates.
        let picked = chosen("abcde", &[0.001, 0.002, 0.001]);
        assert_eq!(picked, ["abc", "cde"]);
    }

    #[test]
    fn trigrams_in_nearly_every_row_are_not_chosen() {
        assert!(chosen("+2547", &[1.0, 1.0, 0.999]).is_empty());
        assert_eq!(chosen("+2541", &[1.0, 1.0, 0.01]), ["541"]);
    }

    #[test]
    fn probes_are_spread_over_the_table_from_its_first_row() {
        assert_eq!(points(1, 1000).collect::<Vec<_>>(), [1, 251, 501, 751]);
        assert_eq!(points(7, 7).collect::<Vec<_>>(), [7, 7, 7, 7]);
    }

    fn probe(from: i64, found: i64, at: i64, to: i64) -> Probe {
        Probe {
            from,
            found,
            at,
            to,
        }
    }

    #[test]
    fn a_share_is_the_mean_density_near_each_probe() {
        // Every tenth row near two points, none after the others: 5 %.
        let clustered = [
            probe(1, PROBE_ROWS, 10, 80),
            probe(251, PROBE_ROWS, 260, 330),
            probe(501, 0, 501, 501),
            probe(751, 0, 751, 751),
        ];
        assert!((share(&clustered, 1000) - 0.05).abs() < 1e-9);
        // Fewer rows than a probe reads: counted over the rest of the table.
        let rare = [
            probe(1, 2, 300, 900),
            probe(251, 1, 900, 900),
            probe(501, 1, 900, 900),
            probe(751, 1, 900, 900),
        ];
        let expected = (2.0 / 1000.0 + 1.0 / 750.0 + 1.0 / 500.0 + 1.0 / 250.0) / 4.0;
        assert!((share(&rare, 1000) - expected).abs() < 1e-12);
    }

    #[test]
    fn a_trigram_missing_between_two_points_or_far_denser_near_one_is_bunched() {
        let even = [
            probe(1, PROBE_ROWS, 20, 200),
            probe(251, PROBE_ROWS, 270, 450),
            probe(501, PROBE_ROWS, 520, 700),
            probe(751, PROBE_ROWS, 770, 950),
        ];
        assert!(!bunched(&even, 1000));
        // Sequential usernames: all of them between the first and the second point.
        let block = [
            probe(1, PROBE_ROWS, 100, 107),
            probe(251, 0, 251, 251),
            probe(501, 0, 501, 501),
            probe(751, 0, 751, 751),
        ];
        assert!(bunched(&block, 1000));
        // Only among the newest rows: every probe reads the same ones.
        let newest = [
            probe(1, PROBE_ROWS, 990, 997),
            probe(251, PROBE_ROWS, 990, 997),
            probe(501, PROBE_ROWS, 990, 997),
            probe(751, PROBE_ROWS, 990, 997),
        ];
        assert!(bunched(&newest, 1000));
        // Twenty-five times denser near one point than near the others.
        let mut dense_once = even;
        dense_once[2] = probe(501, PROBE_ROWS, 501, 508);
        assert!(bunched(&dense_once, 1000));
    }

    #[test]
    fn a_bunched_trigram_is_never_chosen() {
        // "u01" of "u0129737" looks rare but is a tenth of the table, all in one stretch.
        let mut trigrams = trigrams("u0129737", &[0.00002, 0.02, 0.0086, 0.011, 0.0069, 0.017]);
        trigrams[0].bunched = true;
        let (chosen, _) = choose(&trigrams, 8);
        assert!(!chosen.contains(&0), "{chosen:?}");
        assert_eq!(chosen[0], 4);
    }

    #[test]
    fn a_lookup_falls_back_once_its_false_candidates_cost_more_than_the_walk_it_saves() {
        // Saving one doclist entry per row: a false candidate is worth FALSE_CANDIDATE_COST rows.
        let mut sparse = Fallback::new(1.0);
        let mut dense = Fallback::new(1.0);
        let mut fell = (None, None);
        for k in 0..10_000i64 {
            // A candidate without the term every 1000 rows, or every row; every other one of
            // the dense ones has it, which never counts against the lookup.
            if fell.0.is_none() && sparse.after(1_000_000 - 1000 * k, false) {
                fell.0 = Some(k);
            }
            if fell.1.is_none() && dense.after(1_000_000 - k, k % 2 == 0) {
                fell.1 = Some(k);
            }
        }
        assert_eq!(fell.0, None);
        // The first candidate without the term past FALSE_CANDIDATES, twice as many rows in.
        assert_eq!(fell.1, Some(2 * FALSE_CANDIDATES as i64 + 1));
    }

    #[test]
    fn the_needle_is_found_only_as_a_whole_folded_substring() {
        // "xbcab" holds every trigram of "abcab" ("abc", "bca", "cab") but not the term.
        let mut needle = Needle::new("ABCab");
        assert!(!needle.found_in([Some("abcxbcab"), Some("xbcabcx"), None]));
        assert!(needle.found_in([Some("u1"), Some("Zz aBcAb"), None]));
        assert!(needle.found_in([Some("u1"), Some("name"), Some("+254abcab")]));
        let mut kelvin = Needle::new("kam");
        assert!(kelvin.found_in([None, Some("\u{212A}AMAU"), None]));
    }
}
