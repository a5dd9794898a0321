//! The Feature reconciler, a pipeline: load the source (fetch, prepare, check
//! the code) -> check the model's Secret -> ensure the namespace's Redis ->
//! apply the ConfigMap, Deployment and Service -> observe the rollout ->
//! [`decide`] -> roll back, prune, write the status and events.

use super::access;
use super::apply::{Children, template_hash, template_of};
use super::children::{self, CONFIG_HASH};
use super::decide::{self, Decision, Observed, Requeue};
use super::rollout::{self, Rollout};
use super::shadow;
use super::usage;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::pod::{self, ModelSettings};
use crate::redis;
use crate::source::{self, Loaded, Prepared};
use eol_core::crd::{Feature, FeatureStatus};
use eol_core::runner_contract::{HTTP_PORT, READY_PATH};
use eol_core::shadow::{CANARY_PATH, CanaryWeight, TALLY_PATH, TOKEN_HEADER, Tally, token_key};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument;

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "feature";

/// Reconciles one Feature, in a span of its own whose trace id the
/// reconcile's log lines carry (see [`crate::telemetry`]).
#[instrument(skip(feature, ctx), fields(feature = %feature.name_any(), namespace = feature.namespace().unwrap_or_default(), trace_id = tracing::field::Empty))]
pub async fn reconcile(feature: Arc<Feature>, ctx: Arc<Context>) -> Result<Action> {
    crate::telemetry::record_trace_id();
    let result = reconcile_feature(feature, ctx).await;
    crate::telemetry::record_outcome(&result);
    result
}

async fn reconcile_feature(feature: Arc<Feature>, ctx: Arc<Context>) -> Result<Action> {
    ctx.caches.ready().await;
    // A Feature being deleted gets nothing applied: its children go with it
    // (owner references), and applying the namespace's Redis again would race
    // the sweep that removes it once the last Feature is gone (seen: a
    // reconcile of the terminating Feature re-created the StatefulSet just
    // after the sweep deleted it, and it stayed until the namespace went).
    if feature.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = feature
        .namespace()
        .ok_or_else(|| Error::MissingMetadata(feature.name_any(), "namespace"))?;
    // What this operator last wrote, even when the watch cache has not seen it yet.
    let previous = ctx.status.current(feature.as_ref());
    let (mut decision, roll_back) = decide(&ctx, &feature, &ns, &previous).await?;
    usage::refresh(&ctx, &feature, &ns, &mut decision).await;
    finish(&ctx, &feature, &ns, &previous, decision, roll_back).await
}

