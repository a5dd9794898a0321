//! What every pod the operator creates shares: labels, security contexts,
//! environment helpers and names. [`runner`] builds the runner pods of Features
//! and FeatureRuns, whole, in one place.

pub mod runner;

pub use runner::{ModelSettings, Placement, RunnerPod, is_reserved_source_path, source_data};

use eol_core::crd::KeyRef;
use k8s_openapi::api::core::v1::{
    Capabilities, EnvVar, EnvVarSource, ObjectFieldSelector, PodSecurityContext,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// The field manager of every Server-Side Apply the operator makes.
pub const FIELD_MANAGER: &str = "eol-operator";
/// The user runner and Redis pods run as (the images' `eol` user).
pub const RUN_AS: i64 = 65532;

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

/// `labels` as a label selector string (`k=v,k=v`).
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
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

/// An environment variable read from the pod's own object (the downward API),
/// e.g. `metadata.name`.
pub fn env_from_field(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
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

/// Kubernetes names of pods: at most 63 characters, so long names are
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
