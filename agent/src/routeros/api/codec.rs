//! Classic API framing (routeros.md §2.2–2.4): the variable-length word length prefix (1–5
//! bytes), sentences (words ended by an empty word), and the parsed shape of a reply sentence.
//!
//! Words are bytes; nothing here assumes UTF-8. Reads are bounded (word size, words per
//! sentence) so a broken or hostile peer yields an error, not an allocation of gigabytes.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::routeros::value::{Row, Text};

/// Largest word we accept from the router. Real rows are far below this.
pub const MAX_WORD: usize = 16 * 1024 * 1024;
/// Most words we accept in one sentence.
pub const MAX_WORDS: usize = 100_000;

/// Appends the length prefix for a word of `len` bytes.
pub fn encode_len(len: usize, out: &mut Vec<u8>) -> io::Result<()> {
    let len = u32::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "API word longer than 4 GiB"))?;
    match len {
        0..=0x7F => out.push(len as u8),
        0x80..=0x3FFF => out.extend_from_slice(&((len | 0x8000) as u16).to_be_bytes()),
        0x4000..=0x1F_FFFF => out.extend_from_slice(&(len | 0xC0_0000).to_be_bytes()[1..]),
        0x20_0000..=0xFFF_FFFF => out.extend_from_slice(&(len | 0xE000_0000).to_be_bytes()),
        _ => {
            out.push(0xF0);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    Ok(())
}

/// How many bytes the prefix starting with `first` has; an error for control bytes.
pub fn prefix_len(first: u8) -> io::Result<usize> {
    match first {
        0x00..=0x7F => Ok(1),
        0x80..=0xBF => Ok(2),
        0xC0..=0xDF => Ok(3),
        0xE0..=0xEF => Ok(4),
        0xF0 => Ok(5),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("API control byte 0x{first:02X} in length prefix"),
        )),
    }
}

/// Decodes a complete prefix (`prefix.len() == prefix_len(prefix[0])`).
pub fn decode_len(prefix: &[u8]) -> io::Result<usize> {
    let first = *prefix
        .first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "empty length prefix"))?;
    let n = prefix_len(first)?;
    if prefix.len() != n {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "length prefix has the wrong size",
        ));
    }
    let v: u32 = match n {
        1 => u32::from(first),
        2 => u32::from(u16::from_be_bytes([prefix[0], prefix[1]]) & 0x3FFF),
        3 => u32::from_be_bytes([0, prefix[0], prefix[1], prefix[2]]) & 0x1F_FFFF,
        4 => u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) & 0x0FFF_FFFF,
        _ => u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]),
    };
    usize::try_from(v).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "length overflow"))
}

/// One sentence on the wire: each word with its prefix, then the empty word.
pub fn encode_sentence<W: AsRef<[u8]>>(words: &[W]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for w in words {
        let w = w.as_ref();
        encode_len(w.len(), &mut out)?;
        out.extend_from_slice(w);
    }
    out.push(0);
    Ok(out)
}

/// Reads one non-empty sentence. EOF before the first byte is `UnexpectedEof`.
pub async fn read_sentence<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Vec<Vec<u8>>> {
    loop {
        let mut words = Vec::new();
        loop {
            let first = r.read_u8().await?;
            let n = prefix_len(first)?;
            let mut prefix = [0u8; 5];
            prefix[0] = first;
            r.read_exact(&mut prefix[1..n]).await?;
            let len = decode_len(&prefix[..n])?;
            if len == 0 {
                break;
            }
            if len > MAX_WORD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("API word of {len} bytes is too long"),
                ));
            }
            if words.len() >= MAX_WORDS {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "API sentence has too many words",
                ));
            }
            let mut w = vec![0u8; len];
            r.read_exact(&mut w).await?;
            words.push(w);
        }
        // Empty sentences are ignored (routeros.md §2.2).
        if !words.is_empty() {
            return Ok(words);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Re,
    Done,
    Trap,
    Fatal,
    Empty,
}

/// A reply sentence: its kind, `.tag`, `=key=value` attributes and, for `!fatal`, the bare
/// reason words.
#[derive(Debug, Clone)]
pub struct Reply {
    pub kind: ReplyKind,
    pub tag: Option<String>,
    pub attrs: Row,
    pub reason: Text,
}

