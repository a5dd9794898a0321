//! The operator's settings: images, model defaults, Redis and rollout defaults.
//! Set by flags or environment variables (the Helm chart sets the latter).

use eol_core::cost::{PriceTable, parse_price_table};
use eol_core::crd::KeyRef;
use k8s_openapi::api::core::v1::ResourceRequirements;

/// The image tag every EOL image of this build carries.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Operator-wide settings.
#[derive(Debug, Clone, clap::Args)]
pub struct OperatorConfig {
    /// Image of the runner pods (`eol serve`, `eol run`, `eol test`).
    #[arg(long, env = "EOL_RUNNER_IMAGE", default_value_t = format!("ghcr.io/eol-dev/eol-runner:{VERSION}"))]
    pub runner_image: String,
    /// Image of the managed Redis Stack.
    #[arg(
        long,
        env = "EOL_REDIS_IMAGE",
        default_value = "ghcr.io/eol-dev/redis-stack:8.2.3"
    )]
    pub redis_image: String,
    /// Pull policy of both images.
    #[arg(long, env = "EOL_IMAGE_PULL_POLICY", default_value = "IfNotPresent")]
    pub image_pull_policy: String,
    /// Size of the managed Redis volume.
    #[arg(long, env = "EOL_REDIS_STORAGE", default_value = "1Gi")]
    pub redis_storage: String,
    /// StorageClass of the managed Redis volume (default: the cluster's default class).
    #[arg(long, env = "EOL_REDIS_STORAGE_CLASS")]
    pub redis_storage_class: Option<String>,
    /// Use an external Redis instead of running one: the name of a Secret, in each
    /// Feature's namespace, with the key `url` (`redis://:PASSWORD@host:6379`).
    #[arg(long, env = "EOL_EXTERNAL_REDIS_SECRET")]
    pub external_redis_secret: Option<String>,
    /// Default base URL of the OpenAI-compatible API for prototyped operations.
    #[arg(long, env = "EOL_MODEL_BASE_URL")]
    pub model_base_url: Option<String>,
    /// Default model name.
    #[arg(long, env = "EOL_MODEL_NAME")]
    pub model_name: Option<String>,
    /// Default API-key Secret, as `name/key`, looked up in each Feature's namespace.
    #[arg(long, env = "EOL_MODEL_API_KEY_SECRET", value_parser = parse_key_ref)]
    pub model_api_key_secret: Option<KeyRef>,
    /// Structured-output form sent to the model first (`json_schema` or `json_object`).
    #[arg(long, env = "EOL_MODEL_RESPONSE_FORMAT")]
    pub model_response_format: Option<String>,
    /// Prices by model, as JSON `{"MODEL": {"input": USD, "output": USD}}` per
    /// million tokens: runs and Features report their cost with them. A
    /// Feature's `spec.model.prices` adds to and overrides this table.
    #[arg(long, env = "EOL_MODEL_PRICES", value_parser = parse_prices, default_value = "{}")]
    pub model_prices: PriceTable,
    /// Base URL of the OpenAI-compatible `/v1/embeddings` API runner pods embed with
    /// (semantic cache, vector context). Unset: they embed with the runner image's
    /// local all-MiniLM-L6-v2, or not at all without `--local-embeddings`.
    #[arg(long, env = "EOL_EMBEDDING_BASE_URL")]
    pub embedding_base_url: Option<String>,
    /// Embedding model name sent to that API (default: the runner's, `default`).
    #[arg(long, env = "EOL_EMBEDDING_MODEL")]
    pub embedding_model: Option<String>,
    /// API-key Secret of the embeddings API, as `name/key`, looked up in each Feature's
    /// namespace and mounted as a file. Optional in the pod: when it is missing, runner
    /// pods start without embeddings and log why.
    #[arg(long, env = "EOL_EMBEDDING_API_KEY_SECRET", value_parser = parse_key_ref)]
    pub embedding_api_key_secret: Option<KeyRef>,
    /// Resources of runner pods whose Feature sets none (`spec.resources`), as JSON
    /// (a container's `resources`). Default: requests of 100m CPU and 256Mi memory.
    #[arg(long, env = "EOL_RUNNER_RESOURCES", value_parser = parse_resources, default_value = DEFAULT_RUNNER_RESOURCES)]
    pub runner_resources: ResourceRequirements,
    /// `RUST_LOG` filter of runner pods (e.g. `info`). Unset: the runner's own, `warn`.
    #[arg(long, env = "EOL_RUNNER_LOG")]
    pub runner_log: Option<String>,
    /// OTLP/HTTP base URL runner pods export their spans to (their
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, e.g. `http://otel-collector.monitoring:4318`).
    /// Unset: runner pods export no spans. The operator's own spans follow its
    /// own `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[arg(long, env = "EOL_RUNNER_OTEL_ENDPOINT")]
    pub runner_otel_endpoint: Option<String>,
    /// The ClusterRole the serving pods of authenticated Features review callers
    /// with (create TokenReviews and SubjectAccessReviews, nothing else): the
    /// operator binds each namespace's `eol-runner` ServiceAccount to it. The
    /// chart creates it as `<release>-runner-reviewer`.
    #[arg(
        long,
        env = "EOL_RUNNER_REVIEWER_ROLE",
        default_value = "eol-runner-reviewer"
    )]
    pub runner_reviewer_role: String,
    /// Whether runner pods without an embeddings API embed with the local model the
    /// runner image ships (`false`: embeddings off, e.g. for a custom image without it).
    #[arg(long, env = "EOL_LOCAL_EMBEDDINGS", default_value_t = true, action = clap::ArgAction::Set)]
    pub local_embeddings: bool,
    /// The Python 3 the static check of Features' code runs on (the same check as
    /// `eol check` and the runner's sandbox; it parses the code, never runs it).
    #[arg(long, env = "EOL_PYTHON", default_value = "python3")]
    pub python: std::path::PathBuf,
    /// Seconds new pods have to become Ready in a phase switch, unless the Feature says otherwise.
    #[arg(long, env = "EOL_PROGRESS_DEADLINE_SECONDS", default_value_t = 180)]
    pub progress_deadline_seconds: i32,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "EOL_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            runner_image: format!("ghcr.io/eol-dev/eol-runner:{VERSION}"),
            redis_image: "ghcr.io/eol-dev/redis-stack:8.2.3".to_owned(),
            image_pull_policy: "IfNotPresent".to_owned(),
            redis_storage: "1Gi".to_owned(),
            redis_storage_class: None,
            external_redis_secret: None,
            model_base_url: None,
            model_name: None,
            model_api_key_secret: None,
            model_response_format: None,
            model_prices: PriceTable::new(),
            embedding_base_url: None,
            embedding_model: None,
            embedding_api_key_secret: None,
            runner_resources: parse_resources(DEFAULT_RUNNER_RESOURCES)
                .expect("the default runner resources parse"),
            runner_log: None,
            runner_otel_endpoint: None,
            runner_reviewer_role: "eol-runner-reviewer".to_owned(),
            local_embeddings: true,
            python: "python3".into(),
            progress_deadline_seconds: 180,
            watch_namespace: None,
        }
    }
}

