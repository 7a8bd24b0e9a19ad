//! Raw classic-API client for conformance tests: send words, read sentences.

use std::time::Duration;

use anyhow::Result;
use tokio::io::BufReader;
use tokio::net::TcpStream;

use crate::sim::wire;

/// A raw classic-API connection for conformance tests: send words, read sentences.
pub struct RawApi {
    stream: BufReader<TcpStream>,
}

/// One reply sentence's words.
pub type Sentence = Vec<Vec<u8>>;

impl RawApi {
    pub async fn connect(port: u16) -> Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        Ok(RawApi {
            stream: BufReader::new(stream),
        })
    }
    pub async fn send<W: AsRef<[u8]>>(&mut self, words: &[W]) -> Result<()> {
        wire::write_sentence(self.stream.get_mut(), words).await?;
        Ok(())
    }
    pub async fn read(&mut self) -> Result<Sentence> {
        Ok(tokio::time::timeout(
            Duration::from_secs(10),
            wire::read_sentence(&mut self.stream),
        )
        .await??)
    }
    /// Sends a command and reads replies up to and including `!done` (or `!fatal`).
    pub async fn call<W: AsRef<[u8]>>(&mut self, words: &[W]) -> Result<Vec<Sentence>> {
        self.send(words).await?;
        let mut out = Vec::new();
        loop {
            let s = self.read().await?;
            let end = matches!(s.first().map(Vec::as_slice), Some(b"!done" | b"!fatal"));
            out.push(s);
            if end {
                return Ok(out);
            }
        }
    }
    /// The underlying stream (e.g. to write malformed bytes).
    pub fn stream(&mut self) -> &mut TcpStream {
        self.stream.get_mut()
    }
}

/// `=key=value` of a reply sentence.
pub fn attr<'a>(s: &'a Sentence, key: &str) -> Option<&'a [u8]> {
    let prefix = format!("={key}=");
    s.iter()
        .find(|w| w.starts_with(prefix.as_bytes()))
        .map(|w| &w[prefix.len()..])
}
