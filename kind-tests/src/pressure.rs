//! Node pressure for the resource-fault tests: the kubelet's hard eviction
//! thresholds raised to just under what the node has free
//! (`kind-tests/cluster.sh pressure`), the node's own view of what it has
//! free, and the runs whose pods the kubelet may evict.

use crate::TestEnv;
use crate::chaos::{BlackHole, node_ip};
use crate::cli::{cluster_sh, kubectl, text};
use crate::fixtures::feature;
use eol_core::crd::FeatureRun;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use std::time::Duration;

/// A prototyped operation that answers a question: with a model that never
/// answers, its runs' pods wait (for the client's timeout), long enough to
/// be evicted.
pub const ASK: &str = "---\nname: ask\nphase: prototyping\n---\n# Ask\n\n## Operations\n\n### answer\n\nAnswers a question in one word.\n\nInput:\n```yaml\ntype: object\nproperties:\n  question: {type: string}\nrequired: [question]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  answer: {type: string}\nrequired: [answer]\n```\n";

/// Creates Feature `ask` ([`ASK`]) whose model accepts and never answers
/// (a [`BlackHole`]): its runs' pods wait on it, long enough to be evicted.
/// The black hole must outlive the test's body.
pub async fn waiting_feature(env: &TestEnv) -> BlackHole {
    let hung = BlackHole::start().await;
    let host = node_ip(&env.client).await;
    env.create(&feature(
        "ask",
        serde_json::json!({"source": {"inline": ASK}, "replicas": 0,
               "model": {"baseUrl": format!("http://{host}:{}/v1", hung.port), "name": "hung"}}),
    ))
    .await;
    hung
}

const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// The cluster's real node (kwok's fake nodes carry `type=kwok`).
pub async fn node_name(client: &kube::Client) -> String {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels("type!=kwok"))
        .await
        .unwrap_or_else(|e| panic!("cannot list the nodes: {e}"));
    nodes
        .items
        .first()
        .and_then(|n| n.metadata.name.clone())
        .expect("a real node")
}

/// What the kubelet counts as free on the node (its Summary API, what its
/// eviction manager reads), in bytes.
#[derive(Debug, Clone, Copy)]
pub struct NodeFree {
    /// `memory.available`: capacity less the working set.
    pub memory: u64,
    /// `nodefs.available`: free bytes on the kubelet's filesystem.
    pub nodefs: u64,
}

/// Reads [`NodeFree`] through the API server's node proxy.
pub async fn node_free(client: &kube::Client, node: &str) -> NodeFree {
    let summary = summary(client, node).await;
    let bytes = |path: &str| {
        summary
            .pointer(path)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or_else(|| panic!("node {node}'s summary has no {path}: {summary}"))
    };
    NodeFree {
        memory: bytes("/node/memory/availableBytes"),
        nodefs: bytes("/node/fs/availableBytes"),
    }
}

/// Pods the kubelet evicted in `namespace` since `since`, by its `Evicted`
/// events (an evicted pod of a StatefulSet or Deployment is replaced at once,
/// so its object does not stay to be seen).
pub async fn evictions(client: &kube::Client, namespace: &str, since: &Time) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().fields("reason=Evicted"))
        .await
        .unwrap_or_else(|e| panic!("cannot list the events of {namespace}: {e}"))
        .items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("Pod"))
        .filter(|e| {
            e.last_timestamp
                .as_ref()
                .or(e.first_timestamp.as_ref())
                .is_none_or(|t| t.0 >= since.0)
        })
        .filter_map(|e| e.involved_object.name)
        .collect()
}

/// The kubelet's stats summary of `node`.
async fn summary(client: &kube::Client, node: &str) -> serde_json::Value {
    let request = http::Request::get(format!("/api/v1/nodes/{node}/proxy/stats/summary"))
        .body(Vec::new())
        .expect("a request");
    client
        .request(request)
        .await
        .unwrap_or_else(|e| panic!("cannot read node {node}'s stats summary: {e}"))
}

/// The node's conditions of `kind` (`MemoryPressure`, `DiskPressure`) now.
pub async fn under_pressure(client: &kube::Client, node: &str, kind: &str) -> bool {
    let node = Api::<Node>::all(client.clone())
        .get(node)
        .await
        .unwrap_or_else(|e| panic!("cannot read node {node}: {e}"));
    node.status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == kind && c.status == "True")
}

/// Raised eviction thresholds until [`Pressure::off`],
/// or until dropped: a failed test leaves the node as it found it.
pub struct Pressure {
    on: bool,
}

impl Pressure {
    /// `cluster.sh pressure on thresholds...` (`memory.available=Q`,
    /// `nodefs.available=Q`): the kubelet restarts with them.
    pub fn on(thresholds: &[String]) -> Self {
        let mut args = vec!["pressure", "on"];
        args.extend(thresholds.iter().map(String::as_str));
        assert!(
            cluster_sh(&args).success(),
            "`cluster.sh {}` failed",
            args.join(" ")
        );
        Self { on: true }
    }

    /// The cluster's thresholds back (the kubelet restarts), images the
    /// kubelet reclaimed loaded again.
    pub fn off(mut self) {
        self.on = false;
        assert!(
            cluster_sh(&["pressure", "off"]).success(),
            "`cluster.sh pressure off` failed"
        );
    }
}

impl Drop for Pressure {
    fn drop(&mut self) {
        if self.on && !cluster_sh(&["pressure", "off"]).success() {
            eprintln!("`cluster.sh pressure off` failed: run it by hand");
        }
    }
}

/// The pod of run `name`'s attempt `attempt` once it runs.
pub async fn running_pod(env: &TestEnv, name: &str, attempt: usize) -> String {
    let runs = env.api::<FeatureRun>();
    let run = crate::wait_for(&runs, name, READY_TIMEOUT, |r| {
        r.status
            .as_ref()
            .and_then(|s| s.pod_name.as_ref())
            .is_some_and(|p| attempt == 1 || p.ends_with(&format!("-{attempt}")))
    })
    .await;
    let pod = run.status.and_then(|s| s.pod_name).expect("a pod name");
    crate::wait_for(&env.api::<Pod>(), &pod, READY_TIMEOUT, |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })
    .await;
    pod
}

/// Writes `mib` MiB into the runner pod's `/tmp` (an emptyDir the operator
/// caps at 256Mi): local storage the kubelet counts against the pod.
pub async fn fill_scratch(namespace: &str, pod: &str, mib: u32) {
    let (namespace, pod) = (namespace.to_owned(), pod.to_owned());
    let script = format!(
        "f = open('/tmp/fill', 'wb')\nfor _ in range({mib}):\n    f.write(b'0' * (1 << 20))\nf.close()"
    );
    let out = tokio::task::spawn_blocking(move || {
        kubectl(
            &[
                "exec", "-n", &namespace, &pod, "-c", "runner", "--", "python3", "-c", &script,
            ],
            None,
        )
    })
    .await
    .expect("kubectl exec ran");
    assert!(out.status.success(), "filling /tmp: {}", text(&out.stderr));
}