/// Runner pod resources unless set: requests that let the scheduler place pods
/// (the embedding model and the sandbox's Python workers take about 250 MB), and
/// no limits, which depend on the feature's load.
pub const DEFAULT_RUNNER_RESOURCES: &str = r#"{"requests":{"cpu":"100m","memory":"256Mi"}}"#;

fn parse_resources(s: &str) -> Result<ResourceRequirements, String> {
    serde_json::from_str(s).map_err(|e| {
        format!("expected a container's resources as JSON, e.g. {DEFAULT_RUNNER_RESOURCES}: {e}")
    })
}

fn parse_prices(s: &str) -> Result<PriceTable, String> {
    parse_price_table(s)
}

fn parse_key_ref(s: &str) -> Result<KeyRef, String> {
    match s.split_once('/') {
        Some((name, key)) if !name.is_empty() && !key.is_empty() => Ok(KeyRef {
            name: name.to_owned(),
            key: key.to_owned(),
        }),
        _ => Err(format!("expected SECRET/KEY, got '{s}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: OperatorConfig,
    }

    #[test]
    fn local_embeddings_are_on_unless_turned_off() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("eol-operator").chain(args.iter().copied()))
                .map(|c| c.config.local_embeddings)
        };
        assert!(parse(&[]).unwrap());
        assert!(!parse(&["--local-embeddings", "false"]).unwrap());
        assert!(parse(&["--local-embeddings=true"]).unwrap());
        assert!(parse(&["--local-embeddings", "maybe"]).is_err());
    }

    #[test]
    fn runner_resources_are_json_with_a_default() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("eol-operator").chain(args.iter().copied()))
                .map(|c| c.config.runner_resources)
        };
        let default = parse(&[]).unwrap();
        assert_eq!(default, OperatorConfig::default().runner_resources);
        let requests = default.requests.expect("requests");
        assert_eq!(
            (requests["cpu"].0.as_str(), requests["memory"].0.as_str()),
            ("100m", "256Mi")
        );
        assert!(default.limits.is_none());
        let set = parse(&["--runner-resources", r#"{"limits":{"memory":"1Gi"}}"#]).unwrap();
        assert_eq!(set.limits.expect("limits")["memory"].0, "1Gi");
        let err = parse(&["--runner-resources", "cpu=1"]).expect_err("not JSON");
        assert!(err.to_string().contains("as JSON"), "{err}");
    }

    #[test]
    fn the_python_of_the_code_check_defaults_to_python3() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("eol-operator").chain(args.iter().copied()))
                .map(|c| c.config.python)
        };
        assert_eq!(parse(&[]).unwrap(), std::path::PathBuf::from("python3"));
        assert_eq!(parse(&[]).unwrap(), OperatorConfig::default().python);
        assert_eq!(
            parse(&["--python", "/usr/bin/python3.11"]).unwrap(),
            std::path::PathBuf::from("/usr/bin/python3.11")
        );
    }
}
