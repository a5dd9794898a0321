//! The harness of the cluster tests: each test gets a fresh namespace and its
//! own `eol-operator` process watching only that namespace; when a test fails,
//! the namespace's pods, events and logs and the operator's log are printed.
//! Namespaces are deleted afterwards unless `EOL_KEEP_NAMESPACES=1`.
//!
//! The cluster must be up (`kind-tests/cluster.sh up`) with the project images
//! loaded (`kind-tests/cluster.sh project-images`); `scripts/test.sh` does both.

pub mod browser;
pub mod chaos;
pub mod cli;
pub mod fixtures;
pub mod fleet;
pub mod metrics;
pub mod netpol;
pub mod pressure;
pub mod release;

use eol_core::crd::{Feature, FeatureRun};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, CustomResourceExt, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, OnceCell};

/// The admin kubeconfig the local cluster writes.
const LOCAL_KUBECONFIG: &str = "/var/lib/eol-kind/admin.kubeconfig";

/// The kubeconfig of the test cluster: `KUBECONFIG` when set, else the local cluster's.
pub fn kubeconfig() -> String {
    std::env::var("KUBECONFIG")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| LOCAL_KUBECONFIG.to_owned())
}

/// A client for the test cluster; panics with what to do when there is none.
pub async fn client() -> Client {
    let path = kubeconfig();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!("no cluster: cannot read kubeconfig {path} ({e}); bring one up with `kind-tests/cluster.sh up`")
    });
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig {path} is unusable: {e}"));
    let client = Client::try_from(config).expect("a client");
    client.apiserver_version().await.unwrap_or_else(|e| {
        panic!("the cluster's API server does not answer ({e}): bring it up with `kind-tests/cluster.sh up`")
    });
    client
}

/// A client for the test cluster that acts as `user` (the admin kubeconfig
/// with `Impersonate-User`), e.g. `system:serviceaccount:<ns>:<name>`.
pub async fn client_as(user: &str) -> Client {
    let path = kubeconfig();
    let kubeconfig = Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("no cluster: cannot read kubeconfig {path} ({e})"));
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig {path} is unusable: {e}"));
    config.auth_info.impersonate = Some(user.to_owned());
    Client::try_from(config).expect("a client")
}

static CRDS: OnceCell<()> = OnceCell::const_new();

/// The ClusterRole serving pods review callers with (the operator's default
/// `--runner-reviewer-role`; the chart ships the same rules).
pub const REVIEWER_ROLE: &str = "eol-runner-reviewer";

/// Installs the CRDs and the runner reviewer ClusterRole (once per test
/// binary) and waits until the CRDs are established.
pub async fn install_crds(client: &Client) {
    CRDS.get_or_init(|| async {
        let reviewer: k8s_openapi::api::rbac::v1::ClusterRole = serde_json::from_value(serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": REVIEWER_ROLE},
            "rules": [
                {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
                {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}
            ]
        }))
        .expect("a ClusterRole");
        Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(client.clone())
            .patch(REVIEWER_ROLE, &PatchParams::apply("eol-kind-tests").force(), &Patch::Apply(&reviewer))
            .await
            .unwrap_or_else(|e| panic!("failed to install ClusterRole {REVIEWER_ROLE}: {e}"));
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in [Feature::crd(), FeatureRun::crd()] {
            crds.patch(
                &crd.name_any(),
                &PatchParams::apply("eol-kind-tests").force(),
                &Patch::Apply(&crd),
            )
            .await
            .unwrap_or_else(|e| panic!("failed to install CRD {}: {e}", crd.name_any()));
            wait_for(&crds, &crd.name_any(), Duration::from_secs(30), |c| {
                c.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    })
            })
            .await;
        }
    })
    .await;
}

