//! Operator benchmarks on the real local cluster (`cargo bench -p eol-kind-tests --bench operator`).
//!
//! - `latency` (default): FeatureRun created -> runner pod created, against a
//!   bare Job created -> pod created, interleaved; p50/p99 and their ratio. Also
//!   the operator's API requests per FeatureRun lifecycle, by method.
//! - `rss`: the operator's resident memory with 1,000 Features and 5,000
//!   FeatureRuns present (`-- rss`).
#![allow(clippy::unwrap_used)]

use eol_core::crd::{Feature, FeatureRun};
use eol_kind_tests::{TestEnv, feature_ready, in_namespace_with, run_finished, wait_for};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::runtime::watcher;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SOURCE: &str = include_str!("../../features/examples/inventory.eol");
const LISTEN: &str = "127.0.0.1:18091";

fn main() {
    let mode = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "latency".into());
    // The operator measured is the release binary next to this bench; cargo
    // does not rebuild another package's binary for a bench, so build it here.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = std::process::Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", "eol-operator"])
        .status()
        .unwrap();
    assert!(
        built.success(),
        "cargo build --release -p eol-operator failed"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        in_namespace_with(
            "bench",
            &[("EOL_OPERATOR_LISTEN", LISTEN), ("EOL_CONCURRENCY", "16")],
            move |env| async move {
                match mode.as_str() {
                    "rss" => rss(env).await,
                    _ => latency(env).await,
                }
            },
        )
        .await
    });
}

fn feature() -> Feature {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
        "metadata": {"name": "inventory"},
        "spec": {"source": {"inline": SOURCE}, "replicas": 0}
    }))
    .unwrap()
}

fn run(name: &str) -> FeatureRun {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "eol.dev/v1alpha1", "kind": "FeatureRun", "metadata": {"name": name},
        "spec": {"featureRef": "inventory", "operation": "stock_level", "input": {"sku": "BENCH-1"}}
    }))
    .unwrap()
}

