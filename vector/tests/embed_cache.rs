//! The embeddings cache on a real Redis in front of the real local model.
//!
//! Redis: `$REDIS_URL` when set (`eval "$(scripts/redis.sh start)"`), else a server of
//! this test binary's own from the cached bundle (`scripts/redis.sh install`).

use eol_vector::embed::local::MiniLm;
use eol_vector::embed_cache::{CacheCounts, EmbeddingsCache, EmbeddingsCacheConfig, cache_key};
use eol_vector::{EmbedError, Embedder};
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

mod common;

/// The Redis a test runs against; a server of its own is stopped when this drops.
struct TestRedis {
    url: String,
    _own: Option<common::OwnRedis>,
}

fn redis() -> TestRedis {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return TestRedis { url, _own: None };
    }
    let own = common::own_redis(false, |server| {
        format!(
            "these tests need the local Redis ({} is missing): run scripts/redis.sh install, or set REDIS_URL from `scripts/redis.sh start`",
            server.display()
        )
    });
    TestRedis {
        url: own.url.clone(),
        _own: Some(own),
    }
}

fn model() -> Arc<MiniLm> {
    static MODEL: OnceLock<Arc<MiniLm>> = OnceLock::new();
    Arc::clone(MODEL.get_or_init(|| {
        Arc::new(MiniLm::from_env().unwrap_or_else(|e| {
            panic!("these tests need the local embedding model: {e}. Run scripts/embedding-model.sh install.")
        }))
    }))
}

/// The real model, counting the texts it is asked to embed.
struct Counting {
    inner: Arc<MiniLm>,
    texts: AtomicUsize,
}

impl Embedder for Counting {
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
        self.texts.fetch_add(texts.len(), Ordering::Relaxed);
        self.inner.embed(texts)
    }
}

/// Texts no other test (or earlier run on a shared Redis) has cached.
fn fresh_texts(n: usize) -> Vec<String> {
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    (0..n)
        .map(|i| format!("Sentence number {i} of run {nonce} about caching."))
        .collect()
}

fn cache(inner: Arc<dyn Embedder>, url: &str, ttl: Duration) -> EmbeddingsCache {
    let client = redis::Client::open(url).expect("redis url");
    EmbeddingsCache::new(
        inner,
        client,
        EmbeddingsCacheConfig {
            ttl,
            ..Default::default()
        },
    )
}

#[tokio::test]
async fn the_second_call_is_all_hits_with_identical_vectors_and_a_ttl() {
    let counting = Arc::new(Counting {
        inner: model(),
        texts: AtomicUsize::new(0),
    });
    let redis = redis();
    let cache = cache(counting.clone(), &redis.url, Duration::from_secs(600));
    assert_eq!(cache.model_id(), "all-MiniLM-L6-v2");
    assert_eq!(cache.dimension(), 384);
    let texts = fresh_texts(5);

    let first = cache.embed(&texts).await.expect("first");
    assert_eq!(
        cache.counts(),
        CacheCounts {
            hits: 0,
            misses: 5,
            redis_errors: 0
        }
    );
    assert_eq!(counting.texts.load(Ordering::Relaxed), 5);
    let direct = model().embed(&texts).await.expect("direct");
    assert_eq!(first, direct);

    let second = cache.embed(&texts).await.expect("second");
    assert_eq!(
        cache.counts(),
        CacheCounts {
            hits: 5,
            misses: 5,
            redis_errors: 0
        }
    );
    assert_eq!(
        counting.texts.load(Ordering::Relaxed),
        5,
        "hits must not reach the model"
    );
    assert_eq!(first, second, "vectors read back bit for bit");

    let client = redis::Client::open(redis.url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let key = cache_key("all-MiniLM-L6-v2", &texts[0]);
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    assert!(pttl > 0 && pttl <= 600_000, "PTTL {pttl}");
    let bytes: Vec<u8> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(bytes.len(), 384 * 4);
}

#[tokio::test]
async fn a_batch_embeds_only_its_misses_and_each_repeated_text_once() {
    let counting = Arc::new(Counting {
        inner: model(),
        texts: AtomicUsize::new(0),
    });
    let redis = redis();
    let cache = cache(counting.clone(), &redis.url, Duration::from_secs(60));
    let texts = fresh_texts(3);
    cache.embed(&texts[..1]).await.expect("warm one");
    let batch = vec![
        texts[0].clone(),
        texts[1].clone(),
        texts[2].clone(),
        texts[1].clone(),
    ];
    let v = cache.embed(&batch).await.expect("batch");
    assert_eq!(counting.texts.load(Ordering::Relaxed), 1 + 2);
    assert_eq!(
        cache.counts(),
        CacheCounts {
            hits: 1,
            misses: 1 + 3,
            redis_errors: 0
        }
    );
    assert_eq!(v[1], v[3]);
    assert_eq!(v, model().embed(&batch).await.expect("direct"));
}

#[tokio::test]
async fn a_redis_that_is_down_still_embeds() {
    let down = format!("redis://127.0.0.1:{}", common::free_port());
    let cache = cache(model(), &down, Duration::from_secs(60));
    let texts = fresh_texts(2);
    let v = cache.embed(&texts).await.expect("embeds without Redis");
    assert_eq!(v, model().embed(&texts).await.expect("direct"));
    let again = cache.embed(&texts).await.expect("embeds again");
    assert_eq!(again, v);
    let counts = cache.counts();
    assert_eq!((counts.hits, counts.misses), (0, 4));
    assert!(counts.redis_errors >= 1, "{counts:?}");
}
