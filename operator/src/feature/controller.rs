//! The Feature reconciler: fetch the source -> validate -> check the model
//! Secret -> ensure Redis -> apply ConfigMap, Deployment, Service -> read the
//! rollout -> (roll back) -> write status.

use super::children::{self, CONFIG_HASH};
use super::rollout::{self, Rollout};
use super::source::{self, Prepared, SpecProblem};
use crate::conditions::{self, Status};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::pod::{FIELD_MANAGER, ModelSettings};
use crate::redis;
use eol_core::crd::{Feature, FeatureStatus};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodTemplateSpec, Secret, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument;

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "feature";

/// Reconciles one Feature.
#[instrument(skip(feature, ctx), fields(feature = %feature.name_any(), namespace = feature.namespace().unwrap_or_default()))]
pub async fn reconcile(feature: Arc<Feature>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = feature
        .namespace()
        .ok_or_else(|| Error::MissingMetadata(feature.name_any(), "namespace"))?;
    let name = feature.name_any();
    let object = format!("Feature {ns}/{name}");
    let generation = feature.metadata.generation;
    let previous = feature.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    status.observed_generation = generation;

    // Validate first: a source that does not parse creates nothing (the pods
    // already serving keep serving) and waits for the next change.
    let text = match fetch_source(&ctx, &feature, &ns).await? {
        Ok(text) => text,
        Err(problem) => {
            let retry = problem.reason == "SourceNotFound";
            spec_invalid(&ctx, &feature, &previous, status, problem).await?;
            // A missing ConfigMap may appear: look again. A parse error waits for an edit.
            return Ok(if retry {
                Action::requeue(Duration::from_secs(15))
            } else {
                Action::await_change()
            });
        }
    };
    let model = ModelSettings::resolve(feature.spec.model.as_ref(), &ctx.config);
    let prepared = match source::prepare(&feature, &text, &model) {
        Ok(p) => p,
        Err(problem) => {
            spec_invalid(&ctx, &feature, &previous, status, problem).await?;
            return Ok(Action::await_change());
        }
    };
    conditions::set(
        &mut status.conditions,
        "SpecValid",
        Status::True,
        "Valid",
        format!(
            "the source parses; phase {}",
            source::core_phase(prepared.phase)
        ),
        generation,
    );

    // The model: without its Secret the pods could not start, so nothing rolls
    // out (old pods keep serving) and the Secret is looked for again shortly.
    if let Some((reason, message)) = model_problem(&ctx, &ns, &prepared, &model).await? {
        conditions::set(
            &mut status.conditions,
            "ModelConfigured",
            Status::False,
            reason,
            &message,
            generation,
        );
        if !conditions::is(&previous.conditions, "ModelConfigured", Status::False) {
            ctx.event(&feature.object_ref(&()), true, reason, "Configure", message)
                .await;
        }
        write_status(&ctx, &feature, &status).await?;
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    conditions::set(
        &mut status.conditions,
        "ModelConfigured",
        Status::True,
        if prepared.needs_model {
            "Configured"
        } else {
            "NotRequired"
        },
        if prepared.needs_model {
            format!(
                "model {} at {}",
                model.name.as_deref().unwrap_or("(default)"),
                model.base_url.as_deref().unwrap_or("(default)")
            )
        } else {
            "no operation runs on the model".to_owned()
        },
        generation,
    );

    let owner = feature
        .controller_owner_ref(&())
        .ok_or_else(|| Error::MissingMetadata(object.clone(), "uid"))?;
    if ctx.config.external_redis_secret.is_none() {
        let mut shared = owner.clone();
        // Shared by the namespace's Features: none of them is its controller.
        shared.controller = None;
        shared.block_owner_deletion = None;
        let redis = redis::ensure(&ctx.client, &ns, &shared, &ctx.config).await?;
        // New pods run their tests at start, against Redis: starting them before
        // it answers would fail the tests for nothing. Pods already serving stay.
        if !redis::has_ready_pod(&redis) {
            conditions::set(
                &mut status.conditions,
                "PhaseSwitch",
                Status::Unknown,
                "Progressing",
                format!(
                    "waiting for the namespace's Redis ({ns}/{}) to be ready",
                    redis::NAME
                ),
                generation,
            );
            if status != previous {
                write_status(&ctx, &feature, &status).await?;
            }
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
    }

    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let cm = children::config_map(&feature, &prepared);
    config_maps
        .patch(&cm.name_any(), &apply, &Patch::Apply(&cm))
        .await
        .map_err(Error::kube("apply the source ConfigMap", &object))?;

    // A configuration whose switch failed and was rolled back is not retried
    // until the spec changes.
    let held_back = status.failed_config.as_deref() == Some(prepared.config_hash.as_str())
        && status
            .last_good_config
            .as_ref()
            .is_some_and(|good| *good != prepared.config_hash);
    let redis_url = redis::url_secret(&ctx.config);
    let desired_template =
        children::pod_template(&feature, &prepared, &model, redis_url, &ctx.config);
    let template = match (&status.last_good_config, held_back) {
        (Some(good), true) => template_of(&ctx, &feature, &ns, good)
            .await?
            .unwrap_or_else(|| desired_template.clone()),
        _ => desired_template.clone(),
    };
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let mut deployment = deployments
        .patch(
            &name,
            &apply,
            &Patch::Apply(children::deployment(
                &feature,
                template.clone(),
                &ctx.config,
            )),
        )
        .await
        .map_err(Error::kube("apply the Deployment", &object))?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    services
        .patch(&name, &apply, &Patch::Apply(children::service(&feature)))
        .await
        .map_err(Error::kube("apply the Service", &object))?;

    let target = template_hash(&template).unwrap_or_else(|| prepared.config_hash.clone());
    let phase_name = source::core_phase(prepared.phase).to_string();
    let mut requeue = Duration::from_secs(300);
    match rollout::state(&deployment) {
        Rollout::Complete => {
            status.last_good_config = Some(target.clone());
            if target == prepared.config_hash {
                status.phase = Some(prepared.phase);
                status.operation_phases = prepared.operation_phases.clone();
                status.failed_config = None;
                conditions::set(
                    &mut status.conditions,
                    "PhaseSwitch",
                    Status::True,
                    "Complete",
                    format!("every replica serves phase {phase_name} (config {target})"),
                    generation,
                );
                if conditions::get(&previous.conditions, "PhaseSwitch")
                    .is_some_and(|c| c.reason != "Complete")
                {
                    ctx.event(
                        &feature.object_ref(&()),
                        false,
                        "PhaseSwitchComplete",
                        "Rollout",
                        format!("serving phase {phase_name} (config {target})"),
                    )
                    .await;
                }
            }
        }
        Rollout::Progressing {
            updated_ready,
            wanted,
        } => {
            requeue = Duration::from_secs(5);
            conditions::set(
                &mut status.conditions,
                "PhaseSwitch",
                Status::Unknown,
                "Progressing",
                format!(
                    "rolling out phase {phase_name} (config {target}): {updated_ready}/{wanted} new pods ready; the previous pods keep serving"
                ),
                generation,
            );
            if conditions::get(&previous.conditions, "PhaseSwitch")
                .is_none_or(|c| c.reason != "Progressing")
            {
                ctx.event(
                    &feature.object_ref(&()),
                    false,
                    "PhaseSwitchStarted",
                    "Rollout",
                    format!("rolling out phase {phase_name} (config {target})"),
                )
                .await;
            }
        }
        Rollout::Failed { message } => {
            let why = why_not_ready(&ctx, &feature, &ns, &target)
                .await
                .unwrap_or(message);
            let rollback_to = status
                .last_good_config
                .clone()
                .filter(|good| *good != target);
            let auto = feature
                .spec
                .rollout
                .as_ref()
                .is_some_and(|r| r.auto_rollback);
            match (auto, rollback_to) {
                (true, Some(good)) => {
                    if let Some(old) = template_of(&ctx, &feature, &ns, &good).await? {
                        deployment = deployments
                            .patch(
                                &name,
                                &apply,
                                &Patch::Apply(children::deployment(&feature, old, &ctx.config)),
                            )
                            .await
                            .map_err(Error::kube("roll the Deployment back", &object))?;
                    }
                    status.failed_config = Some(target.clone());
                    let served = status
                        .phase
                        .map(|p| source::core_phase(p).to_string())
                        .unwrap_or_else(|| "the previous one".to_owned());
                    let message = format!(
                        "the switch to phase {phase_name} (config {target}) failed: {why}; rolled back to phase {served} (config {good})"
                    );
                    conditions::set(
                        &mut status.conditions,
                        "PhaseSwitch",
                        Status::False,
                        "RolledBack",
                        &message,
                        generation,
                    );
                    ctx.event(
                        &feature.object_ref(&()),
                        true,
                        "RolledBack",
                        "Rollback",
                        message,
                    )
                    .await;
                }
                _ => {
                    let message = format!(
                        "the switch to phase {phase_name} (config {target}) failed: {why}; the previous pods keep serving"
                    );
                    if !conditions::is(&previous.conditions, "PhaseSwitch", Status::False) {
                        ctx.event(
                            &feature.object_ref(&()),
                            true,
                            "PhaseSwitchFailed",
                            "Rollout",
                            message.clone(),
                        )
                        .await;
                    }
                    conditions::set(
                        &mut status.conditions,
                        "PhaseSwitch",
                        Status::False,
                        "Failed",
                        message,
                        generation,
                    );
                }
            }
        }
    }
    // After a rollback the Deployment serves the last good config again: keep
    // the failure on record until the spec changes.
    if held_back {
        let message = conditions::get(&previous.conditions, "PhaseSwitch")
            .filter(|c| c.reason == "RolledBack")
            .map(|c| c.message.clone())
            .unwrap_or_else(|| {
                format!(
                    "config {} failed before; serving config {}",
                    prepared.config_hash,
                    status.last_good_config.as_deref().unwrap_or_default()
                )
            });
        conditions::set(
            &mut status.conditions,
            "PhaseSwitch",
            Status::False,
            "RolledBack",
            message,
            generation,
        );
    }

    let ready = deployment
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    status.ready_replicas = ready;
    status.config = template_hash(&template);
    let wanted = feature.spec.replicas;
    let (ready_status, reason, message) = if wanted == 0 {
        (Status::True, "ScaledToZero", "replicas is 0".to_owned())
    } else if ready >= wanted {
        (
            Status::True,
            "Ready",
            format!("{ready}/{wanted} pods ready"),
        )
    } else {
        (
            Status::False,
            "NotReady",
            format!("{ready}/{wanted} pods ready"),
        )
    };
    conditions::set(
        &mut status.conditions,
        "Ready",
        ready_status,
        reason,
        message,
        generation,
    );
    prune_config_maps(&ctx, &feature, &ns, &status, &prepared).await?;
    if status != previous {
        write_status(&ctx, &feature, &status).await?;
    }
    Ok(Action::requeue(requeue))
}

/// The `.eol` text: inline, or from the referenced ConfigMap key.
pub(crate) async fn fetch_source(
    ctx: &Context,
    feature: &Feature,
    ns: &str,
) -> Result<Result<String, SpecProblem>> {
    let source = &feature.spec.source;
    if let Some(text) = &source.inline {
        return Ok(Ok(text.clone()));
    }
    let Some(r) = &source.config_map_key_ref else {
        return Ok(Err(SpecProblem {
            reason: "SourceNotFound",
            message: "spec.source has neither inline nor configMapKeyRef".to_owned(),
        }));
    };
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let cm = cms.get_opt(&r.name).await.map_err(Error::kube(
        "read the source ConfigMap",
        format!("{ns}/{}", r.name),
    ))?;
    Ok(
        match cm.and_then(|cm| cm.data.and_then(|mut d| d.remove(&r.key))) {
            Some(text) => Ok(text),
            None => Err(SpecProblem {
                reason: "SourceNotFound",
                message: format!(
                    "spec.source.configMapKeyRef: ConfigMap {ns}/{} has no key '{}' (or does not exist)",
                    r.name, r.key
                ),
            }),
        },
    )
}

/// Reports an invalid spec: SpecValid=False with the located message, an event once.
async fn spec_invalid(
    ctx: &Context,
    feature: &Feature,
    previous: &FeatureStatus,
    mut status: FeatureStatus,
    problem: SpecProblem,
) -> Result<()> {
    tracing::info!(reason = problem.reason, message = %problem.message, "spec invalid");
    let unchanged = conditions::get(&previous.conditions, "SpecValid")
        .is_some_and(|c| c.status == "False" && c.message == problem.message);
    conditions::set(
        &mut status.conditions,
        "SpecValid",
        Status::False,
        problem.reason,
        &problem.message,
        feature.metadata.generation,
    );
    if !unchanged {
        ctx.event(
            &feature.object_ref(&()),
            true,
            problem.reason,
            "Validate",
            problem.message,
        )
        .await;
    }
    write_status(ctx, feature, &status).await
}

/// Why the model cannot be used, when an operation needs it.
async fn model_problem(
    ctx: &Context,
    ns: &str,
    prepared: &Prepared,
    model: &ModelSettings,
) -> Result<Option<(&'static str, String)>> {
    if !prepared.needs_model {
        return Ok(None);
    }
    if model.base_url.is_none() {
        return Ok(Some((
            "NotConfigured",
            "prototyped operations need a model: set spec.model.baseUrl or the operator's default"
                .to_owned(),
        )));
    }
    let Some(key) = &model.api_key else {
        return Ok(None);
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = secrets.get_opt(&key.name).await.map_err(Error::kube(
        "read the model API-key Secret",
        format!("{ns}/{}", key.name),
    ))?;
    let has_key = secret.is_some_and(|s| {
        s.data.is_some_and(|d| d.contains_key(&key.key))
            || s.string_data.is_some_and(|d| d.contains_key(&key.key))
    });
    Ok((!has_key).then(|| {
        (
            "SecretNotFound",
            format!(
                "the model API key Secret {ns}/{} has no key '{}' (or does not exist); nothing rolls out until it does",
                key.name, key.key
            ),
        )
    }))
}

/// The config hash a pod template runs.
fn template_hash(template: &PodTemplateSpec) -> Option<String> {
    template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(CONFIG_HASH)
        .cloned()
}

/// The pod template that ran config `hash`, from the Deployment's ReplicaSets
/// (how `kubectl rollout undo` finds it).
async fn template_of(
    ctx: &Context,
    feature: &Feature,
    ns: &str,
    hash: &str,
) -> Result<Option<PodTemplateSpec>> {
    let sets: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
    let list = sets
        .list(&ListParams::default().labels(&selector_string(feature)))
        .await
        .map_err(Error::kube(
            "list the ReplicaSets",
            format!("{ns}/{}", feature.name_any()),
        ))?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|rs| rs.spec.map(|s| s.template))
        .flatten()
        .find(|t| template_hash(t).as_deref() == Some(hash))
        .map(|mut t| {
            if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
                labels.remove("pod-template-hash");
            }
            t
        }))
}

