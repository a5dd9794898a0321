//! The objects a Feature owns, built as pure functions: a ConfigMap per
//! configuration (immutable, named by its hash, so old pods keep their files
//! during a rollout and a rollback has something to return to), the Deployment
//! running `eol serve`, and the Service in front of it.

use crate::config::OperatorConfig;
use crate::pod::{self, ModelSettings, RunnerPod};
use crate::source::Prepared;
use eol_core::crd::{Feature, KeyRef};
use eol_core::runner_contract::RunnerCommand;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// The `app.kubernetes.io/name` of a Feature's objects.
pub const COMPONENT: &str = "eol-feature";
/// Label and annotation carrying a configuration's hash.
pub const CONFIG_HASH: &str = "eol.dev/config-hash";
/// Annotation of a configuration's ConfigMap: the phase it serves in.
pub const PHASE_ANNOTATION: &str = "eol.dev/phase";

/// The labels selecting a Feature's pods (stable across configurations).
pub fn selector(feature: &Feature) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), COMPONENT.to_owned()),
        ("app.kubernetes.io/instance".to_owned(), feature.name_any()),
    ])
}

/// The ConfigMap of configuration `hash`.
pub fn config_map_name(feature: &Feature, hash: &str) -> String {
    format!("{}-{hash}", feature.name_any())
}

fn owner(feature: &Feature) -> Option<Vec<OwnerReference>> {
    feature.controller_owner_ref(&()).map(|r| vec![r])
}

fn meta(feature: &Feature, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: feature.namespace(),
        labels: Some(labels),
        owner_references: owner(feature),
        ..ObjectMeta::default()
    }
}

/// The immutable ConfigMap holding a configuration's source and tests.
pub fn config_map(feature: &Feature, prepared: &Prepared) -> ConfigMap {
    let mut labels = pod::labels(COMPONENT, &feature.name_any());
    labels.insert(CONFIG_HASH.to_owned(), prepared.config_hash.clone());
    let data = pod::source_data(
        &prepared.source,
        prepared.tests.as_deref(),
        &prepared.documents,
    );
    let mut metadata = meta(
        feature,
        config_map_name(feature, &prepared.config_hash),
        labels,
    );
    metadata.annotations = Some(BTreeMap::from([(
        PHASE_ANNOTATION.to_owned(),
        prepared.phase.to_string(),
    )]));
    ConfigMap {
        metadata,
        data: Some(data),
        immutable: Some(true),
        ..ConfigMap::default()
    }
}

/// The pod template of a configuration: `eol serve`, ready only once its tests pass.
pub fn pod_template(
    feature: &Feature,
    prepared: &Prepared,
    model: &ModelSettings,
    redis_url: KeyRef,
    config: &OperatorConfig,
) -> PodTemplateSpec {
    let cm = config_map_name(feature, &prepared.config_hash);
    let runner = RunnerPod {
        config,
        command: RunnerCommand::Serve {
            tests: prepared.tests.is_some(),
        },
        run_id: None,
        redis_url,
        model,
        source_config_map: &cm,
        documents: &prepared.documents,
        resources: prepared.resources.as_ref(),
        placement: &prepared.placement,
    };
    let mut labels = selector(feature);
    labels.insert(CONFIG_HASH.to_owned(), prepared.config_hash.clone());
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        pod::FIELD_MANAGER.to_owned(),
    );
    let mut template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                CONFIG_HASH.to_owned(),
                prepared.config_hash.clone(),
            )])),
            ..ObjectMeta::default()
        }),
        spec: Some(runner.pod_spec()),
    };
    super::access::secure(&mut template, feature);
    queue_settings(&mut template, feature);
    template
}

/// Passes `spec.queue` to the serving pods (unset fields keep the runner's defaults).
fn queue_settings(template: &mut PodTemplateSpec, feature: &Feature) {
    use eol_core::runner_contract::env as vars;
    let Some(queue) = &feature.spec.queue else {
        return;
    };
    let env: Vec<_> = [
        (vars::QUEUE_MAX_LENGTH, queue.max_length),
        (vars::QUEUE_CONCURRENCY, queue.concurrency.map(i64::from)),
        (
            vars::QUEUE_CLAIM_AFTER_SECONDS,
            queue.claim_after_seconds.map(i64::from),
        ),
        (vars::QUEUE_RESULT_TTL_SECONDS, queue.result_ttl_seconds),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some(pod::env(name, value?.to_string())))
    .collect();
    for container in template
        .spec
        .iter_mut()
        .flat_map(|s| s.containers.iter_mut())
    {
        container
            .env
            .get_or_insert_with(Vec::new)
            .extend(env.iter().cloned());
    }
}

