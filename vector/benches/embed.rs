//! Local embedding throughput (all-MiniLM-L6-v2 on candle, CPU) and the cost of an
//! embeddings-cache hit against computing, side by side in one run.
//!
//!     cargo bench -p eol-vector --bench embed
//!
//! Needs `scripts/embedding-model.sh install` and a Redis: `$REDIS_URL`, else a server of
//! the bench's own from `scripts/redis.sh install`. `EOL_BENCH_TEXTS` sets the corpus size (256).

#[path = "../tests/common/mod.rs"]
mod common;

use eol_vector::Embedder;
use eol_vector::embed::local::MiniLm;
use eol_vector::embed_cache::{EmbeddingsCache, EmbeddingsCacheConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH: usize = 32;

/// Distinct sentences of about twelve words.
fn corpus(n: usize, run: &str) -> Vec<String> {
    const SUBJECTS: [&str; 8] = [
        "The customer",
        "Our support team",
        "A new user",
        "The billing service",
        "My manager",
        "The mobile app",
        "This invoice",
        "The delivery driver",
    ];
    const VERBS: [&str; 8] = [
        "asked about",
        "could not find",
        "reported a problem with",
        "wants to change",
        "was charged twice for",
        "forgot",
        "is waiting for",
        "cannot open",
    ];
    const OBJECTS: [&str; 8] = [
        "the password reset email",
        "order number",
        "the monthly subscription plan",
        "the shipping address on file",
        "ticket",
        "the refund for last week",
        "the account settings page",
        "parcel",
    ];
    (0..n)
        .map(|i| {
            format!(
                "{} {} {} {} yesterday, run {run}.",
                SUBJECTS[i % 8],
                VERBS[(i / 8) % 8],
                OBJECTS[(i / 64) % 8],
                i
            )
        })
        .collect()
}

fn redis() -> (String, Option<common::OwnRedis>) {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return (url, None);
    }
    let own = common::own_redis(false, |server| {
        format!(
            "the bench needs Redis ({} is missing): run scripts/redis.sh install",
            server.display()
        )
    });
    (own.url.clone(), Some(own))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn time_batches(e: &dyn Embedder, texts: &[String]) -> (Duration, Vec<Duration>) {
    let start = Instant::now();
    let mut per_batch = Vec::new();
    for chunk in texts.chunks(BATCH) {
        let t = Instant::now();
        let v = e.embed(chunk).await.expect("embed");
        per_batch.push(t.elapsed());
        assert_eq!(v.len(), chunk.len());
    }
    per_batch.sort();
    (start.elapsed(), per_batch)
}

async fn time_singles(e: &dyn Embedder, texts: &[String]) -> Vec<Duration> {
    let mut out = Vec::new();
    for t in texts {
        let start = Instant::now();
        e.embed(std::slice::from_ref(t)).await.expect("embed");
        out.push(start.elapsed());
    }
    out.sort();
    out
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; any other run (e.g. `cargo test --benches`) is a smoke check.
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("EOL_BENCH_TEXTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 256 } else { BATCH });
    let load = Instant::now();
    let model = Arc::new(
        MiniLm::from_env()
            .unwrap_or_else(|e| panic!("{e}. Run scripts/embedding-model.sh install.")),
    );
    println!("model loaded in {:?}", load.elapsed());
    let run = format!("{}", std::process::id());
    let words: f64 = corpus(n, &run)
        .iter()
        .map(|t| t.split_whitespace().count() as f64)
        .sum::<f64>()
        / n as f64;
    println!(
        "{n} texts of {words:.1} words on average, batches of {BATCH}, {} CPUs",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );

    // Warm-up: first-touch allocations and the thread pools.
    model
        .embed(&corpus(BATCH, "warm-up"))
        .await
        .expect("warm-up");

    let texts = corpus(n, &run);
    let (total, batches) = time_batches(model.as_ref(), &texts).await;
    let throughput = n as f64 / total.as_secs_f64();
    println!(
        "local MiniLM   : {throughput:8.1} texts/s  (batch of {BATCH}: p50 {:?}, max {:?})",
        percentile(&batches, 0.5),
        percentile(&batches, 1.0)
    );

    let (url, _own) = redis();
    let cache = EmbeddingsCache::new(
        model.clone(),
        redis::Client::open(url.as_str()).expect("redis url"),
        EmbeddingsCacheConfig::default(),
    );
    let cached_texts = corpus(n, &format!("{run}-cache"));
    let (miss_total, _) = time_batches(&cache, &cached_texts).await;
    let (hit_total, hit_batches) = time_batches(&cache, &cached_texts).await;
    let counts = cache.counts();
    assert_eq!(
        (counts.hits, counts.misses, counts.redis_errors),
        (n as u64, n as u64, 0)
    );
    let hit_throughput = n as f64 / hit_total.as_secs_f64();
    println!(
        "cache, misses  : {:8.1} texts/s  (compute + SET EX pipeline)",
        n as f64 / miss_total.as_secs_f64()
    );
    println!(
        "cache, hits    : {hit_throughput:8.1} texts/s  (batch of {BATCH}: p50 {:?}, max {:?}; one MGET)",
        percentile(&hit_batches, 0.5),
        percentile(&hit_batches, 1.0)
    );

    let singles = &cached_texts[..n.min(64)];
    let fresh = corpus(singles.len(), &format!("{run}-single"));
    let compute_one = time_singles(model.as_ref(), &fresh).await;
    let hit_one = time_singles(&cache, singles).await;
    println!(
        "one text       : compute p50 {:?} p99 {:?}; cache hit p50 {:?} p99 {:?}",
        percentile(&compute_one, 0.5),
        percentile(&compute_one, 0.99),
        percentile(&hit_one, 0.5),
        percentile(&hit_one, 0.99)
    );
    println!(
        "ratios         : a batch hit costs 1/{:.0} of computing it; one text hit 1/{:.0} (p50)",
        hit_throughput / throughput,
        percentile(&compute_one, 0.5).as_secs_f64() / percentile(&hit_one, 0.5).as_secs_f64()
    );
}
