//! FeatureRuns in `mode: Queue`: no pod per run. The operator queues the
//! run's operation on the Feature's async-call stream ([`eol_core::queue`],
//! the one `Prefer: respond-async` calls go to), with the run's uid as the
//! call id and idempotency key, so a second reconcile or a restarted operator
//! finds the same call instead of queueing another. The serving pods answer
//! it; the operator reads the answer into the run's status.
//!
//! A run's lifecycle costs two status writes (Running with the call id, then
//! the end) and one Redis read every [`POLL`] while it waits; the namespace's
//! Redis URL is read from the API at most once a minute per namespace.

use super::controller::{
    age, checked_work, conclude, remaining_seconds, ttl_action, wait_for_redis,
};
use super::status::{self, reason};
use crate::conditions::{self, Status};
use crate::context::Context;
use crate::error::{Error, Result};
use eol_core::crd::{Feature, FeatureRun, FeatureRunStatus, RunSummary};
use eol_core::queue::{CallRecord, CallState, Enqueued, FeatureQueue, QueueSettings, QueuedCall};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

/// How often a queued run's answer is looked for.
const POLL: Duration = Duration::from_secs(2);
/// How long a run waits before queueing again when the queue is full.
const FULL_RETRY: Duration = Duration::from_secs(5);

/// How long a namespace's Redis URL is trusted before its Secret (and
/// Service) are read again: a waiting run polls every [`POLL`], and reading
/// them each time cost two GETs per run and poll.
const URL_RECHECK: Duration = Duration::from_secs(60);

/// A namespace's connection, the URL it was made for and when that URL was last read.
struct Known {
    url: String,
    conn: ConnectionManager,
    checked: std::time::Instant,
}

/// Connections to each namespace's Redis, by URL (kept while the URL stays;
/// the URL is read again after [`URL_RECHECK`], or after a failed command):
/// for queued runs, and for the token of a Feature's shadow.
#[derive(Default)]
pub struct QueueClients {
    by_namespace: tokio::sync::Mutex<HashMap<String, Known>>,
}

impl std::fmt::Debug for QueueClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueClients").finish_non_exhaustive()
    }
}

impl QueueClients {
    /// A connection to `ns`'s Redis (the URL its runner pods get).
    pub(crate) async fn connection(
        &self,
        ctx: &Context,
        ns: &str,
        object: &str,
    ) -> Result<ConnectionManager> {
        if let Some(known) = self.by_namespace.lock().await.get(ns)
            && known.checked.elapsed() < URL_RECHECK
        {
            return Ok(known.conn.clone());
        }
        let url = redis_url(ctx, ns, object).await?;
        let mut by_namespace = self.by_namespace.lock().await;
        if let Some(known) = by_namespace.get_mut(ns)
            && known.url == url
        {
            known.checked = std::time::Instant::now();
            return Ok(known.conn.clone());
        }
        let unreachable = |e: redis::RedisError| Error::Redis {
            object: object.to_owned(),
            message: format!("the namespace's Redis cannot be reached: {e}"),
        };
        let client = redis::Client::open(url.as_str()).map_err(unreachable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unreachable)?;
        by_namespace.insert(
            ns.to_owned(),
            Known {
                url,
                conn: conn.clone(),
                checked: std::time::Instant::now(),
            },
        );
        Ok(conn)
    }

    /// After a failed command: the next reconcile reads the URL again (the
    /// Secret or the Service may have changed under it).
    async fn forget(&self, ns: &str) {
        self.by_namespace.lock().await.remove(ns);
    }
}