pub fn parse_reply(words: Vec<Vec<u8>>) -> io::Result<Reply> {
    let mut it = words.into_iter();
    let head = it.next().unwrap_or_default();
    let kind = match head.as_slice() {
        b"!re" => ReplyKind::Re,
        b"!done" => ReplyKind::Done,
        b"!trap" => ReplyKind::Trap,
        b"!fatal" => ReplyKind::Fatal,
        b"!empty" => ReplyKind::Empty,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown API reply {:?}", Text::from(other)),
            ));
        }
    };
    let mut reply = Reply {
        kind,
        tag: None,
        attrs: Row::default(),
        reason: Text::default(),
    };
    let mut reason = Vec::new();
    for w in it {
        if let Some(rest) = w.strip_prefix(b"=") {
            // `=key=value`: split at the second `=` only; the value may contain `=`.
            let (k, v) = match rest.iter().position(|b| *b == b'=') {
                Some(p) => (&rest[..p], &rest[p + 1..]),
                None => (rest, &[][..]),
            };
            reply
                .attrs
                .insert(String::from_utf8_lossy(k).into_owned(), Text::from(v));
        } else if let Some(tag) = w.strip_prefix(b".tag=") {
            reply.tag = Some(String::from_utf8_lossy(tag).into_owned());
        } else {
            if !reason.is_empty() {
                reason.push(b' ');
            }
            reason.extend_from_slice(&w);
        }
    }
    reply.reason = Text::new(reason);
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(len: usize) -> Vec<u8> {
        let mut v = Vec::new();
        encode_len(len, &mut v).unwrap();
        v
    }

    fn dec(prefix: &[u8]) -> usize {
        assert_eq!(prefix_len(prefix[0]).unwrap(), prefix.len());
        decode_len(prefix).unwrap()
    }

    #[test]
    fn every_length_class_boundary_matches_the_spec_vectors() {
        let vectors: &[(usize, &[u8])] = &[
            (0, &[0x00]),
            (0x7F, &[0x7F]),
            (0x80, &[0x80, 0x80]),
            (0x3FFF, &[0xBF, 0xFF]),
            (0x4000, &[0xC0, 0x40, 0x00]),
            (0x1F_FFFF, &[0xDF, 0xFF, 0xFF]),
            (0x20_0000, &[0xE0, 0x20, 0x00, 0x00]),
            (0xFFF_FFFF, &[0xEF, 0xFF, 0xFF, 0xFF]),
            (0x1000_0000, &[0xF0, 0x10, 0x00, 0x00, 0x00]),
            (0xFFFF_FFFF, &[0xF0, 0xFF, 0xFF, 0xFF, 0xFF]),
        ];
        for (len, bytes) in vectors {
            assert_eq!(enc(*len), *bytes, "encode {len:#x}");
            assert_eq!(dec(bytes), *len, "decode {bytes:02X?}");
        }
    }

    #[test]
    fn control_bytes_and_oversized_lengths_are_errors() {
        for b in 0xF1..=0xFF {
            assert!(prefix_len(b).is_err(), "{b:#x}");
        }
        assert!(decode_len(&[0x80]).is_err());
        assert!(decode_len(&[]).is_err());
        #[cfg(target_pointer_width = "64")]
        assert!(encode_len(0x1_0000_0000, &mut Vec::new()).is_err());
    }

    #[tokio::test]
    async fn sentences_round_trip_and_empty_sentences_are_skipped() {
        let words: Vec<Vec<u8>> = vec![
            b"!re".to_vec(),
            b"=name=a=b".to_vec(),
            vec![b'x'; 0x4000],
            vec![0xE9, 0xFF],
        ];
        let mut wire = vec![0u8]; // an empty sentence first
        wire.extend(encode_sentence(&words).unwrap());
        let mut r = wire.as_slice();
        let got = read_sentence(&mut r).await.unwrap();
        assert_eq!(got, words);
        assert!(read_sentence(&mut r).await.is_err(), "EOF is an error");
    }

    #[test]
    fn replies_split_attributes_at_the_second_equals_only() {
        let r = parse_reply(vec![
            b"!re".to_vec(),
            b"=comment=a=b=c".to_vec(),
            b"=empty=".to_vec(),
            b".tag=7".to_vec(),
            b"=name=caf\xe9".to_vec(),
        ])
        .unwrap();
        assert_eq!(r.kind, ReplyKind::Re);
        assert_eq!(r.tag.as_deref(), Some("7"));
        assert_eq!(r.attrs.text("comment"), "a=b=c");
        assert_eq!(r.attrs.text("empty"), "");
        assert_eq!(r.attrs.text("name").as_bytes(), b"caf\xe9");
        let f = parse_reply(vec![
            b"!fatal".to_vec(),
            b"session terminated on request".to_vec(),
        ])
        .unwrap();
        assert_eq!(f.kind, ReplyKind::Fatal);
        assert_eq!(f.reason, "session terminated on request");
        assert!(parse_reply(vec![b"!bogus".to_vec()]).is_err());
    }

    proptest! {
        #[test]
        fn any_length_round_trips(len in 0usize..=0xFFFF_FFFF) {
            let e = enc(len);
            prop_assert_eq!(e.len(), prefix_len(e[0]).unwrap());
            prop_assert_eq!(decode_len(&e).unwrap(), len);
        }

        #[test]
        fn lengths_near_boundaries_round_trip(
            base in prop::sample::select(vec![0x80usize, 0x4000, 0x20_0000, 0x1000_0000]),
            delta in -3i64..3,
        ) {
            let len = (base as i64 + delta) as usize;
            prop_assert_eq!(decode_len(&enc(len)).unwrap(), len);
        }

        #[test]
        fn random_bytes_never_panic_the_reader(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let mut r = bytes.as_slice();
                for _ in 0..8 {
                    match read_sentence(&mut r).await {
                        Ok(words) => { let _ = parse_reply(words); }
                        Err(_) => break,
                    }
                }
            });
        }
    }
}
