//! The rate-limit grammar of routeros.md §5: validation of `rate-limit` values and the
//! conversion to simple-queue `max-limit` pairs used by dynamic session queues.

use super::format::parse_duration_ms;

/// Parses one rate (`512k`, `10M`, `1G`, `1000000`) into bits per second.
pub fn parse_rate(s: &str) -> Option<u64> {
    let (digits, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1_000),
        b'M' => (&s[..s.len() - 1], 1_000_000),
        b'G' => (&s[..s.len() - 1], 1_000_000_000),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

fn parse_pair(s: &str) -> Option<(u64, u64)> {
    match s.split_once('/') {
        Some((rx, tx)) => Some((parse_rate(rx)?, parse_rate(tx)?)),
        None => {
            let r = parse_rate(s)?;
            Some((r, r))
        }
    }
}

/// A parsed rate limit: `rx` is the customer's upload, `tx` the download (router's view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub rx: u64,
    pub tx: u64,
}

/// The value does not follow the rate-limit grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate limit")]
pub struct InvalidRateLimit;

/// Validates a rate-limit string. `Ok(None)` is the empty string (unlimited).
pub fn parse_rate_limit(s: &str) -> Result<Option<RateLimit>, InvalidRateLimit> {
    if s.is_empty() {
        return Ok(None);
    }
    let parts: Vec<&str> = s.split(' ').collect();
    if parts.len() > 6 {
        return Err(InvalidRateLimit);
    }
    let (rx, tx) = parse_pair(parts[0]).ok_or(InvalidRateLimit)?;
    for (i, p) in parts.iter().enumerate().skip(1) {
        let ok = match i {
            1 | 2 | 5 => parse_pair(p).is_some(),
            3 => match p.split_once('/') {
                Some((a, b)) => parse_duration_ms(a).is_some() && parse_duration_ms(b).is_some(),
                None => parse_duration_ms(p).is_some(),
            },
            4 => matches!(p.parse::<u8>(), Ok(1..=8)),
            _ => false,
        };
        if !ok {
            return Err(InvalidRateLimit);
        }
    }
    Ok(Some(RateLimit { rx, tx }))
}

/// The simple-queue `max-limit` a session queue gets from a rate limit: `upload/download` of
/// the target, in plain bits per second.
pub fn queue_max_limit(r: &RateLimit) -> String {
    format!("{}/{}", r.rx, r.tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_follow_the_grammar() {
        assert_eq!(
            parse_rate_limit("512k/1M"),
            Ok(Some(RateLimit {
                rx: 512_000,
                tx: 1_000_000
            }))
        );
        assert!(parse_rate_limit("10M").is_ok());
        assert!(parse_rate_limit("1M/2M 2M/4M 768k/1500k 8/8 5 256k/512k").is_ok());
        assert!(parse_rate_limit("512K/512K").is_ok());
        assert_eq!(parse_rate_limit(""), Ok(None));
        assert!(parse_rate_limit("fast").is_err());
        assert!(parse_rate_limit("1M/2M 2M/4M 768k/1500k 8/8 9").is_err());
        assert!(parse_rate_limit("1M/").is_err());
    }
}
