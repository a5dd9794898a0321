//! Who may call a Feature: unless `spec.access.anonymous`, its serving pods
//! check each caller's bearer token (TokenReview) and RBAC (SubjectAccessReview
//! on `features/operations`, verb `invoke`).
//!
//! They review as the namespace's ServiceAccount [`SERVICE_ACCOUNT`], bound by
//! a ClusterRoleBinding to the reviewer ClusterRole (`--runner-reviewer-role`,
//! which the chart ships: create TokenReviews and SubjectAccessReviews, nothing
//! else). Reviews are cluster-scoped, so the binding is too: one per namespace,
//! owned by the Namespace, so it goes when the namespace goes. Every pod's audit
//! records go to stdout, and to a Redis stream when `spec.audit` asks.

use crate::config::OperatorConfig;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::pod::{self, FIELD_MANAGER};
use eol_core::crd::Feature;
use eol_core::runner_contract::{DEFAULT_AUDIENCE, env as vars};
use k8s_openapi::api::core::v1::{Namespace, PodTemplateSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The ServiceAccount serving pods of authenticated Features run as.
pub const SERVICE_ACCOUNT: &str = "eol-runner";

/// How long a namespace's reviewer identity counts as applied before it is
/// applied again (repairing a hand-deleted ServiceAccount or binding).
const REAPPLY: Duration = Duration::from_secs(300);

/// Whether `feature`'s callers are checked.
pub fn is_authenticated(feature: &Feature) -> bool {
    !feature
        .spec
        .access
        .as_ref()
        .is_some_and(|access| access.anonymous)
}

/// The ClusterRoleBinding of `namespace`'s [`SERVICE_ACCOUNT`] to `role`.
pub fn binding_name(role: &str, namespace: &str) -> String {
    format!("{role}:{namespace}")
}

/// The namespace's reviewer ServiceAccount. No token is mounted by default:
/// the serving pods of authenticated Features ask for theirs.
pub fn service_account(namespace: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(SERVICE_ACCOUNT.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(pod::labels("eol-runner", SERVICE_ACCOUNT)),
            ..ObjectMeta::default()
        },
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The binding of `namespace`'s ServiceAccount to the reviewer ClusterRole,
/// owned by the Namespace (uid `namespace_uid`).
pub fn binding(
    config: &OperatorConfig,
    namespace: &str,
    namespace_uid: &str,
) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(binding_name(&config.runner_reviewer_role, namespace)),
            labels: Some(pod::labels("eol-runner", namespace)),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "Namespace".to_owned(),
                name: namespace.to_owned(),
                uid: namespace_uid.to_owned(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: config.runner_reviewer_role.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: SERVICE_ACCOUNT.to_owned(),
            namespace: Some(namespace.to_owned()),
            ..Subject::default()
        }]),
    }
}

/// Makes `template` (a serving pod's) check callers as `feature` asks, and
/// write audit records. An anonymous Feature's pods get no token at all.
pub fn secure(template: &mut PodTemplateSpec, feature: &Feature) {
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    let mut env = vec![pod::env(vars::AUDIT, "stdout")];
    if let Some(audit) = &feature.spec.audit {
        if let Some(max) = audit.stream_max_length {
            env.push(pod::env(vars::AUDIT_STREAM_MAX_LENGTH, max.to_string()));
        }
        if audit.include_input {
            env.push(pod::env(vars::AUDIT_INPUT, "true"));
        }
    }
    if is_authenticated(feature) {
        let access = feature.spec.access.clone().unwrap_or_default();
        let audiences = if access.audiences.is_empty() {
            DEFAULT_AUDIENCE.to_owned()
        } else {
            access.audiences.join(",")
        };
        env.extend([
            pod::env(vars::AUTH, "kubernetes"),
            pod::env(vars::AUTH_FEATURE, feature.name_any()),
            pod::env(
                vars::AUTH_NAMESPACE,
                feature.namespace().unwrap_or_default(),
            ),
            pod::env(vars::AUTH_AUDIENCES, audiences),
        ]);
        if let Some(seconds) = access.review_cache_seconds {
            env.push(pod::env(vars::AUTH_CACHE_SECONDS, seconds.to_string()));
        }
        if let Some(size) = access.review_cache_size {
            env.push(pod::env(vars::AUTH_CACHE_SIZE, size.to_string()));
        }
        if let Some(seconds) = access.review_stale_seconds {
            env.push(pod::env(vars::AUTH_STALE_SECONDS, seconds.to_string()));
        }
        // The kubelet mounts a bound, expiring, rotated token (read-only, under
        // /var/run/secrets/kubernetes.io/serviceaccount) that the runner's
        // client re-reads; it may only create the two reviews.
        spec.service_account_name = Some(SERVICE_ACCOUNT.to_owned());
        spec.automount_service_account_token = Some(true);
    }
    for container in &mut spec.containers {
        container
            .env
            .get_or_insert_with(Vec::new)
            .extend(env.iter().cloned());
    }
}

