//! The embeddings cache: text hash -> vector in Redis, in front of any
//! [`Embedder`]. Key `eol:emb:<model_id>:<sha256 of the text, hex>`, value the
//! vector as little-endian `f32` bytes, with a TTL. A batch costs one `MGET`,
//! the inner embedder runs on the misses only (each distinct text once), and the
//! new vectors are written back with `SET .. EX` in one pipeline.
//!
//! Redis is an optimisation here, never a dependency: when it is down or slow
//! the texts are embedded as if every lookup missed, and the failure is logged.

use crate::{EmbedError, Embedder};
use futures::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The prefix of every key of this cache.
pub const KEY_PREFIX: &str = "eol:emb:";

/// How the cache behaves.
#[derive(Debug, Clone)]
pub struct EmbeddingsCacheConfig {
    /// How long a vector stays in Redis after it was computed.
    pub ttl: Duration,
    /// Whether a hit restarts the TTL (one pipelined `EXPIRE` per batch with hits).
    pub refresh_on_hit: bool,
    /// Limit on connecting to and on each answer from Redis; past it the batch is computed.
    pub redis_timeout: Duration,
    /// After Redis could not be reached, how long to compute without trying again.
    pub reconnect_after: Duration,
}

impl Default for EmbeddingsCacheConfig {
    /// One week, no refresh on hit, 500 ms Redis timeout, 5 s between connection attempts.
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(7 * 24 * 3600),
            refresh_on_hit: false,
            redis_timeout: Duration::from_millis(500),
            reconnect_after: Duration::from_secs(5),
        }
    }
}

/// Lookups served from Redis and lookups that had to be computed, since the cache was made.
/// What the runner feeds into `eol_cache_hits_total{type="embedding",hit="true"|"false"}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounts {
    /// Texts whose vector came from Redis.
    pub hits: u64,
    /// Texts that were embedded (absent from Redis, unreadable, or Redis unavailable).
    pub misses: u64,
    /// Redis commands that failed (the batch was computed instead).
    pub redis_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    redis_errors: AtomicU64,
}

enum Connection {
    /// Connected lazily from this client, so a cache can be made while Redis is down.
    Lazy(Box<LazyConnection>),
    /// A connection the caller already holds.
    Given(ConnectionManager),
}

struct LazyConnection {
    client: redis::Client,
    state: tokio::sync::Mutex<LazyState>,
}

#[derive(Default)]
struct LazyState {
    manager: Option<ConnectionManager>,
    retry_at: Option<Instant>,
}

/// An [`Embedder`] that looks vectors up in Redis before asking `inner`.
/// It keeps the inner model id and dimension, so it can stand wherever `inner` would.
pub struct EmbeddingsCache {
    inner: Arc<dyn Embedder>,
    connection: Connection,
    config: EmbeddingsCacheConfig,
    counters: Counters,
}

impl std::fmt::Debug for EmbeddingsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingsCache")
            .field("model_id", &self.inner.model_id())
            .field("config", &self.config)
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

/// The Redis key of `text`'s vector under `model_id`.
pub fn cache_key(model_id: &str, text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut key = String::with_capacity(KEY_PREFIX.len() + model_id.len() + 65);
    key.push_str(KEY_PREFIX);
    key.push_str(model_id);
    key.push(':');
    for b in digest {
        key.push_str(&format!("{b:02x}"));
    }
    key
}

