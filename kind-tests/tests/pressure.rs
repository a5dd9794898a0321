//! Node pressure on the real local cluster (step 12, resource faults). The
//! kubelet's hard eviction thresholds are raised to just under what the node
//! has free (`cluster.sh pressure`, a kubelet drop-in), then a FeatureRun's
//! runner pod takes the node over them: 4 GiB of memory, or 240 MiB of
//! scratch space in its `/tmp`. The kubelet must evict that pod and no other
//! (not the namespace's Redis, which holds the data); the run ends `Evicted`
//! in the kubelet's words or, with a retry left, goes on in a new pod once
//! the node has recovered.
//!
//! The tests take turns (one lock): both restart the node's kubelet.
#![allow(clippy::unwrap_used)]

use eol_core::crd::FeatureRun;
use eol_kind_tests::cli::tools;
use eol_kind_tests::fixtures::feature_run;
use eol_kind_tests::pressure::{
    NodeFree, Pressure, evictions, node_free, node_name, running_pod, under_pressure,
    waiting_feature,
};
use eol_kind_tests::{TestEnv, condition, in_namespace, run_finished, wait_for};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// How long the kubelet may take to see the pressure and evict.
const EVICTION_TIMEOUT: Duration = Duration::from_secs(180);

/// `kubectl exec` of `command` in `pod`'s runner container, killed when
/// dropped.
fn runner_exec(namespace: &str, pod: &str, command: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&tools().kubectl);
    cmd.args(["exec", "-n", namespace, pod, "-c", "runner", "--"])
        .args(command)
        .env("KUBECONFIG", eol_kind_tests::kubeconfig())
        .kill_on_drop(true);
    cmd
}

/// A process in the runner container that allocates and touches `bytes` and
/// holds them (`kubectl exec`, killed with the pod or when dropped). Returns
/// once the memory is held.
async fn hold_memory(namespace: &str, pod: &str, bytes: u64) -> tokio::process::Child {
    exec_ready(namespace, pod).await;
    let script =
        format!("import time\nheld = b'1' * {bytes}\nprint('held', flush=True)\ntime.sleep(600)");
    let mut child = tokio::process::Command::new(&tools().kubectl)
        .args([
            "exec", "-n", namespace, pod, "-c", "runner", "--", "python3", "-c", &script,
        ])
        .env("KUBECONFIG", eol_kind_tests::kubeconfig())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl exec starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let held = tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await;
    assert!(
        matches!(held, Ok(Ok(Some(ref l))) if l == "held"),
        "the runner container did not hold {bytes} bytes: {held:?}"
    );
    child
}

/// What the disk case's runner pod writes to its `/tmp` (under the emptyDir's
/// 256Mi cap: only the node's pressure can evict it for this).
const SCRATCH: u64 = 240 * MIB;

/// A process in the runner container that writes `bytes` to `/tmp` and
/// waits (`kubectl exec`, ended with the pod or when dropped).
fn write_scratch(namespace: &str, pod: &str, bytes: u64) -> tokio::process::Child {
    let script = format!(
        "import time\nf = open('/tmp/fill', 'wb')\nfor _ in range({}):\n    f.write(b'0' * (1 << 20))\n    f.flush()\nf.close()\ntime.sleep(600)",
        bytes / MIB
    );
    tokio::process::Command::new(&tools().kubectl)
        .args([
            "exec", "-n", namespace, pod, "-c", "runner", "--", "python3", "-c", &script,
        ])
        .env("KUBECONFIG", eol_kind_tests::kubeconfig())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl exec starts")
}