/// Gathers the facts, applies the children and decides; with the pod template
/// to roll back to, when the decision is to roll back.
async fn decide(
    ctx: &Context,
    feature: &Feature,
    ns: &str,
    previous: &FeatureStatus,
) -> Result<(Decision, Option<PodTemplateSpec>)> {
    // Validate first: a source that does not pass creates nothing (the pods
    // already serving keep serving).
    let model = ModelSettings::resolve(&feature.spec, &ctx.config);
    let Loaded {
        prepared,
        unchecked,
    } = match source::load(ctx, feature, &model).await? {
        Ok(loaded) => loaded,
        Err(problem) => {
            tracing::info!(reason = problem.reason, message = %problem.message, "spec invalid");
            return Ok((decide::spec_invalid(feature, previous, problem), None));
        }
    };
    let decision = decide::spec_valid(feature, previous, &prepared, unchecked.as_deref());
    let configured = format!(
        "model {} at {}",
        model.name.as_deref().unwrap_or("(default)"),
        model.base_url.as_deref().unwrap_or("(default)")
    );
    let problem = model_problem(ctx, ns, &prepared, &model).await?;
    let blocked = problem.is_some();
    let decision = decide::model(decision, previous, &prepared, &configured, problem);
    if blocked {
        return Ok((decision, None));
    }

    if ctx.config.external_redis_secret.is_none() {
        let redis = redis::ensure(&ctx.client, ns, &ctx.config).await?;
        if !redis::has_ready_pod(&redis) {
            let redis = format!("{ns}/{}", redis::NAME);
            return Ok((decide::waiting_for_redis(decision, &redis), None));
        }
    }

    if access::is_authenticated(feature) {
        let object = format!("Feature {ns}/{}", feature.name_any());
        access::ensure(ctx, ns, &object).await?;
    }
    let children = Children::new(ctx, feature, ns);
    children
        .apply_config_map(&children::config_map(feature, &prepared))
        .await?;
    children.apply_autoscaler(previous).await?;
    let desired = children::pod_template(
        feature,
        &prepared,
        &model,
        redis::url_secret(&ctx.config),
        &ctx.config,
    );
    let mut sets = None;
    let shadowing = shadow::wanted(feature, previous, &prepared);
    let serving = match &previous.last_good_config {
        Some(good) if shadowing || decide::held_back(previous, &prepared) => {
            template_of(children.replica_sets(&mut sets).await?, good)
        }
        _ => None,
    };
    if shadowing && let Some(serving) = serving.clone() {
        let decision = run_shadow(
            ctx, feature, ns, previous, &prepared, decision, serving, desired,
        )
        .await?;
        children.prune(&decision.status, &prepared).await?;
        return Ok((decision, None));
    }
    children.stop_candidate().await?;
    let template = serving.unwrap_or(desired);
    let target = template_hash(&template).unwrap_or_else(|| prepared.config_hash.clone());
    let deployment = children.apply_deployment(template).await?;
    children.apply_service().await?;

    let mut state = rollout::state(&deployment);
    let mut pods_say = None;
    match &mut state {
        Rollout::Progressing { new_ready, .. } => {
            *new_ready = rollout::new_ready(children.replica_sets(&mut sets).await?, &target);
        }
        Rollout::Failed { .. } => pods_say = why_not_ready(ctx, feature, ns, &target).await,
        Rollout::Complete => {}
    }
    let observed = Observed {
        target,
        rollout: state,
        pods_say,
        ready_replicas: deployment
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
    };
    let mut decision = decide::rollout(decision, feature, previous, &prepared, observed);
    scale_status(&mut decision.status, feature, &deployment);
    let roll_back = match &decision.roll_back_to {
        Some(good) => template_of(children.replica_sets(&mut sets).await?, good),
        None => None,
    };
    children.prune(&decision.status, &prepared).await?;
    Ok((decision, roll_back))
}

/// What the Feature's `/scale` subresource reads: the serving pods and their selector.
fn scale_status(
    status: &mut FeatureStatus,
    feature: &Feature,
    deployment: &k8s_openapi::api::apps::v1::Deployment,
) {
    status.replicas = deployment
        .status
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(0);
    let selector: Vec<String> = children::selector(feature)
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    status.selector = Some(selector.join(","));
}

