//! The runner pods of Features (`eol serve`) and FeatureRuns (`eol run`,
//! `eol test`), built whole in one place: the container with its command,
//! environment, mounts, resources, probes and report settings, its volumes, and
//! the pod spec around it. The Deployment builder wraps it; a FeatureRun's pod is it.

use super::{container_security, env, env_from_field, env_from_secret, pod_security};
use crate::config::OperatorConfig;
use eol_core::cost::{Budget, PriceTable};
use eol_core::crd::{KeyRef, ModelFallbackSpec};
use eol_core::runner_contract::{
    self as contract, EMBEDDING_KEY_DIR, FEATURE_FILE, HEALTH_PATH, HTTP_PORT, KEY_FILE,
    MODEL_KEY_DIR, READY_PATH, RunnerCommand, SOURCE_DIR, TERMINATION_LOG, TESTS_FILE, TMP_DIR,
    env as vars,
};
use k8s_openapi::api::core::v1::{
    ConfigMapProjection, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler, PodSpec, Probe, ProjectedVolumeSource,
    ResourceRequirements, SecretVolumeSource, SleepAction, Toleration, Volume, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// The name of the container in every runner pod.
pub const CONTAINER: &str = "runner";
/// The name of the serving container's port.
pub const HTTP_PORT_NAME: &str = "http";
/// Seconds a serving pod keeps answering after it is told to stop.
///
/// Endpoints are removed asynchronously: keep serving a while after the pod is
/// marked terminating, so no request lands on a closed port mid-rollout.
/// kube-proxy took up to 5 s to program a change on a busy test node (its
/// network_programming_duration); 3 s lost requests there.
const PRE_STOP_SLEEP_SECONDS: i64 = 10;

/// Where a Feature's runner pods may run: its `spec.nodeSelector` and `spec.tolerations`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Placement {
    /// Node labels the pods must match.
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    pub tolerations: Vec<Toleration>,
}

impl Placement {
    /// The Feature's placement.
    pub fn of(spec: &eol_core::crd::FeatureSpec) -> Self {
        Self {
            node_selector: spec.node_selector.clone(),
            tolerations: spec.tolerations.clone(),
        }
    }

    /// Whether nothing is set (the scheduler's defaults apply).
    pub fn is_empty(&self) -> bool {
        self.node_selector.is_empty() && self.tolerations.is_empty()
    }
}

/// The model a Feature's prototyped operations use: its own settings over the operator's defaults.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelSettings {
    /// Base URL of the OpenAI-compatible API.
    pub base_url: Option<String>,
    /// Model name.
    pub name: Option<String>,
    /// The Secret key holding the API key.
    pub api_key: Option<KeyRef>,
    /// First structured-output form to try.
    pub response_format: Option<String>,
    /// The price of each model in use (the primary, `default` when unnamed, and
    /// the fallbacks), from the Feature's prices over the operator's.
    pub prices: PriceTable,
    /// Models asked, in order, while the primary is failing (`spec.model.fallbacks`).
    pub fallbacks: Vec<ModelFallbackSpec>,
    /// Seconds a failing model cools down (`spec.model.cooldownSeconds`; unset: the feature's or the runner's default).
    pub cooldown_seconds: Option<i32>,
    /// The Feature's budget (`spec.budget`), which runner pods enforce.
    pub budget: Option<Budget>,
}

impl ModelSettings {
    /// The Feature's `spec.model` over `config`, field by field, and its budget.
    pub fn resolve(feature: &eol_core::crd::FeatureSpec, config: &OperatorConfig) -> Self {
        let spec = feature.model.clone().unwrap_or_default();
        let name = spec.name.clone().or_else(|| config.model_name.clone());
        let in_use: Vec<&str> = std::iter::once(name.as_deref().unwrap_or("default"))
            .chain(spec.fallbacks.iter().map(|f| f.name.as_str()))
            .collect();
        Self {
            base_url: spec.base_url.or_else(|| config.model_base_url.clone()),
            api_key: spec
                .api_key_secret_ref
                .or_else(|| config.model_api_key_secret.clone()),
            response_format: config.model_response_format.clone(),
            prices: Self::prices_of(&in_use, &spec.prices, &config.model_prices),
            budget: feature.budget.clone(),
            fallbacks: spec.fallbacks,
            cooldown_seconds: spec.cooldown_seconds,
            name,
        }
    }

