//! How the search index's trigram tokenizer reads text, mirrored in Rust so that a search
//! can check a candidate row itself (`customer_search`) and answer exactly what the index's
//! full phrase query would.
//!
//! FTS5's `trigram` tokenizer (`case_sensitive 0`, `remove_diacritics 0`, the defaults our
//! `customers_fts` uses) reads UTF-8, turns U+FFFE and U+FFFF into U+FFFD, folds each
//! character with its own simple case-folding table (`sqlite3Fts5UnicodeFold`, copied
//! below), drops characters that fold to 0 (only NUL), and emits every run of three folded
//! characters at consecutive positions. A phrase of three or more characters therefore
//! matches a column exactly when the folded column contains the folded phrase. The table is
//! SQLite's, not Unicode's current one (Rust's `to_lowercase` differs: it maps 'ſ' to itself
//! and 'İ' to two characters); a test compares this module with the bundled SQLite for every
//! character. Pure: no SQL here.

/// Ranges of characters that fold, from SQLite's `sqlite3Fts5UnicodeFold`: `(first
/// character, flags, length)`. A rule covers `length` characters from `first`; if bit 0 of
/// `flags` is set, only every second one of them (`first`, `first + 2`, ...). A covered
/// character `c` folds to `(c + OFFSETS[flags >> 1]) & 0xFFFF`.
#[rustfmt::skip]
const RULES: [(u16, u8, u8); 163] = [
    (65, 14, 26), (181, 64, 1), (192, 14, 23), (216, 14, 7), (256, 1, 48), (306, 1, 6),
    (313, 1, 16), (330, 1, 46), (376, 116, 1), (377, 1, 6), (383, 104, 1), (385, 50, 1),
    (386, 1, 4), (390, 44, 1), (391, 0, 1), (393, 42, 2), (395, 0, 1), (398, 32, 1),
    (399, 38, 1), (400, 40, 1), (401, 0, 1), (403, 42, 1), (404, 46, 1), (406, 52, 1),
    (407, 48, 1), (408, 0, 1), (412, 52, 1), (413, 54, 1), (415, 56, 1), (416, 1, 6),
    (422, 60, 1), (423, 0, 1), (425, 60, 1), (428, 0, 1), (430, 60, 1), (431, 0, 1),
    (433, 58, 2), (435, 1, 4), (439, 62, 1), (440, 0, 1), (444, 0, 1), (452, 2, 1),
    (453, 0, 1), (455, 2, 1), (456, 0, 1), (458, 2, 1), (459, 1, 18), (478, 1, 18),
    (497, 2, 1), (498, 1, 4), (502, 122, 1), (503, 134, 1), (504, 1, 40), (544, 110, 1),
    (546, 1, 18), (570, 70, 1), (571, 0, 1), (573, 108, 1), (574, 68, 1), (577, 0, 1),
    (579, 106, 1), (580, 28, 1), (581, 30, 1), (582, 1, 10), (837, 36, 1), (880, 1, 4),
    (886, 0, 1), (902, 18, 1), (904, 16, 3), (908, 26, 1), (910, 24, 2), (913, 14, 17),
    (931, 14, 9), (962, 0, 1), (975, 4, 1), (976, 140, 1), (977, 142, 1), (981, 146, 1),
    (982, 144, 1), (984, 1, 24), (1008, 136, 1), (1009, 138, 1), (1012, 130, 1), (1013, 128, 1),
    (1015, 0, 1), (1017, 152, 1), (1018, 0, 1), (1021, 110, 3), (1024, 34, 16), (1040, 14, 32),
    (1120, 1, 34), (1162, 1, 54), (1216, 6, 1), (1217, 1, 14), (1232, 1, 88), (1329, 22, 38),
    (4256, 66, 38), (4295, 66, 1), (4301, 66, 1), (7680, 1, 150), (7835, 132, 1), (7838, 96, 1),
    (7840, 1, 96), (7944, 150, 8), (7960, 150, 6), (7976, 150, 8), (7992, 150, 8), (8008, 150, 6),
    (8025, 151, 8), (8040, 150, 8), (8072, 150, 8), (8088, 150, 8), (8104, 150, 8), (8120, 150, 2),
    (8122, 126, 2), (8124, 148, 1), (8126, 100, 1), (8136, 124, 4), (8140, 148, 1), (8152, 150, 2),
    (8154, 120, 2), (8168, 150, 2), (8170, 118, 2), (8172, 152, 1), (8184, 112, 2), (8186, 114, 2),
    (8188, 148, 1), (8486, 98, 1), (8490, 92, 1), (8491, 94, 1), (8498, 12, 1), (8544, 8, 16),
    (8579, 0, 1), (9398, 10, 26), (11264, 22, 47), (11360, 0, 1), (11362, 88, 1), (11363, 102, 1),
    (11364, 90, 1), (11367, 1, 6), (11373, 84, 1), (11374, 86, 1), (11375, 80, 1), (11376, 82, 1),
    (11378, 0, 1), (11381, 0, 1), (11390, 78, 2), (11392, 1, 100), (11499, 1, 4), (11506, 0, 1),
    (42560, 1, 46), (42624, 1, 24), (42786, 1, 14), (42802, 1, 62), (42873, 1, 4), (42877, 76, 1),
    (42878, 1, 10), (42891, 0, 1), (42893, 74, 1), (42896, 1, 4), (42912, 1, 10), (42922, 72, 1),
    (65313, 14, 26),
];

