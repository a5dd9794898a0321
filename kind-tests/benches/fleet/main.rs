//! The operator at fleet scale, on kwok fake nodes (`kind-tests/cluster.sh
//! fleet`), side by side with what a user would run without it, in one run:
//!
//! 1. **Features**: N Features of 2 replicas until all are Ready, against N
//!    bare Deployments and Services of the same pod template, created as
//!    `kubectl apply` creates new objects (a GET, then a POST), with the same
//!    client concurrency.
//! 2. **Runs**: FeatureRuns against bare Jobs running the same pod, created
//!    interleaved at `--rate` per second each; p50/p99 of create -> pod and
//!    create -> Succeeded (Job: `Complete`), the operator's backlog (runs
//!    created without a pod yet) over time, its API writes per run by resource,
//!    CPU seconds per 1,000 runs. `--runs 100,1000,10000` repeats this phase
//!    at each size (the scaling curve).
//! 3. **Phase switch**: `--switch` Features switched at once until all are
//!    Complete, against rolling as many bare Deployments.
//! 4. **Resync**: the operator restarted with everything present: its RSS
//!    with every object cached, and the writes per Feature while it
//!    reconciles all of them again (target 0: nothing changed).
//!
//! The operator's RSS is sampled throughout (peak, and steady after each
//! phase). Run: `cargo bench -p eol-kind-tests --bench fleet -- --nodes 50
//! --features 1000 --runs 100,1000,10000 --rate 50 --switch 100`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use eol_core::crd::{Feature, FeatureRun};
use eol_kind_tests::fleet::Fleet;
use eol_kind_tests::metrics::{self, writes};
use eol_kind_tests::{TestEnv, condition, feature_ready, in_namespace_with, run_finished};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;

use support::*;

const SOURCE: &str = include_str!("../../../features/examples/inventory.eol");
const LISTEN: &str = "127.0.0.1:18093";
/// How long any phase may take before the bench gives up on it.
const PHASE_LIMIT: Duration = Duration::from_secs(45 * 60);

struct Args {
    nodes: usize,
    features: usize,
    runs: Vec<usize>,
    rate: f64,
    switch: usize,
    concurrency: usize,
    /// Run sizes above this create FeatureRuns only: the bare Jobs' side is
    /// bound by the Job controller (see kind-tests/benches/README.md).
    bare_runs_max: usize,
    /// `--history-limit K`: every Feature keeps K succeeded and K failed runs
    /// (`successfulRunsHistoryLimit`, `failedRunsHistoryLimit`); older ones
    /// are deleted as they finish. Unset: every run is kept.
    history_limit: Option<i32>,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let value = |key: &str, default: &str| -> String {
        argv.iter()
            .position(|a| a == key)
            .and_then(|i| argv.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned())
    };
    Args {
        nodes: value("--nodes", "50").parse().expect("--nodes N"),
        features: value("--features", "1000").parse().expect("--features N"),
        runs: value("--runs", "10000")
            .split(',')
            .map(|n| n.parse().expect("--runs N[,N...]"))
            .collect(),
        rate: value("--rate", "50").parse().expect("--rate PER_SECOND"),
        switch: value("--switch", "100").parse().expect("--switch N"),
        concurrency: value("--concurrency", "16")
            .parse()
            .expect("--concurrency N"),
        bare_runs_max: value("--bare-runs-max", "1000000")
            .parse()
            .expect("--bare-runs-max N"),
        history_limit: argv.iter().any(|a| a == "--history-limit").then(|| {
            value("--history-limit", "")
                .parse()
                .expect("--history-limit K")
        }),
    }
}

fn main() {
    let args = args();
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
    // Down again on every exit, a panicking phase included.
    let fleet = Fleet::up(args.nodes);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        in_namespace_with(
            "fleetbench",
            &[
                ("EOL_OPERATOR_LISTEN", LISTEN),
                // Pods on fake nodes never call it: a prototyping switch only needs it set.
                ("EOL_MODEL_BASE_URL", "http://model.invalid/v1"),
                ("RUST_LOG", "warn"),
            ],
            move |env| async move { bench(env, args).await },
        )
        .await
    });
    drop(fleet);
}

