//! A short-lived in-memory cache of authenticated tokens, so most requests skip the token
//! lookup. Correct for revocation because every revocation passes through this process:
//! logout removes its entry, and any operator change (role, password, deletion) clears the
//! cache. Entries also expire after a few seconds, and never outlive the token itself, which
//! bounds staleness if several central instances ever share one database.

use crate::storage::AuthedOperator;
use chrono::Utc;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(10);
const MAX_ENTRIES: usize = 50_000;

#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<Vec<u8>, (AuthedOperator, Instant)>>,
}

impl TokenCache {
    pub fn get(&self, hash: &[u8]) -> Option<AuthedOperator> {
        let entries = self.entries.lock().ok()?;
        let (operator, at) = entries.get(hash)?;
        (at.elapsed() < TTL && operator.token_expires_at > Utc::now()).then(|| operator.clone())
    }

    pub fn put(&self, hash: Vec<u8>, operator: AuthedOperator) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.retain(|_, (_, at)| at.elapsed() < TTL);
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(hash, (operator, Instant::now()));
        }
    }

    pub fn remove(&self, hash: &[u8]) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(hash);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}
