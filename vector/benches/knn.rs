//! KNN on RediSearch HNSW: latency against a Redis PING measured interleaved
//! in the same run, and recall@10 against brute force computed here.
//!
//! `REDIS_URL` must point at Redis with the search module
//! (`eval "$(scripts/redis.sh start)"`). Knobs (environment):
//! `EOL_KNN_N` vectors (100000), `EOL_KNN_DIMS` (384), `EOL_KNN_QUERIES`
//! (1000), `EOL_KNN_EF` the EF_RUNTIME values tried, smallest first
//! (`10,20,40,...,2560`), `EOL_KNN_RECALL` the recall aimed at (0.98),
//! `EOL_KNN_KEEP=1` keeps the loaded index for the next run,
//! `EOL_KNN_ALGORITHM=flat` an exact index (checks the recall computation),
//! `EOL_KNN_INTRINSIC=16` embedding-like vectors of that intrinsic dimension
//! instead of uniform ones (the worst case of HNSW).
//!
//! `cargo bench -p eol-vector --bench knn`; a quick run: `EOL_KNN_N=10000`.

use std::time::{Duration, Instant};

use eol_vector::index::{Document, EnsureOutcome, Filter, IndexSchema, KnnQuery, VectorIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

const K: usize = 10;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` random unit vectors (Gaussian directions, Box-Muller), reproducible from `seed`.
fn unit_vectors(n: usize, dims: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut v: Vec<f32> = (0..dims)
                .map(|_| {
                    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                    let u2: f64 = rng.random();
                    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
                })
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            v
        })
        .collect()
}

/// `n` unit vectors `normalise(A z)` with `z` Gaussian in `intrinsic`
/// dimensions and `A` a fixed random `dims x intrinsic` matrix (seed 1): like
/// text embeddings, they fill a low-dimensional part of the space.
fn embedding_like(n: usize, dims: usize, intrinsic: usize, seed: u64) -> Vec<Vec<f32>> {
    let a = unit_vectors(dims, intrinsic, 1);
    unit_vectors(n, intrinsic, seed)
        .into_iter()
        .map(|z| {
            let mut v: Vec<f32> = a
                .iter()
                .map(|row| row.iter().zip(&z).map(|(p, q)| p * q).sum())
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
            v
        })
        .collect()
}

/// The ids of the `k` vectors of `data` with the largest dot product with `q`.
fn brute_force(data: &[Vec<f32>], q: &[f32], k: usize) -> Vec<usize> {
    let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    for (i, v) in data.iter().enumerate() {
        let s: f32 = v.iter().zip(q).map(|(a, b)| a * b).sum();
        if best.len() < k || s > best[best.len() - 1].0 {
            let at = best.partition_point(|(b, _)| *b >= s);
            best.insert(at, (s, i));
            best.truncate(k);
        }
    }
    best.into_iter().map(|(_, i)| i).collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn knn_ids(index: &VectorIndex, q: &[f32], ef: u32) -> Vec<usize> {
    let filter = Filter::all();
    let hits = index
        .search(&KnnQuery {
            vector: q,
            k: K,
            filter: &filter,
            return_fields: &[],
            ef_runtime: (ef > 0).then_some(ef),
        })
        .await
        .unwrap_or_else(|e| panic!("KNN failed: {e}"));
    hits.iter().filter_map(|h| h.id.parse().ok()).collect()
}

fn recall(found: &[usize], truth: &[usize]) -> f64 {
    found.iter().filter(|i| truth.contains(i)).count() as f64 / truth.len() as f64
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| {
        panic!("REDIS_URL is not set: run `eval \"$(scripts/redis.sh start)\"` first")
    });
    let n: usize = env_or("EOL_KNN_N", 100_000);
    let dims: usize = env_or("EOL_KNN_DIMS", 384);
    let queries: usize = env_or("EOL_KNN_QUERIES", 1000);
    let target: f64 = env_or("EOL_KNN_RECALL", 0.98);
    let efs: Vec<u32> = std::env::var("EOL_KNN_EF")
        .unwrap_or_else(|_| "10,20,40,80,160,320,640,1280,2560".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let intrinsic: usize = env_or("EOL_KNN_INTRINSIC", 0);
    let keep = std::env::var("EOL_KNN_KEEP").is_ok_and(|v| v == "1");
    // `flat` checks the recall computation itself (exact search: recall 1).
    let algorithm = std::env::var("EOL_KNN_ALGORITHM").unwrap_or_else(|_| "hnsw".into());

    let client = redis::Client::open(url.as_str()).expect("a valid REDIS_URL");
    // HNSW insertion of a pipelined batch can take longer than the default 500 ms.
    let config = ConnectionManagerConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    let mut conn = ConnectionManager::new_with_config(client, config)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to REDIS_URL: {e}"));
    let name = format!("eol-bench-knn-{algorithm}-{n}x{dims}-i{intrinsic}");
    let efs = if algorithm == "hnsw" { efs } else { vec![0] };
    let hnsw = if algorithm == "hnsw" {
        ", m: 16, ef_construction: 200, ef_runtime: 10"
    } else {
        ""
    };
    let schema = IndexSchema::from_yaml(&format!(
        "index: {{name: {name}, prefix: {name}}}\nfields:\n  - name: vec\n    type: vector\n    \
         attrs: {{algorithm: {algorithm}, dims: {dims}, distance_metric: cosine, datatype: float32{hnsw}}}\n"
    ))
    .expect("the bench schema");
    let index = VectorIndex::new(conn.clone(), schema).expect("valid");

    println!(
        "generating {n} x {dims} unit vectors (seed 42) and {queries} queries (seed 7), {}",
        if intrinsic > 0 {
            format!("embedding-like: intrinsic dimension {intrinsic}")
        } else {
            "uniform on the sphere".to_owned()
        }
    );
    let (data, qs) = if intrinsic > 0 {
        (
            embedding_like(n, dims, intrinsic, 42),
            embedding_like(queries, dims, intrinsic, 7),
        )
    } else {
        (unit_vectors(n, dims, 42), unit_vectors(queries, dims, 7))
    };

    let loaded = index.ensure().await.expect("ensure") == EnsureOutcome::Unchanged
        && index.status().await.expect("status").num_docs == n as u64;
    if loaded {
        println!("index {name} already holds {n} vectors: not loading again");
    } else {
        index.drop_index(true).await.expect("drop");
        index.ensure().await.expect("create");
        let start = Instant::now();
        for (b, chunk) in data.chunks(5_000).enumerate() {
            let docs: Vec<Document> = chunk
                .iter()
                .enumerate()
                .map(|(i, v)| Document::new((b * 5_000 + i).to_string()).vector("vec", v.clone()))
                .collect();
            index.load(&docs).await.expect("load");
            if (b + 1) % 4 == 0 {
                println!(
                    "  loaded {} in {:.0} s",
                    (b + 1) * 5_000,
                    start.elapsed().as_secs_f64()
                );
            }
        }
        let status = index
            .wait_indexed(Duration::from_secs(3600))
            .await
            .expect("status");
        println!(
            "loaded and indexed {} vectors ({algorithm}{hnsw}) in {:.1} s ({:.0} vectors/s)",
            status.num_docs,
            start.elapsed().as_secs_f64(),
            n as f64 / start.elapsed().as_secs_f64()
        );
    }

    let start = Instant::now();
    let truth: Vec<Vec<usize>> = std::thread::scope(|s| {
        let half = qs.len().div_ceil(2);
        let handles: Vec<_> = qs
            .chunks(half.max(1))
            .map(|part| {
                let data = &data;
                s.spawn(move || {
                    part.iter()
                        .map(|q| brute_force(data, q, K))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("brute force thread"))
            .collect()
    });
    println!(
        "brute force top-{K} of {queries} queries in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    // Tune EF_RUNTIME on the first 200 queries: the smallest reaching the target.
    let tune = queries.min(200);
    let mut chosen = *efs.last().expect("at least one EF_RUNTIME");
    for &ef in &efs {
        let mut r = 0.0;
        let t = Instant::now();
        for (q, t) in qs.iter().zip(&truth).take(tune) {
            r += recall(&knn_ids(&index, q, ef).await, t);
        }
        let r = r / tune as f64;
        println!(
            "  EF_RUNTIME {ef:>4}: recall@{K} {r:.4} (mean {:.0} us/query over {tune})",
            micros(t.elapsed()) / tune as f64
        );
        if r >= target {
            chosen = ef;
            break;
        }
    }

    // Warm up, then measure PING and KNN interleaved.
    for q in qs.iter().take(50) {
        knn_ids(&index, q, chosen).await;
    }
    let mut ping = Vec::with_capacity(queries);
    let mut knn = Vec::with_capacity(queries);
    let mut total_recall = 0.0;
    for (q, t) in qs.iter().zip(&truth) {
        let s = Instant::now();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .expect("PING");
        ping.push(s.elapsed());
        let s = Instant::now();
        let ids = knn_ids(&index, q, chosen).await;
        knn.push(s.elapsed());
        total_recall += recall(&ids, t);
    }
    ping.sort();
    knn.sort();
    let (p50, p99) = (percentile(&knn, 0.5), percentile(&knn, 0.99));
    let (g50, g99) = (percentile(&ping, 0.5), percentile(&ping, 0.99));
    println!(
        "\n{n} x {dims} {algorithm}{hnsw}, query EF_RUNTIME {chosen}, {queries} queries, k={K}"
    );
    println!(
        "  KNN  p50 {:>8.1} us   p99 {:>8.1} us",
        micros(p50),
        micros(p99)
    );
    println!(
        "  PING p50 {:>8.1} us   p99 {:>8.1} us",
        micros(g50),
        micros(g99)
    );
    println!(
        "  ratio KNN/PING: p50 {:.1}x, p99 {:.1}x (target p99 <= 3x)",
        micros(p50) / micros(g50),
        micros(p99) / micros(g99)
    );
    println!(
        "  recall@{K} vs brute force: {:.4} (target >= 0.98)",
        total_recall / queries as f64
    );

    if !keep {
        index.drop_index(true).await.expect("drop");
    }
}