    /// The entries of `models` (an unnamed primary is `default`, the runner's
    /// name for it) in `feature`'s prices, else in `operator`'s: only the models
    /// in use, so that another model's price change does not restart the pods.
    fn prices_of(models: &[&str], feature: &PriceTable, operator: &PriceTable) -> PriceTable {
        models
            .iter()
            .filter_map(|model| {
                let price = feature.get(*model).or_else(|| operator.get(*model))?;
                Some(((*model).to_owned(), *price))
            })
            .collect()
    }

    /// The runner's [`vars::LLM_FALLBACKS`] entries: each fallback with its key
    /// as the file its Secret is mounted as.
    pub fn fallback_routes(&self) -> Vec<contract::FallbackRoute> {
        self.fallbacks
            .iter()
            .enumerate()
            .map(|(i, f)| contract::FallbackRoute {
                base_url: f.base_url.clone(),
                model: f.name.clone(),
                api_key_file: f
                    .api_key_secret_ref
                    .as_ref()
                    .map(|_| contract::key_path(&contract::fallback_key_dir(i))),
            })
            .collect()
    }
}

/// The ConfigMap key of the `i`-th document of a feature (in path order):
/// document paths may hold `/`, which keys cannot.
fn document_key(i: usize) -> String {
    format!("document-{i}")
}