/// A shadow switch: the serving Deployment keeps the last good template, the
/// candidate runs `desired` beside it, and its tally decides.
#[allow(clippy::too_many_arguments)]
async fn run_shadow(
    ctx: &Context,
    feature: &Feature,
    ns: &str,
    previous: &FeatureStatus,
    prepared: &Prepared,
    decision: Decision,
    serving: PodTemplateSpec,
    desired: PodTemplateSpec,
) -> Result<Decision> {
    let children = Children::new(ctx, feature, ns);
    let spec = shadow::settings(feature).unwrap_or_default();
    let now = Timestamp::now();
    let status = shadow::begin(previous, prepared, now);
    let operations = shadow::operations(&spec, previous, prepared);
    let serving_hash = template_hash(&serving).unwrap_or_default();
    let main = children.apply_deployment(serving).await?;
    children.apply_service().await?;
    let template = shadow::candidate_template(feature, desired, &spec, &status, &operations);
    let candidate = children
        .apply_candidate(
            shadow::candidate_deployment(feature, template, &ctx.config),
            shadow::candidate_service(feature),
        )
        .await?;
    let ready = |d: &k8s_openapi::api::apps::v1::Deployment| {
        d.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    };
    let mut state = rollout::state(&candidate);
    if let Rollout::Progressing { new_ready, .. } = &mut state {
        *new_ready = ready(&candidate);
    }
    let base = if matches!(state, Rollout::Complete) {
        candidate_url(ctx, feature, ns).await
    } else {
        Err("the candidate is not ready".to_owned())
    };
    // The candidate answers its shadow endpoints only with the shadow's token.
    let access = match base {
        Ok(base) => shadow_token(ctx, feature, ns, prepared, &status.id)
            .await
            .map(|token| (base, token)),
        Err(why) => Err(why),
    };
    let tally = match &access {
        Ok((base, token)) => read_tally(base, token, ctx, &status.id).await,
        Err(why) => Err(why.clone()),
    };
    let id = status.id.clone();
    let observed = shadow::ShadowObserved {
        rollout: state,
        tally,
        operations,
        ready_replicas: ready(&main),
        serving: serving_hash,
    };
    let mut decision = shadow::decide(decision, feature, prepared, &spec, status, observed, now);
    scale_status(&mut decision.status, feature, &main);
    // A canary's weight follows the decision at once: the next step, or 0
    // when it ends (before its pods stop, so no call is forwarded to them).
    let weight = decision
        .status
        .shadow
        .as_ref()
        .and_then(|s| s.canary.as_ref());
    if let (Ok((base, token)), Some(canary)) = (&access, weight)
        && let Err(error) = set_canary_weight(base, token, ctx, &id, canary.weight).await
    {
        tracing::warn!(%error, feature = %feature.name_any(), "failed to set the canary's weight; retrying at the next reconcile");
    }
    Ok(decision)
}

/// The base URL of a ready candidate pod.
async fn candidate_url(
    ctx: &Context,
    feature: &Feature,
    ns: &str,
) -> std::result::Result<String, String> {
    ready_pod_url(ctx, ns, &shadow::candidate_selector(feature), "candidate").await
}

/// The base URL of a ready pod among those `selector` selects (the operator
/// reaches pods by IP, as it does for their readiness); `what` names them in errors.
pub(super) async fn ready_pod_url(
    ctx: &Context,
    ns: &str,
    selector: &std::collections::BTreeMap<String, String>,
    what: &str,
) -> std::result::Result<String, String> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let selector = pod::selector_string(selector);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| format!("listing the {what} pods failed: {e}"))?;
    let ip = list
        .items
        .iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .find_map(|p| p.status.as_ref()?.pod_ip.clone())
        .ok_or_else(|| format!("no {what} pod is ready"))?;
    Ok(format!("http://{ip}:{HTTP_PORT}"))
}

/// The token of shadow `id` ([`eol_core::shadow::token_key`]), from the
/// namespace's Redis, where the candidate's first pod made it.
async fn shadow_token(
    ctx: &Context,
    feature: &Feature,
    ns: &str,
    prepared: &Prepared,
    id: &str,
) -> std::result::Result<String, String> {
    let object = format!("Feature {ns}/{}", feature.name_any());
    let mut conn = ctx
        .queues
        .connection(ctx, ns, &object)
        .await
        .map_err(|e| e.to_string())?;
    let key = token_key(&prepared.name, id);
    let token: Option<String> = ::redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("reading the shadow's token {key} from Redis failed: {e}"))?;
    token.ok_or_else(|| format!("the candidate has not made the shadow's token ({key}) yet"))
}

/// The shadow's tally, from a ready candidate pod ([`eol_core::shadow::TALLY_PATH`]).
async fn read_tally(
    base: &str,
    token: &str,
    ctx: &Context,
    id: &str,
) -> std::result::Result<Tally, String> {
    let url = format!("{base}{TALLY_PATH}");
    let response = ctx
        .http
        .get(&url)
        .header(TOKEN_HEADER, token)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", response.status()));
    }
    let tally: Tally = response
        .json()
        .await
        .map_err(|e| format!("GET {url}: not a tally: {e}"))?;
    if tally.id != id {
        return Err(format!(
            "the candidate answers for shadow {} rather than {id}",
            tally.id
        ));
    }
    Ok(tally)
}

