//! The FeatureRun reconciler: finished runs only wait for their TTL; otherwise
//! cancel -> fetch the Feature -> validate -> create the ConfigMap and Job once
//! (deterministic names) -> read the Job and pod -> write status.

use super::children::{self, RunPlan, Work};
use super::status::{self, Observation, reason};
use crate::conditions::{self, Status};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::pod::{FIELD_MANAGER, ModelSettings};
use crate::redis;
use crate::source::{self, Loaded};
use eol_core::crd::{Feature, FeatureRun, FeatureRunStatus};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument;

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "featurerun";
/// How long a run waits for its Feature to appear (GitOps applies both at once).
const FEATURE_GRACE: Duration = Duration::from_secs(30);

/// Reconciles one FeatureRun.
#[instrument(skip(run, ctx), fields(run = %run.name_any(), namespace = run.namespace().unwrap_or_default()))]
pub async fn reconcile(run: Arc<FeatureRun>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = run
        .namespace()
        .ok_or_else(|| Error::MissingMetadata(run.name_any(), "namespace"))?;
    // What this operator last wrote, even when the watch cache has not seen it yet.
    let previous = ctx.status.current(run.as_ref());
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let job_name = children::job_name(&run);
    let object = format!("FeatureRun {ns}/{}", run.name_any());

    if finished(&previous) {
        return after_finish(&run, &previous, &jobs, &job_name, &object).await;
    }
    let mut status = previous.clone();
    status.observed_generation = run.metadata.generation;

    if run.spec.cancel {
        // Deleted without a read first: a cache could miss a Job that exists.
        match jobs
            .delete(
                &job_name,
                &DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..DeleteParams::default()
                },
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(Error::kube("delete the Job of a cancelled run", &object)(e)),
        }
        return conclude(
            &ctx,
            &run,
            status,
            reason::CANCELLED,
            "cancelled (spec.cancel)".to_owned(),
        )
        .await;
    }

    // A new run's Job is unknown to the cache: create it without reading first
    // (the create tolerates 409); a known Job is read for its current status.
    let job = if ctx.caches.job_exists(&ns, &job_name) {
        jobs.get_opt(&job_name)
            .await
            .map_err(Error::kube("read the Job", &object))?
    } else {
        None
    };
    let job = match job {
        Some(job) => job,
        None => match plan_and_create(&ctx, &run, &ns, &mut status, &object).await? {
            Ok(job) => job,
            Err(action) => return Ok(action),
        },
    };
    // The run object may predate the status write that recorded the phase.
    if let Some(phase) = children::job_phase(&job) {
        status.phase = Some(phase);
    }
    let pod = latest_pod(&ctx, &ns, &job).await?;
    let seen = status::observe(&job, pod.as_ref());
    let terminal = seen.status != Status::Unknown;
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
        }
    }
    Ok(if terminal {
        ttl_action(&run, &status)
    } else {
        // Job events wake us; this is a safety net.
        Action::requeue(Duration::from_secs(30))
    })
}

/// Whether the `Succeeded` condition is final.
fn finished(status: &FeatureRunStatus) -> bool {
    conditions::get(&status.conditions, status::SUCCEEDED).is_some_and(|c| c.status != "Unknown")
}

/// A finished run: delete its Job once `ttlSecondsAfterFinished` has passed.
/// The operator deletes it (not the Job's own TTL) so the runner's report is
/// always read before the pod goes away.
async fn after_finish(
    run: &FeatureRun,
    status: &FeatureRunStatus,
    jobs: &Api<Job>,
    job_name: &str,
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
    match jobs
        .delete(
            job_name,
            &DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            },
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(Error::kube("delete a finished run's Job", object)(e)),
    }
    Ok(Action::await_change())
}

fn ttl_action(run: &FeatureRun, status: &FeatureRunStatus) -> Action {
    match (run.spec.ttl_seconds_after_finished, &status.completion_time) {
        (Some(ttl), Some(_)) => {
            Action::requeue(Duration::from_secs(u64::try_from(ttl).unwrap_or(0)))
        }
        _ => Action::await_change(),
    }
}