/// Polls `name` until `done` holds; panics after `timeout` showing the object.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    done: impl Fn(&K) -> bool,
) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    let start = Instant::now();
    let mut last = None;
    loop {
        if let Ok(Some(obj)) = api.get_opt(name).await {
            if done(&obj) {
                return obj;
            }
            last = Some(obj);
        }
        if start.elapsed() > timeout {
            // managedFields is long and says nothing about why it is stuck.
            let shown = last
                .map(|mut o| {
                    o.meta_mut().managed_fields = None;
                    serde_json::to_string_pretty(&o).unwrap_or_default()
                })
                .unwrap_or_else(|| "(not found)".to_owned());
            panic!("timed out after {timeout:?} waiting for {name}; last seen:\n{shown}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Where the workspace's binaries are: next to the test binary's `deps/` directory.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build --workspace)",
        path.display()
    );
    path
}

/// An `eol-operator run` process scoped to one namespace.
pub struct Operator {
    child: Option<tokio::process::Child>,
    namespace: String,
    /// The operator's log file (stderr), appended to across restarts.
    pub log: PathBuf,
    extra_env: Vec<(String, String)>,
}

impl Operator {
    fn spawn(
        namespace: &str,
        log: PathBuf,
        extra_env: &[(String, String)],
    ) -> tokio::process::Child {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("operator log file");
        let listen = extra_env
            .iter()
            .find(|(k, _)| k == "EOL_OPERATOR_LISTEN")
            .map_or("127.0.0.1:0", |(_, v)| v.as_str());
        let mut cmd = tokio::process::Command::new(binary("eol-operator"));
        cmd.args(["run", "--listen", listen, "--leader-election"])
            .env("EOL_WATCH_NAMESPACE", namespace)
            .env("POD_NAMESPACE", namespace)
            .env("EOL_PROGRESS_DEADLINE_SECONDS", "60")
            .env("RUST_LOG", "info,kube=warn")
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.env("KUBECONFIG", kubeconfig());
        cmd.spawn().expect("failed to start eol-operator")
    }

    /// Starts another operator for `namespace` (e.g. a second replica).
    pub fn start(namespace: &str, log: PathBuf, env: &[(&str, &str)]) -> Self {
        let extra_env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self {
            child: Some(Self::spawn(namespace, log.clone(), &extra_env)),
            namespace: namespace.to_owned(),
            log,
            extra_env,
        }
    }

    /// The operator's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Kills the operator at once (SIGKILL), as a node failure would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the operator again.
    pub fn restart(&mut self) {
        self.child = Some(Self::spawn(
            &self.namespace,
            self.log.clone(),
            &self.extra_env,
        ));
    }
}

/// What a test works with.
#[derive(Clone)]
pub struct TestEnv {
    /// The API client.
    pub client: Client,
    /// The test's namespace.
    pub namespace: String,
    /// The operator process of this namespace.
    pub operator: Arc<Mutex<Operator>>,
}

impl TestEnv {
    /// An API of `K` in the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates `obj` in the test's namespace.
    pub async fn create<K>(&self, obj: &K) -> K
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        <K as Resource>::DynamicType: Default,
    {
        self.api::<K>()
            .create(&PostParams::default(), obj)
            .await
            .unwrap_or_else(|e| panic!("failed to create {}: {e}", obj.name_any()))
    }
}

/// Runs `body` in a fresh namespace with its own operator, then cleans up.
pub async fn in_namespace<F, Fut>(test: &str, body: F)
where
    F: FnOnce(TestEnv) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    in_namespace_with(test, &[], body).await
}

/// [`in_namespace`], with extra environment variables for the operator.
pub async fn in_namespace_with<F, Fut>(test: &str, operator_env: &[(&str, &str)], body: F)
where
    F: FnOnce(TestEnv) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let client = client().await;
    install_crds(&client).await;
    let suffix: u32 = rand::random::<u32>() % 100_000;
    let namespace = format!("eol-it-{test}-{suffix}");
    create_namespace(
        &client,
        &namespace,
        serde_json::json!({"eol.dev/test": test}),
    )
    .await;
    let log = std::env::temp_dir().join(format!("{namespace}-operator.log"));
    let operator = Operator::start(&namespace, log.clone(), operator_env);
    let env = TestEnv {
        client: client.clone(),
        namespace: namespace.clone(),
        operator: Arc::new(Mutex::new(operator)),
    };
    let outcome = tokio::spawn(body(env.clone())).await;
    env.operator.lock().await.kill().await;
    if outcome.is_err() {
        dump(&client, &namespace, &log).await;
    }
    if keep_namespaces() {
        eprintln!("kept namespace {namespace} (EOL_KEEP_NAMESPACES=1)");
    } else {
        delete_namespace(&client, &namespace).await;
    }
    rethrow(outcome);
}

