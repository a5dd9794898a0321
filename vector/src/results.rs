//! The result cache of deterministic implementation calls: the same code on
//! the same input gives the same output, so the output is kept under
//! `eol:<feature>:results:<sha256(code)>:<sha256(canonical input)>` with a TTL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::index::hex;

/// The JSON text of `value` with object keys sorted at every level and no
/// whitespace: equal values give equal text whatever their key order.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The hex sha256 of a text.
pub fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

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
    fn canonical_json_sorts_keys_at_every_level() {
        let a: Value = serde_json::json!({"b": 1, "a": {"z": [true, null], "y": "x"}});
        let b: Value = serde_json::from_str(r#"{"a":{"y":"x","z":[true,null]},"b":1}"#).unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"y":"x","z":[true,null]},"b":1}"#
        );
        assert_eq!(canonical_json(&a), canonical_json(&b));
    }

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
