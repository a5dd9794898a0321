//! Unit tests of the runner pod's spec.

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
    runner_for(config, &model, resources)
}

/// The runner container and volumes for `config` and `model`.
fn runner_for(
    config: &OperatorConfig,
    model: &ModelSettings,
    resources: Option<&ResourceRequirements>,
) -> (Container, Vec<Volume>) {
    let pod = RunnerPod {
        config,
        redis_url: KeyRef {
            name: "eol-redis".to_owned(),
            key: "url".to_owned(),
        },
        model,
        source_config_map: "feature-abc",
        documents: &BTreeMap::new(),
        resources,
        placement: &Placement::default(),
        command: RunnerCommand::Serve { tests: false },
        run_id: None,
    };
    (pod.container(), pod.volumes())
}

/// The mount and the Secret volume named `name`, which must both exist.
fn secret_file<'a>(
    container: &'a Container,
    volumes: &'a [Volume],
    name: &str,
) -> (&'a VolumeMount, &'a SecretVolumeSource) {
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} is mounted"));
    let secret = volumes
        .iter()
        .find(|v| v.name == name)
        .and_then(|v| v.secret.as_ref())
        .unwrap_or_else(|| panic!("a Secret volume {name}"));
    (mount, secret)
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

    let (mount, secret) = secret_file(&container, &volumes, "embedding-api-key");
    assert_eq!(mount.mount_path, "/var/run/secrets/eol/embeddings");
    assert_eq!(mount.read_only, Some(true));
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
    let (container, volumes) = runner_for(&config, &model, None);
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
    let (mount, secret) = secret_file(&container, &volumes, "model-fallback-0-api-key");
    assert_eq!(mount.mount_path, "/var/run/secrets/eol/model-fallback-0");
    assert_eq!(mount.read_only, Some(true));
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