/// Waits until `kubectl exec` reaches `pod`: a kubelet just restarted
/// answers "pod does not exist" until it has synced its pods again.
async fn exec_ready(namespace: &str, pod: &str) {
    let started = Instant::now();
    loop {
        let out = runner_exec(namespace, pod, &["true"])
            .output()
            .await
            .expect("kubectl exec runs");
        if out.status.success() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "kubectl exec cannot reach {pod}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the kubelet evicts `pod`; meanwhile notes whether the node
/// showed the pressure condition `kind`. Returns the pod's eviction message,
/// how long it took, and whether the condition was seen.
async fn evicted(env: &TestEnv, node: &str, pod: &str, kind: &str) -> (String, Duration, bool) {
    let started = Instant::now();
    let pods = env.api::<Pod>();
    let mut condition_seen = false;
    loop {
        condition_seen |= under_pressure(&env.client, node, kind).await;
        let status = pods.get(pod).await.unwrap().status.unwrap_or_default();
        if status.reason.as_deref() == Some("Evicted") {
            return (
                status.message.unwrap_or_default(),
                started.elapsed(),
                condition_seen,
            );
        }
        assert!(
            started.elapsed() < EVICTION_TIMEOUT,
            "the kubelet did not evict {pod} within {EVICTION_TIMEOUT:?} (node {kind}: {condition_seen}); pod status: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Asserts the kubelet evicted `pod` and no other pod, in the test's
/// namespace or the cluster's own (`kube-system`), since `since`.
async fn only_evicted(env: &TestEnv, pod: &str, since: &Time) {
    let ours = evictions(&env.client, &env.namespace, since).await;
    assert_eq!(
        ours,
        [pod],
        "the kubelet evicted {pod} and no other pod of the namespace"
    );
    let system = evictions(&env.client, "kube-system", since).await;
    assert!(
        system.is_empty(),
        "the kubelet evicted the cluster's own pods too: {system:?}"
    );
}

/// Waits until the node no longer reports `kind`.
async fn recovered(env: &TestEnv, node: &str, kind: &str) -> Duration {
    let started = Instant::now();
    while under_pressure(&env.client, node, kind).await {
        assert!(
            started.elapsed() < EVICTION_TIMEOUT,
            "node still reports {kind}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    started.elapsed()
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / GIB as f64
}

#[tokio::test]
async fn memory_pressure_evicts_the_runner_pod_that_holds_the_memory_and_its_run_ends_evicted() {
    let _turn = SERIAL.lock().await;
    in_namespace("pressure-memory", |env| async move {
        let _model = waiting_feature(&env).await;
        env.create(&feature_run(
            "hog",
            json!({"featureRef": "ask", "operation": "answer", "input": {"question": "why?"},
                   "retries": 0, "timeoutSeconds": 600}),
        ))
        .await;
        let pod = running_pod(&env, "hog", 1).await;
        let node = node_name(&env.client).await;
        let since = Time(k8s_openapi::jiff::Timestamp::now());

        // The node crosses the threshold once the pod holds 2 of its 4 GiB,
        // and is 2 GiB clear of it again once the pod is gone.
        let NodeFree { memory: free, .. } = node_free(&env.client, &node).await;
        let threshold = (free - 2 * GIB) / MIB;
        let pressure = Pressure::on(&[format!("memory.available={threshold}Mi")]);
        let hog = hold_memory(&env.namespace, &pod, 4 * GIB).await;
        let (message, took, seen) = evicted(&env, &node, &pod, "MemoryPressure").await;
        drop(hog);
        pressure.off();
        let back = recovered(&env, &node, "MemoryPressure").await;

        assert!(seen, "the node reported MemoryPressure while the pod held the memory");
        assert!(
            message.contains("low on resource: memory") && message.contains("runner"),
            "the kubelet says why, naming the container: {message}"
        );
        let runs = env.api::<FeatureRun>();
        let hog_run = wait_for(&runs, "hog", Duration::from_secs(120), run_finished).await;
        let (status, reason, said) = condition(&hog_run.status.as_ref().unwrap().conditions, "Succeeded").unwrap();
        assert_eq!((status.as_str(), reason.as_str()), ("False", "Evicted"), "{said}");
        assert_eq!(said, format!("the node evicted the runner pod: {message}"));
        only_evicted(&env, &pod, &since).await;
        eprintln!(
            "pressure (memory): node had {:.2} GiB free, threshold {:.2} GiB; the runner pod held 4 GiB; \
             evicted after {took:?}, run ended Evicted ({said:?}); no other pod evicted; node clear {back:?} after the thresholds came back",
            gib(free),
            gib(threshold * MIB)
        );
    })
    .await;
}

#[tokio::test]
async fn disk_pressure_from_a_runner_pods_scratch_evicts_that_pod_alone_and_its_run_goes_on() {
    let _turn = SERIAL.lock().await;
    in_namespace("pressure-disk", |env| async move {
        let _model = waiting_feature(&env).await;
        env.create(&feature_run(
            "scratch",
            json!({"featureRef": "ask", "operation": "answer", "input": {"question": "why?"},
                   "retries": 1, "timeoutSeconds": 900}),
        ))
        .await;
        let pod = running_pod(&env, "scratch", 1).await;
        let node = node_name(&env.client).await;
        let since = Time(k8s_openapi::jiff::Timestamp::now());
        // The node crosses the threshold once the pod has written half of its
        // 240 MiB, and is 120 MiB clear of it again once the pod is gone.
        let NodeFree { nodefs: free, .. } = node_free(&env.client, &node).await;
        let threshold = (free - SCRATCH / 2) / MIB;
        let pressure = Pressure::on(&[format!("nodefs.available={threshold}Mi")]);
        exec_ready(&env.namespace, &pod).await;
        let writer = write_scratch(&env.namespace, &pod, SCRATCH);
        let (message, took, seen) = evicted(&env, &node, &pod, "DiskPressure").await;
        let evicted_at = Instant::now();
        drop(writer);
        // The node recovers by itself: the eviction freed what took it over.
        let back = recovered(&env, &node, "DiskPressure").await;
        let second = running_pod(&env, "scratch", 2).await;
        let resumed = evicted_at.elapsed();
        pressure.off();

        assert!(seen, "the node reported DiskPressure while the pod wrote");
        assert!(
            message.contains("low on resource: ephemeral-storage") && message.contains("runner"),
            "the kubelet says why, naming the container: {message}"
        );
        let runs = env.api::<FeatureRun>();
        let run = runs.get("scratch").await.unwrap();
        let (_, reason, note) = condition(&run.status.as_ref().unwrap().conditions, "Succeeded").unwrap();
        assert_eq!(reason, "Running", "{note}");
        only_evicted(&env, &pod, &since).await;
        // Why the Redis pod was not next: it asks for the local storage it uses.
        let redis = env.api::<Pod>().get("eol-redis-0").await.unwrap();
        let requests = redis.spec.unwrap().containers[0].resources.clone().unwrap().requests.unwrap();
        assert_eq!(requests["ephemeral-storage"].0, "256Mi");
        eprintln!(
            "pressure (disk): node had {:.2} GiB free, threshold {:.2} GiB; the runner pod wrote 240 MiB to /tmp; \
             evicted after {took:?} ({message:?}); node clear {back:?} later; the retry {second} running {resumed:?} after the eviction; no other pod evicted",
            gib(free),
            gib(threshold * MIB)
        );
        runs.patch("scratch", &PatchParams::default(), &Patch::Merge(json!({"spec": {"cancel": true}})))
            .await
            .unwrap();
        wait_for(&runs, "scratch", Duration::from_secs(120), run_finished).await;
    })
    .await;
}
