//! The FeatureRun reconciler: finished runs only wait for their TTL and keep
//! their Feature's history limits; otherwise cancel -> fetch the Feature ->
//! validate -> create the attempt's pod (deterministic name, so exactly once)
//! -> read it back from the pod cache -> retry, time out, or write status.
//!
//! A run's lifecycle costs at most four writes when nothing fails: the pod,
//! the `Running` status, the final status, and its event. A pending pod is
//! reported `Pending` only when it is stuck (the scheduler cannot place it,
//! its image cannot be pulled, ...) or still pending after [`QUIET_PENDING`]:
//! under load most pods wait a while, and a write each would cost a fifth
//! more than the run itself.

use super::children::{self, RunPlan, Work};
use super::status::{self, Observation, reason};
use crate::conditions::{self, Status};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::feature::children as feature_children;
use crate::pod::{FIELD_MANAGER, ModelSettings};
use crate::redis;
use crate::source::{self, Loaded};
use eol_core::crd::{Feature, FeatureRun, FeatureRunStatus, RunMode};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument;

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "featurerun";
/// How long a run waits for its Feature to appear (GitOps applies both at once).
const FEATURE_GRACE: Duration = Duration::from_secs(30);
/// How long a pod that is not stuck may stay pending before the run reports
/// `Pending`: most pods start sooner, and under load a write each would put a
/// run over its budget of four.
const QUIET_PENDING: Duration = Duration::from_secs(60);

/// Reconciles one FeatureRun, in a span of its own whose trace id the
/// reconcile's log lines carry (see [`crate::telemetry`]).
#[instrument(skip(run, ctx), fields(run = %run.name_any(), namespace = run.namespace().unwrap_or_default(), trace_id = tracing::field::Empty))]
pub async fn reconcile(run: Arc<FeatureRun>, ctx: Arc<Context>) -> Result<Action> {
    crate::telemetry::record_trace_id();
    let result = reconcile_run(run, ctx).await;
    crate::telemetry::record_outcome(&result);
    result
}

