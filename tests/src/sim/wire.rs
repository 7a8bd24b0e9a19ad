//! Classic API framing (routeros.md §2.2): the word length codec for every length class,
//! including the 5-byte form, and sentence reading/writing over any async stream. Public so
//! tests can speak raw API words to the simulator.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest word the simulator accepts; bigger lengths are valid encodings but we refuse to
/// buffer them.
pub const MAX_WORD: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("reserved control byte {0:#04x}")]
    ControlByte(u8),
    #[error("word of {0} bytes is larger than the simulator accepts")]
    TooLong(usize),
}

/// Encodes a word length (big-endian, 1 to 5 bytes).
pub fn encode_len(len: usize) -> Vec<u8> {
    let l = len as u64;
    if l < 0x80 {
        vec![l as u8]
    } else if l < 0x4000 {
        ((l as u16) | 0x8000).to_be_bytes().to_vec()
    } else if l < 0x20_0000 {
        let v = (l as u32) | 0xC0_0000;
        v.to_be_bytes()[1..].to_vec()
    } else if l < 0x1000_0000 {
        ((l as u32) | 0xE000_0000).to_be_bytes().to_vec()
    } else {
        let mut v = vec![0xF0];
        v.extend_from_slice(&(l as u32).to_be_bytes());
        v
    }
}

/// Number of bytes a length whose first byte is `first` occupies, or the control-byte error.
pub fn len_size(first: u8) -> Result<usize, WireError> {
    Ok(match first {
        0x00..=0x7F => 1,
        0x80..=0xBF => 2,
        0xC0..=0xDF => 3,
        0xE0..=0xEF => 4,
        0xF0..=0xF7 => 5,
        _ => return Err(WireError::ControlByte(first)),
    })
}

/// Decodes a complete length prefix (as produced by `encode_len`).
pub fn decode_len(bytes: &[u8]) -> Result<usize, WireError> {
    let first = *bytes.first().ok_or(WireError::ControlByte(0xFF))?;
    let n = len_size(first)?;
    let b = |i: usize| bytes.get(i).copied().unwrap_or(0) as usize;
    Ok(match n {
        1 => first as usize,
        2 => ((first as usize & 0x3F) << 8) | b(1),
        3 => ((first as usize & 0x1F) << 16) | (b(1) << 8) | b(2),
        4 => ((first as usize & 0x0F) << 24) | (b(1) << 16) | (b(2) << 8) | b(3),
        _ => (b(1) << 24) | (b(2) << 16) | (b(3) << 8) | b(4),
    })
}

/// Reads one word; `Ok(None)` is the zero-length sentence terminator.
pub async fn read_word<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>, WireError> {
    let first = r.read_u8().await?;
    let n = len_size(first)?;
    let mut buf = vec![first];
    if n > 1 {
        let mut rest = vec![0u8; n - 1];
        r.read_exact(&mut rest).await?;
        buf.extend_from_slice(&rest);
    }
    let len = decode_len(&buf)?;
    if len == 0 {
        return Ok(None);
    }
    if len > MAX_WORD {
        return Err(WireError::TooLong(len));
    }
    let mut word = vec![0u8; len];
    r.read_exact(&mut word).await?;
    Ok(Some(word))
}

/// Reads one non-empty sentence (empty sentences are skipped, routeros.md §2.2).
pub async fn read_sentence<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<Vec<u8>>, WireError> {
    loop {
        let mut words = Vec::new();
        while let Some(w) = read_word(r).await? {
            words.push(w);
        }
        if !words.is_empty() {
            return Ok(words);
        }
    }
}

/// Encodes a sentence: each word with its length, then the zero terminator.
pub fn encode_sentence<W: AsRef<[u8]>>(words: &[W]) -> Vec<u8> {
    let mut out = Vec::new();
    for w in words {
        let w = w.as_ref();
        out.extend_from_slice(&encode_len(w.len()));
        out.extend_from_slice(w);
    }
    out.push(0);
    out
}

pub async fn write_sentence<W: AsyncWrite + Unpin, S: AsRef<[u8]>>(
    w: &mut W,
    words: &[S],
) -> Result<(), WireError> {
    w.write_all(&encode_sentence(words)).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_boundary_encodes_as_documented() {
        let cases: &[(usize, &[u8])] = &[
            (0, &[0x00]),
            (0x7F, &[0x7F]),
            (0x80, &[0x80, 0x80]),
            (0x3FFF, &[0xBF, 0xFF]),
            (0x4000, &[0xC0, 0x40, 0x00]),
            (0x1F_FFFF, &[0xDF, 0xFF, 0xFF]),
            (0x20_0000, &[0xE0, 0x20, 0x00, 0x00]),
            (0xFFF_FFFF, &[0xEF, 0xFF, 0xFF, 0xFF]),
            (0x1000_0000, &[0xF0, 0x10, 0x00, 0x00, 0x00]),
        ];
        for (len, bytes) in cases {
            assert_eq!(encode_len(*len), *bytes, "encode {len:#x}");
            assert_eq!(decode_len(bytes).unwrap(), *len, "decode {len:#x}");
        }
        assert!(len_size(0xF8).is_err());
    }

    #[tokio::test]
    async fn sentences_round_trip_and_empty_ones_are_skipped() {
        let mut bytes = vec![0u8];
        bytes.extend(encode_sentence(&["/login", "=name=admin"]));
        let mut r = bytes.as_slice();
        let s = read_sentence(&mut r).await.unwrap();
        assert_eq!(s, vec![b"/login".to_vec(), b"=name=admin".to_vec()]);
    }
}