/// The Redis URL of `ns`'s runner pods, from its Secret; an in-cluster Service
/// name in it (`<service>.<namespace>.svc[.cluster.local]`) is replaced by the
/// Service's ClusterIP, read from the API, so the operator needs no cluster DNS.
async fn redis_url(ctx: &Context, ns: &str, object: &str) -> Result<String> {
    let key = crate::redis::url_secret(&ctx.config);
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), ns)
        .get(&key.name)
        .await
        .map_err(Error::kube("read the Redis URL Secret", object))?;
    let url = secret
        .data
        .and_then(|d| d.get(&key.key).cloned())
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .ok_or_else(|| Error::Redis {
            object: object.to_owned(),
            message: format!("Secret {ns}/{} has no key {}", key.name, key.key),
        })?;
    let Ok(mut parsed) = reqwest::Url::parse(&url) else {
        return Ok(url);
    };
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let in_cluster = host
        .strip_suffix(".svc.cluster.local")
        .or_else(|| host.strip_suffix(".svc"))
        .and_then(|name| name.split_once('.'));
    let Some((service, namespace)) = in_cluster else {
        return Ok(url);
    };
    let ip = Api::<Service>::namespaced(ctx.client.clone(), namespace)
        .get(service)
        .await
        .map_err(Error::kube("read the Redis Service", object))?
        .spec
        .and_then(|s| s.cluster_ip)
        .filter(|ip| ip != "None");
    match ip {
        Some(ip) if parsed.set_host(Some(&ip)).is_ok() => Ok(parsed.into()),
        _ => Ok(url),
    }
}

/// The queue settings of `feature` the operator needs (the length limit and
/// how long results are kept).
fn settings(feature: &Feature) -> QueueSettings {
    let mut settings = QueueSettings::default();
    if let Some(queue) = &feature.spec.queue {
        if let Some(max) = queue.max_length.and_then(|m| u64::try_from(m).ok()) {
            settings.max_length = max;
        }
        if let Some(ttl) = queue.result_ttl_seconds.and_then(|t| u64::try_from(t).ok()) {
            settings.result_ttl = Duration::from_secs(ttl);
        }
    }
    settings
}

/// The run's call id: its uid, so every reconcile names the same call.
fn call_id(run: &FeatureRun) -> Option<String> {
    run.metadata.uid.as_ref().map(|uid| uid.replace('-', ""))
}