async fn reconcile_run(run: Arc<FeatureRun>, ctx: Arc<Context>) -> Result<Action> {
    ctx.caches.ready().await;
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = run
        .namespace()
        .ok_or_else(|| Error::MissingMetadata(run.name_any(), "namespace"))?;
    // What this operator last wrote, even when the watch cache has not seen it yet.
    let previous = ctx.status.current(run.as_ref());
    let object = format!("FeatureRun {ns}/{}", run.name_any());
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let attempts = cached_attempts(&ctx, &ns, &run);

    if finished(&previous) {
        return after_finish(&run, &previous, &attempts, &pods, &object).await;
    }
    let mut status = previous.clone();
    status.observed_generation = run.metadata.generation;

    if run.spec.mode == Some(RunMode::Queue) {
        return super::queued::reconcile(&ctx, &run, &ns, status, &previous, &object).await;
    }
    if run.spec.cancel {
        delete_pods(&pods, &attempts, previous.pod_name.as_deref(), &object).await?;
        return conclude(
            &ctx,
            &run,
            status,
            reason::CANCELLED,
            "cancelled (spec.cancel)".to_owned(),
        )
        .await;
    }

    // The latest attempt: from the cache, else (a cache that has not seen the
    // pod yet) read by the name the status recorded.
    let latest = match (attempts.last(), previous.pod_name.as_deref()) {
        (Some(pod), _) => Some(Pod::clone(pod)),
        (None, Some(name)) => pods
            .get_opt(name)
            .await
            .map_err(Error::kube("read the runner pod", &object))?
            .filter(|p| owned_by(p, &run)),
        (None, None) => None,
    };
    let latest = match (latest, previous.pod_name.as_deref()) {
        (Some(pod), _) => pod,
        (None, Some(name)) => {
            let message = format!("the runner pod {name} was deleted before the run finished");
            return conclude(&ctx, &run, status, reason::FAILED, message).await;
        }
        (None, None) => match plan_and_create(&ctx, &run, &ns, &mut status, &object).await? {
            Ok(pod) => pod,
            Err(action) => return Ok(action),
        },
    };

    // The run's timeout spans its attempts: the kubelet ends a pod at its
    // activeDeadlineSeconds, and this ends the run where no kubelet does.
    let started = status
        .start_time
        .clone()
        .or_else(|| first_created(&attempts, &latest));
    let remaining = remaining_seconds(&run, started.as_ref());
    let mut seen = status::observe(&latest, run.spec.retries);
    if seen.status == Status::Unknown && remaining.is_some_and(|r| r <= 0) {
        delete_pods(&pods, &attempts, seen.pod_name.as_deref(), &object).await?;
        let message = format!(
            "the run did not finish within timeoutSeconds ({}s)",
            run.spec.timeout_seconds.unwrap_or_default()
        );
        return conclude(&ctx, &run, status, reason::TIMED_OUT, message).await;
    }
    if let Some(next) = seen.retry {
        let created = create_retry(&pods, &run, &latest, next, remaining, &object).await?;
        seen.pod_name = created.metadata.name.clone();
    }
    if let Some(phase) = children::pod_phase(&latest) {
        status.phase = Some(phase);
    }
    status.start_time = started;
    let terminal = seen.status != Status::Unknown;
    // A pending pod is not worth a status write unless it is stuck.
    let young = seen.reason == reason::PENDING
        && !seen.stuck
        && status.conditions.is_empty()
        && age(latest.metadata.creation_timestamp.as_ref()) < QUIET_PENDING.as_secs() as i64;
    if young {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    apply_observation(&mut status, seen, run.metadata.generation);
    if status != previous {
        ctx.status.write(&ctx.client, run.as_ref(), &status).await?;
        if terminal {
            let ok = conditions::is(&status.conditions, status::SUCCEEDED, Status::True);
            let message = conditions::get(&status.conditions, status::SUCCEEDED)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            ctx.event(
                &run.object_ref(&()),
                !ok,
                if ok { status::SUCCEEDED } else { "Failed" },
                "Run",
                message,
            )
            .await;
            super::history::keep_limits(&ctx, &run).await?;
        }
    }
    Ok(if terminal {
        ttl_action(&run, &status)
    } else {
        // Pod events wake us; the timeout, else a safety net, wakes us otherwise.
        let net = Duration::from_secs(30);
        Action::requeue(match remaining {
            Some(r) if r > 0 => net.min(Duration::from_secs(r as u64)),
            _ => net,
        })
    })
}

/// Whether the `Succeeded` condition is final.
pub(super) fn finished(status: &FeatureRunStatus) -> bool {
    conditions::get(&status.conditions, status::SUCCEEDED).is_some_and(|c| c.status != "Unknown")
}

/// The run's pods known to the cache, attempt 1, 2, ... in order (looked up by
/// name, so the cost does not grow with the number of pods).
fn cached_attempts(ctx: &Context, ns: &str, run: &FeatureRun) -> Vec<Arc<Pod>> {
    (1..)
        .map_while(|n| ctx.caches.run_pod(ns, &children::pod_name(run, n)))
        .filter(|cached| owned_by(cached.as_ref(), run))
        .map(|cached| Arc::new(Pod::from(cached.as_ref())))
        .collect()
}

/// Whether `pod` belongs to this run (and not to a deleted run of the same name).
fn owned_by(pod: &impl Resource, run: &FeatureRun) -> bool {
    pod.owner_references()
        .iter()
        .any(|r| Some(&r.uid) == run.metadata.uid.as_ref())
}

fn first_created(attempts: &[Arc<Pod>], latest: &Pod) -> Option<Time> {
    attempts
        .first()
        .map(|p| p.as_ref())
        .unwrap_or(latest)
        .metadata
        .creation_timestamp
        .clone()
}

pub(super) fn age(created: Option<&Time>) -> i64 {
    created
        .map(|t| Timestamp::now().as_second() - t.0.as_second())
        .unwrap_or(i64::MAX)
}

/// Seconds of `timeoutSeconds` left since `started`.
pub(super) fn remaining_seconds(run: &FeatureRun, started: Option<&Time>) -> Option<i64> {
    let timeout = run.spec.timeout_seconds?;
    Some(timeout - age(started).clamp(0, timeout))
}

/// Deletes the run's pods: the cached attempts (only those very pods: a run
/// recreated under the same name has its own) and the one the status names.
/// A pod already gone is fine.
async fn delete_pods(
    pods: &Api<Pod>,
    attempts: &[Arc<Pod>],
    recorded: Option<&str>,
    object: &str,
) -> Result<()> {
    let mut targets: Vec<(String, Option<String>)> = attempts
        .iter()
        .map(|p| (p.name_any(), p.metadata.uid.clone()))
        .collect();
    if let Some(name) = recorded
        && !targets.iter().any(|(n, _)| n == name)
    {
        targets.push((name.to_owned(), None));
    }
    for (name, uid) in targets {
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match pods.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(Error::kube("delete a runner pod", object)(e)),
        }
    }
    Ok(())
}