/// A vector as stored: little-endian `f32`s.
pub fn encode_vector(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The vector stored in `bytes`, if they hold exactly `dimension` floats
/// (any whole number of floats when `dimension` is 0, i.e. not known yet).
pub fn decode_vector(bytes: &[u8], dimension: usize) -> Option<Vec<f32>> {
    if bytes.is_empty()
        || !bytes.len().is_multiple_of(4)
        || (dimension != 0 && bytes.len() / 4 != dimension)
    {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

impl EmbeddingsCache {
    /// A cache on the Redis at `client`, connected on first use (and again after a failure,
    /// at most every [`EmbeddingsCacheConfig::reconnect_after`]).
    pub fn new(
        inner: Arc<dyn Embedder>,
        client: redis::Client,
        config: EmbeddingsCacheConfig,
    ) -> Self {
        Self {
            inner,
            connection: Connection::Lazy(Box::new(LazyConnection {
                client,
                state: tokio::sync::Mutex::new(LazyState::default()),
            })),
            config,
            counters: Counters::default(),
        }
    }

    /// A cache on a connection the caller already has (it reconnects by itself).
    pub fn with_connection(
        inner: Arc<dyn Embedder>,
        connection: ConnectionManager,
        config: EmbeddingsCacheConfig,
    ) -> Self {
        Self {
            inner,
            connection: Connection::Given(connection),
            config,
            counters: Counters::default(),
        }
    }

    /// Hits, misses and Redis errors so far.
    pub fn counts(&self) -> CacheCounts {
        CacheCounts {
            hits: self.counters.hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
            redis_errors: self.counters.redis_errors.load(Ordering::Relaxed),
        }
    }

    /// The embedder behind the cache.
    pub fn inner(&self) -> &Arc<dyn Embedder> {
        &self.inner
    }

    async fn connection(&self) -> Option<ConnectionManager> {
        match &self.connection {
            Connection::Given(manager) => Some(manager.clone()),
            Connection::Lazy(lazy) => {
                let mut state = lazy.state.lock().await;
                if let Some(manager) = &state.manager {
                    return Some(manager.clone());
                }
                if state.retry_at.is_some_and(|at| Instant::now() < at) {
                    return None;
                }
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.config.redis_timeout))
                    .set_response_timeout(Some(self.config.redis_timeout))
                    .set_number_of_retries(1);
                match lazy.client.get_connection_manager_with_config(config).await {
                    Ok(manager) => {
                        state.manager = Some(manager.clone());
                        state.retry_at = None;
                        Some(manager)
                    }
                    Err(error) => {
                        self.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%error, "embeddings cache: Redis unreachable, computing embeddings without it");
                        state.retry_at = Some(Instant::now() + self.config.reconnect_after);
                        None
                    }
                }
            }
        }
    }

    fn redis_failed(&self, what: &str, error: &redis::RedisError) {
        self.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%error, "embeddings cache: {what} failed, computing embeddings without the cache");
    }

    async fn embed_cached(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let model_id = self.inner.model_id();
        let keys: Vec<String> = texts.iter().map(|t| cache_key(model_id, t)).collect();
        let mut connection = self.connection().await;

        let mut found: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        if let Some(conn) = connection.as_mut() {
            match redis::cmd("MGET")
                .arg(&keys)
                .query_async::<Vec<Option<Vec<u8>>>>(conn)
                .await
            {
                Ok(values) => {
                    let dimension = self.inner.dimension();
                    for (slot, value) in found.iter_mut().zip(values) {
                        *slot = value.and_then(|b| decode_vector(&b, dimension));
                    }
                }
                Err(error) => {
                    self.redis_failed("MGET", &error);
                    connection = None;
                }
            }
        }

        let hits = found.iter().filter(|v| v.is_some()).count();
        self.counters.hits.fetch_add(hits as u64, Ordering::Relaxed);
        self.counters
            .misses
            .fetch_add((texts.len() - hits) as u64, Ordering::Relaxed);

        // Each distinct missing text is embedded once, however often it repeats.
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        let mut to_embed: Vec<String> = Vec::new();
        let mut miss_slot: Vec<(usize, usize)> = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            if found[i].is_none() {
                let j = *first_of.entry(text.as_str()).or_insert_with(|| {
                    to_embed.push(text.clone());
                    to_embed.len() - 1
                });
                miss_slot.push((i, j));
            }
        }
        let computed = if to_embed.is_empty() {
            Vec::new()
        } else {
            self.inner.embed(&to_embed).await?
        };
        if computed.len() != to_embed.len() {
            return Err(EmbedError::Failed {
                model: model_id.to_string(),
                message: format!("{} vectors for {} texts", computed.len(), to_embed.len()),
            });
        }

        if let Some(conn) = connection.as_mut() {
            let mut pipe = redis::pipe();
            let mut written = 0;
            if !computed.is_empty() {
                let ttl = self.config.ttl.as_secs().max(1);
                for (text, vector) in to_embed.iter().zip(&computed) {
                    pipe.cmd("SET")
                        .arg(cache_key(model_id, text))
                        .arg(encode_vector(vector))
                        .arg("EX")
                        .arg(ttl)
                        .ignore();
                    written += 1;
                }
            }
            if self.config.refresh_on_hit && hits > 0 {
                let ttl = self.config.ttl.as_secs().max(1);
                for (key, v) in keys.iter().zip(&found) {
                    if v.is_some() {
                        pipe.cmd("EXPIRE").arg(key).arg(ttl).ignore();
                        written += 1;
                    }
                }
            }
            if written > 0
                && let Err(error) = pipe.query_async::<()>(conn).await
            {
                self.redis_failed("SET EX", &error);
            }
        }

        for (i, j) in miss_slot {
            found[i] = Some(computed[j].clone());
        }
        Ok(found.into_iter().map(Option::unwrap_or_default).collect())
    }
}

impl Embedder for EmbeddingsCache {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(self.embed_cached(texts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_the_text_under_the_model() {
        let key = cache_key("all-MiniLM-L6-v2", "");
        assert_eq!(
            key,
            "eol:emb:all-MiniLM-L6-v2:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_ne!(cache_key("a", "x"), cache_key("b", "x"));
    }

    #[test]
    fn vectors_round_trip_and_wrong_lengths_are_misses() {
        let v = vec![0.25, -1.5, 3.0];
        let bytes = encode_vector(&v);
        assert_eq!(bytes.len(), 12);
        assert_eq!(&bytes[..4], &0.25f32.to_le_bytes());
        assert_eq!(decode_vector(&bytes, 3), Some(v.clone()));
        assert_eq!(decode_vector(&bytes, 0), Some(v));
        assert_eq!(decode_vector(&bytes, 4), None);
        assert_eq!(decode_vector(&bytes[..5], 0), None);
        assert_eq!(decode_vector(&[], 0), None);
    }
}
