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
mod tests;
