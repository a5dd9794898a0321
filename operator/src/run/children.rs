//! The pods a FeatureRun owns, built as pure functions: one runner pod per
//! attempt, created directly (as Tekton's TaskRun does, without a Job in
//! between), named by the run and the attempt so that a second create of the
//! same attempt, by a retried reconcile or a restarted operator, gets 409
//! instead of a second pod. The pod reads the feature from its Feature's
//! ConfigMap of the same configuration, so a run writes no ConfigMap of its own.

use crate::config::OperatorConfig;
use crate::pod::{self, ModelSettings, Placement, RunnerPod};
use eol_core::Phase;
use eol_core::crd::{FeatureRun, KeyRef};
use eol_core::runner_contract::{RunnerCommand, TRACEPARENT_ANNOTATION, env};
use k8s_openapi::api::core::v1::{EnvVar, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// The `app.kubernetes.io/name` of a FeatureRun's pods.
pub const COMPONENT: &str = "eol-run";
/// The label naming the Feature a run belongs to.
pub const FEATURE_LABEL: &str = "eol.dev/feature";
/// The label naming the configuration (the Feature's ConfigMap) a run pod reads.
pub const CONFIG_LABEL: &str = crate::feature::children::CONFIG_HASH;
/// The pod annotation holding the phase the run runs in: a reconcile that
/// reads a stale FeatureRun still reports the phase from the pod itself.
pub const PHASE_ANNOTATION: &str = "eol.dev/phase";
/// The pod annotation holding the attempt number (1 for the first pod).
pub const ATTEMPT_ANNOTATION: &str = "eol.dev/attempt";
/// The label selector of every runner pod of a FeatureRun (the operator's pod watch).
pub const POD_SELECTOR: &str =
    "app.kubernetes.io/name=eol-run,app.kubernetes.io/managed-by=eol-operator";

/// The pod of `attempt` (1-based): the run's name and the attempt, cut to 63
/// characters if needed. Deterministic, so a restarted operator creates the
/// same name again and gets 409 rather than a second pod.
pub fn pod_name(run: &FeatureRun, attempt: u32) -> String {
    let suffix = format!("-{attempt}");
    format!(
        "{}{suffix}",
        pod::short_name(&run.name_any(), 63 - suffix.len())
    )
}

/// The attempt a runner pod runs, from its annotation.
pub fn attempt(pod: &Pod) -> Option<u32> {
    pod.annotations().get(ATTEMPT_ANNOTATION)?.parse().ok()
}

/// The phase a runner pod runs in, from its annotation.
pub fn pod_phase(pod: &Pod) -> Option<Phase> {
    pod.annotations().get(PHASE_ANNOTATION)?.parse().ok()
}

/// What the runner pod runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// One operation with its input.
    Operation {
        /// The operation.
        name: String,
        /// Its input (a JSON object).
        input: serde_json::Value,
    },
    /// The feature's tests.
    Tests,
}

/// Everything the first pod is built from.
pub struct RunPlan<'a> {
    /// The Feature's ConfigMap of this configuration (feature file, tests, documents).
    pub source_config_map: &'a str,
    /// The configuration's hash (labelled on the pod, so the Feature keeps the
    /// ConfigMap while the pod may still start).
    pub config_hash: &'a str,
    /// The documents the feature references, by path.
    pub documents: &'a BTreeMap<String, String>,
    /// The Feature's runner pod resources, when set.
    pub resources: Option<&'a ResourceRequirements>,
    /// The Feature's node selector and tolerations.
    pub placement: &'a Placement,
    /// What to run.
    pub work: Work,
    /// The phase to run in (`--phase`), or the feature's own.
    pub phase: Option<Phase>,
    /// The phase the run runs in, either way (reported in status).
    pub run_phase: Phase,
    /// Model settings.
    pub model: &'a ModelSettings,
    /// Where the Redis URL is.
    pub redis_url: KeyRef,
}

/// The labels of every pod of `run`.
pub fn labels(run: &FeatureRun) -> BTreeMap<String, String> {
    let mut labels = pod::labels(COMPONENT, &run.name_any());
    labels.insert(FEATURE_LABEL.to_owned(), run.spec.feature_ref.clone());
    labels
}