/// Creates the namespace `name` with `labels` (a JSON object); panics on failure.
pub async fn create_namespace(client: &Client, name: &str, labels: serde_json::Value) {
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels}
    }))
    .expect("a namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("failed to create namespace {name}: {e}"));
}

/// Deletes the namespace `name`, ignoring failure (cleanup).
pub async fn delete_namespace(client: &Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

/// True when `EOL_KEEP_NAMESPACES=1`: a test's namespaces stay for a look.
pub fn keep_namespaces() -> bool {
    std::env::var("EOL_KEEP_NAMESPACES").is_ok_and(|v| v == "1")
}

/// Re-raises the panic of a test body run with `tokio::spawn`.
pub fn rethrow(outcome: Result<(), tokio::task::JoinError>) {
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("the test task failed: {e}"),
        }
    }
}

/// The status of a finished FeatureRun, asserting its `Succeeded` condition is
/// True with reason Succeeded; `note` turns the condition's message into the
/// assertion's message.
pub fn assert_succeeded(
    run: FeatureRun,
    note: impl FnOnce(&str) -> String,
) -> eol_core::crd::FeatureRunStatus {
    let status = run.status.expect("status");
    let (s, reason, message) = condition(&status.conditions, "Succeeded").expect("Succeeded");
    assert_eq!(
        (s.as_str(), reason.as_str()),
        ("True", "Succeeded"),
        "{}",
        note(&message)
    );
    status
}

/// Prints what a person debugging a failure looks at first: nodes, the
/// namespace's pods with their logs, its events, and the operator's log file
/// (when the operator runs as a local process).
pub async fn dump(client: &Client, namespace: &str, operator_log: &std::path::Path) {
    // A tainted node (disk or memory pressure) explains a pod that never schedules.
    eprintln!("===== nodes");
    let nodes: Api<Node> = Api::all(client.clone());
    if let Ok(list) = nodes.list(&ListParams::default()).await {
        for n in &list.items {
            let taints = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            let pressure: Vec<String> = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.type_ != "Ready" && c.status == "True")
                .map(|c| c.type_)
                .collect();
            eprintln!(
                "{} taints={:?} pressure={:?}",
                n.name_any(),
                taints.iter().map(|t| &t.key).collect::<Vec<_>>(),
                pressure
            );
        }
    }
    eprintln!("===== namespace {namespace}: pods");
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    if let Ok(list) = pods.list(&ListParams::default()).await {
        for p in &list.items {
            let status = p.status.clone().unwrap_or_default();
            eprintln!(
                "{} phase={} conditions={}",
                p.name_any(),
                status.phase.unwrap_or_default(),
                serde_json::to_string(&status.container_statuses).unwrap_or_default()
            );
            if let Ok(logs) = pods
                .logs(
                    &p.name_any(),
                    &LogParams {
                        tail_lines: Some(30),
                        ..LogParams::default()
                    },
                )
                .await
            {
                for line in logs.lines() {
                    eprintln!("    | {line}");
                }
            }
        }
    }
    eprintln!("===== namespace {namespace}: events");
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    if let Ok(list) = events.list(&ListParams::default()).await {
        for e in list.items {
            eprintln!(
                "{} {} {}: {}",
                e.type_.unwrap_or_default(),
                e.involved_object.name.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            );
        }
    }
    eprintln!(
        "===== operator log (last 60 lines) {}",
        operator_log.display()
    );
    if let Ok(text) = std::fs::read_to_string(operator_log) {
        let lines: Vec<&str> = text.lines().collect();
        for line in &lines[lines.len().saturating_sub(60)..] {
            eprintln!("    | {line}");
        }
    }
}

/// True once a FeatureRun has ended (its `Succeeded` condition is no longer Unknown).
pub fn run_finished(run: &FeatureRun) -> bool {
    run.status
        .as_ref()
        .and_then(|s| condition(&s.conditions, "Succeeded"))
        .is_some_and(|(status, _, _)| status != "Unknown")
}

/// True while a Feature's `Ready` condition is True.
pub fn feature_ready(feature: &Feature) -> bool {
    feature
        .status
        .as_ref()
        .and_then(|s| condition(&s.conditions, "Ready"))
        .is_some_and(|(status, _, _)| status == "True")
}

/// A condition's `(status, reason, message)`, when present.
pub fn condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(String, String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}
