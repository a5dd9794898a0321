//! Shared set-up for the runner's integration tests: real Python, real Redis.
#![allow(dead_code)] // Each test binary uses a different part.
#![allow(clippy::unwrap_used)] // Test set-up fails loudly.

pub mod jaeger;
pub mod scripted_llm;
pub mod server;

use eol_runner::sandbox::{Interpreter, SandboxLimits, WorkerPool};
use eol_runner::store::{LocalRedis, RedisStore};
use std::sync::Arc;
use std::time::Duration;

/// Limits tight enough that the hostile-code tests finish quickly.
pub fn test_limits() -> SandboxLimits {
    SandboxLimits {
        memory_bytes: 256 * 1024 * 1024,
        cpu_seconds: 1.0,
        wall_timeout: Duration::from_secs(4),
        ..SandboxLimits::default()
    }
}

/// A warm pool on the machine's Python; fails the test with a clear message if there is none.
pub async fn pool(size: usize) -> WorkerPool {
    let python =
        Interpreter::discover(None).unwrap_or_else(|e| panic!("these tests need Python 3: {e}"));
    WorkerPool::start(python, test_limits(), size)
        .await
        .unwrap_or_else(|e| panic!("failed to start the sandbox pool: {e}"))
}

/// A Redis server of the test's own, from the project's cache (`scripts/redis.sh install`).
pub fn local_redis() -> LocalRedis {
    LocalRedis::start().unwrap_or_else(|e| {
        panic!("these tests need the local Redis: {e}. Run scripts/redis.sh install (the test suite's entry point does).")
    })
}

/// A store on `redis`.
pub fn store(redis: &LocalRedis) -> Arc<RedisStore> {
    Arc::new(RedisStore::new(Some(redis.url.clone())))
}

/// The example features directory.
pub fn examples() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../features/examples")
}

/// Every key in `store`'s Redis (KEYS: fine on a test's own small Redis).
pub async fn all_keys(store: &RedisStore) -> Vec<String> {
    let mut conn = store.connection().await.unwrap();
    redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// Creates search index `index` over the hashes under `prefix`, with one text field `title`.
pub async fn create_title_index(store: &RedisStore, index: &str, prefix: &str) {
    let mut conn = store.connection().await.unwrap();
    let mut cmd = redis::cmd("FT.CREATE");
    cmd.arg(index);
    for word in [
        "ON", "HASH", "PREFIX", "1", prefix, "SCHEMA", "title", "TEXT",
    ] {
        cmd.arg(word);
    }
    let created: String = cmd.query_async(&mut conn).await.unwrap();
    assert_eq!(created, "OK");
}