/// Whether `path`, relative to [`SOURCE_DIR`], is a file of the source ConfigMap
/// itself (the feature, its tests, a [`document_key`]), which no document may take.
pub fn is_reserved_source_path(path: &str) -> bool {
    path == FEATURE_FILE
        || path == TESTS_FILE
        || path
            .strip_prefix("document-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A runner's source ConfigMap data: the feature, its tests, and its documents
/// (under [`document_key`]s; [`RunnerPod::volumes`] puts them at their paths).
pub fn source_data(
    source: &str,
    tests: Option<&str>,
    documents: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut data = BTreeMap::from([(FEATURE_FILE.to_owned(), source.to_owned())]);
    if let Some(tests) = tests {
        data.insert(TESTS_FILE.to_owned(), tests.to_owned());
    }
    for (i, text) in documents.values().enumerate() {
        data.insert(document_key(i), text.clone());
    }
    data
}

/// The standard OpenTelemetry variables of a runner pod exporting spans to
/// `endpoint`: its spans name the pod and namespace they come from (the
/// resource attributes Kubernetes trace views group by), read from the pod
/// itself since the pod's name is only known once it exists.
fn otel_env(endpoint: &str) -> [k8s_openapi::api::core::v1::EnvVar; 4] {
    [
        env_from_field(POD_NAME_VAR, "metadata.name"),
        env_from_field(POD_NAMESPACE_VAR, "metadata.namespace"),
        env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        // `$(VAR)` is expanded by the kubelet from the variables above it.
        env(
            "OTEL_RESOURCE_ATTRIBUTES",
            format!("k8s.pod.name=$({POD_NAME_VAR}),k8s.namespace.name=$({POD_NAMESPACE_VAR})"),
        ),
    ]
}

/// The pod's own name and namespace, for [`otel_env`].
const POD_NAME_VAR: &str = "EOL_POD_NAME";
const POD_NAMESPACE_VAR: &str = "EOL_POD_NAMESPACE";

/// Everything a runner pod is made of. [`RunnerPod::pod_spec`] is the whole pod.
pub struct RunnerPod<'a> {
    /// Operator settings (image, pull policy, embeddings API, default resources, log filter).
    pub config: &'a OperatorConfig,
    /// What the pod runs.
    pub command: RunnerCommand,
    /// The run's id, for `eol run` and `eol test` (`EOL_RUN_ID`: where the full result is kept).
    pub run_id: Option<&'a str>,
    /// The Secret key holding the Redis URL (password included).
    pub redis_url: KeyRef,
    /// Model settings.
    pub model: &'a ModelSettings,
    /// The ConfigMap holding the feature (and tests), from [`source_data`].
    pub source_config_map: &'a str,
    /// The feature's documents, by path (their texts are in the ConfigMap).
    pub documents: &'a BTreeMap<String, String>,
    /// The Feature's `spec.resources`; the operator's `--runner-resources` when unset.
    pub resources: Option<&'a ResourceRequirements>,
    /// The Feature's node selector and tolerations.
    pub placement: &'a Placement,
}

impl RunnerPod<'_> {
    /// The whole pod: the runner container, its volumes, and a confined pod.
    pub fn pod_spec(&self) -> PodSpec {
        let serving = matches!(self.command, RunnerCommand::Serve { .. });
        PodSpec {
            containers: vec![self.container()],
            volumes: Some(self.volumes()),
            security_context: Some(pod_security()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            // Serving pods are restarted in place; a run's retries are new pods.
            restart_policy: (!serving).then(|| "Never".to_owned()),
            termination_grace_period_seconds: serving.then_some(30),
            node_selector: (!self.placement.node_selector.is_empty())
                .then(|| self.placement.node_selector.clone()),
            tolerations: (!self.placement.tolerations.is_empty())
                .then(|| self.placement.tolerations.clone()),
            ..PodSpec::default()
        }
    }

    /// The runner container: its command with Redis, model and embeddings
    /// settings, and what its kind of work needs (probes and a port to serve; a
    /// termination message to report a run).
    pub fn container(&self) -> Container {
        let mut env = vec![
            env_from_secret(vars::REDIS_URL, &self.redis_url),
            // The root filesystem is read-only: caches and the sandbox's temp dirs live in /tmp.
            env(vars::HOME, TMP_DIR),
            env(vars::TMPDIR, TMP_DIR),
        ];
        if let Some(filter) = &self.config.runner_log {
            env.push(self::env(vars::LOG_FILTER, filter));
        }
        if let Some(endpoint) = &self.config.runner_otel_endpoint {
            env.extend(otel_env(endpoint));
        }
        if let Some(url) = &self.model.base_url {
            env.push(self::env(vars::LLM_BASE_URL, url));
        }
        if let Some(name) = &self.model.name {
            env.push(self::env(vars::LLM_MODEL, name));
        }
        if let Some(form) = &self.model.response_format {
            env.push(self::env(vars::LLM_RESPONSE_FORMAT, form));
        }
        if let Some(budget) = &self.model.budget
            && let Ok(json) = serde_json::to_string(budget)
        {
            env.push(self::env(vars::BUDGET, &json));
        }
        if !self.model.prices.is_empty()
            && let Ok(table) = serde_json::to_string(&self.model.prices)
        {
            env.push(self::env(vars::LLM_PRICES, &table));
        }
        if !self.model.fallbacks.is_empty()
            && let Ok(routes) = serde_json::to_string(&self.model.fallback_routes())
        {
            env.push(self::env(vars::LLM_FALLBACKS, &routes));
        }
        if let Some(seconds) = self.model.cooldown_seconds {
            env.push(self::env(vars::LLM_COOLDOWN, seconds.to_string()));
        }
        let mut mounts = vec![
            VolumeMount {
                name: "source".to_owned(),
                mount_path: SOURCE_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".to_owned(),
                mount_path: TMP_DIR.to_owned(),
                ..VolumeMount::default()
            },
        ];
        if self.model.api_key.is_some() {
            // A file, not an environment value: it never shows in `kubectl describe` or /proc/*/environ.
            env.push(self::env(
                vars::LLM_API_KEY_FILE,
                contract::key_path(MODEL_KEY_DIR),
            ));
            mounts.push(VolumeMount {
                name: "model-api-key".to_owned(),
                mount_path: MODEL_KEY_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        }
        for (i, fallback) in self.model.fallbacks.iter().enumerate() {
            if fallback.api_key_secret_ref.is_some() {
                mounts.push(VolumeMount {
                    name: fallback_key_volume(i),
                    mount_path: contract::fallback_key_dir(i),
                    read_only: Some(true),
                    ..VolumeMount::default()
                });
            }
        }
        match &self.config.embedding_base_url {
            Some(url) => {
                env.push(self::env(vars::EMBEDDING_BASE_URL, url));
                if let Some(model) = &self.config.embedding_model {
                    env.push(self::env(vars::EMBEDDING_MODEL, model));
                }
                if self.config.embedding_api_key_secret.is_some() {
                    env.push(self::env(
                        vars::EMBEDDING_API_KEY_FILE,
                        contract::key_path(EMBEDDING_KEY_DIR),
                    ));
                    mounts.push(VolumeMount {
                        name: "embedding-api-key".to_owned(),
                        mount_path: EMBEDDING_KEY_DIR.to_owned(),
                        read_only: Some(true),
                        ..VolumeMount::default()
                    });
                }
            }
            // The runner image's own model (EOL_EMBEDDING_MODEL_DIR is set in the image).
            None if self.config.local_embeddings => {}
            None => env.push(self::env(vars::EMBEDDINGS, vars::EMBEDDINGS_OFF)),
        }
        let mut container = Container {
            name: CONTAINER.to_owned(),
            image: Some(self.config.runner_image.clone()),
            image_pull_policy: Some(self.config.image_pull_policy.clone()),
            args: Some(self.command.args()),
            volume_mounts: Some(mounts),
            resources: Some(
                self.resources
                    .unwrap_or(&self.config.runner_resources)
                    .clone(),
            ),
            security_context: Some(container_security()),
            ..Container::default()
        };
        match self.command {
            RunnerCommand::Serve { .. } => serving(&mut container),
            RunnerCommand::Run { .. } | RunnerCommand::Test { .. } => {
                // The summary goes to the termination message, the full result to Redis.
                env.push(self::env(vars::REPORT_FILE, TERMINATION_LOG));
                if let Some(id) = self.run_id {
                    env.push(self::env(vars::RUN_ID, id));
                    // A second start of the same container (Kubernetes does
                    // that after a containerd restart, restartPolicy Never
                    // or not) finds the result of the first and runs nothing.
                    env.push(env_from_field(vars::POD_UID, "metadata.uid"));
                }
                container.termination_message_policy = Some("File".to_owned());
            }
        }
        container.env = Some(env);
        container
    }

    /// The volumes [`Self::container`] mounts.
    pub fn volumes(&self) -> Vec<Volume> {
        let source = if self.documents.is_empty() {
            Volume {
                name: "source".to_owned(),
                config_map: Some(ConfigMapVolumeSource {
                    name: self.source_config_map.to_owned(),
                    ..Default::default()
                }),
                ..Volume::default()
            }
        } else {
            // Every key as a file, and each document again at its path.
            let from_source = |items| VolumeProjection {
                config_map: Some(ConfigMapProjection {
                    name: self.source_config_map.to_owned(),
                    items,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let documents = self
                .documents
                .keys()
                .enumerate()
                .map(|(i, path)| KeyToPath {
                    key: document_key(i),
                    path: path.clone(),
                    mode: None,
                })
                .collect();
            Volume {
                name: "source".to_owned(),
                projected: Some(ProjectedVolumeSource {
                    sources: Some(vec![from_source(None), from_source(Some(documents))]),
                    ..Default::default()
                }),
                ..Volume::default()
            }
        };
        let mut volumes = vec![
            source,
            Volume {
                name: "tmp".to_owned(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(Quantity("256Mi".to_owned())),
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            },
        ];
        if let Some(key) = &self.model.api_key {
            volumes.push(api_key_volume("model-api-key", key, false));
        }
        for (i, fallback) in self.model.fallbacks.iter().enumerate() {
            if let Some(key) = &fallback.api_key_secret_ref {
                volumes.push(api_key_volume(&fallback_key_volume(i), key, false));
            }
        }
        if let (Some(_), Some(key)) = (
            &self.config.embedding_base_url,
            &self.config.embedding_api_key_secret,
        ) {
            // Embeddings are an optimisation: without the Secret the pod
            // starts anyway, and the runner logs that the key file is missing.
            volumes.push(api_key_volume("embedding-api-key", key, true));
        }
        volumes
    }
}

/// What `eol serve` adds to the container: its port, a readiness probe on the
/// test gate, a liveness probe, and a pause before stopping.
fn serving(container: &mut Container) {
    container.ports = Some(vec![ContainerPort {
        name: Some(HTTP_PORT_NAME.to_owned()),
        container_port: i32::from(HTTP_PORT),
        ..ContainerPort::default()
    }]);
    let http_probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(HTTP_PORT_NAME.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    };
    container.readiness_probe = Some(http_probe(READY_PATH, 2, 1));
    container.liveness_probe = Some(http_probe(HEALTH_PATH, 10, 3));
    container.lifecycle = Some(Lifecycle {
        pre_stop: Some(LifecycleHandler {
            sleep: Some(SleepAction {
                seconds: PRE_STOP_SLEEP_SECONDS,
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    });
}

/// The name of the volume holding the API key of fallback model `index` (0-based).
fn fallback_key_volume(index: usize) -> String {
    format!("model-fallback-{index}-api-key")
}

/// The volume `name` holding the Secret key `key` as the file [`KEY_FILE`],
/// readable by the pod's group only.
fn api_key_volume(name: &str, key: &KeyRef, optional: bool) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(key.name.clone()),
            items: Some(vec![KeyToPath {
                key: key.key.clone(),
                path: KEY_FILE.to_owned(),
                ..KeyToPath::default()
            }]),
            default_mode: Some(0o440),
            optional: optional.then_some(true),
        }),
        ..Volume::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::resources;

    /// The runner container and volumes for `config`, with a model key Secret.
    fn runner(config: &OperatorConfig) -> (Container, Vec<Volume>) {
        runner_with(config, None)
    }

    /// [`runner`] with the Feature's `resources`.
    fn runner_with(
        config: &OperatorConfig,
        resources: Option<&ResourceRequirements>,
    ) -> (Container, Vec<Volume>) {
        let model = ModelSettings {
            base_url: Some("http://llm/v1".to_owned()),
            api_key: Some(KeyRef {
                name: "llm".to_owned(),
                key: "api-key".to_owned(),
            }),
            ..ModelSettings::default()
        };
        let pod = RunnerPod {
            config,
            redis_url: KeyRef {
                name: "eol-redis".to_owned(),
                key: "url".to_owned(),
            },
            model: &model,
            source_config_map: "feature-abc",
            documents: &BTreeMap::new(),
            resources,
            placement: &Placement::default(),
            command: RunnerCommand::Serve { tests: false },
            run_id: None,
        };
        (pod.container(), pod.volumes())
    }

    #[test]
    fn runner_pods_log_at_the_operator_runner_log_filter_when_set() {
        let (container, _) = runner(&OperatorConfig::default());
        assert!(!env_values(&container).contains_key("RUST_LOG"));
        let config = OperatorConfig {
            runner_log: Some("info,eol_vector=debug".to_owned()),
            ..OperatorConfig::default()
        };
        let (container, _) = runner(&config);
        assert_eq!(
            env_values(&container)["RUST_LOG"].as_deref(),
            Some("info,eol_vector=debug")
        );
    }

    #[test]
    fn runner_pods_export_spans_only_when_the_operator_has_an_endpoint() {
        let (container, _) = runner(&OperatorConfig::default());
        let vars = env_values(&container);
        assert!(
            !vars.keys().any(|k| k.starts_with("OTEL_")),
            "no tracing unless asked: {vars:?}"
        );
        let config = OperatorConfig {
            runner_otel_endpoint: Some("http://jaeger.monitoring:4318".to_owned()),
            ..OperatorConfig::default()
        };
        let (container, _) = runner(&config);
        let vars = env_values(&container);
        assert_eq!(
            vars["OTEL_EXPORTER_OTLP_ENDPOINT"].as_deref(),
            Some("http://jaeger.monitoring:4318")
        );
        assert_eq!(
            vars["OTEL_RESOURCE_ATTRIBUTES"].as_deref(),
            Some("k8s.pod.name=$(EOL_POD_NAME),k8s.namespace.name=$(EOL_POD_NAMESPACE)")
        );
        // The kubelet expands `$(VAR)` only from variables listed before it.
        let env = container.env.as_ref().expect("env");
        let at = |name: &str| env.iter().position(|e| e.name == name).expect(name);
        assert!(at("EOL_POD_NAME") < at("OTEL_RESOURCE_ATTRIBUTES"));
        assert!(at("EOL_POD_NAMESPACE") < at("OTEL_RESOURCE_ATTRIBUTES"));
        let field = |name: &str| {
            env[at(name)]
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.clone())
        };
        assert_eq!(field("EOL_POD_NAME").as_deref(), Some("metadata.name"));
        assert_eq!(
            field("EOL_POD_NAMESPACE").as_deref(),
            Some("metadata.namespace")
        );
    }

    #[test]
    fn runner_pods_take_the_feature_resources_else_the_operator_default() {
        let config = OperatorConfig::default();
        let (container, _) = runner(&config);
        assert_eq!(container.resources.as_ref(), Some(&config.runner_resources));
        assert!(
            config.runner_resources.requests.is_some(),
            "pods always request something"
        );

        let own = resources(("1", "1Gi"), ("2", "2Gi"));
        let (container, _) = runner_with(&config, Some(&own));
        assert_eq!(container.resources, Some(own));
    }

    /// Plain environment values by name (Secret references are not values).
    fn env_values(container: &Container) -> BTreeMap<String, Option<String>> {
        container
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect()
    }

    fn embeddings_config(key: Option<KeyRef>) -> OperatorConfig {
        OperatorConfig {
            embedding_base_url: Some("http://embed.models.svc:8080/v1".to_owned()),
            embedding_model: Some("nomic-embed-text".to_owned()),
            embedding_api_key_secret: key,
            ..OperatorConfig::default()
        }
    }

    /// The runner pod of `config`, which has no embeddings API: its environment
    /// (checked to hold nothing of one) and whether it has `EOL_EMBEDDINGS=off`.
    fn runner_without_embeddings_api(
        config: &OperatorConfig,
    ) -> (BTreeMap<String, Option<String>>, bool) {
        let (container, volumes) = runner(config);
        let env = env_values(&container);
        for unset in [
            "EOL_EMBEDDING_BASE_URL",
            "EOL_EMBEDDING_MODEL",
            "EOL_EMBEDDING_API_KEY",
            "EOL_EMBEDDING_API_KEY_FILE",
        ] {
            assert!(!env.contains_key(unset), "{unset}");
        }
        assert!(volumes.iter().all(|v| v.name != "embedding-api-key"));
        let off = env
            .get("EOL_EMBEDDINGS")
            .is_some_and(|v| v.as_deref() == Some("off"));
        (env, off)
    }

    #[test]
    fn without_an_embeddings_api_runner_pods_embed_with_the_image_model() {
        let (env, off) = runner_without_embeddings_api(&OperatorConfig::default());
        assert!(!off && !env.contains_key("EOL_EMBEDDINGS"), "{env:?}");
    }

    #[test]
    fn without_local_embeddings_or_an_api_runner_pods_have_embeddings_off() {
        let config = OperatorConfig {
            local_embeddings: false,
            ..OperatorConfig::default()
        };
        let (env, off) = runner_without_embeddings_api(&config);
        assert!(off, "{env:?}");
        // The model key is still a file.
        assert_eq!(
            env["EOL_LLM_API_KEY_FILE"].as_deref(),
            Some("/var/run/secrets/eol/model/api-key")
        );
    }

    #[test]
    fn an_embeddings_api_is_passed_to_runner_pods_with_its_key_as_a_file() {
        let key = KeyRef {
            name: "embed-credentials".to_owned(),
            key: "token".to_owned(),
        };
        let (container, volumes) = runner(&embeddings_config(Some(key)));
        let env = env_values(&container);
        assert_eq!(
            env["EOL_EMBEDDING_BASE_URL"].as_deref(),
            Some("http://embed.models.svc:8080/v1")
        );
        assert_eq!(
            env["EOL_EMBEDDING_MODEL"].as_deref(),
            Some("nomic-embed-text")
        );
        assert_eq!(
            env["EOL_EMBEDDING_API_KEY_FILE"].as_deref(),
            Some("/var/run/secrets/eol/embeddings/api-key")
        );
        assert!(!env.contains_key("EOL_EMBEDDINGS"));
        // Never the key itself in the environment, not even as a Secret reference.
        assert!(!env.contains_key("EOL_EMBEDDING_API_KEY"));
        assert!(
            container
                .env
                .iter()
                .flatten()
                .all(|e| e.value_from.is_none() || e.name == "REDIS_URL")
        );

        let mount = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "embedding-api-key")
            .expect("the key is mounted");
        assert_eq!(mount.mount_path, "/var/run/secrets/eol/embeddings");
        assert_eq!(mount.read_only, Some(true));
        let volume = volumes
            .iter()
            .find(|v| v.name == "embedding-api-key")
            .expect("a volume for the key");
        let secret = volume.secret.as_ref().expect("a Secret volume");
        assert_eq!(secret.secret_name.as_deref(), Some("embed-credentials"));
        let items = secret.items.as_ref().expect("one item");
        assert_eq!(items.len(), 1);
        assert_eq!(
            (items[0].key.as_str(), items[0].path.as_str()),
            ("token", "api-key")
        );
        assert_eq!(secret.default_mode, Some(0o440));
        assert_eq!(
            secret.optional,
            Some(true),
            "a missing key never blocks the pod"
        );
        // Both keys, in their own directories.
        let mounts: Vec<&str> = container
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert!(mounts.contains(&"/var/run/secrets/eol/model"));
        assert_eq!(volumes.iter().filter(|v| v.secret.is_some()).count(), 2);
    }

    #[test]
    fn an_embeddings_api_without_a_key_or_model_sets_only_the_url() {
        let config = OperatorConfig {
            embedding_model: None,
            ..embeddings_config(None)
        };
        let (container, volumes) = runner(&config);
        let env = env_values(&container);
        assert!(env.contains_key("EOL_EMBEDDING_BASE_URL"));
        for unset in [
            "EOL_EMBEDDINGS",
            "EOL_EMBEDDING_MODEL",
            "EOL_EMBEDDING_API_KEY_FILE",
        ] {
            assert!(!env.contains_key(unset), "{unset}");
        }
        assert!(volumes.iter().all(|v| v.name != "embedding-api-key"));
    }

    #[test]
    fn an_embeddings_key_without_a_url_is_not_mounted() {
        let config = OperatorConfig {
            embedding_base_url: None,
            ..embeddings_config(Some(KeyRef {
                name: "embed-credentials".to_owned(),
                key: "token".to_owned(),
            }))
        };
        let (container, volumes) = runner(&config);
        let env = env_values(&container);
        assert!(!env.contains_key("EOL_EMBEDDINGS"), "the local model");
        assert!(!env.contains_key("EOL_EMBEDDING_API_KEY_FILE"));
        assert!(volumes.iter().all(|v| v.name != "embedding-api-key"));
        assert!(
            container
                .volume_mounts
                .iter()
                .flatten()
                .all(|m| m.name != "embedding-api-key")
        );
    }

    #[test]
    fn fallbacks_reach_the_runner_with_each_key_as_its_own_file() {
        let config = OperatorConfig::default();
        let spec: eol_core::crd::FeatureSpec = serde_json::from_value(serde_json::json!({
            "source": {"inline": "x"},
            "model": {
                "baseUrl": "http://llm/v1",
                "name": "primary",
                "apiKeySecretRef": {"name": "llm", "key": "api-key"},
                "prices": {"backup": {"input": 1.0, "output": 2.0}, "other": {"input": 9.0, "output": 9.0}},
                "fallbacks": [
                    {"baseUrl": "https://backup/v1", "name": "backup",
                     "apiKeySecretRef": {"name": "backup-credentials", "key": "token"}},
                    {"baseUrl": "http://keyless/v1", "name": "keyless"}
                ],
                "cooldownSeconds": 5
            }
        }))
        .unwrap();
        let model = ModelSettings::resolve(&spec, &config);
        // Prices of the models in use only.
        assert_eq!(
            model.prices.keys().collect::<Vec<_>>(),
            vec!["backup"],
            "{:?}",
            model.prices
        );
        let pod = RunnerPod {
            config: &config,
            redis_url: KeyRef {
                name: "eol-redis".to_owned(),
                key: "url".to_owned(),
            },
            model: &model,
            source_config_map: "feature-abc",
            documents: &BTreeMap::new(),
            resources: None,
            placement: &Placement::default(),
            command: RunnerCommand::Serve { tests: false },
            run_id: None,
        };
        let (container, volumes) = (pod.container(), pod.volumes());
        let env = env_values(&container);
        let routes: Vec<contract::FallbackRoute> =
            serde_json::from_str(env["EOL_LLM_FALLBACKS"].as_deref().unwrap()).unwrap();
        assert_eq!(
            routes,
            vec![
                contract::FallbackRoute {
                    base_url: "https://backup/v1".to_owned(),
                    model: "backup".to_owned(),
                    api_key_file: Some("/var/run/secrets/eol/model-fallback-0/api-key".to_owned()),
                },
                contract::FallbackRoute {
                    base_url: "http://keyless/v1".to_owned(),
                    model: "keyless".to_owned(),
                    api_key_file: None,
                },
            ]
        );
        assert_eq!(env["EOL_LLM_COOLDOWN"].as_deref(), Some("5"));
        assert!(env["EOL_LLM_PRICES"].as_deref().unwrap().contains("backup"));
        // Each key Secret is its own read-only file; the keyless fallback has none.
        let mount = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "model-fallback-0-api-key")
            .expect("the fallback's key is mounted");
        assert_eq!(mount.mount_path, "/var/run/secrets/eol/model-fallback-0");
        assert_eq!(mount.read_only, Some(true));
        let secret = volumes
            .iter()
            .find(|v| v.name == "model-fallback-0-api-key")
            .and_then(|v| v.secret.as_ref())
            .expect("a Secret volume for the fallback's key");
        assert_eq!(secret.secret_name.as_deref(), Some("backup-credentials"));
        let items = secret.items.as_ref().unwrap();
        assert_eq!(
            (items[0].key.as_str(), items[0].path.as_str()),
            ("token", "api-key")
        );
        assert_eq!(
            secret.optional, None,
            "a missing key blocks the pod, like the primary's"
        );
        assert_eq!(volumes.iter().filter(|v| v.secret.is_some()).count(), 2);
        assert!(volumes.iter().all(|v| v.name != "model-fallback-1-api-key"));
    }

    #[test]
    fn without_fallbacks_runner_pods_have_no_fallback_settings() {
        let (container, volumes) = runner(&OperatorConfig::default());
        let env = env_values(&container);
        assert!(!env.contains_key("EOL_LLM_FALLBACKS"));
        assert!(!env.contains_key("EOL_LLM_COOLDOWN"));
        assert!(
            volumes
                .iter()
                .all(|v| !v.name.starts_with("model-fallback"))
        );
    }
}