/// A finished run: delete its pods once `ttlSecondsAfterFinished` has passed.
/// The operator deletes them (the pods have no TTL of their own) after it
/// has read the runner's report.
async fn after_finish(
    run: &FeatureRun,
    status: &FeatureRunStatus,
    attempts: &[Arc<Pod>],
    pods: &Api<Pod>,
    object: &str,
) -> Result<Action> {
    let Some(ttl) = run.spec.ttl_seconds_after_finished else {
        return Ok(Action::await_change());
    };
    let due = status
        .completion_time
        .as_ref()
        .map(|t| t.0.as_second() + i64::from(ttl))
        .unwrap_or(0);
    let now = Timestamp::now().as_second();
    if now < due {
        return Ok(Action::requeue(Duration::from_secs((due - now) as u64)));
    }
    // Nothing to delete costs nothing: the cache says which pods are left.
    if !attempts.is_empty() {
        delete_pods(pods, attempts, None, object).await?;
    }
    Ok(Action::await_change())
}

pub(super) fn ttl_action(run: &FeatureRun, status: &FeatureRunStatus) -> Action {
    match (run.spec.ttl_seconds_after_finished, &status.completion_time) {
        (Some(ttl), Some(_)) => {
            Action::requeue(Duration::from_secs(u64::try_from(ttl).unwrap_or(0)))
        }
        _ => Action::await_change(),
    }
}

/// Creates the pod of attempt `next` from the failed one (read whole: the
/// cache keeps no pod specs). 409 means it exists already: that is the one.
async fn create_retry(
    pods: &Api<Pod>,
    run: &FeatureRun,
    failed: &Pod,
    next: u32,
    remaining: Option<i64>,
    object: &str,
) -> Result<Pod> {
    let name = children::pod_name(run, next);
    if let Some(existing) = pods
        .get_opt(&name)
        .await
        .map_err(Error::kube("read the runner pod", object))?
    {
        return Ok(existing);
    }
    let whole = pods
        .get(&failed.name_any())
        .await
        .map_err(Error::kube("read the failed runner pod", object))?;
    let pod = children::retry(&whole, run, next, remaining);
    match pods.create(&post(), &pod).await {
        Ok(pod) => Ok(pod),
        Err(kube::Error::Api(e)) if e.code == 409 => pods
            .get(&name)
            .await
            .map_err(Error::kube("read the runner pod", object)),
        Err(e) => Err(Error::kube("create a retry's runner pod", object)(e)),
    }
}

fn post() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    }
}

