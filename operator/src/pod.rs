//! What every pod the operator creates shares: labels, security contexts,
//! resources, and how runner pods get Redis and model settings (from Secrets).

use crate::config::OperatorConfig;
use eol_core::crd::KeyRef;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, KeyToPath,
    PodSecurityContext, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// The field manager of every Server-Side Apply the operator makes.
pub const FIELD_MANAGER: &str = "eol-operator";
/// The user runner and Redis pods run as (the images' `eol` user).
pub const RUN_AS: i64 = 65532;
/// Where runner pods find the feature's files.
pub const SOURCE_DIR: &str = "/etc/eol";
/// The feature file inside [`SOURCE_DIR`].
pub const FEATURE_FILE: &str = "feature.eol";
/// The tests file inside [`SOURCE_DIR`].
pub const TESTS_FILE: &str = "feature.test.eol";
/// Where the model API key is mounted.
const API_KEY_DIR: &str = "/var/run/secrets/eol/model";

/// Labels shared by everything the operator creates for `instance`.
pub fn labels(component: &str, instance: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), component.to_owned()),
        ("app.kubernetes.io/instance".to_owned(), instance.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            FIELD_MANAGER.to_owned(),
        ),
    ])
}

/// Non-root, RuntimeDefault seccomp, group-owned volumes.
pub fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        fs_group: Some(RUN_AS),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// Read-only root, no privilege escalation, no capabilities.
pub fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

/// Requests and limits as `(cpu, memory)` pairs.
pub fn resources(requests: (&str, &str), limits: (&str, &str)) -> ResourceRequirements {
    let pair = |(cpu, memory): (&str, &str)| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])
    };
    ResourceRequirements {
        requests: Some(pair(requests)),
        limits: Some(pair(limits)),
        ..ResourceRequirements::default()
    }
}

/// An environment variable with a plain value.
pub fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

/// An environment variable read from a Secret key.
pub fn env_from_secret(name: &str, secret: &KeyRef) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The model a Feature's prototyped operations use: its own settings over the operator's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelSettings {
    /// Base URL of the OpenAI-compatible API.
    pub base_url: Option<String>,
    /// Model name.
    pub name: Option<String>,
    /// The Secret key holding the API key.
    pub api_key: Option<KeyRef>,
    /// First structured-output form to try.
    pub response_format: Option<String>,
}

impl ModelSettings {
    /// `spec` over `config`, field by field.
    pub fn resolve(spec: Option<&eol_core::crd::ModelSpec>, config: &OperatorConfig) -> Self {
        let spec = spec.cloned().unwrap_or_default();
        Self {
            base_url: spec.base_url.or_else(|| config.model_base_url.clone()),
            name: spec.name.or_else(|| config.model_name.clone()),
            api_key: spec
                .api_key_secret_ref
                .or_else(|| config.model_api_key_secret.clone()),
            response_format: config.model_response_format.clone(),
        }
    }
}

/// Everything a runner container needs besides its command.
pub struct RunnerPod<'a> {
    /// Operator settings (image, pull policy).
    pub config: &'a OperatorConfig,
    /// The Secret key holding the Redis URL (password included).
    pub redis_url: KeyRef,
    /// Model settings.
    pub model: &'a ModelSettings,
    /// The ConfigMap holding the feature (and tests).
    pub source_config_map: &'a str,
}

impl RunnerPod<'_> {
    /// The runner container running `args`, with Redis and model settings.
    pub fn container(&self, args: Vec<String>) -> Container {
        let mut env = vec![
            env_from_secret("REDIS_URL", &self.redis_url),
            // The root filesystem is read-only: caches and the sandbox's temp dirs live in /tmp.
            env("HOME", "/tmp"),
            env("TMPDIR", "/tmp"),
        ];
        if let Some(url) = &self.model.base_url {
            env.push(self::env("EOL_LLM_BASE_URL", url));
        }
        if let Some(name) = &self.model.name {
            env.push(self::env("EOL_LLM_MODEL", name));
        }
        if let Some(form) = &self.model.response_format {
            env.push(self::env("EOL_LLM_RESPONSE_FORMAT", form));
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
                mount_path: "/tmp".to_owned(),
                ..VolumeMount::default()
            },
        ];
        if self.model.api_key.is_some() {
            // A file, not an environment value: it never shows in `kubectl describe` or /proc/*/environ.
            env.push(self::env(
                "EOL_LLM_API_KEY_FILE",
                format!("{API_KEY_DIR}/api-key"),
            ));
            mounts.push(VolumeMount {
                name: "model-api-key".to_owned(),
                mount_path: API_KEY_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        }
        Container {
            name: "runner".to_owned(),
            image: Some(self.config.runner_image.clone()),
            image_pull_policy: Some(self.config.image_pull_policy.clone()),
            args: Some(args),
            env: Some(env),
            volume_mounts: Some(mounts),
            security_context: Some(container_security()),
            ..Container::default()
        }
    }

    /// The volumes [`Self::container`] mounts.
    pub fn volumes(&self) -> Vec<Volume> {
        let mut volumes = vec![
            Volume {
                name: "source".to_owned(),
                config_map: Some(k8s_openapi::api::core::v1::ConfigMapVolumeSource {
                    name: self.source_config_map.to_owned(),
                    ..Default::default()
                }),
                ..Volume::default()
            },
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
            volumes.push(Volume {
                name: "model-api-key".to_owned(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(key.name.clone()),
                    items: Some(vec![KeyToPath {
                        key: key.key.clone(),
                        path: "api-key".to_owned(),
                        ..KeyToPath::default()
                    }]),
                    default_mode: Some(0o440),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            });
        }
        volumes
    }
}

/// Kubernetes names of pods and Jobs: at most 63 characters, so long names are
/// cut and suffixed with a hash of the whole name (deterministic, so a restarted
/// operator finds the same object).
pub fn short_name(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let hash = crate::hash::hex(name.as_bytes());
    let keep = max.saturating_sub(11);
    let head: String = name.chars().take(keep).collect();
    format!("{}-{}", head.trim_end_matches('-'), &hash[..10])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_deterministically() {
        let long = "a".repeat(80);
        let a = short_name(&long, 63);
        assert_eq!(a.len(), 63);
        assert_eq!(a, short_name(&long, 63));
        assert_ne!(a, short_name(&format!("{long}b"), 63));
        assert_eq!(short_name("run-1", 63), "run-1");
    }
}
