//! One sample of every Feature's serving pods for the charts.

use super::history::{Counters, History};
use super::state;
use crate::feature::children::COMPONENT;
use crate::feature::shadow::CANDIDATE_COMPONENT;
use eol_core::crd::{Feature, RolloutStrategy};
use eol_core::runner_contract::HTTP_PORT;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::ListParams;
use kube::runtime::reflector::Store;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Pods scraped at once.
const CONCURRENCY: usize = 16;

/// Lists the running runner pods of every Feature (one list call), reads each
/// one's `/metrics`, and records a point per Feature: its serving pods' calls,
/// latency, cache lookups and cost; a canary candidate's too (it answers its
/// share of the live calls); and a shadow candidate's cost only (its model
/// spend is the Feature's, but its copies of calls are not calls). A failed list records
/// nothing: a gap in the charts rather than a false zero.
pub async fn once(
    history: &Mutex<History>,
    features: &Store<Feature>,
    client: &kube::Client,
    http: &reqwest::Client,
    namespace: Option<&str>,
    every: Duration,
) {
    let pods: kube::Api<Pod> = match namespace {
        Some(ns) => kube::Api::namespaced(client.clone(), ns),
        None => kube::Api::all(client.clone()),
    };
    let selector = format!(
        "app.kubernetes.io/name in ({COMPONENT},{CANDIDATE_COMPONENT}),app.kubernetes.io/managed-by={}",
        crate::pod::FIELD_MANAGER
    );
    let list = match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list,
        Err(error) => {
            tracing::warn!(%error, "dashboard: listing the Features' pods failed; no chart point this time");
            return;
        }
    };
    // A scrape may take up to most of the interval, not more.
    let timeout = (every / 2).clamp(Duration::from_millis(500), Duration::from_secs(5));
    let canaries: std::collections::HashSet<String> = features
        .state()
        .iter()
        .filter(|f| {
            f.spec
                .rollout
                .as_ref()
                .is_some_and(|r| r.strategy == RolloutStrategy::Canary)
        })
        .map(|f| format!("{}/{}", f.namespace().unwrap_or_default(), f.name_any()))
        .collect();
    let targets: Vec<(String, String, Option<String>, bool)> = list
        .items
        .iter()
        .filter_map(|pod| {
            let feature = format!(
                "{}/{}",
                pod.namespace()?,
                pod.labels().get("app.kubernetes.io/instance")?
            );
            // Running, ready or not: a terminating pod finishes its calls
            // (and pays for their model requests) before it exits.
            let running = pod.status.as_ref()?.phase.as_deref() == Some("Running");
            let ip = pod.status.as_ref()?.pod_ip.clone().filter(|_| running);
            let shadow_candidate = pod
                .labels()
                .get("app.kubernetes.io/name")
                .is_some_and(|n| n == CANDIDATE_COMPONENT)
                && !canaries.contains(&feature);
            Some((feature, pod.uid()?, ip, shadow_candidate))
        })
        .collect();
    let scraped: Vec<(String, String, Option<Counters>)> = futures::stream::iter(targets)
        .map(|(feature, uid, ip, shadow_candidate)| async move {
            let counters = match ip {
                Some(ip) => scrape(http, &ip, timeout).await,
                None => None,
            };
            (
                feature,
                uid,
                counters.map(|c| if shadow_candidate { c.cost_only() } else { c }),
            )
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut by_feature: HashMap<String, Vec<(String, Option<Counters>)>> = HashMap::new();
    for (feature, uid, counters) in scraped {
        by_feature.entry(feature).or_default().push((uid, counters));
    }
    let now = k8s_openapi::jiff::Timestamp::now().as_millisecond();
    let keys = state::keys(features);
    let Ok(mut history) = history.lock() else {
        return;
    };
    for key in &keys {
        history.record(key, now, by_feature.remove(key).unwrap_or_default());
    }
    history.retain(&keys);
}

/// A pod's counters, or `None` when it did not answer in time.
async fn scrape(http: &reqwest::Client, ip: &str, timeout: Duration) -> Option<Counters> {
    let url = format!("http://{ip}:{HTTP_PORT}/metrics");
    let response = http.get(&url).timeout(timeout).send().await;
    match response {
        Ok(r) if r.status().is_success() => match r.text().await {
            Ok(text) => Some(Counters::parse(&text)),
            Err(error) => {
                tracing::debug!(%url, %error, "dashboard: reading metrics failed");
                None
            }
        },
        Ok(r) => {
            tracing::debug!(%url, status = %r.status(), "dashboard: metrics refused");
            None
        }
        Err(error) => {
            let error = eol_core::causes(&error);
            tracing::debug!(%url, %error, "dashboard: metrics unreachable");
            None
        }
    }
}