/// The run's first pod: one container, never restarted in place; a retry is
/// a new pod (see [`retry`]). `deadline` is `activeDeadlineSeconds`: the
/// kubelet stops a pod that outlives the run's timeout even while the
/// operator is away.
pub fn pod(run: &FeatureRun, plan: &RunPlan<'_>, config: &OperatorConfig) -> Pod {
    let run_id = run.name_any();
    let command = match &plan.work {
        Work::Operation { name, input } => RunnerCommand::Run {
            operation: name.clone(),
            input: input.clone(),
            phase: plan.phase,
        },
        Work::Tests => RunnerCommand::Test { phase: plan.phase },
    };
    let runner = RunnerPod {
        config,
        command,
        run_id: Some(&run_id),
        redis_url: plan.redis_url.clone(),
        model: plan.model,
        source_config_map: plan.source_config_map,
        documents: plan.documents,
        resources: plan.resources,
        placement: plan.placement,
    };
    let mut labels = labels(run);
    labels.insert(CONFIG_LABEL.to_owned(), plan.config_hash.to_owned());
    let mut spec = runner.pod_spec();
    spec.active_deadline_seconds = run.spec.timeout_seconds;
    // The run's spans join the trace its creator named (a retry copies the pod, env included).
    if let Some(parent) = run.annotations().get(TRACEPARENT_ANNOTATION)
        && let Some(container) = spec.containers.first_mut()
    {
        container.env.get_or_insert_default().push(EnvVar {
            name: env::TRACEPARENT.to_owned(),
            value: Some(parent.clone()),
            ..EnvVar::default()
        });
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(run, 1)),
            namespace: run.namespace(),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([
                (PHASE_ANNOTATION.to_owned(), plan.run_phase.to_string()),
                (ATTEMPT_ANNOTATION.to_owned(), "1".to_owned()),
            ])),
            owner_references: run.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        ..Pod::default()
    }
}