/// Namespaces whose reviewer identity was applied, and when.
#[derive(Debug, Default)]
pub struct Applied {
    at: Mutex<HashMap<String, Instant>>,
}

impl Applied {
    fn is_fresh(&self, namespace: &str, now: Instant) -> bool {
        self.at.lock().is_ok_and(|at| {
            at.get(namespace)
                .is_some_and(|t| now.duration_since(*t) < REAPPLY)
        })
    }

    /// Notes that `namespace`'s identity was applied at `now`.
    pub(crate) fn note(&self, namespace: &str, now: Instant) {
        if let Ok(mut at) = self.at.lock() {
            at.insert(namespace.to_owned(), now);
        }
    }
}

/// Applies `namespace`'s reviewer ServiceAccount and ClusterRoleBinding where
/// they are missing or differ (reads first: an operator restarting over an
/// unchanged fleet writes nothing), unless done in the last [`REAPPLY`].
pub async fn ensure(ctx: &Context, namespace: &str, object: &str) -> Result<()> {
    let now = Instant::now();
    if ctx.access_applied.is_fresh(namespace, now) {
        return Ok(());
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let accounts = Api::<ServiceAccount>::namespaced(ctx.client.clone(), namespace);
    let account = accounts
        .get_opt(SERVICE_ACCOUNT)
        .await
        .map_err(Error::kube("read the reviewer ServiceAccount", object))?;
    if account.is_none() {
        accounts
            .patch(
                SERVICE_ACCOUNT,
                &params,
                &Patch::Apply(&service_account(namespace)),
            )
            .await
            .map_err(Error::kube("apply the reviewer ServiceAccount", object))?;
    }
    let bindings = Api::<ClusterRoleBinding>::all(ctx.client.clone());
    let name = binding_name(&ctx.config.runner_reviewer_role, namespace);
    let current = bindings
        .get_opt(&name)
        .await
        .map_err(Error::kube("read the reviewer ClusterRoleBinding", object))?;
    let wanted = binding(&ctx.config, namespace, "");
    let in_place = current.is_some_and(|b| {
        b.role_ref == wanted.role_ref
            && b.subjects == wanted.subjects
            && b.metadata
                .owner_references
                .is_some_and(|o| o.iter().any(|o| o.kind == "Namespace"))
    });
    if !in_place {
        let ns = Api::<Namespace>::all(ctx.client.clone())
            .get(namespace)
            .await
            .map_err(Error::kube("read the Namespace", object))?;
        let uid = ns.meta().uid.clone().unwrap_or_default();
        bindings
            .patch(
                &name,
                &params,
                &Patch::Apply(&binding(&ctx.config, namespace, &uid)),
            )
            .await
            .map_err(Error::kube("apply the reviewer ClusterRoleBinding", object))?;
    }
    ctx.access_applied.note(namespace, now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use eol_core::crd::{AccessSpec, AuditSpec};

    fn feature(access: Option<AccessSpec>, audit: Option<AuditSpec>) -> Feature {
        let mut feature: Feature = serde_json::from_value(serde_json::json!({
            "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
            "metadata": {"name": "orders", "namespace": "shop", "uid": "u1"},
            "spec": {"source": {"inline": "x"}}
        }))
        .expect("a Feature");
        feature.spec.access = access;
        feature.spec.audit = audit;
        feature
    }

    fn env_of(template: &PodTemplateSpec) -> HashMap<String, String> {
        template.spec.as_ref().unwrap().containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect()
    }

    fn template() -> PodTemplateSpec {
        PodTemplateSpec {
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                containers: vec![Default::default()],
                automount_service_account_token: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn features_are_authenticated_unless_anonymous() {
        let mut t = template();
        secure(&mut t, &feature(None, None));
        let env = env_of(&t);
        assert_eq!(env[vars::AUTH], "kubernetes");
        assert_eq!(env[vars::AUTH_FEATURE], "orders");
        assert_eq!(env[vars::AUTH_NAMESPACE], "shop");
        assert_eq!(env[vars::AUTH_AUDIENCES], DEFAULT_AUDIENCE);
        assert_eq!(env[vars::AUDIT], "stdout");
        assert!(!env.contains_key(vars::AUDIT_INPUT));
        let spec = t.spec.unwrap();
        assert_eq!(spec.service_account_name.as_deref(), Some(SERVICE_ACCOUNT));
        assert_eq!(spec.automount_service_account_token, Some(true));

        let mut t = template();
        let anonymous = AccessSpec {
            anonymous: true,
            ..AccessSpec::default()
        };
        secure(&mut t, &feature(Some(anonymous), None));
        let env = env_of(&t);
        assert!(!env.contains_key(vars::AUTH), "{env:?}");
        assert_eq!(
            env[vars::AUDIT],
            "stdout",
            "anonymous calls are audited too"
        );
        let spec = t.spec.unwrap();
        assert_eq!(spec.service_account_name, None);
        assert_eq!(
            spec.automount_service_account_token,
            Some(false),
            "no token"
        );
    }

    #[test]
    fn access_and_audit_settings_reach_the_pod() {
        let mut t = template();
        let access = AccessSpec {
            anonymous: false,
            audiences: vec!["orders".to_owned(), "shop".to_owned()],
            review_cache_seconds: Some(0),
            review_cache_size: Some(50),
            review_stale_seconds: Some(60),
        };
        let audit = AuditSpec {
            stream_max_length: Some(1000),
            include_input: true,
        };
        secure(&mut t, &feature(Some(access), Some(audit)));
        let env = env_of(&t);
        assert_eq!(env[vars::AUTH_AUDIENCES], "orders,shop");
        assert_eq!(env[vars::AUTH_CACHE_SECONDS], "0");
        assert_eq!(env[vars::AUTH_CACHE_SIZE], "50");
        assert_eq!(env[vars::AUTH_STALE_SECONDS], "60");
        assert_eq!(env[vars::AUDIT_STREAM_MAX_LENGTH], "1000");
        assert_eq!(env[vars::AUDIT_INPUT], "true");
    }

    #[test]
    fn the_binding_grants_the_reviewer_role_to_the_namespace_account_only() {
        let config = OperatorConfig::default();
        let b = binding(&config, "shop", "uid-1");
        assert_eq!(
            b.metadata.name.as_deref(),
            Some(format!("{}:shop", config.runner_reviewer_role).as_str())
        );
        assert_eq!(b.role_ref.kind, "ClusterRole");
        assert_eq!(b.role_ref.name, config.runner_reviewer_role);
        let subjects = b.subjects.unwrap();
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].name, SERVICE_ACCOUNT);
        assert_eq!(subjects[0].namespace.as_deref(), Some("shop"));
        let owner = &b.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Namespace", "uid-1")
        );
        assert_eq!(
            service_account("shop").automount_service_account_token,
            Some(false)
        );
    }
}
