//! The result cache of deterministic implementation calls: the same code on
//! the same input gives the same output, so the output is kept under
//! `eol:<feature>:results:<sha256(code)>:<sha256(canonical input)>` with a TTL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde_json::Value;

pub use crate::digest::{canonical_json, sha256_hex};

/// The key of the cached output of `code` run on `input` in `feature`.
pub fn result_key(feature: &str, code: &str, input: &Value) -> String {
    format!(
        "eol:{feature}:results:{}:{}",
        sha256_hex(code),
        sha256_hex(&canonical_json(input))
    )
}

/// Why the result cache failed.
#[derive(Debug, thiserror::Error)]
pub enum ResultCacheError {
    /// A Redis command failed.
    #[error("failed to {action} the cached result for feature `{feature}`: {source}")]
    Redis {
        /// `read` or `write`.
        action: &'static str,
        /// The feature.
        feature: String,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },
}

/// Hit and miss counts of a [`ResultCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResultStats {
    /// Lookups that found an output.
    pub hits: u64,
    /// Lookups that found none (or an unreadable one).
    pub misses: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Outputs of deterministic calls, keyed by the hash of code and input.
#[derive(Clone)]
pub struct ResultCache {
    conn: ConnectionManager,
    ttl: Option<Duration>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultCache")
            .field("ttl", &self.ttl)
            .field("stats", &self.stats())
            .finish()
    }
}

impl ResultCache {
    /// A cache on `conn` whose entries live `ttl` (forever when `None`).
    pub fn new(conn: ConnectionManager, ttl: Option<Duration>) -> Self {
        Self {
            conn,
            ttl,
            counters: Arc::default(),
        }
    }

    /// The output stored for `code` on `input`, if any.
    pub async fn get(
        &self,
        feature: &str,
        code: &str,
        input: &Value,
    ) -> Result<Option<Value>, ResultCacheError> {
        let key = result_key(feature, code, input);
        let mut conn = self.conn.clone();
        let stored: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(|source| ResultCacheError::Redis {
                action: "read",
                feature: feature.to_owned(),
                source,
            })?;
        let value = stored.and_then(|text| match serde_json::from_str(&text) {
            Ok(v) => Some(v),
            Err(error) => {
                tracing::warn!(%key, %error, "ignoring an unreadable cached result");
                None
            }
        });
        let counter = if value.is_some() {
            &self.counters.hits
        } else {
            &self.counters.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(value)
    }

    /// Stores the output of `code` on `input`.
    pub async fn put(
        &self,
        feature: &str,
        code: &str,
        input: &Value,
        output: &Value,
    ) -> Result<(), ResultCacheError> {
        let key = result_key(feature, code, input);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(output.to_string());
        if let Some(ttl) = self.ttl {
            cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
        }
        let mut conn = self.conn.clone();
        cmd.query_async::<()>(&mut conn)
            .await
            .map_err(|source| ResultCacheError::Redis {
                action: "write",
                feature: feature.to_owned(),
                source,
            })
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> ResultStats {
        ResultStats {
            hits: self.counters.hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_key_depends_on_code_and_input() {
        let input = serde_json::json!({"url": "https://x"});
        let k = result_key("shortener", "def f(): pass", &input);
        assert!(k.starts_with("eol:shortener:results:"));
        assert_ne!(k, result_key("shortener", "def f(): return 1", &input));
        assert_ne!(
            k,
            result_key(
                "shortener",
                "def f(): pass",
                &serde_json::json!({"url": "https://y"})
            )
        );
    }
}
