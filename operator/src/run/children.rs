//! The objects a FeatureRun owns, built as pure functions: an immutable
//! ConfigMap with the feature as it was when the run started, and one Job whose
//! single runner pod reports through its termination message.

use crate::config::OperatorConfig;
use crate::pod::{self, ModelSettings, RunnerPod};
use eol_core::Phase;
use eol_core::crd::{FeatureRun, KeyRef};
use eol_core::runner_contract::RunnerCommand;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// The `app.kubernetes.io/name` of a FeatureRun's objects.
pub const COMPONENT: &str = "eol-run";
/// The label naming the Feature a run belongs to.
pub const FEATURE_LABEL: &str = "eol.dev/feature";
/// The Job annotation holding the phase the run runs in: a reconcile that
/// reads a stale FeatureRun still reports the phase from the Job itself.
pub const PHASE_ANNOTATION: &str = "eol.dev/phase";

/// The Job's (and ConfigMap's) name: the run's, cut to 63 characters if needed.
/// Deterministic, so a restarted operator finds the Job it created.
pub fn job_name(run: &FeatureRun) -> String {
    pod::short_name(&run.name_any(), 63)
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

/// Everything the Job is built from.
pub struct RunPlan<'a> {
    /// The `.eol` text.
    pub source: &'a str,
    /// The `.test.eol` text, for test runs.
    pub tests: Option<&'a str>,
    /// The documents the feature references, by path.
    pub documents: &'a BTreeMap<String, String>,
    /// The Feature's runner pod resources, when set.
    pub resources: Option<&'a k8s_openapi::api::core::v1::ResourceRequirements>,
    /// The Feature's node selector and tolerations.
    pub placement: &'a pod::Placement,
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

fn meta(run: &FeatureRun) -> ObjectMeta {
    let mut labels = pod::labels(COMPONENT, &run.name_any());
    labels.insert(FEATURE_LABEL.to_owned(), run.spec.feature_ref.clone());
    ObjectMeta {
        name: Some(job_name(run)),
        namespace: run.namespace(),
        labels: Some(labels),
        owner_references: run.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

/// The run's files.
pub fn config_map(run: &FeatureRun, plan: &RunPlan<'_>) -> ConfigMap {
    let data = pod::source_data(plan.source, plan.tests, plan.documents);
    ConfigMap {
        metadata: meta(run),
        data: Some(data),
        immutable: Some(true),
        ..ConfigMap::default()
    }
}

/// The phase a Job of [`job`] runs in, from its annotation.
pub fn job_phase(job: &Job) -> Option<Phase> {
    job.annotations().get(PHASE_ANNOTATION)?.parse().ok()
}

/// The run's Job: one pod, never restarted in place; retries are new pods.
pub fn job(run: &FeatureRun, plan: &RunPlan<'_>, config: &OperatorConfig) -> Job {
    let name = job_name(run);
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
        source_config_map: &name,
        documents: plan.documents,
        resources: plan.resources,
        placement: plan.placement,
    };
    let metadata = meta(run);
    Job {
        metadata: ObjectMeta {
            annotations: Some(BTreeMap::from([(
                PHASE_ANNOTATION.to_owned(),
                plan.run_phase.to_string(),
            )])),
            ..metadata.clone()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(run.spec.retries),
            active_deadline_seconds: run.spec.timeout_seconds,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: metadata.labels,
                    ..ObjectMeta::default()
                }),
                spec: Some(runner.pod_spec()),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
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
    fn the_job_carries_retries_deadline_phase_and_report_settings() {
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
            source: "---\n",
            tests: None,
            documents: &documents,
            resources: None,
            placement: &pod::Placement::default(),
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
        let j = serde_json::to_value(job(&r, &plan, &OperatorConfig::default())).expect("json");
        assert_eq!(j["metadata"]["name"], "restock-1");
        assert_eq!(
            j["metadata"]["annotations"][PHASE_ANNOTATION],
            "implementation"
        );
        assert_eq!(
            job_phase(&job(&r, &plan, &OperatorConfig::default())),
            Some(Phase::Implementation)
        );
        assert_eq!(j["spec"]["backoffLimit"], 2);
        assert_eq!(j["spec"]["activeDeadlineSeconds"], 60);
        let pod = &j["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        let c = &pod["containers"][0];
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
        assert_eq!(j["metadata"]["ownerReferences"][0]["kind"], "FeatureRun");
        assert_eq!(j["metadata"]["labels"][FEATURE_LABEL], "inventory");
        let cm = config_map(&r, &plan);
        assert_eq!(cm.metadata.name.as_deref(), Some("restock-1"));
        // Documents are keys of the ConfigMap, placed at their paths beside the feature file.
        let data = cm.data.expect("data");
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            ["document-0", "document-1", "feature.eol"]
        );
        assert_eq!(
            (data["document-0"].as_str(), data["document-1"].as_str()),
            ("A", "B")
        );
        let source = pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == "source")
            .expect("the source volume");
        let sources = &source["projected"]["sources"];
        assert_eq!(sources[0]["configMap"]["name"], "restock-1");
        assert!(sources[0]["configMap"]["items"].is_null(), "every key");
        assert_eq!(
            sources[1]["configMap"]["items"],
            serde_json::json!([
                {"key": "document-0", "path": "a.md"},
                {"key": "document-1", "path": "docs/b.md"}
            ])
        );
        let mount = c["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .find(|m| m["name"] == "source")
            .expect("mounted");
        assert_eq!(mount["mountPath"], "/etc/eol");
    }
}
