//! The operator at fleet scale: 20 fake nodes from kwok (`kind-tests/cluster.sh
//! fleet up 20`), 50 Features of 2 replicas and 200 FeatureRuns placed on them
//! through `spec.nodeSelector` and `spec.tolerations`, counted exactly. kwok
//! plays the kubelet of the fake nodes (manifests/kwok-stages.yaml): serving
//! pods become Ready, runner pods succeed with a runner's report
//! (`{"output":{"fleet":true},...}`). The API server, scheduler and
//! controller-manager are the real ones, and so is the namespace's Redis (on the
//! real node).
#![allow(clippy::unwrap_used)]

use eol_core::crd::{Feature, FeatureRun};
use eol_kind_tests::fixtures::{INVENTORY, feature, feature_run};
use eol_kind_tests::{TestEnv, condition, feature_ready, in_namespace, run_finished};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::ListParams;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const NODES: usize = 20;
const FEATURES: usize = 50;
const REPLICAS: i32 = 2;
const RUNS_PER_FEATURE: usize = 4;
/// Measured: 64-86 s until the last run finished (kind-tests/README.md); the rest is headroom.
const TIMEOUT: Duration = Duration::from_secs(300);
/// What the fleet's nodes are called (`kwok-node-0..N-1`).
const NODE_PREFIX: &str = "kwok-node-";

/// `kind-tests/cluster.sh fleet up N` for the guard's lifetime; `fleet down`
/// when it is dropped, a failed test included.
struct Fleet;

impl Fleet {
    fn cluster_sh(args: &[&str]) -> std::process::ExitStatus {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cluster.sh");
        Command::new(&script)
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()))
    }

    fn up(nodes: usize) -> Self {
        let status = Self::cluster_sh(&["fleet", "up", &nodes.to_string()]);
        assert!(
            status.success(),
            "`kind-tests/cluster.sh fleet up {nodes}` failed ({status}): the local cluster must be up (`kind-tests/cluster.sh up`)"
        );
        Self
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let status = Self::cluster_sh(&["fleet", "down"]);
        if !status.success() {
            eprintln!("`kind-tests/cluster.sh fleet down` failed ({status})");
        }
    }
}

/// Where a pod was bound.
fn node_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