fn selector_string(feature: &Feature) -> String {
    children::selector(feature)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// What the new pods say about why they are not ready (their `/readyz` names
/// the failing tests), or how their containers are stuck.
async fn why_not_ready(ctx: &Context, feature: &Feature, ns: &str, hash: &str) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("{},{CONFIG_HASH}={hash}", selector_string(feature));
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .ok()?;
    let mut reasons: Vec<String> = Vec::new();
    for pod in list.items {
        let status = pod.status.unwrap_or_default();
        if let Some(waiting) = status
            .container_statuses
            .iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
            .next()
        {
            reasons.push(format!(
                "pod {}: {} {}",
                pod.metadata.name.unwrap_or_default(),
                waiting.reason.clone().unwrap_or_default(),
                waiting.message.clone().unwrap_or_default()
            ));
            continue;
        }
        let Some(ip) = status.pod_ip else { continue };
        let url = format!("http://{ip}:{}/readyz", children::HTTP_PORT);
        if let Ok(resp) = ctx.http.get(&url).send().await
            && !resp.status().is_success()
            && let Ok(body) = resp.text().await
        {
            reasons.push(body.trim().to_owned());
        }
    }
    reasons.sort();
    reasons.dedup();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// Deletes ConfigMaps of configurations no longer needed.
async fn prune_config_maps(
    ctx: &Context,
    feature: &Feature,
    ns: &str,
    status: &FeatureStatus,
    prepared: &Prepared,
) -> Result<()> {
    let keep = [
        Some(prepared.config_hash.as_str()),
        status.config.as_deref(),
        status.last_good_config.as_deref(),
    ];
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let list = cms
        .list(&ListParams::default().labels(&format!(
            "app.kubernetes.io/name={},app.kubernetes.io/instance={}",
            children::COMPONENT,
            feature.name_any()
        )))
        .await
        .map_err(Error::kube(
            "list the source ConfigMaps",
            format!("{ns}/{}", feature.name_any()),
        ))?;
    for cm in list.items {
        let hash = cm.labels().get(CONFIG_HASH).cloned();
        let owned = cm
            .owner_references()
            .iter()
            .any(|r| Some(&r.uid) == feature.metadata.uid.as_ref());
        if owned && !keep.contains(&hash.as_deref()) {
            cms.delete(&cm.name_any(), &DeleteParams::default())
                .await
                .map_err(Error::kube(
                    "delete an old source ConfigMap",
                    format!("{ns}/{}", cm.name_any()),
                ))?;
        }
    }
    Ok(())
}

/// Writes `status` with a Server-Side Apply of the status subresource.
async fn write_status(ctx: &Context, feature: &Feature, status: &FeatureStatus) -> Result<()> {
    let ns = feature.namespace().unwrap_or_default();
    let api: Api<Feature> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({
        "apiVersion": "eol.dev/v1alpha1",
        "kind": "Feature",
        "status": status,
    });
    api.patch_status(
        &feature.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await
    .map_err(Error::kube(
        "write the status",
        format!("Feature {ns}/{}", feature.name_any()),
    ))?;
    Ok(())
}

/// On a failed reconcile: count it, log it, and retry with a pause.
pub fn error_policy(feature: Arc<Feature>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(CONTROLLER, error.kind());
    tracing::warn!(feature = %feature.name_any(), kind = error.kind(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OperatorConfig;
    use crate::fixtures::{Expect, condition, context, not_found};

    const SOURCE: &str = include_str!("../../../features/examples/inventory.eol");
    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";
    const STATUS: &str = "/apis/eol.dev/v1alpha1/namespaces/shop/features/inventory/status";

    /// What the API server answers a status patch with: the object.
    fn stored() -> serde_json::Value {
        serde_json::json!({"apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
            "metadata": {"name": "inventory", "namespace": "shop"}, "spec": {"source": {"inline": ""}}})
    }

    fn feature(spec: serde_json::Value) -> Arc<Feature> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
                "metadata": {"name": "inventory", "namespace": "shop", "uid": "u1", "generation": 2},
                "spec": spec
            }))
            .expect("a Feature"),
        )
    }

    #[tokio::test]
    async fn an_invalid_source_is_reported_and_nothing_is_created() {
        let (ctx, server) = context(OperatorConfig::default());
        let broken = "---\nname: inventory\nphase: nope\n---\n# x\n";
        let verify = server.run(vec![
            Expect::new("POST", EVENTS, (201, serde_json::json!({}))).checking(|e| {
                assert_eq!(e["reason"], "ParseError");
                assert_eq!(e["type"], "Warning");
            }),
            Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
                let c = condition(&patch, "SpecValid");
                assert_eq!(c["status"], "False");
                assert_eq!(c["reason"], "ParseError");
                let message = c["message"].as_str().expect("message");
                assert!(
                    message.starts_with("Feature shop/inventory spec.source.inline:3:"),
                    "{message}"
                );
                assert_eq!(patch["status"]["observedGeneration"], 2);
            }),
        ]);
        let action = reconcile(
            feature(serde_json::json!({"source": {"inline": broken}})),
            ctx,
        )
        .await
        .expect("reconciled");
        assert_eq!(
            action,
            Action::await_change(),
            "an invalid spec waits for a change"
        );
        verify.await.expect("the API calls were as expected");
    }

    #[tokio::test]
    async fn a_missing_model_secret_holds_the_rollout_and_is_retried() {
        let config = OperatorConfig {
            model_base_url: Some("http://llm/v1".into()),
            ..OperatorConfig::default()
        };
        let (ctx, server) = context(config);
        let verify = server.run(vec![
            Expect::new(
                "GET",
                "/api/v1/namespaces/shop/secrets/llm",
                not_found("secrets \"llm\""),
            ),
            Expect::new("POST", EVENTS, (201, serde_json::json!({})))
                .checking(|e| assert_eq!(e["reason"], "SecretNotFound")),
            Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
                let c = condition(&patch, "ModelConfigured");
                assert_eq!(c["status"], "False");
                assert_eq!(c["reason"], "SecretNotFound");
                assert!(c["message"].as_str().expect("message").contains("shop/llm"));
                assert_eq!(condition(&patch, "SpecValid")["status"], "True");
            }),
        ]);
        let action = reconcile(
            feature(serde_json::json!({
                "source": {"inline": SOURCE}, "phase": "prototyping",
                "model": {"apiKeySecretRef": {"name": "llm", "key": "api-key"}}
            })),
            ctx,
        )
        .await
        .expect("reconciled");
        assert_eq!(action, Action::requeue(Duration::from_secs(10)));
        verify.await.expect("the API calls were as expected");
    }

    #[tokio::test]
    async fn a_missing_source_config_map_is_looked_for_again() {
        let (ctx, server) = context(OperatorConfig::default());
        let verify = server.run(vec![
            Expect::new(
                "GET",
                "/api/v1/namespaces/shop/configmaps/src",
                not_found("configmaps \"src\""),
            ),
            Expect::new("POST", EVENTS, (201, serde_json::json!({}))),
            Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
                assert_eq!(condition(&patch, "SpecValid")["reason"], "SourceNotFound")
            }),
        ]);
        let action = reconcile(
            feature(
                serde_json::json!({"source": {"configMapKeyRef": {"name": "src", "key": "f.eol"}}}),
            ),
            ctx,
        )
        .await
        .expect("reconciled");
        assert_eq!(action, Action::requeue(Duration::from_secs(15)));
        verify.await.expect("the API calls were as expected");
    }
}
