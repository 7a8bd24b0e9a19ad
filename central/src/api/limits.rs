//! In-memory limits: throttling of failed logins (per tenant+username and per client
//! address) and the per-tenant rate limit on customer creation. Memory is bounded: entries
//! expire and the maps are pruned when they grow.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_KEYS: usize = 100_000;

/// Counts failures in a sliding-enough fixed window; over `max`, callers wait for the window.
pub struct FailureThrottle {
    max: u32,
    window: Duration,
    entries: Mutex<HashMap<String, (u32, Instant)>>,
}

impl FailureThrottle {
    pub fn new(max: u32, window: Duration) -> FailureThrottle {
        FailureThrottle {
            max,
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds to wait when `key` is blocked.
    pub fn blocked(&self, key: &str, now: Instant) -> Option<u64> {
        let entries = self.entries.lock().ok()?;
        let (count, start) = entries.get(key)?;
        let end = *start + self.window;
        (*count >= self.max && end > now).then(|| end.duration_since(now).as_secs().max(1))
    }

    pub fn fail(&self, key: &str, now: Instant) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MAX_KEYS {
            let window = self.window;
            entries.retain(|_, (_, start)| *start + window > now);
        }
        let entry = entries.entry(key.to_string()).or_insert((0, now));
        if entry.1 + self.window <= now {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    pub fn clear(&self, key: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }
}

/// A token bucket per key: `per_minute` tokens, refilled continuously; 0 disables the limit.
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token, or says how many seconds until one is available.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= MAX_KEYS {
            buckets.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(120));
        }
        let capacity = f64::from(self.per_minute);
        let rate = capacity / 60.0;
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_block_after_the_maximum_until_the_window_ends() {
        let t = FailureThrottle::new(3, Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..3 {
            assert!(t.blocked("k", now).is_none());
            t.fail("k", now);
        }
        assert!(t.blocked("k", now).is_some());
        assert!(t.blocked("k", now + Duration::from_secs(61)).is_none());
        t.clear("k");
        assert!(t.blocked("k", now).is_none());
    }

    #[test]
    fn bucket_allows_a_burst_then_refills() {
        let r = RateLimiter::new(2);
        let now = Instant::now();
        assert!(r.take("t", now).is_ok());
        assert!(r.take("t", now).is_ok());
        assert_eq!(r.take("t", now), Err(30));
        assert!(r.take("t", now + Duration::from_secs(30)).is_ok());
        assert!(r.take("other", now).is_ok());
    }
}
