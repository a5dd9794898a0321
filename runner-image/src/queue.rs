//! A feature's async calls, on the store's Redis: [`eol_core::queue`]'s
//! protocol over the store's shared connection (and a connection of its own
//! for each worker's blocking reads).

use crate::store::{RedisStore, StoreError};
pub use eol_core::queue::{
    CallRecord, CallState, Delivery, Enqueued, FeatureQueue, QueueError, QueueSettings, QueuedCall,
    Taken,
};
use redis::aio::MultiplexedConnection;
use std::sync::Arc;
use std::time::Duration;

/// One feature's queue in the store's Redis.
#[derive(Debug, Clone)]
pub struct Queue {
    store: Arc<RedisStore>,
    queue: FeatureQueue,
}

fn command(e: QueueError) -> StoreError {
    StoreError::Command {
        what: e.what,
        source: e.source,
    }
}

impl Queue {
    /// The queue of `feature` in `store`.
    pub fn new(store: Arc<RedisStore>, feature: &str, settings: QueueSettings) -> Self {
        Self {
            store,
            queue: FeatureQueue::new(feature, settings),
        }
    }

    /// How it behaves.
    pub fn settings(&self) -> &QueueSettings {
        self.queue.settings()
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        self.queue.stream()
    }

    /// Enqueues `call` unless `idempotency` (the caller's key, already scoped
    /// to them; kept as its SHA-256) was seen or the queue is full.
    pub async fn enqueue(
        &self,
        call: &QueuedCall,
        input_sha256: &str,
        idempotency: Option<&str>,
    ) -> Result<Enqueued, StoreError> {
        let digest = idempotency.map(|key| crate::serve::audit::sha256_hex(key.as_bytes()));
        let mut conn = self.store.connection().await?;
        let now = crate::serve::audit::now();
        self.queue
            .enqueue(&mut conn, call, input_sha256, digest.as_deref(), &now)
            .await
            .map_err(command)
    }

    /// The record of call `id`, if it is kept.
    pub async fn record(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
        let mut conn = self.store.connection().await?;
        self.queue.record(&mut conn, id).await.map_err(command)
    }

    /// The calls accepted and not yet answered.
    pub async fn depth(&self) -> Result<u64, StoreError> {
        let mut conn = self.store.connection().await?;
        self.queue.depth(&mut conn).await.map_err(command)
    }

    /// A connection of its own for a worker: its blocking reads must not hold
    /// up the calls sharing the store's connection.
    pub async fn worker_connection(&self) -> Result<MultiplexedConnection, StoreError> {
        self.store.dedicated_connection().await
    }

    /// Waits up to `block` for one new entry for `consumer`, on `conn` (a
    /// [`Self::worker_connection`]). With no queue yet (no call was ever
    /// queued), waits `block` and finds nothing.
    pub async fn read(
        &self,
        conn: &mut MultiplexedConnection,
        consumer: &str,
        block: Duration,
    ) -> Result<Option<Delivery>, StoreError> {
        match self.queue.read(conn, consumer, block).await {
            Err(e) if e.is_no_queue() => {
                tokio::time::sleep(block).await;
                Ok(None)
            }
            other => other.map_err(command),
        }
    }

    /// Takes over up to `count` entries of pods that stopped renewing them
    /// (none while there is no queue).
    pub async fn reclaim(&self, consumer: &str, count: usize) -> Result<Vec<Delivery>, StoreError> {
        let mut conn = self.store.connection().await?;
        match self.queue.reclaim(&mut conn, consumer, count).await {
            Err(e) if e.is_no_queue() => Ok(Vec::new()),
            other => other.map_err(command),
        }
    }

    /// Renews `consumer`'s claim on `entry`.
    pub async fn renew(&self, consumer: &str, entry: &str) -> Result<(), StoreError> {
        let mut conn = self.store.connection().await?;
        self.queue
            .renew(&mut conn, consumer, entry)
            .await
            .map_err(command)
    }

    /// Counts an attempt at call `id` and says whether to run it.
    pub async fn take(&self, id: &str) -> Result<Option<Taken>, StoreError> {
        let mut conn = self.store.connection().await?;
        self.queue.take(&mut conn, id).await.map_err(command)
    }

    /// Stores `record` unless answered already, and acknowledges and deletes `entry`.
    pub async fn answer(&self, entry: &str, record: &CallRecord) -> Result<bool, StoreError> {
        let mut conn = self.store.connection().await?;
        self.queue
            .answer(&mut conn, entry, record)
            .await
            .map_err(command)
    }

    /// Acknowledges and deletes `entry` without answering.
    pub async fn drop_entry(&self, entry: &str) -> Result<(), StoreError> {
        let mut conn = self.store.connection().await?;
        self.queue
            .drop_entry(&mut conn, entry)
            .await
            .map_err(command)
    }
}

/// A new call id: 128 random bits, hex.
pub fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_128_bit_hex() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert!(
            a.len() == 32 && a.chars().all(|c| c.is_ascii_hexdigit()),
            "{a}"
        );
    }
}