/// The Deployment serving `template`: a rolling update never takes a ready pod
/// away before its replacement is ready (its tests passed).
pub fn deployment(
    feature: &Feature,
    template: PodTemplateSpec,
    config: &OperatorConfig,
) -> Deployment {
    let deadline = feature
        .spec
        .rollout
        .as_ref()
        .and_then(|r| r.progress_deadline_seconds)
        .unwrap_or(config.progress_deadline_seconds);
    Deployment {
        metadata: meta(
            feature,
            feature.name_any(),
            pod::labels(COMPONENT, &feature.name_any()),
        ),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas(feature)),
            selector: LabelSelector {
                match_labels: Some(selector(feature)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            progress_deadline_seconds: Some(deadline),
            revision_history_limit: Some(5),
            template,
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The serving pods wanted: `spec.replicas`, within `spec.autoscaling`'s bounds when set.
pub fn replicas(feature: &Feature) -> i32 {
    match &feature.spec.autoscaling {
        Some(a) => feature
            .spec
            .replicas
            .clamp(a.min_replicas, a.max_replicas.max(a.min_replicas)),
        None => feature.spec.replicas,
    }
}

/// The Feature's HorizontalPodAutoscaler (`spec.autoscaling`): it scales the
/// Feature itself through `/scale`, so `spec.replicas` says what it decided.
pub fn autoscaler(feature: &Feature) -> Option<HorizontalPodAutoscaler> {
    use k8s_openapi::api::autoscaling::v2::{
        CrossVersionObjectReference, HPAScalingRules, HorizontalPodAutoscalerBehavior,
        HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget, ResourceMetricSource,
    };
    let spec = feature.spec.autoscaling.as_ref()?;
    Some(HorizontalPodAutoscaler {
        metadata: meta(
            feature,
            feature.name_any(),
            pod::labels(COMPONENT, &feature.name_any()),
        ),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some(Feature::api_version(&()).into_owned()),
                kind: Feature::kind(&()).into_owned(),
                name: feature.name_any(),
            },
            min_replicas: Some(spec.min_replicas),
            max_replicas: spec.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_owned(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_owned(),
                    target: MetricTarget {
                        type_: "Utilization".to_owned(),
                        average_utilization: Some(spec.cpu_utilization.unwrap_or(80)),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            behavior: spec.scale_down_stabilization_seconds.map(|seconds| {
                HorizontalPodAutoscalerBehavior {
                    scale_down: Some(HPAScalingRules {
                        stabilization_window_seconds: Some(seconds),
                        ..HPAScalingRules::default()
                    }),
                    ..HorizontalPodAutoscalerBehavior::default()
                }
            }),
        }),
        ..HorizontalPodAutoscaler::default()
    })
}

/// The Service named after the Feature.
pub fn service(feature: &Feature) -> Service {
    Service {
        metadata: meta(
            feature,
            feature.name_any(),
            pod::labels(COMPONENT, &feature.name_any()),
        ),
        spec: Some(ServiceSpec {
            selector: Some(selector(feature)),
            ports: Some(vec![ServicePort {
                name: Some(pod::runner::HTTP_PORT_NAME.to_owned()),
                port: 80,
                target_port: Some(IntOrString::String(pod::runner::HTTP_PORT_NAME.to_owned())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::prepare;
    use eol_core::runner_contract::TESTS_FILE;

    const SOURCE: &str = include_str!("../../../features/examples/inventory.eol");
    const TESTS: &str = include_str!("../../../features/examples/inventory.test.eol");

    fn fixture(spec: serde_json::Value) -> Feature {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
            "metadata": {"name": "inventory", "namespace": "shop", "uid": "u1", "generation": 1},
            "spec": spec
        }))
        .expect("a Feature")
    }

    fn built(spec: serde_json::Value) -> (ConfigMap, serde_json::Value) {
        let f = fixture(spec);
        let model = ModelSettings {
            base_url: Some("http://llm:8080/v1".into()),
            name: Some("smol".into()),
            api_key: Some(KeyRef {
                name: "llm".into(),
                key: "key".into(),
            }),
            ..ModelSettings::default()
        };
        let p = prepare(&f, SOURCE, &model).expect("valid");
        let config = OperatorConfig::default();
        let redis = crate::redis::url_secret(&config);
        let d = deployment(&f, pod_template(&f, &p, &model, redis, &config), &config);
        (config_map(&f, &p), serde_json::to_value(d).expect("json"))
    }

    #[test]
    fn the_deployment_rolls_without_losing_capacity_and_gates_on_the_tests() {
        let (cm, d) =
            built(serde_json::json!({"source": {"inline": SOURCE}, "tests": TESTS, "replicas": 2}));
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 2);
        assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
        assert_eq!(spec["progressDeadlineSeconds"], 180);
        let pod = &spec["template"];
        let hash = cm.metadata.labels.as_ref().expect("labels")[CONFIG_HASH].clone();
        assert_eq!(pod["metadata"]["annotations"][CONFIG_HASH], hash.as_str());
        assert_eq!(
            cm.metadata.name.as_deref(),
            Some(format!("inventory-{hash}").as_str())
        );
        assert_eq!(cm.immutable, Some(true));
        assert!(cm.data.as_ref().expect("data").contains_key(TESTS_FILE));
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        let args: Vec<&str> = c["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        assert_eq!(args[..2], ["serve", "/etc/eol/feature.eol"]);
        assert!(args.contains(&"--tests"));
        assert_eq!(
            pod["spec"]["volumes"][0]["configMap"]["name"],
            format!("inventory-{hash}")
        );
        // Owned by the Feature, so deleting it removes the children.
        assert_eq!(d["metadata"]["ownerReferences"][0]["kind"], "Feature");
        assert_eq!(d["metadata"]["ownerReferences"][0]["controller"], true);
    }

    #[test]
    fn autoscaling_makes_an_hpa_on_the_features_scale_and_bounds_the_replicas() {
        assert!(autoscaler(&fixture(serde_json::json!({"source": {"inline": SOURCE}}))).is_none());
        let f = fixture(
            serde_json::json!({"source": {"inline": SOURCE}, "replicas": 7,
            "autoscaling": {"minReplicas": 2, "maxReplicas": 5, "scaleDownStabilizationSeconds": 30}}),
        );
        assert_eq!(replicas(&f), 5, "spec.replicas above maxReplicas");
        let hpa = serde_json::to_value(autoscaler(&f).expect("an HPA")).expect("json");
        assert_eq!(
            hpa["spec"]["scaleTargetRef"],
            serde_json::json!({"apiVersion": "eol.dev/v1alpha1", "kind": "Feature", "name": "inventory"})
        );
        assert_eq!(
            (
                hpa["spec"]["minReplicas"].as_i64(),
                hpa["spec"]["maxReplicas"].as_i64()
            ),
            (Some(2), Some(5))
        );
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_eq!(
            hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            30
        );
        assert_eq!(hpa["metadata"]["ownerReferences"][0]["kind"], "Feature");
        let (_, d) = built(
            serde_json::json!({"source": {"inline": SOURCE}, "replicas": 0,
            "autoscaling": {"maxReplicas": 3}}),
        );
        assert_eq!(d["spec"]["replicas"], 1, "minReplicas defaults to 1");
    }

    #[test]
    fn serving_pods_get_the_queue_settings_that_are_set_only() {
        let env_of = |queue: serde_json::Value| {
            let (_, d) = built(serde_json::json!({"source": {"inline": SOURCE}, "queue": queue}));
            d["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .expect("env")
                .iter()
                .filter(|e| {
                    e["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("EOL_QUEUE_"))
                })
                .map(|e| {
                    (
                        e["name"].as_str().unwrap_or_default().to_owned(),
                        e["value"].clone(),
                    )
                })
                .collect::<BTreeMap<_, _>>()
        };
        assert!(env_of(serde_json::json!({})).is_empty());
        let env = env_of(serde_json::json!({
            "maxLength": 500, "concurrency": 8, "claimAfterSeconds": 10, "resultTTLSeconds": 60
        }));
        assert_eq!(
            env,
            BTreeMap::from([
                (
                    "EOL_QUEUE_CLAIM_AFTER_SECONDS".to_owned(),
                    serde_json::json!("10")
                ),
                ("EOL_QUEUE_CONCURRENCY".to_owned(), serde_json::json!("8")),
                ("EOL_QUEUE_MAX_LENGTH".to_owned(), serde_json::json!("500")),
                (
                    "EOL_QUEUE_RESULT_TTL_SECONDS".to_owned(),
                    serde_json::json!("60")
                ),
            ])
        );
    }

    #[test]
    fn runner_pods_get_the_price_of_their_model_only_the_features_over_the_operators() {
        use eol_core::cost::{ModelPrice, PriceTable};
        let price = |input, output| ModelPrice { input, output };
        let config = OperatorConfig {
            model_name: Some("smol".into()),
            model_prices: PriceTable::from([
                ("smol".to_owned(), price(1.0, 2.0)),
                ("other".to_owned(), price(9.0, 9.0)),
            ]),
            ..OperatorConfig::default()
        };
        let env_of = |spec: serde_json::Value| {
            let f = fixture(spec);
            let model = ModelSettings::resolve(&f.spec, &config);
            let p = prepare(&f, SOURCE, &model).expect("valid");
            let redis = crate::redis::url_secret(&config);
            let template = pod_template(&f, &p, &model, redis, &config);
            let env = template.spec.expect("spec").containers[0]
                .env
                .clone()
                .unwrap_or_default();
            let prices = env
                .iter()
                .find(|e| e.name == "EOL_LLM_PRICES")
                .and_then(|e| e.value.clone());
            (prices, p.config_hash)
        };
        let (operators, hash) = env_of(serde_json::json!({"source": {"inline": SOURCE}}));
        assert_eq!(
            operators.as_deref(),
            Some(r#"{"smol":{"input":1.0,"output":2.0}}"#)
        );
        let (features, overridden) = env_of(serde_json::json!({
            "source": {"inline": SOURCE},
            "model": {"prices": {"smol": {"input": 0.5, "output": 0.25}}}
        }));
        assert_eq!(
            features.as_deref(),
            Some(r#"{"smol":{"input":0.5,"output":0.25}}"#)
        );
        // A new price is a new configuration: the pods restart with it.
        assert_ne!(hash, overridden);
        let (none, _) = env_of(serde_json::json!({
            "source": {"inline": SOURCE}, "model": {"name": "unpriced"}
        }));
        assert_eq!(none, None);
    }

    #[test]
    fn secrets_reach_the_pod_only_through_secret_references() {
        let (_, d) = built(serde_json::json!({"source": {"inline": SOURCE}}));
        let pod = &d["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        for e in c["env"].as_array().expect("env") {
            let name = e["name"].as_str().unwrap_or_default();
            assert!(
                name != "EOL_LLM_API_KEY",
                "the key is a file, never a value"
            );
            if name == "REDIS_URL" {
                assert_eq!(e["valueFrom"]["secretKeyRef"]["name"], "eol-redis");
                assert!(e.get("value").is_none());
            }
        }
        let key_volume = pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == "model-api-key")
            .expect("api key volume");
        assert_eq!(key_volume["secret"]["secretName"], "llm");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        // An authenticated Feature (the default): the reviewer account's token only.
        assert_eq!(pod["automountServiceAccountToken"], true);
        assert_eq!(pod["serviceAccountName"], "eol-runner");
        let (_, anonymous) = built(serde_json::json!({
            "source": {"inline": SOURCE}, "access": {"anonymous": true}
        }));
        let anonymous = &anonymous["spec"]["template"]["spec"];
        assert_eq!(anonymous["automountServiceAccountToken"], false);
        assert!(anonymous.get("serviceAccountName").is_none());
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        let args: Vec<&str> = c["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        assert!(
            args.contains(&"--no-test-gate"),
            "no tests: nothing to gate on"
        );
    }
}
