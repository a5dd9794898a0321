//! Sandbox benchmark: a warm sandboxed no-op call against starting `python3 -c pass`,
//! measured side by side in one run, plus calls per second through one worker and
//! through the whole pool.
//!
//! Run with `cargo bench -p eol-runner --bench sandbox`. Target: a warm call costs
//! at most 0.05x an interpreter start.

use eol_runner::sandbox::{BridgeError, Interpreter, RedisBridge, SandboxLimits, WorkerPool};
use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

struct NoRedis;
impl RedisBridge for NoRedis {
    fn execute(
        &self,
        _: Vec<Value>,
    ) -> Pin<Box<dyn Future<Output = Result<Value, BridgeError>> + Send + '_>> {
        Box::pin(async { Err(BridgeError::refused("no Redis in the benchmark")) })
    }
}

const NOOP: &str = "def noop():\n    return {}\n";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, samples: &mut [Duration]) -> Duration {
    samples.sort();
    let median = percentile(samples, 0.5);
    println!(
        "{name:<34} n={:<5} p50={:>9.1} us  p99={:>9.1} us",
        samples.len(),
        median.as_secs_f64() * 1e6,
        percentile(samples, 0.99).as_secs_f64() * 1e6
    );
    median
}

async fn calls_per_second(pool: &WorkerPool, concurrency: usize, total: usize) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..total / concurrency {
                pool.call(NOOP, "noop", &json!({}), &NoRedis)
                    .await
                    .expect("no-op call");
            }
        }));
    }
    for t in tasks {
        t.await.expect("bench task");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we need.
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let python = Interpreter::discover(None).expect("python3 is needed for the benchmark");
        println!("python: {} ({}), workers drop to nobody: {}", python.path.display(), python.version, python.drop_to_nobody);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let single = WorkerPool::start(python.clone(), SandboxLimits::default(), 1).await.expect("pool");
        let pool = WorkerPool::start(python.clone(), SandboxLimits::default(), cores).await.expect("pool");
        let rounds = if quick { 200 } else { 3000 };
        let starts = if quick { 10 } else { 40 };

        // Warm up: the first call compiles and caches the code.
        for _ in 0..100 {
            single.call(NOOP, "noop", &json!({}), &NoRedis).await.expect("warm-up");
        }
        // Interleave the two measurements so machine noise hits both alike.
        let mut warm = Vec::with_capacity(rounds);
        let mut cold = Vec::with_capacity(starts);
        let per_start = rounds / starts;
        for _ in 0..starts {
            let t = Instant::now();
            let status = std::process::Command::new(&python.path).args(["-c", "pass"]).status().expect("python3 -c pass");
            cold.push(t.elapsed());
            assert!(status.success());
            for _ in 0..per_start {
                let t = Instant::now();
                single.call(NOOP, "noop", &json!({}), &NoRedis).await.expect("no-op call");
                warm.push(t.elapsed());
            }
        }
        let warm_p50 = report("warm sandboxed no-op call", &mut warm);
        let cold_p50 = report("python3 -c pass (process start)", &mut cold);
        let ratio = warm_p50.as_secs_f64() / cold_p50.as_secs_f64();
        println!("ratio warm call / interpreter start (p50): {ratio:.4} (target <= 0.05)");

        let n = if quick { 500 } else { 5000 };
        let one = calls_per_second(&single, 1, n).await;
        let many = calls_per_second(&pool, cores * 2, n).await;
        println!("throughput, 1 worker:  {one:>8.0} calls/s");
        println!("throughput, {cores} workers: {many:>8.0} calls/s ({cores} cores, {} concurrent callers)", cores * 2);
    });
}