/// Sets a canary candidate's share of the live calls
/// ([`eol_core::shadow::CANARY_PATH`]). Repeated at every reconcile, so a
/// restarted candidate (which starts at 0) is back at its step within one.
async fn set_canary_weight(
    base: &str,
    token: &str,
    ctx: &Context,
    id: &str,
    percent: f64,
) -> std::result::Result<(), String> {
    let url = format!("{base}{CANARY_PATH}");
    let weight = CanaryWeight {
        id: id.to_owned(),
        percent,
    };
    let response = ctx
        .http
        .put(&url)
        .header(TOKEN_HEADER, token)
        .timeout(Duration::from_secs(5))
        .json(&weight)
        .send()
        .await
        .map_err(|e| format!("PUT {url}: {e}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(format!("PUT {url}: HTTP {status}: {body}"));
    }
    Ok(())
}

/// Writes the status when it changed, rolls back, publishes the events, and
/// says when to look again. The status goes first: should the rollback fail,
/// the next reconcile finds the configuration held back and rolls back then.
async fn finish(
    ctx: &Context,
    feature: &Feature,
    ns: &str,
    previous: &FeatureStatus,
    decision: Decision,
    roll_back: Option<PodTemplateSpec>,
) -> Result<Action> {
    if decision.status != *previous {
        ctx.status
            .write(&ctx.client, feature, &decision.status)
            .await?;
    }
    if let Some(template) = roll_back {
        Children::new(ctx, feature, ns).roll_back(template).await?;
    }
    let reference = feature.object_ref(&());
    for event in decision.events {
        let related = event.config.map(|hash| ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("ConfigMap".to_owned()),
            name: Some(children::config_map_name(feature, &hash)),
            namespace: Some(ns.to_owned()),
            ..ObjectReference::default()
        });
        ctx.event_related(
            &reference,
            related,
            event.warning,
            event.reason,
            event.action,
            event.note,
        )
        .await;
    }
    Ok(match decision.requeue {
        Requeue::OnChange => Action::await_change(),
        Requeue::After(after) => Action::requeue(after),
    })
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
            decide::reason::NOT_CONFIGURED,
            "prototyped operations need a model: set spec.model.baseUrl or the operator's default"
                .to_owned(),
        )));
    }
    let keys = model
        .api_key
        .iter()
        .map(|key| ("model API key", key))
        .chain(
            model
                .fallbacks
                .iter()
                .filter_map(|f| f.api_key_secret_ref.as_ref())
                .map(|key| ("fallback model API key", key)),
        );
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    for (what, key) in keys {
        let secret = secrets.get_opt(&key.name).await.map_err(Error::kube(
            "read the model API-key Secret",
            format!("{ns}/{}", key.name),
        ))?;
        let has_key = secret.is_some_and(|s| {
            s.data.is_some_and(|d| d.contains_key(&key.key))
                || s.string_data.is_some_and(|d| d.contains_key(&key.key))
        });
        if !has_key {
            return Ok(Some((
                decide::reason::SECRET_NOT_FOUND,
                format!(
                    "the {what} Secret {ns}/{} has no key '{}' (or does not exist); nothing rolls out until it does",
                    key.name, key.key
                ),
            )));
        }
    }
    Ok(None)
}

/// What the new pods say about why they are not ready (their `/readyz` names
/// the failing tests), or how their containers are stuck.
async fn why_not_ready(ctx: &Context, feature: &Feature, ns: &str, hash: &str) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!(
        "{},{CONFIG_HASH}={hash}",
        pod::selector_string(&children::selector(feature))
    );
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
        let url = format!("http://{ip}:{HTTP_PORT}{READY_PATH}");
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

/// On a failed reconcile: count it, log it, and retry with a pause.
pub fn error_policy(feature: Arc<Feature>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(CONTROLLER, error.kind());
    tracing::warn!(feature = %feature.name_any(), kind = error.kind(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(10))
}