/// Pods of both sides land on the fake nodes only.
fn placement() -> serde_json::Value {
    serde_json::json!({
        "nodeSelector": {"type": "kwok"},
        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]
    })
}

fn feature(name: &str, history_limit: Option<i32>) -> Feature {
    let mut spec = serde_json::json!({"source": {"inline": SOURCE}, "replicas": 2});
    if let Some(k) = history_limit {
        spec["successfulRunsHistoryLimit"] = k.into();
        spec["failedRunsHistoryLimit"] = k.into();
    }
    spec.as_object_mut()
        .unwrap()
        .extend(placement().as_object().unwrap().clone());
    serde_json::from_value(serde_json::json!({
        "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

fn run(name: &str, feature: &str) -> FeatureRun {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "eol.dev/v1alpha1", "kind": "FeatureRun", "metadata": {"name": name},
        "spec": {"featureRef": feature, "operation": "stock_level", "input": {"sku": "BENCH-1"}}
    }))
    .unwrap()
}

async fn bench(env: TestEnv, args: Args) {
    let usage = Usage::start(env.operator.clone());
    let t0 = Instant::now();
    let pid = || async { env.operator.lock().await.pid().unwrap() };
    println!(
        "# EOL fleet bench: {} fake nodes, {} Features",
        args.nodes, args.features
    );

    // One Feature first: its Deployment is the bare side's template.
    let features: Api<Feature> = env.api();
    env.create(&feature("template", args.history_limit)).await;
    until_all(
        features.clone(),
        "",
        HashSet::from(["template".to_owned()]),
        |f: &Feature| Some(f.name_any()),
        feature_ready,
    )
    .await;
    let deployments: Api<Deployment> = env.api();
    let services: Api<Service> = env.api();
    let template = deployments.get("template").await.unwrap();
    let pod_template = template.spec.as_ref().unwrap().template.clone();
    let bare_deployment = |name: &str| -> Deployment {
        let mut t = pod_template.clone();
        let labels = BTreeMap::from([
            ("app".to_owned(), name.to_owned()),
            ("bench".to_owned(), "bare".to_owned()),
        ]);
        t.metadata.as_mut().unwrap().labels = Some(labels.clone());
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": t}
        }))
        .unwrap()
    };
    let bare_service = |name: &str| -> Service {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"bench": "bare"}},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}
        }))
        .unwrap()
    };

    // 1. Features against bare Deployments and Services.
    let n = args.features;
    let bare_names: Vec<String> = (0..n).map(|i| format!("bare-{i:04}")).collect();
    let start = Instant::now();
    futures::join!(
        async {
            apply_all(
                &deployments,
                bare_names.iter().map(|n| bare_deployment(n)).collect(),
                args.concurrency / 2,
            )
            .await;
        },
        async {
            apply_all(
                &services,
                bare_names.iter().map(|n| bare_service(n)).collect(),
                args.concurrency / 2,
            )
            .await;
        }
    );
    until_all(
        deployments.clone(),
        "bench=bare",
        bare_names.iter().cloned().collect(),
        |d: &Deployment| Some(d.name_any()),
        deployment_ready,
    )
    .await;
    let bare_wall = start.elapsed().as_secs_f64();

    let names: Vec<String> = (0..n).map(|i| format!("f-{i:04}")).collect();
    let before = requests().await;
    let since = Instant::now();
    let cpu0 = cpu_seconds(pid().await);
    let start = Instant::now();
    apply_all(
        &features,
        names
            .iter()
            .map(|n| feature(n, args.history_limit))
            .collect(),
        args.concurrency,
    )
    .await;
    until_all(
        features.clone(),
        "",
        names.iter().cloned().collect(),
        |f: &Feature| Some(f.name_any()),
        |f| feature_ready(f) && f.status.as_ref().is_some_and(|s| s.ready_replicas == 2),
    )
    .await;
    let feature_wall = start.elapsed().as_secs_f64();
    let feature_writes = writes(&before, &requests().await);
    println!();
    println!("## Features ({n} of 2 replicas until Ready)");
    println!("| side | wall s |");
    println!("|---|---|");
    println!("| bare Deployments + Services | {bare_wall:.1} |");
    println!("| Features | {feature_wall:.1} |");
    println!("ratio Features/bare: {:.2}", feature_wall / bare_wall);
    println!(
        "operator: writes per Feature {:.2} ({:?}); CPU {:.1} s; RSS peak {:.1} MiB",
        total(&feature_writes) / n as f64,
        feature_writes,
        cpu_seconds(pid().await) - cpu0,
        usage.peak(since)
    );

    // 2. Runs against Jobs, at each size.
    // The bare Job runs the runner pod the operator builds (the fake kubelet
    // completes either the same way).
    let runs: Api<FeatureRun> = env.api();
    let jobs: Api<Job> = env.api();
    let pods: Api<Pod> = env.api();
    env.create(&run("warmup", "f-0000")).await;
    until_all(
        runs.clone(),
        "",
        HashSet::from(["warmup".to_owned()]),
        |r: &FeatureRun| Some(r.name_any()),
        run_finished,
    )
    .await;
    let warm = pods.get("warmup-1").await.unwrap();
    let mut job_pod = warm.spec.clone().unwrap();
    job_pod.node_name = None;
    job_pod.active_deadline_seconds = None;
    let job = |name: &str| -> Job {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": {"bench": "bare"}},
            "spec": {"backoffLimit": 0, "template": {
                "metadata": {"labels": {"bench": "bare-job"}}, "spec": job_pod}}
        }))
        .unwrap()
    };
    println!();
    println!(
        "## Runs (FeatureRuns and bare Jobs created interleaved, {} per second each)",
        args.rate
    );
    println!(
        "| runs | side | create->pod p50 s | p99 s | create->Succeeded p50 s | p99 s | backlog max | writes per run | CPU s per 1,000 runs | RSS peak MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (round, &count) in args.runs.iter().enumerate() {
        run_phase(
            &env,
            &args,
            round,
            count,
            &runs,
            &jobs,
            &job,
            &usage,
            pid().await,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    println!(
        "operator RSS 30 s after the last run: {:.1} MiB",
        usage.now()
    );
    if let Some(k) = args.history_limit {
        let left = env
            .api::<FeatureRun>()
            .list_metadata(&Default::default())
            .await
            .unwrap();
        println!(
            "history limit {k} per Feature: {} FeatureRuns left of {} created",
            left.items.len(),
            args.runs.iter().sum::<usize>()
        );
    }

    // 3. Phase switch: Features against bare Deployments.
    let k = args.switch.min(n);
    let start = Instant::now();
    futures::stream::iter(names[..k].to_vec())
        .map(|name| {
            let features = features.clone();
            async move {
                features
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(serde_json::json!({"spec": {"phase": "prototyping"}})),
                    )
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(args.concurrency)
        .collect::<Vec<()>>()
        .await;
    until_all(
        features.clone(),
        "",
        names[..k].iter().cloned().collect(),
        |f: &Feature| Some(f.name_any()),
        |f| {
            f.status.as_ref().is_some_and(|s| {
                s.phase == Some(eol_core::Phase::Prototyping)
                    && condition(&s.conditions, "PhaseSwitch")
                        .is_some_and(|c| c.0 == "True" && c.1 == "Complete")
            })
        },
    )
    .await;
    let switch_wall = start.elapsed().as_secs_f64();
    let start = Instant::now();
    futures::stream::iter(bare_names[..k].to_vec())
        .map(|name| {
            let deployments = deployments.clone();
            async move {
                let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {"bench/rolled": "1"}}}}});
                deployments.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
            }
        })
        .buffer_unordered(args.concurrency)
        .collect::<Vec<()>>()
        .await;
    until_all(
        deployments.clone(),
        "bench=bare",
        bare_names[..k].iter().cloned().collect(),
        |d: &Deployment| Some(d.name_any()),
        |d| {
            deployment_ready(d)
                && d.spec
                    .as_ref()
                    .and_then(|s| {
                        s.template
                            .metadata
                            .as_ref()?
                            .annotations
                            .as_ref()?
                            .get("bench/rolled")
                            .cloned()
                    })
                    .is_some()
        },
    )
    .await;
    let roll_wall = start.elapsed().as_secs_f64();
    println!();
    println!("## Phase switch ({k} at once until Complete)");
    println!("| side | wall s |");
    println!("|---|---|");
    println!("| bare Deployments rolled | {roll_wall:.1} |");
    println!("| Features switched | {switch_wall:.1} |");
    println!("ratio: {:.2}", switch_wall / roll_wall);

    // 4. Resync: a restarted operator reconciles every Feature again.
    {
        let mut operator = env.operator.lock().await;
        operator.kill().await;
        operator.restart();
    }
    let restarted = Instant::now();
    // The new process's counters start at zero.
    let before = requests().await;
    let features_total = (n + 1) as f64;
    let start = Instant::now();
    while feature_reconciles().await < features_total && start.elapsed() < Duration::from_secs(600)
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(20)).await;
    let resync = writes(&before, &requests().await);
    println!();
    println!(
        "## Resync (operator restarted with {} Features and every run present)",
        n + 1
    );
    println!(
        "feature reconciles: {:.0}; writes: {:.0} ({:.3} per Feature) {:?}",
        feature_reconciles().await,
        total(&resync),
        total(&resync) / features_total,
        resync
    );
    println!(
        "operator RSS: peak {:.1} MiB while it relisted, {:.1} MiB after",
        usage.peak(restarted),
        usage.now()
    );
    println!();
    println!("bench total: {:.0} s", t0.elapsed().as_secs_f64());
}