/// Validates the run against its Feature and creates the ConfigMap and Job.
/// `Err(action)` when the run ended (or waits) without a Job.
async fn plan_and_create(
    ctx: &Context,
    run: &FeatureRun,
    ns: &str,
    status: &mut FeatureRunStatus,
    object: &str,
) -> Result<Result<Job, Action>> {
    let feature = match ctx.caches.feature(ns, &run.spec.feature_ref) {
        Some(cached) => Some(Feature::clone(&cached)),
        None => Api::<Feature>::namespaced(ctx.client.clone(), ns)
            .get_opt(&run.spec.feature_ref)
            .await
            .map_err(Error::kube("read the Feature", object))?,
    };
    let Some(feature) = feature else {
        let age = run
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| Timestamp::now().as_second() - t.0.as_second())
            .unwrap_or(i64::MAX);
        let message = format!("Feature {ns}/{} does not exist", run.spec.feature_ref);
        if age < FEATURE_GRACE.as_secs() as i64 {
            conditions::set(
                &mut status.conditions,
                status::SUCCEEDED,
                Status::Unknown,
                reason::PENDING,
                format!("{message} (yet): waiting for it"),
                run.metadata.generation,
            );
            ctx.status.write(&ctx.client, run, status).await?;
            return Ok(Err(Action::requeue(Duration::from_secs(3))));
        }
        conclude(ctx, run, status.clone(), reason::FEATURE_NOT_FOUND, message).await?;
        return Ok(Err(Action::await_change()));
    };

    let model = ModelSettings::resolve(feature.spec.model.as_ref(), &ctx.config);
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
    // Runner pods started before the managed Redis is ready would fail at once.
    if ctx.config.external_redis_secret.is_none() && !redis::is_ready(ctx, ns).await? {
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
        return Ok(Err(Action::requeue(Duration::from_secs(2))));
    }
    let phase = run.spec.phase.unwrap_or(prepared.phase);
    status.phase = Some(phase);
    let plan = RunPlan {
        source: &prepared.source,
        tests: prepared.tests.as_deref(),
        documents: &prepared.documents,
        resources: prepared.resources.as_ref(),
        placement: &prepared.placement,
        work,
        phase: run.spec.phase,
        run_phase: phase,
        model: &model,
        redis_url: redis::url_secret(&ctx.config),
    };
    let post = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    // Created, not applied: a second reconcile (or a restarted operator) gets
    // 409 and uses what exists, so there is exactly one Job per run.
    // Both at once: the Job's pod waits for its ConfigMap volume if it must,
    // and a round trip less is most of what a FeatureRun adds to a bare Job.
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let (config_map, job) = (
        children::config_map(run, &plan),
        children::job(run, &plan, &ctx.config),
    );
    let (cm_created, job_created) =
        futures::join!(cms.create(&post, &config_map), jobs.create(&post, &job));
    match cm_created {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => {
            // A Job whose ConfigMap is missing would wait for it forever, and a
            // known Job is never created again: remove it so the retry makes both.
            if job_created.is_ok() {
                let _ = jobs
                    .delete(
                        &children::job_name(run),
                        &DeleteParams {
                            propagation_policy: Some(PropagationPolicy::Background),
                            ..DeleteParams::default()
                        },
                    )
                    .await;
            }
            return Err(Error::kube("create the run's ConfigMap", object)(e));
        }
    }
    let job = match job_created {
        Ok(job) => job,
        Err(kube::Error::Api(e)) if e.code == 409 => jobs
            .get(&children::job_name(run))
            .await
            .map_err(Error::kube("read the Job", object))?,
        Err(e) => return Err(Error::kube("create the Job", object)(e)),
    };
    Ok(Ok(job))
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

/// The Job's newest pod.
async fn latest_pod(ctx: &Context, ns: &str, job: &Job) -> Result<Option<Pod>> {
    let Some(uid) = job.metadata.uid.as_deref() else {
        return Ok(None);
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/controller-uid={uid}")))
        .await
        .map_err(Error::kube(
            "list the runner pods",
            format!("Job {ns}/{}", job.name_any()),
        ))?;
    Ok(list
        .items
        .into_iter()
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0)))
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
    status.start_time = seen.start_time.or(status.start_time.take());
    status.completion_time = seen.completion_time;
    if seen.pod_name.is_some() {
        status.pod_name = seen.pod_name;
    }
    if seen.summary.is_some() {
        status.summary = seen.summary;
    }
}

/// Ends the run with `Succeeded=False` and `reason`.
async fn conclude(
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
    use crate::fixtures::{Expect, condition, context, not_found};

    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";
    const STATUS: &str = "/apis/eol.dev/v1alpha1/namespaces/shop/featureruns/r1/status";
    const JOB: &str = "/apis/batch/v1/namespaces/shop/jobs/r1";

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
        // The caches miss: the Job is not read (it would be created), the Feature is.
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
    async fn cancelling_deletes_the_job_and_ends_cancelled() {
        let (ctx, server) = context(OperatorConfig::default());
        // Deleted without a read: a cache might not know the Job yet.
        let verify = server.run(vec![
            Expect::new(
                "DELETE",
                JOB,
                (
                    200,
                    serde_json::json!({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "r1", "namespace": "shop"}}),
                ),
            )
            .checking(|body| assert_eq!(body["propagationPolicy"], "Background")),
            Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
                assert_eq!(condition(&patch, status::SUCCEEDED)["reason"], "Cancelled");
            }),
            Expect::new("POST", EVENTS, (201, serde_json::json!({}))),
        ]);
        reconcile(
            run(
                serde_json::json!({"featureRef": "f", "tests": true, "cancel": true}),
                serde_json::json!({"conditions": [{"type": status::SUCCEEDED, "status": "Unknown", "reason": "Running",
                    "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
            ),
            ctx,
        )
        .await
        .expect("reconciled");
        verify.await.expect("the API calls were as expected");
    }

    #[tokio::test]
    async fn cancelling_a_run_without_a_job_still_ends_cancelled() {
        let (ctx, server) = context(OperatorConfig::default());
        let verify = server.run(vec![
            Expect::new("DELETE", JOB, not_found("jobs \"r1\"")),
            Expect::new("PATCH", STATUS, (200, stored())).checking(|patch| {
                assert_eq!(condition(&patch, status::SUCCEEDED)["reason"], "Cancelled");
            }),
            Expect::new("POST", EVENTS, (201, serde_json::json!({}))),
        ]);
        reconcile(
            run(
                serde_json::json!({"featureRef": "f", "tests": true, "cancel": true}),
                serde_json::json!({}),
            ),
            ctx,
        )
        .await
        .expect("reconciled");
        verify.await.expect("the API calls were as expected");
    }

    #[tokio::test]
    async fn a_finished_run_only_deletes_its_job_after_the_ttl() {
        let (ctx, server) = context(OperatorConfig::default());
        let verify = server.run(vec![Expect::new(
            "DELETE",
            JOB,
            (200, serde_json::json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "r1"}})),
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
}