/// Validates the run against its Feature and creates the first pod (and the
/// Feature's ConfigMap of this configuration, if the Feature has not yet).
/// `Err(action)` when the run ended (or waits) without a pod.
/// The run's Feature and what the run does on it, checked; otherwise what
/// to do instead (wait for the Feature, or nothing: the run was concluded).
pub(super) async fn checked_work(
    ctx: &Context,
    run: &FeatureRun,
    ns: &str,
    status: &mut FeatureRunStatus,
    object: &str,
) -> Result<Result<(Feature, source::Prepared, Work, ModelSettings), Action>> {
    let feature = match ctx.caches.feature(ns, &run.spec.feature_ref) {
        Some(cached) => Some(Feature::clone(&cached)),
        None => Api::<Feature>::namespaced(ctx.client.clone(), ns)
            .get_opt(&run.spec.feature_ref)
            .await
            .map_err(Error::kube("read the Feature", object))?,
    };
    let Some(feature) = feature else {
        let age = age(run.metadata.creation_timestamp.as_ref());
        let message = format!("Feature {ns}/{} does not exist", run.spec.feature_ref);
        if age < FEATURE_GRACE.as_secs() as i64 {
            let before = status.conditions.clone();
            conditions::set(
                &mut status.conditions,
                status::SUCCEEDED,
                Status::Unknown,
                reason::PENDING,
                format!("{message} (yet): waiting for it"),
                run.metadata.generation,
            );
            if status.conditions != before {
                ctx.status.write(&ctx.client, run, status).await?;
            }
            return Ok(Err(Action::requeue(Duration::from_secs(3))));
        }
        conclude(ctx, run, status.clone(), reason::FEATURE_NOT_FOUND, message).await?;
        return Ok(Err(Action::await_change()));
    };

    let model = ModelSettings::resolve(&feature.spec, &ctx.config);
    let checked: Result<(source::Prepared, Work), (&'static str, String)> =
        match source::load(ctx, &feature, &model).await? {
            Err(problem) if problem.reason == source::reason::SOURCE_NOT_FOUND => Err((
                reason::SPEC_INVALID,
                format!("Feature {ns}/{}: {}", feature.name_any(), problem.message),
            )),
            Err(problem) => Err((reason::SPEC_INVALID, problem.message)),
            Ok(Loaded { prepared, .. }) => work_of(run, &feature, &prepared).map(|w| (prepared, w)),
        };
    let (prepared, work) = match checked {
        Ok(ok) => ok,
        Err((reason, message)) => {
            conclude(ctx, run, status.clone(), reason, message).await?;
            return Ok(Err(Action::await_change()));
        }
    };
    Ok(Ok((feature, prepared, work, model)))
}

/// Until the namespace's managed Redis is ready: the run's `Pending` status
/// (written once) and when to look again.
pub(super) async fn wait_for_redis(
    ctx: &Context,
    run: &FeatureRun,
    ns: &str,
    status: &mut FeatureRunStatus,
) -> Result<Option<Action>> {
    if ctx.config.external_redis_secret.is_some() || redis::is_ready(ctx, ns).await? {
        return Ok(None);
    }
    let before = status.conditions.clone();
    conditions::set(
        &mut status.conditions,
        status::SUCCEEDED,
        Status::Unknown,
        reason::PENDING,
        format!("waiting for the namespace's Redis ({ns}/{})", redis::NAME),
        run.metadata.generation,
    );
    if status.conditions != before {
        ctx.status.write(&ctx.client, run, status).await?;
    }
    Ok(Some(Action::requeue(Duration::from_secs(2))))
}

async fn plan_and_create(
    ctx: &Context,
    run: &FeatureRun,
    ns: &str,
    status: &mut FeatureRunStatus,
    object: &str,
) -> Result<Result<Pod, Action>> {
    let (feature, prepared, work, model) = match checked_work(ctx, run, ns, status, object).await? {
        Ok(checked) => checked,
        Err(action) => return Ok(Err(action)),
    };
    // Runner pods started before the managed Redis is ready would fail at once.
    if let Some(wait) = wait_for_redis(ctx, run, ns, status).await? {
        return Ok(Err(wait));
    }
    let phase = run.spec.phase.unwrap_or(prepared.phase);
    status.phase = Some(phase);
    let config_map = feature_children::config_map_name(&feature, &prepared.config_hash);
    let plan = RunPlan {
        source_config_map: &config_map,
        config_hash: &prepared.config_hash,
        documents: &prepared.documents,
        resources: prepared.resources.as_ref(),
        placement: &prepared.placement,
        work,
        phase: run.spec.phase,
        run_phase: phase,
        model: &model,
        redis_url: redis::url_secret(&ctx.config),
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pod = children::pod(run, &plan, &ctx.config);
    // The Feature's controller made this configuration's ConfigMap, unless the
    // run came first: then the run makes it (the same object, the Feature's
    // own). Both at once: a pod waits for its ConfigMap volume if it must.
    let config_map_created = async {
        if ctx.caches.config_map_exists(ns, &config_map) {
            return Ok(());
        }
        let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
        match cms
            .create(&post(), &feature_children::config_map(&feature, &prepared))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(Error::kube("create the Feature's ConfigMap", object)(e)),
        }
    };
    // Created, not applied: a second reconcile (or a restarted operator) gets
    // 409 and uses what exists, so there is exactly one pod per attempt.
    let params = post();
    let (config_map_created, pod_created) =
        futures::join!(config_map_created, pods.create(&params, &pod));
    config_map_created?;
    let pod = match pod_created {
        Ok(pod) => pod,
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = pods
                .get(&children::pod_name(run, 1))
                .await
                .map_err(Error::kube("read the runner pod", object))?;
            if !owned_by(&existing, run) {
                // A deleted run's pod of the same name, still being removed.
                return Ok(Err(Action::requeue(Duration::from_secs(2))));
            }
            existing
        }
        Err(e) => return Err(Error::kube("create the runner pod", object)(e)),
    };
    Ok(Ok(pod))
}