/// The offsets `RULES` index, from the same function (`aiOff`).
#[rustfmt::skip]
const OFFSETS: [u16; 77] = [
    1, 2, 8, 15, 16, 26, 28, 32, 37, 38, 40, 48,
    63, 64, 69, 71, 79, 80, 116, 202, 203, 205, 206, 207,
    209, 210, 211, 213, 214, 217, 218, 219, 775, 7264, 10792, 10795,
    23228, 23256, 30204, 54721, 54753, 54754, 54756, 54787, 54793, 54809, 57153, 57274,
    57921, 58019, 58363, 61722, 65268, 65341, 65373, 65406, 65408, 65410, 65415, 65424,
    65436, 65439, 65450, 65462, 65472, 65476, 65478, 65480, 65482, 65488, 65506, 65511,
    65514, 65521, 65527, 65528, 65529,
];

/// The character the tokenizer indexes for `c`, or `None` when it skips `c` (NUL).
pub(super) fn fold_char(c: char) -> Option<char> {
    let code = match u32::from(c) {
        // The tokenizer's UTF-8 reader turns these two noncharacters into U+FFFD.
        0xFFFE | 0xFFFF => 0xFFFD,
        code => code,
    };
    let folded = if code < 128 {
        u32::from(u8::try_from(code).map_or(b'?', |b| b.to_ascii_lowercase()))
    } else if code < 0x10000 {
        // The last rule starting at or before `code`: RULES[0] starts at 65, below `code`.
        let rule = RULES.partition_point(|&(first, _, _)| u32::from(first) <= code) - 1;
        let (first, flags, length) = RULES[rule];
        let (first, flags) = (u32::from(first), u32::from(flags));
        if code < first + u32::from(length) && (flags & 1 & (first ^ code)) == 0 {
            (code + u32::from(OFFSETS[(flags >> 1) as usize])) & 0xFFFF
        } else {
            code
        }
    } else if (0x10400..0x10428).contains(&code) {
        // Deseret capitals, the only characters above the BMP that SQLite folds.
        code + 40
    } else {
        code
    };
    match folded {
        0 => None,
        // Every character folds to a valid one (the test below checks them all against
        // SQLite); the fallback keeps a lookup total without a panic.
        folded => Some(char::from_u32(folded).unwrap_or(char::REPLACEMENT_CHARACTER)),
    }
}

/// Appends the folded characters of `text` to `out`: the sequence the tokenizer takes its
/// trigrams from.
pub(super) fn fold_into(text: &str, out: &mut String) {
    out.extend(text.chars().filter_map(fold_char));
}

/// `text` folded, as a new string.
pub(super) fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    fold_into(text, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;
    use std::collections::HashMap;

    #[test]
    fn ascii_folds_to_lower_case_and_nul_is_dropped() {
        assert_eq!(fold("NgoChiSO +2547"), "ngochiso +2547");
        assert_eq!(fold("a\0B"), "ab");
    }

    #[test]
    fn folding_follows_sqlite_not_rust_lower_case() {
        // Long s and the Kelvin sign fold to ASCII; dotted capital I folds to itself.
        assert_eq!(fold("\u{17F}\u{212A}"), "sk");
        assert_eq!(fold("\u{130}"), "\u{130}");
        assert_eq!(fold("ÉÀÇÑ ΣΑΣ"), "éàçñ σασ");
        assert_eq!(fold("\u{FFFF}"), "\u{FFFD}");
        assert_eq!(fold("\u{10400}"), "\u{10428}");
    }

    /// Every character of the first two planes (and a sample of the others, which hold no
    /// cased letters), folded by the bundled SQLite's trigram tokenizer: one document per
    /// block of characters, each character once, so the trigram at offset i starts with the
    /// folded character i. NUL is left out: the tokenizer drops it, which would shift the
    /// offsets (the ASCII test covers it).
    #[test]
    fn every_character_folds_as_the_search_index_folds_it() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE VIRTUAL TABLE t USING fts5(x, tokenize='trigram', detail='full');
             CREATE VIRTUAL TABLE v USING fts5vocab(t, instance);",
        )
        .unwrap();
        let chars: Vec<char> = ('\u{1}'..='\u{1FFFF}')
            .chain(('\u{20000}'..=char::MAX).step_by(251))
            .collect();
        // Two characters of overlap so that the block's last characters start a trigram.
        let blocks: Vec<&[char]> = chars.chunks(8192).collect();
        let tx = conn.unchecked_transaction().unwrap();
        for (i, block) in blocks.iter().enumerate() {
            let mut text: String = block.iter().collect();
            text.push_str("..");
            tx.execute("INSERT INTO t (rowid, x) VALUES (?1, ?2)", (i as i64, text))
                .unwrap();
        }
        tx.commit().unwrap();
        let mut indexed: HashMap<(i64, i64), char> = HashMap::new();
        let mut stmt = conn.prepare("SELECT term, doc, offset FROM v").unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            let term: String = row.get(0).unwrap();
            let first = term.chars().next().unwrap();
            indexed.insert((row.get(1).unwrap(), row.get(2).unwrap()), first);
        }
        let mut wrong = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            for (offset, &c) in block.iter().enumerate() {
                let sqlite = indexed.get(&(i as i64, offset as i64)).copied();
                if sqlite != fold_char(c) {
                    wrong.push((c as u32, sqlite, fold_char(c)));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "{} differ, first: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(10)]
        );
    }
}