fn phase_of(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

/// Pods of the namespace with `app.kubernetes.io/name=<component>`, by their
/// `app.kubernetes.io/instance` (the Feature or FeatureRun they belong to).
async fn pods_by_instance(env: &TestEnv, component: &str) -> BTreeMap<String, Vec<Pod>> {
    let list = env
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/name={component}")))
        .await
        .unwrap();
    let mut by: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for pod in list.items {
        let instance = pod
            .labels()
            .get("app.kubernetes.io/instance")
            .cloned()
            .unwrap_or_default();
        by.entry(instance).or_default().push(pod);
    }
    by
}

fn feature_names() -> Vec<String> {
    (0..FEATURES).map(|i| format!("f-{i:02}")).collect()
}

fn run_names() -> Vec<String> {
    feature_names()
        .iter()
        .flat_map(|f| (0..RUNS_PER_FEATURE).map(move |k| format!("{f}-run-{k}")))
        .collect()
}

/// Polls until every Feature is Ready with all its replicas and every run has
/// finished; returns the seconds each took.
async fn wait_for_fleet(env: &TestEnv, start: Instant) -> (f64, f64) {
    let (mut features_at, mut runs_at) = (None, None);
    let mut last_report = Instant::now();
    loop {
        let features = env
            .api::<Feature>()
            .list(&ListParams::default())
            .await
            .unwrap();
        let ready = features
            .items
            .iter()
            .filter(|f| {
                feature_ready(f)
                    && f.status
                        .as_ref()
                        .is_some_and(|s| s.ready_replicas == REPLICAS)
            })
            .count();
        let runs = env
            .api::<FeatureRun>()
            .list(&ListParams::default())
            .await
            .unwrap();
        let finished = runs.items.iter().filter(|r| run_finished(r)).count();
        let elapsed = start.elapsed().as_secs_f64();
        if ready == FEATURES && features_at.is_none() {
            features_at = Some(elapsed);
        }
        if finished == FEATURES * RUNS_PER_FEATURE && runs_at.is_none() {
            runs_at = Some(elapsed);
        }
        if let (Some(f), Some(r)) = (features_at, runs_at) {
            return (f, r);
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "{elapsed:.0}s: {ready}/{FEATURES} Features ready, {finished}/{} runs finished",
                FEATURES * RUNS_PER_FEATURE
            );
            last_report = Instant::now();
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "after {TIMEOUT:?}: {ready}/{FEATURES} Features ready with {REPLICAS} replicas, {finished}/{} runs finished",
            FEATURES * RUNS_PER_FEATURE
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn fifty_features_and_two_hundred_runs_on_a_fleet_of_twenty_fake_nodes() {
    let fleet_start = Instant::now();
    let fleet = Fleet::up(NODES);
    eprintln!(
        "fleet of {NODES} nodes up in {:.1}s",
        fleet_start.elapsed().as_secs_f64()
    );
    in_namespace("fleet", |env| async move {
        let placement = serde_json::json!({
            "nodeSelector": {"type": "kwok"},
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]
        });
        let start = Instant::now();
        let features: Vec<Feature> = feature_names()
            .iter()
            .map(|name| {
                let mut spec = serde_json::json!({"source": {"inline": INVENTORY}, "replicas": REPLICAS});
                spec.as_object_mut().unwrap().extend(placement.as_object().unwrap().clone());
                feature(name, spec)
            })
            .collect();
        let runs: Vec<FeatureRun> = run_names()
            .iter()
            .map(|name| {
                let feature_ref = name.split("-run-").next().unwrap();
                feature_run(
                    name,
                    serde_json::json!({"featureRef": feature_ref, "operation": "stock_level", "input": {"sku": "X"}}),
                )
            })
            .collect();
        // Features first, then their runs, a few creations in flight at a time.
        stream::iter(features)
            .for_each_concurrent(8, |f| {
                let env = env.clone();
                async move {
                    env.create(&f).await;
                }
            })
            .await;
        stream::iter(runs)
            .for_each_concurrent(8, |r| {
                let env = env.clone();
                async move {
                    env.create(&r).await;
                }
            })
            .await;
        let created = start.elapsed().as_secs_f64();
        let (features_at, runs_at) = wait_for_fleet(&env, start).await;
        eprintln!(
            "created {FEATURES} Features and {} runs in {created:.1}s; all Features ready after {features_at:.1}s, all runs finished after {runs_at:.1}s",
            FEATURES * RUNS_PER_FEATURE
        );

        // Features: exactly the 50, each Ready with both replicas.
        let features = env.api::<Feature>().list(&ListParams::default()).await.unwrap().items;
        let names: Vec<String> = features.iter().map(|f| f.name_any()).collect();
        assert_eq!(names, feature_names());
        for f in &features {
            assert!(feature_ready(f), "{} not Ready: {:?}", f.name_any(), f.status);
            assert_eq!(f.status.as_ref().unwrap().ready_replicas, REPLICAS, "{}", f.name_any());
        }

        // Serving pods: exactly 2 per Feature, 100 in all, Running on fake nodes.
        let serving = pods_by_instance(&env, "eol-feature").await;
        assert_eq!(serving.keys().cloned().collect::<Vec<_>>(), feature_names(), "serving pods by Feature");
        let mut serving_nodes = BTreeSet::new();
        for (f, pods) in &serving {
            let shown: Vec<(String, String, String)> = pods.iter().map(|p| (p.name_any(), node_of(p), phase_of(p))).collect();
            assert_eq!(pods.len(), REPLICAS as usize, "serving pods of {f}: {shown:?}");
            for p in pods {
                assert!(node_of(p).starts_with(NODE_PREFIX) && phase_of(p) == "Running", "serving pod of {f}: {shown:?}");
                serving_nodes.insert(node_of(p));
            }
        }
        assert_eq!(serving.values().map(Vec::len).sum::<usize>(), FEATURES * REPLICAS as usize);

        // Runs: exactly the 200, each Succeeded with the fake runner's report
        // and exactly one runner pod, the one its status names.
        let runs = env.api::<FeatureRun>().list(&ListParams::default()).await.unwrap().items;
        let mut names: Vec<String> = runs.iter().map(|r| r.name_any()).collect();
        names.sort();
        let mut expected = run_names();
        expected.sort();
        assert_eq!(names, expected);
        let runner_pods = pods_by_instance(&env, "eol-run").await;
        let mut run_nodes = BTreeSet::new();
        for run in &runs {
            let name = run.name_any();
            let status = run.status.as_ref().unwrap_or_else(|| panic!("{name}: no status"));
            let (s, reason, message) = condition(&status.conditions, "Succeeded").unwrap_or_else(|| panic!("{name}: no Succeeded condition"));
            assert_eq!((s.as_str(), reason.as_str()), ("True", "Succeeded"), "{name}: {message}");
            assert_eq!(
                status.summary.as_ref().and_then(|s| s.output.clone()),
                Some(serde_json::json!({"fleet": true})),
                "{name}: the summary of the runner's report"
            );
            let pods = runner_pods.get(&name).map(Vec::as_slice).unwrap_or_default();
            let shown: Vec<(String, String, String)> = pods.iter().map(|p| (p.name_any(), node_of(p), phase_of(p))).collect();
            assert_eq!(pods.len(), 1, "{name}: exactly one runner pod: {shown:?}");
            let pod = &pods[0];
            assert_eq!(status.pod_name.as_deref(), Some(pod.name_any().as_str()), "{name}: status.podName");
            assert!(node_of(pod).starts_with(NODE_PREFIX) && phase_of(pod) == "Succeeded", "{name}: {shown:?}");
            run_nodes.insert(node_of(pod));
        }
        let strays: Vec<&String> = runner_pods.keys().filter(|k| !expected.contains(k)).collect();
        assert!(strays.is_empty(), "runner pods of no run: {strays:?}");
        assert_eq!(runner_pods.values().map(Vec::len).sum::<usize>(), FEATURES * RUNS_PER_FEATURE);

        // Everything else (the managed Redis) stayed on the real node.
        let all = env.api::<Pod>().list(&ListParams::default()).await.unwrap().items;
        let others: Vec<(String, String)> = all
            .iter()
            .filter(|p| !matches!(p.labels().get("app.kubernetes.io/name").map(String::as_str), Some("eol-feature" | "eol-run")))
            .map(|p| (p.name_any(), node_of(p)))
            .collect();
        assert!(others.iter().all(|(_, node)| !node.starts_with(NODE_PREFIX)), "{others:?}");
        eprintln!(
            "serving pods on {} fake nodes, runner pods on {}; other pods: {others:?}",
            serving_nodes.len(),
            run_nodes.len()
        );
    })
    .await;
    drop(fleet);
}