/// The pod of attempt `attempt`, made from the failed one (as a Job's retries
/// share its template: the same configuration, even when the Feature changed
/// since), with `remaining` seconds of the run's timeout left.
pub fn retry(failed: &Pod, run: &FeatureRun, attempt: u32, remaining: Option<i64>) -> Pod {
    let mut annotations = failed.annotations().clone();
    annotations.insert(ATTEMPT_ANNOTATION.to_owned(), attempt.to_string());
    let mut spec = failed.spec.clone().unwrap_or_default();
    // What the scheduler and admission filled in belongs to the old pod.
    spec.node_name = None;
    spec.active_deadline_seconds = remaining.map(|s| s.max(1));
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(run, attempt)),
            namespace: run.namespace(),
            labels: Some(failed.labels().clone()),
            annotations: Some(annotations),
            owner_references: run.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        ..Pod::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(spec: serde_json::Value) -> FeatureRun {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "eol.dev/v1alpha1", "kind": "FeatureRun",
            "metadata": {"name": "restock-1", "namespace": "shop", "uid": "r1"},
            "spec": spec
        }))
        .expect("a FeatureRun")
    }

    #[test]
    fn the_pod_carries_deadline_phase_attempt_and_report_settings() {
        let r = run(
            serde_json::json!({"featureRef": "inventory", "operation": "add_stock",
            "input": {"sku": "A-1", "quantity": 2}, "retries": 2, "timeoutSeconds": 60}),
        );
        let model = ModelSettings::default();
        let documents = BTreeMap::from([
            ("docs/b.md".to_owned(), "B".to_owned()),
            ("a.md".to_owned(), "A".to_owned()),
        ]);
        let plan = RunPlan {
            source_config_map: "inventory-0123456789",
            config_hash: "0123456789",
            documents: &documents,
            resources: None,
            placement: &Placement::default(),
            work: Work::Operation {
                name: "add_stock".into(),
                input: serde_json::json!({"sku": "A-1", "quantity": 2}),
            },
            phase: Some(Phase::Implementation),
            run_phase: Phase::Implementation,
            model: &model,
            redis_url: KeyRef {
                name: "eol-redis".into(),
                key: "url".into(),
            },
        };
        let built = pod(&r, &plan, &OperatorConfig::default());
        assert_eq!(attempt(&built), Some(1));
        assert_eq!(pod_phase(&built), Some(Phase::Implementation));
        let p = serde_json::to_value(&built).expect("json");
        assert_eq!(p["metadata"]["name"], "restock-1-1");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "FeatureRun");
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(p["metadata"]["labels"][FEATURE_LABEL], "inventory");
        assert_eq!(p["metadata"]["labels"][CONFIG_LABEL], "0123456789");
        assert_eq!(
            p["metadata"]["labels"]["app.kubernetes.io/instance"],
            "restock-1"
        );
        let spec = &p["spec"];
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["activeDeadlineSeconds"], 60);
        let c = &spec["containers"][0];
        let args: Vec<&str> = c["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        assert_eq!(
            args,
            [
                "run",
                "/etc/eol/feature.eol",
                "--operation",
                "add_stock",
                "--input",
                r#"{"quantity":2,"sku":"A-1"}"#,
                "--phase",
                "implementation"
            ]
        );
        let env = c["env"].as_array().expect("env");
        assert!(
            env.iter()
                .any(|e| e["name"] == "EOL_REPORT_FILE" && e["value"] == "/dev/termination-log")
        );
        // The run's id and the pod's own UID: a second start of the same
        // container reports the first one's result (eol run).
        assert!(
            env.iter()
                .any(|e| e["name"] == "EOL_RUN_ID" && e["value"] == "restock-1")
        );
        assert!(
            env.iter().any(|e| e["name"] == "EOL_POD_UID"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid"),
            "{env:?}"
        );
        // The Feature's ConfigMap of that configuration, documents at their paths.
        let source = spec["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == "source")
            .expect("the source volume");
        let sources = &source["projected"]["sources"];
        assert_eq!(sources[0]["configMap"]["name"], "inventory-0123456789");
        assert_eq!(
            sources[1]["configMap"]["items"],
            serde_json::json!([
                {"key": "document-0", "path": "a.md"},
                {"key": "document-1", "path": "docs/b.md"}
            ])
        );

        // A retry: the same pod under the next name, with what is left of the deadline.
        let mut scheduled = built.clone();
        if let Some(s) = scheduled.spec.as_mut() {
            s.node_name = Some("node-a".into());
        }
        let second = retry(&scheduled, &r, 2, Some(41));
        assert_eq!(second.metadata.name.as_deref(), Some("restock-1-2"));
        assert_eq!(attempt(&second), Some(2));
        let spec = second.spec.expect("spec");
        assert_eq!(spec.active_deadline_seconds, Some(41));
        assert_eq!(spec.node_name, None);
        assert_eq!(spec.containers, built.spec.expect("spec").containers);
        assert!(
            !env.iter().any(|e| e["name"] == "TRACEPARENT"),
            "no trace is joined unless the run names one"
        );

        // A run annotated with a traceparent hands it to its runner.
        let mut traced = r.clone();
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        traced
            .annotations_mut()
            .insert(TRACEPARENT_ANNOTATION.to_owned(), parent.to_owned());
        let built = pod(&traced, &plan, &OperatorConfig::default());
        let env = built.spec.expect("spec").containers[0]
            .env
            .clone()
            .unwrap_or_default();
        assert!(
            env.iter()
                .any(|e| e.name == "TRACEPARENT" && e.value.as_deref() == Some(parent)),
            "{env:?}"
        );
    }

    #[test]
    fn pod_names_stay_valid_and_distinct_per_attempt() {
        let long = run(serde_json::json!({"featureRef": "f", "tests": true}));
        let mut long = long;
        long.metadata.name = Some("r".repeat(80));
        let (a, b) = (pod_name(&long, 1), pod_name(&long, 12));
        assert!(a.len() <= 63 && b.len() <= 63);
        assert!(a.ends_with("-1") && b.ends_with("-12"));
        assert_eq!(a, pod_name(&long, 1), "deterministic");
    }
}