async fn api_requests() -> HashMap<String, f64> {
    let text = reqwest::get(format!("http://{LISTEN}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("eol_operator_api_requests_total{method=\""))
        .filter_map(|l| {
            let (method, rest) = l.split_once("\"} ")?;
            Some((method.to_owned(), rest.trim().parse().ok()?))
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn latency(env: TestEnv) {
    env.create(&feature()).await;
    wait_for(
        &env.api::<Feature>(),
        "inventory",
        Duration::from_secs(180),
        feature_ready,
    )
    .await;
    // First sight of each Job's pod, by job name, from one watch.
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = {
        let (pods, seen) = (env.api::<Pod>(), seen.clone());
        tokio::spawn(async move {
            let mut stream = watcher(pods, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = stream.next().await {
                if let watcher::Event::Apply(p) | watcher::Event::InitApply(p) = event
                    && let Some(job) = p
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("batch.kubernetes.io/job-name"))
                {
                    seen.lock()
                        .unwrap()
                        .entry(job.clone())
                        .or_insert_with(Instant::now);
                }
            }
        })
    };
    // First sight of each Job, to split a FeatureRun's latency into the
    // operator's part (run -> Job) and the Job controller's (Job -> pod).
    let jobs_seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let job_watch = {
        let (jobs, seen) = (env.api::<Job>(), jobs_seen.clone());
        tokio::spawn(async move {
            let mut stream = watcher(jobs, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = stream.next().await {
                if let watcher::Event::Apply(j) | watcher::Event::InitApply(j) = event {
                    seen.lock()
                        .unwrap()
                        .entry(j.metadata.name.unwrap_or_default())
                        .or_insert_with(Instant::now);
                }
            }
        })
    };
    // The bare Job runs the same pod the operator builds.
    env.create(&run("template")).await;
    let job = wait_for(
        &env.api::<Job>(),
        "template",
        Duration::from_secs(60),
        |_| true,
    )
    .await;
    wait_for(
        &env.api::<FeatureRun>(),
        "template",
        Duration::from_secs(120),
        run_finished,
    )
    .await;
    let mut template = job.spec.unwrap().template;
    template.metadata = None;
    let bare = |name: &str| -> Job {
        let mut j = Job::default();
        j.metadata.name = Some(name.to_owned());
        j.spec = Some(k8s_openapi::api::batch::v1::JobSpec {
            template: template.clone(),
            backoff_limit: Some(0),
            ..Default::default()
        });
        j
    };

    let n = 30;
    let before = api_requests().await;
    let (mut fr, mut bj) = (Vec::new(), Vec::new());
    // Per FeatureRun: its POST, POST returned -> Job seen, Job seen -> pod seen.
    let (mut fr_post, mut fr_operator, mut fr_jobctl) = (Vec::new(), Vec::new(), Vec::new());
    // Per bare Job: its POST, Job seen -> pod seen.
    let (mut bj_post, mut bj_jobctl) = (Vec::new(), Vec::new());
    for i in 0..n {
        // Alternate which goes first, so neither always meets a busier cluster.
        let order: [bool; 2] = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_run in order {
            let name = format!("{}-{i:02}", if is_run { "fr" } else { "job" });
            let t0 = Instant::now();
            if is_run {
                env.api::<FeatureRun>()
                    .create(&PostParams::default(), &run(&name))
                    .await
                    .unwrap();
            } else {
                env.api::<Job>()
                    .create(&PostParams::default(), &bare(&name))
                    .await
                    .unwrap();
            }
            let posted = Instant::now();
            let start = Instant::now();
            let t1 = loop {
                if let Some(t) = seen.lock().unwrap().get(&name) {
                    break *t;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "no pod for {name}"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            let ms = (t1 - t0).as_secs_f64() * 1e3;
            let job_seen = jobs_seen.lock().unwrap().get(&name).copied().unwrap_or(t1);
            let span = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64() * 1e3;
            if is_run {
                fr.push(ms);
                fr_post.push(span(t0, posted));
                fr_operator.push(span(posted, job_seen));
                fr_jobctl.push(span(job_seen, t1));
            } else {
                bj.push(ms);
                bj_post.push(span(t0, posted));
                bj_jobctl.push(span(job_seen, t1));
            }
        }
        // Let both finish so the next pair starts on a quiet node.
        let fname = format!("fr-{i:02}");
        wait_for(
            &env.api::<FeatureRun>(),
            &fname,
            Duration::from_secs(120),
            run_finished,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = api_requests().await;
    watch.abort();
    job_watch.abort();
    let p50 = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        percentile(v, 0.5)
    };
    println!("where the time goes (p50):");
    println!(
        "  FeatureRun: POST {:.1} ms, POST returned -> Job seen {:.1} ms, Job -> pod {:.1} ms",
        p50(&mut fr_post),
        p50(&mut fr_operator),
        p50(&mut fr_jobctl)
    );
    println!(
        "  bare Job:   POST {:.1} ms, Job -> pod {:.1} ms",
        p50(&mut bj_post),
        p50(&mut bj_jobctl)
    );
    fr.sort_by(f64::total_cmp);
    bj.sort_by(f64::total_cmp);
    let (fp50, fp99, bp50, bp99) = (
        percentile(&fr, 0.5),
        percentile(&fr, 0.99),
        percentile(&bj, 0.5),
        percentile(&bj, 0.99),
    );
    println!("created -> pod created, {n} interleaved pairs:");
    println!("  FeatureRun  p50 {fp50:8.1} ms   p99 {fp99:8.1} ms");
    println!("  bare Job    p50 {bp50:8.1} ms   p99 {bp99:8.1} ms");
    println!(
        "  ratio       p50 {:.3}   p99 {:.3}   (target <= 1.2)",
        fp50 / bp50,
        fp99 / bp99
    );
    println!("operator API requests per FeatureRun lifecycle ({n} runs):");
    let mut writes = 0.0;
    for method in ["GET", "POST", "PATCH", "PUT", "DELETE"] {
        let d =
            after.get(method).copied().unwrap_or(0.0) - before.get(method).copied().unwrap_or(0.0);
        if method != "GET" {
            writes += d;
        }
        println!("  {method:<6} {:.2}", d / n as f64);
    }
    println!(
        "  writes {:.2} (POST+PATCH+PUT+DELETE, events included)",
        writes / n as f64
    );
    let jobs = env
        .api::<Job>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len();
    println!("jobs present: {jobs}");
}

async fn rss(env: TestEnv) {
    let (features, runs) = (1000, 5000);
    let t0 = Instant::now();
    let api_f = env.api::<Feature>();
    let stream = futures::stream::iter(0..features).map(|i| {
        let api = api_f.clone();
        async move {
            let mut f = feature();
            f.metadata.name = Some(format!("f-{i:04}"));
            api.create(&PostParams::default(), &f).await.unwrap();
        }
    });
    stream.buffer_unordered(16).collect::<Vec<_>>().await;
    // Cancelled at creation: the runs are stored and watched but start no pods
    // (5,000 runner pods would not fit this node).
    let api_r = env.api::<FeatureRun>();
    let stream = futures::stream::iter(0..runs).map(|i| {
        let api = api_r.clone();
        async move {
            let mut r = run(&format!("r-{i:04}"));
            r.spec.feature_ref = format!("f-{:04}", i % features);
            r.spec.cancel = true;
            api.create(&PostParams::default(), &r).await.unwrap();
        }
    });
    stream.buffer_unordered(16).collect::<Vec<_>>().await;
    println!(
        "created {features} Features and {runs} FeatureRuns in {:.0}s",
        t0.elapsed().as_secs_f64()
    );
    // Wait until every object has been reconciled once.
    loop {
        let fl = api_f.list(&ListParams::default()).await.unwrap();
        let done_f = fl
            .items
            .iter()
            .filter(|f| {
                f.status
                    .as_ref()
                    .is_some_and(|s| s.observed_generation.is_some())
            })
            .count();
        let rl = api_r.list(&ListParams::default()).await.unwrap();
        let done_r = rl.items.iter().filter(|r| r.status.is_some()).count();
        if done_f == features && done_r == runs {
            break;
        }
        eprintln!("reconciled {done_f}/{features} Features, {done_r}/{runs} FeatureRuns");
        assert!(
            t0.elapsed() < Duration::from_secs(1800),
            "not reconciled in 30 min"
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    println!("all reconciled after {:.0}s", t0.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pid = env.operator.lock().await.pid().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for line in status
        .lines()
        .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
    {
        println!("operator {line}");
    }
}