/// What the run does, checked against the feature.
fn work_of(
    run: &FeatureRun,
    feature: &Feature,
    prepared: &source::Prepared,
) -> Result<Work, (&'static str, String)> {
    let fail = |m: String| Err((reason::SPEC_INVALID, m));
    match (&run.spec.operation, run.spec.tests) {
        (Some(op), _) => {
            if !prepared.operation_phases.contains_key(op) {
                let known: Vec<&str> = prepared
                    .operation_phases
                    .keys()
                    .map(String::as_str)
                    .collect();
                return fail(format!(
                    "spec.operation: Feature {} has no operation '{op}' (it has: {})",
                    feature.name_any(),
                    known.join(", ")
                ));
            }
            let input = run.spec.input.clone().unwrap_or(serde_json::json!({}));
            if !input.is_object() {
                return fail("spec.input must be a JSON object".to_owned());
            }
            Ok(Work::Operation {
                name: op.clone(),
                input,
            })
        }
        (None, Some(true)) if prepared.tests.is_some() => Ok(Work::Tests),
        (None, Some(true)) => fail(format!(
            "spec.tests: Feature {} has no tests (spec.tests is empty)",
            feature.name_any()
        )),
        _ => fail("set spec.operation (with spec.input) or spec.tests: true".to_owned()),
    }
}

fn apply_observation(status: &mut FeatureRunStatus, seen: Observation, generation: Option<i64>) {
    conditions::set(
        &mut status.conditions,
        status::SUCCEEDED,
        seen.status,
        seen.reason,
        seen.message,
        generation,
    );
    status.completion_time = seen.completion_time;
    if seen.pod_name.is_some() {
        status.pod_name = seen.pod_name;
    }
    if seen.summary.is_some() {
        status.summary = seen.summary;
    }
}

/// Ends the run with `Succeeded=False` and `reason`.
pub(super) async fn conclude(
    ctx: &Context,
    run: &FeatureRun,
    mut status: FeatureRunStatus,
    reason: &'static str,
    message: String,
) -> Result<Action> {
    conditions::set(
        &mut status.conditions,
        status::SUCCEEDED,
        Status::False,
        reason,
        &message,
        run.metadata.generation,
    );
    status.completion_time = Some(Time(Timestamp::now()));
    ctx.status.write(&ctx.client, run, &status).await?;
    ctx.event(&run.object_ref(&()), true, reason, "Run", message)
        .await;
    super::history::keep_limits(ctx, run).await?;
    Ok(ttl_action(run, &status))
}

