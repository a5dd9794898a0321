//! One sample of every Feature's serving pods for the charts.

use super::history::{Counters, History};
use super::state;
use crate::feature::children::COMPONENT;
use eol_core::crd::Feature;
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

/// Lists the ready serving pods of every Feature (one list call), reads each
/// one's `/metrics`, and records a point per Feature. A failed list records
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
        "app.kubernetes.io/name={COMPONENT},app.kubernetes.io/managed-by={}",
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
    let targets: Vec<(String, String, Option<String>)> = list
        .items
        .iter()
        .filter_map(|pod| {
            let feature = format!(
                "{}/{}",
                pod.namespace()?,
                pod.labels().get("app.kubernetes.io/instance")?
            );
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let ip = pod.status.as_ref()?.pod_ip.clone().filter(|_| ready);
            Some((feature, pod.uid()?, ip))
        })
        .collect();
    let scraped: Vec<(String, String, Option<Counters>)> = futures::stream::iter(targets)
        .map(|(feature, uid, ip)| async move {
            let counters = match ip {
                Some(ip) => scrape(http, &ip, timeout).await,
                None => None,
            };
            (feature, uid, counters)
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
            tracing::debug!(%url, %error, "dashboard: metrics unreachable");
            None
        }
    }
}