/// Reconciles a run in mode Queue (not finished).
pub(super) async fn reconcile(
    ctx: &Context,
    run: &FeatureRun,
    ns: &str,
    mut status: FeatureRunStatus,
    previous: &FeatureRunStatus,
    object: &str,
) -> Result<Action> {
    if run.spec.cancel {
        let message = match &status.call_id {
            // Queued calls are not taken back: a pod may be running it already.
            Some(id) => format!("cancelled (spec.cancel); call {id} was queued and may still run"),
            None => "cancelled (spec.cancel)".to_owned(),
        };
        return conclude(ctx, run, status, reason::CANCELLED, message).await;
    }
    let (feature, prepared, work, _model) =
        match checked_work(ctx, run, ns, &mut status, object).await? {
            Ok(checked) => checked,
            Err(action) => return Ok(action),
        };
    let super::children::Work::Operation {
        name: operation,
        input,
    } = work
    else {
        let message = "mode Queue runs an operation: set spec.operation, not spec.tests".to_owned();
        return conclude(ctx, run, status, reason::SPEC_INVALID, message).await;
    };
    if let Some(wait) = wait_for_redis(ctx, run, ns, &mut status).await? {
        return Ok(wait);
    }
    // From when the call was queued, or, before that (a full queue), from
    // the run's creation: never from nothing (no start reads as long ago).
    let since = status
        .start_time
        .as_ref()
        .or(run.metadata.creation_timestamp.as_ref());
    let remaining = remaining_seconds(run, since);
    if remaining.is_some_and(|r| r <= 0) {
        let message = format!(
            "the run did not finish within timeoutSeconds ({}s); its call may still run",
            run.spec.timeout_seconds.unwrap_or_default()
        );
        return conclude(ctx, run, status, reason::TIMED_OUT, message).await;
    }
    let Some(id) = call_id(run) else {
        return Err(Error::MissingMetadata(object.to_owned(), "uid"));
    };
    let queue = FeatureQueue::new(&feature.name_any(), settings(&feature));
    let mut conn = ctx.queues.connection(ctx, ns, object).await?;
    let failed = |e: eol_core::queue::QueueError| Error::Redis {
        object: object.to_owned(),
        message: e.to_string(),
    };
    status.phase = Some(prepared.phase);

    if status.call_id.is_none() {
        let call = QueuedCall {
            id: id.clone(),
            operation: operation.clone(),
            input: input.clone(),
            user: format!("system:featurerun:{ns}:{}", run.name_any()),
            groups: Vec::new(),
            traceparent: run
                .annotations()
                .get(eol_core::runner_contract::TRACEPARENT_ANNOTATION)
                .cloned(),
        };
        let digest: String = Sha256::digest(input.to_string().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let now = Timestamp::now().to_string();
        let key = format!("featurerun-{id}");
        let queued = queue
            .enqueue(&mut conn, &call, &digest, Some(&key), &now)
            .await;
        if queued.is_err() {
            ctx.queues.forget(ns).await;
        }
        let queued = queued.map_err(failed)?;
        let message = match queued {
            Enqueued::Full { depth } => {
                let message = format!(
                    "the queue of Feature {ns}/{} is full ({depth} calls waiting or running); queueing again in {}s",
                    feature.name_any(),
                    FULL_RETRY.as_secs()
                );
                set_running(&mut status, run, reason::PENDING, message);
                if status != *previous {
                    ctx.status.write(&ctx.client, run, &status).await?;
                }
                return Ok(Action::requeue(FULL_RETRY));
            }
            Enqueued::Accepted { .. } | Enqueued::Existing { .. } => format!(
                "queued as call {id} on {}; the Feature's serving pods answer it",
                queue.stream()
            ),
        };
        status.call_id = Some(id.clone());
        status
            .start_time
            .get_or_insert_with(|| Time(Timestamp::now()));
        set_running(&mut status, run, reason::RUNNING, message);
        ctx.status.write(&ctx.client, run, &status).await?;
        return Ok(Action::requeue(POLL));
    }

    let record = queue.record(&mut conn, &id).await;
    if record.is_err() {
        ctx.queues.forget(ns).await;
    }
    match record.map_err(failed)? {
        Some(record) if record.state == CallState::Done => finish(ctx, run, status, record).await,
        Some(_) => Ok(Action::requeue(match remaining {
            Some(r) if r > 0 => POLL.min(Duration::from_secs(r as u64)),
            _ => POLL,
        })),
        None => {
            let message = format!(
                "call {id} is no longer in the queue of Feature {ns}/{} (its record expired, or the Redis lost it)",
                feature.name_any()
            );
            conclude(ctx, run, status, reason::FAILED, message).await
        }
    }
}

fn set_running(status: &mut FeatureRunStatus, run: &FeatureRun, why: &str, message: String) {
    conditions::set(
        &mut status.conditions,
        status::SUCCEEDED,
        Status::Unknown,
        why,
        message,
        run.metadata.generation,
    );
}

/// Ends the run with the call's answer.
async fn finish(
    ctx: &Context,
    run: &FeatureRun,
    mut status: FeatureRunStatus,
    record: CallRecord,
) -> Result<Action> {
    if let Some(phase) = record.phase.as_deref().and_then(|p| p.parse().ok()) {
        status.phase = Some(phase);
    }
    let took = status
        .start_time
        .as_ref()
        .map(|t| age(Some(t)).max(0))
        .unwrap_or_default();
    if record.status != Some(200) {
        let error = record.error.unwrap_or_default();
        let message = format!(
            "call {} failed with HTTP {} ({}): {}",
            record.id,
            record.status.unwrap_or_default(),
            error["kind"].as_str().unwrap_or("error"),
            error["message"].as_str().unwrap_or_default()
        );
        return conclude(ctx, run, status, reason::FAILED, message).await;
    }
    status.summary = Some(RunSummary {
        output: record.output,
        duration: Some(format!("{took}s")),
        ..RunSummary::default()
    });
    let message = format!(
        "call {} answered by the Feature's serving pods ({} attempt{})",
        record.id,
        record.attempts,
        if record.attempts == 1 { "" } else { "s" }
    );
    conditions::set(
        &mut status.conditions,
        status::SUCCEEDED,
        Status::True,
        reason::SUCCEEDED,
        &message,
        run.metadata.generation,
    );
    status.completion_time = Some(Time(Timestamp::now()));
    ctx.status.write(&ctx.client, run, &status).await?;
    ctx.event(
        &run.object_ref(&()),
        false,
        status::SUCCEEDED,
        "Run",
        message,
    )
    .await;
    super::history::keep_limits(ctx, run).await?;
    Ok(ttl_action(run, &status))
}