/// On a failed reconcile: count it, log it, and retry with a pause.
pub fn error_policy(run: Arc<FeatureRun>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(CONTROLLER, error.kind());
    tracing::warn!(run = %run.name_any(), kind = error.kind(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OperatorConfig;
    use crate::context::Caches;
    use crate::fixtures::{Expect, condition, context, context_with, not_found};
    use crate::run::cached::CachedRunPod;

    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";
    const STATUS: &str = "/apis/eol.dev/v1alpha1/namespaces/shop/featureruns/r1/status";
    const POD: &str = "/api/v1/namespaces/shop/pods/r1-1";

    /// What the API server answers the delete of pod `r1-1` with: the pod.
    fn deleted_pod() -> (u16, serde_json::Value) {
        (
            200,
            serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "r1-1", "namespace": "shop"}}),
        )
    }

    /// What the API server answers a status patch with: the object.
    fn stored() -> serde_json::Value {
        serde_json::json!({"apiVersion": "eol.dev/v1alpha1", "kind": "FeatureRun",
            "metadata": {"name": "r1", "namespace": "shop"}, "spec": {"featureRef": "f"}})
    }

    fn run(spec: serde_json::Value, status: serde_json::Value) -> Arc<FeatureRun> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "eol.dev/v1alpha1", "kind": "FeatureRun",
                "metadata": {"name": "r1", "namespace": "shop", "uid": "u9", "generation": 1,
                             "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": spec, "status": status
            }))
            .expect("a FeatureRun"),
        )
    }

    #[tokio::test]
    async fn a_run_of_a_missing_feature_ends_feature_not_found() {
        let (ctx, server) = context(OperatorConfig::default());
        // The caches miss: no pod is read (none is recorded), the Feature is.
        let verify = server.run(vec![
            Expect::new(
                "GET",
                "/apis/eol.dev/v1alpha1/namespaces/shop/features/ghost",
                not_found("ghost"),
            ),
            Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
                let c = condition(&patch, status::SUCCEEDED);
                assert_eq!(c["status"], "False");
                assert_eq!(c["reason"], "FeatureNotFound");
                assert!(patch["status"]["completionTime"].is_string());
            }),
            Expect::new("POST", EVENTS, (201, serde_json::json!({}))),
        ]);
        let action = reconcile(
            run(
                serde_json::json!({"featureRef": "ghost", "tests": true}),
                serde_json::json!({}),
            ),
            ctx,
        )
        .await
        .expect("reconciled");
        assert_eq!(action, Action::await_change());
        verify.await.expect("the API calls were as expected");
    }

    #[tokio::test]
    async fn cancelling_deletes_the_recorded_pod_and_ends_cancelled() {
        let (ctx, server) = context(OperatorConfig::default());
        // Deleted without a read: the cache might not know the pod yet.
        let verify = server.run(vec![
            Expect::new("DELETE", POD, deleted_pod())
                .checking(|body| assert_eq!(body["propagationPolicy"], "Background")),
            Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
                assert_eq!(condition(&patch, status::SUCCEEDED)["reason"], "Cancelled");
            }),
            Expect::new("POST", EVENTS, (201, serde_json::json!({}))),
        ]);
        reconcile(
            run(
                serde_json::json!({"featureRef": "f", "tests": true, "cancel": true}),
                serde_json::json!({"podName": "r1-1", "conditions": [{"type": status::SUCCEEDED, "status": "Unknown", "reason": "Running",
                    "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
            ),
            ctx,
        )
        .await
        .expect("reconciled");
        verify.await.expect("the API calls were as expected");
    }

    #[tokio::test]
    async fn cancelling_a_run_whose_pod_is_gone_still_ends_cancelled() {
        let (ctx, server) = context(OperatorConfig::default());
        let verify = server.run(vec![
            Expect::new("DELETE", POD, not_found("pods \"r1-1\"")),
            Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
                assert_eq!(condition(&patch, status::SUCCEEDED)["reason"], "Cancelled");
            }),
            Expect::new("POST", EVENTS, (201, serde_json::json!({}))),
        ]);
        reconcile(
            run(
                serde_json::json!({"featureRef": "f", "tests": true, "cancel": true}),
                serde_json::json!({"podName": "r1-1"}),
            ),
            ctx,
        )
        .await
        .expect("reconciled");
        verify.await.expect("the API calls were as expected");
    }

    /// Caches holding the pod of attempt 1, owned by run `u9`, in `phase`.
    fn caches_with_pod(phase: &str) -> Caches {
        let (store, mut writer) = kube::runtime::reflector::store::<CachedRunPod>();
        let pod: CachedRunPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r1-1", "namespace": "shop", "uid": "p1",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "annotations": {"eol.dev/attempt": "1", "eol.dev/phase": "implementation"},
                "ownerReferences": [{"apiVersion": "eol.dev/v1alpha1", "kind": "FeatureRun",
                    "name": "r1", "uid": "u9", "controller": true}]},
            "status": {"phase": phase}
        }))
        .expect("a Pod");
        use kube::runtime::watcher::Event;
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(pod));
        writer.apply_watcher_event(&Event::InitDone);
        Caches {
            run_pods: store,
            ..Caches::empty()
        }
    }

    #[tokio::test]
    async fn a_finished_run_only_deletes_its_pods_after_the_ttl() {
        let (ctx, server) = context_with(OperatorConfig::default(), caches_with_pod("Succeeded"));
        let verify = server
            .run(vec![Expect::new("DELETE", POD, deleted_pod()).checking(
                |body| assert_eq!(body["preconditions"]["uid"], "p1"),
            )]);
        let action = reconcile(
            run(
                serde_json::json!({"featureRef": "f", "tests": true, "ttlSecondsAfterFinished": 5}),
                serde_json::json!({"completionTime": "2026-01-01T00:00:10Z",
                    "conditions": [{"type": status::SUCCEEDED, "status": "True", "reason": status::SUCCEEDED,
                    "message": "", "lastTransitionTime": "2026-01-01T00:00:10Z"}]}),
            ),
            ctx,
        )
        .await
        .expect("reconciled");
        assert_eq!(action, Action::await_change());
        verify.await.expect("the API calls were as expected");
    }

    #[tokio::test]
    async fn a_succeeded_pod_costs_one_status_write_and_one_event() {
        let (ctx, server) = context_with(OperatorConfig::default(), caches_with_pod("Succeeded"));
        let verify = server.run(vec![
            Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
                let c = condition(&patch, status::SUCCEEDED);
                assert_eq!(
                    (c["status"].as_str(), c["reason"].as_str()),
                    (Some("True"), Some("Succeeded"))
                );
                assert_eq!(patch["status"]["podName"], "r1-1");
                assert_eq!(patch["status"]["phase"], "implementation");
                assert_eq!(patch["status"]["startTime"], "2026-01-01T00:00:00Z");
            }),
            Expect::new("POST", EVENTS, (201, serde_json::json!({}))),
        ]);
        let action = reconcile(
            run(
                serde_json::json!({"featureRef": "f", "tests": true}),
                serde_json::json!({}),
            ),
            ctx,
        )
        .await
        .expect("reconciled");
        assert_eq!(action, Action::await_change());
        verify.await.expect("the API calls were as expected");
    }

    #[tokio::test]
    async fn a_run_past_its_timeout_deletes_its_pod_and_times_out() {
        let (ctx, server) = context_with(OperatorConfig::default(), caches_with_pod("Running"));
        let verify = server.run(vec![
            Expect::new("DELETE", POD, deleted_pod()),
            Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
                let c = condition(&patch, status::SUCCEEDED);
                assert_eq!(c["reason"], "TimedOut");
                assert!(c["message"].as_str().is_some_and(|m| m.contains("60s")));
            }),
            Expect::new("POST", EVENTS, (201, serde_json::json!({}))),
        ]);
        // Created in 2026-01-01: long past its 60 s.
        reconcile(
            run(
                serde_json::json!({"featureRef": "f", "tests": true, "timeoutSeconds": 60}),
                serde_json::json!({}),
            ),
            ctx,
        )
        .await
        .expect("reconciled");
        verify.await.expect("the API calls were as expected");
    }
}