#[allow(clippy::too_many_arguments)]
async fn run_phase(
    env: &TestEnv,
    args: &Args,
    round: usize,
    count: usize,
    runs: &Api<FeatureRun>,
    jobs: &Api<Job>,
    job: &(dyn Fn(&str) -> Job + Sync),
    usage: &Usage,
    pid: u32,
) {
    let with_jobs = count <= args.bare_runs_max;
    let run_names: Vec<String> = (0..count).map(|i| format!("r{round}-{i:05}")).collect();
    let job_names: Vec<String> = if with_jobs {
        (0..count).map(|i| format!("j{round}-{i:05}")).collect()
    } else {
        Vec::new()
    };
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let pods: Api<Pod> = env.api();
    let instance = |p: &Pod| p.labels().get("app.kubernetes.io/instance").cloned();
    let job_of = |p: &Pod| p.labels().get("batch.kubernetes.io/job-name").cloned();
    let run_pods = tokio::spawn(until_all(
        pods.clone(),
        "app.kubernetes.io/name=eol-run",
        run_names.iter().cloned().collect(),
        instance,
        |_| true,
    ));
    let job_pods = tokio::spawn(until_all(
        pods.clone(),
        "bench=bare-job",
        job_names.iter().cloned().collect(),
        job_of,
        |_| true,
    ));
    let runs_done = tokio::spawn(until_all(
        runs.clone(),
        "",
        run_names.iter().cloned().collect(),
        |r: &FeatureRun| Some(r.name_any()),
        |r| {
            r.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "Succeeded"))
                .is_some_and(|c| c.0 == "True")
        },
    ));
    let jobs_done = tokio::spawn(until_all(
        jobs.clone(),
        "bench=bare",
        job_names.iter().cloned().collect(),
        |j: &Job| Some(j.name_any()),
        |j| {
            j.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Complete" && c.status == "True")
                })
        },
    ));
    let before = requests().await;
    let cpu0 = cpu_seconds(pid);
    let since = Instant::now();
    // The operator's backlog: runs created whose pod it has not created yet,
    // sampled from its own pod watch (the API's view).
    let backlog: Arc<Mutex<Vec<i64>>> = Arc::default();
    let sampling = {
        let (backlog, created, pods) = (backlog.clone(), created.clone(), pods.clone());
        let names: HashSet<String> = run_names.iter().cloned().collect();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let made = created
                    .lock()
                    .unwrap()
                    .keys()
                    .filter(|k| names.contains(*k))
                    .count() as i64;
                let list = pods
                    .list_metadata(
                        &kube::api::ListParams::default().labels("app.kubernetes.io/name=eol-run"),
                    )
                    .await;
                if let Ok(list) = list {
                    let with_pod = list
                        .items
                        .iter()
                        .filter_map(|p| p.labels().get("app.kubernetes.io/instance"))
                        .filter(|i| names.contains(*i))
                        .count() as i64;
                    backlog.lock().unwrap().push(made - with_pod);
                }
            }
        })
    };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut creating = Vec::with_capacity(2 * count);
    for i in 0..count {
        tick.tick().await;
        let feature = format!("f-{:04}", i % args.features);
        let (r, j) = (
            run(&run_names[i], &feature),
            with_jobs.then(|| job(&job_names[i])),
        );
        let (runs, jobs) = (runs.clone(), jobs.clone());
        let (for_run, for_job) = (created.clone(), created.clone());
        creating.push(tokio::spawn(async move {
            for_run.lock().unwrap().insert(r.name_any(), Instant::now());
            runs.create(&PostParams::default(), &r).await.unwrap();
        }));
        if let Some(j) = j {
            creating.push(tokio::spawn(async move {
                for_job.lock().unwrap().insert(j.name_any(), Instant::now());
                jobs.create(&PostParams::default(), &j).await.unwrap();
            }));
        }
    }
    for c in creating {
        c.await.unwrap();
    }
    let (run_pods, job_pods, runs_done, jobs_done) = (
        run_pods.await.unwrap(),
        job_pods.await.unwrap(),
        runs_done.await.unwrap(),
        jobs_done.await.unwrap(),
    );
    sampling.abort();
    let after = requests().await;
    let cpu = cpu_seconds(pid) - cpu0;
    let created = created.lock().unwrap().clone();
    let w = writes(&before, &after);
    let backlog = backlog.lock().unwrap().clone();
    let row = |side: &str, pod: Vec<f64>, done: Vec<f64>, extra: String| {
        println!(
            "| {count} | {side} | {:.2} | {:.2} | {:.2} | {:.2} | {extra} |",
            percentile(pod.clone(), 0.5),
            percentile(pod, 0.99),
            percentile(done.clone(), 0.5),
            percentile(done, 0.99),
        );
    };
    let (rp, jp) = (
        latencies(&created, &run_pods),
        latencies(&created, &job_pods),
    );
    let (rd, jd) = (
        latencies(&created, &runs_done),
        latencies(&created, &jobs_done),
    );
    let ratio =
        |a: &[f64], b: &[f64], p: f64| percentile(a.to_vec(), p) / percentile(b.to_vec(), p);
    if with_jobs {
        row("bare Jobs", jp.clone(), jd.clone(), "| | | |".to_owned());
    } else {
        println!(
            "| {count} | bare Jobs | not run (--bare-runs-max {}) | | | | | | | |",
            args.bare_runs_max
        );
    }
    row(
        "FeatureRuns",
        rp.clone(),
        rd.clone(),
        format!(
            "{} | {:.2} | {:.1} | {:.1}",
            backlog.iter().max().copied().unwrap_or(0),
            total(&w) / count as f64,
            cpu / count as f64 * 1000.0,
            usage.peak(since)
        ),
    );
    println!(
        "| {count} | ratio | {:.2} | {:.2} | {:.2} | {:.2} | backlog every 5 s: {:?} | {:?} | | |",
        ratio(&rp, &jp, 0.5),
        ratio(&rp, &jp, 0.99),
        ratio(&rd, &jd, 0.5),
        ratio(&rd, &jd, 0.99),
        backlog,
        w.iter()
            .map(|(k, v)| format!("{k}: {:.2}", v / count as f64))
            .collect::<Vec<_>>(),
    );
}
