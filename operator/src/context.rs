//! What every reconcile shares.

use crate::config::OperatorConfig;
use crate::metrics::Metrics;
use crate::run::cached::CachedRunPod;
use crate::source::code::CodeCheck;
use crate::status::StatusWriter;
use eol_core::crd::{Feature, FeatureRun};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Service};
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use std::sync::Arc;
use tokio::sync::watch;

/// Watch caches the reconcilers read instead of making GETs and LISTs (each
/// saved round trip shortens FeatureRun -> pod, and spares the API server). A
/// cache can lag the API server, so only what is safe either way is taken
/// from it: a hit is used, a miss falls back to a GET or to a create that
/// tolerates 409.
#[derive(Clone)]
pub struct Caches {
    /// Features (the Feature controller's own store).
    pub features: Store<Feature>,
    /// FeatureRuns (the FeatureRun controller's own store).
    pub runs: Store<FeatureRun>,
    /// The runner pods of FeatureRuns (metadata and the status fields read:
    /// see [`CachedRunPod`]).
    pub run_pods: Store<CachedRunPod>,
    /// Metadata of the ConfigMaps the operator created (Features' configurations).
    pub config_maps: Store<PartialObjectMeta<ConfigMap>>,
    /// The Features' Deployments (without managedFields).
    pub deployments: Store<Deployment>,
    /// Metadata of the Features' Services.
    pub services: Store<PartialObjectMeta<Service>>,
    /// The managed Redis StatefulSets.
    pub redis: Store<StatefulSet>,
    /// True once every cache has had its first full list (see [`SyncTracker`]).
    pub synced: watch::Receiver<bool>,
}

impl Caches {
    /// Caches that always miss (tests; every read goes to the API).
    pub fn empty() -> Self {
        Self {
            features: synced_empty(),
            runs: synced_empty(),
            run_pods: synced_empty(),
            config_maps: synced_empty(),
            deployments: synced_empty(),
            services: synced_empty(),
            redis: synced_empty(),
            synced: watch::channel(true).1,
        }
    }

    /// Waits until every cache has had its first full list. A reconcile that
    /// ran on a half-filled cache would re-apply what exists (at start, every
    /// Feature: a write storm after each restart).
    pub async fn ready(&self) {
        // An error only means the sender is gone: the process is stopping.
        let _ = self.synced.clone().wait_for(|synced| *synced).await;
    }

    /// The cached Feature `namespace/name`.
    pub fn feature(&self, namespace: &str, name: &str) -> Option<Arc<Feature>> {
        self.features.get(&ObjectRef::new(name).within(namespace))
    }

    /// The cached pod `namespace/name`.
    pub fn run_pod(&self, namespace: &str, name: &str) -> Option<Arc<CachedRunPod>> {
        self.run_pods.get(&ObjectRef::new(name).within(namespace))
    }

    /// Whether the ConfigMap `namespace/name` is known to exist.
    pub fn config_map_exists(&self, namespace: &str, name: &str) -> bool {
        self.config_maps
            .get(&ObjectRef::new(name).within(namespace))
            .is_some()
    }

    /// The cached Deployment `namespace/name`.
    pub fn deployment(&self, namespace: &str, name: &str) -> Option<Arc<Deployment>> {
        self.deployments
            .get(&ObjectRef::new(name).within(namespace))
    }

    /// The cached metadata of Service `namespace/name`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<Arc<PartialObjectMeta<Service>>> {
        self.services.get(&ObjectRef::new(name).within(namespace))
    }

    /// The cached StatefulSet `namespace/name`.
    pub fn redis(&self, namespace: &str, name: &str) -> Option<Arc<StatefulSet>> {
        self.redis.get(&ObjectRef::new(name).within(namespace))
    }
}

/// Tells when every watch stream feeding a cache has delivered its first
/// full list (`InitDone`). Not `Store::wait_until_ready`: a store wakes only
/// the last of several waiters (kube-runtime's `DelayedInit` keeps one waker),
/// and the controllers already wait on their own stores.
#[derive(Clone)]
pub struct SyncTracker {
    remaining: Arc<std::sync::atomic::AtomicUsize>,
    synced: Arc<watch::Sender<bool>>,
}

impl SyncTracker {
    /// A tracker of `streams` streams, and the receiver for [`Caches::synced`].
    pub fn new(streams: usize) -> (Self, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(streams == 0);
        (
            Self {
                remaining: Arc::new(streams.into()),
                synced: Arc::new(tx),
            },
            rx,
        )
    }

    /// A hook for one stream's events (`.inspect(tracker.hook())`): the
    /// stream's first `InitDone` counts it synced.
    pub fn hook<K, E>(
        &self,
    ) -> impl FnMut(&Result<kube::runtime::watcher::Event<K>, E>) + use<K, E> {
        let tracker = self.clone();
        let mut seen = false;
        move |event| {
            if !seen && matches!(event, Ok(kube::runtime::watcher::Event::InitDone)) {
                seen = true;
                let left = tracker
                    .remaining
                    .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
                    - 1;
                if left == 0 {
                    tracker.synced.send_replace(true);
                }
            }
        }
    }
}

/// A store that is empty and says so (its writer has seen a complete list).
fn synced_empty<K>() -> Store<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Init);
    writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
    store
}

/// The reconcilers' shared state, passed as `Arc<Context>`.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Operator settings.
    pub config: OperatorConfig,
    /// Reconcile metrics.
    pub metrics: Metrics,
    /// Publishes Kubernetes events.
    pub recorder: Recorder,
    /// Reaches pods directly (a failing pod's `/readyz` says which tests failed).
    pub http: reqwest::Client,
    /// Watch caches of the hot path.
    pub caches: Caches,
    /// Writes both controllers' statuses, and remembers them against stale caches.
    pub status: StatusWriter,
    /// The sandbox's static check of Features' Python.
    pub code_check: CodeCheck,
    /// When each Feature's model usage was last read from its pods.
    pub usage_reads: crate::feature::usage::UsageReads,
    /// Namespaces whose reviewer ServiceAccount and binding were applied, and when.
    pub access_applied: crate::feature::access::Applied,
    /// Connections to namespaces' Redis, for FeatureRuns in mode Queue.
    pub queues: crate::run::queued::QueueClients,
}

impl Context {
    /// A context for `client`.
    pub fn new(client: Client, config: OperatorConfig, metrics: Metrics, caches: Caches) -> Self {
        let reporter = Reporter {
            controller: "eol-operator".to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            status: StatusWriter::default(),
            code_check: CodeCheck::new(config.python.clone()),
            usage_reads: Default::default(),
            access_applied: Default::default(),
            queues: Default::default(),
            client,
            config,
            metrics,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
            caches,
        }
    }

    /// Publishes an event about `object`; a failure is logged, never fatal.
    pub async fn event(
        &self,
        object: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.event_related(object, None, warning, reason, action, note)
            .await;
    }

    /// [`Self::event`] with a related object. The recorder folds repeats of an
    /// event (same object, reason, action and related object) into one, whose
    /// note stays the first one's: a second phase switch, related to another
    /// configuration, is an event of its own and names its own target.
    pub async fn event_related(
        &self,
        object: &ObjectReference,
        related: Option<ObjectReference>,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            // Events carry at most 1 KiB of note.
            note: Some(note.chars().take(1000).collect()),
            action: action.to_owned(),
            secondary: related,
        };
        if let Err(error) = self.recorder.publish(&event, object).await {
            tracing::warn!(%error, reason, "failed to publish an event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Event;

    #[test]
    fn the_caches_are_synced_once_every_stream_listed_once() {
        let (tracker, rx) = SyncTracker::new(2);
        let (mut a, mut b) = (tracker.hook::<(), ()>(), tracker.hook::<(), ()>());
        a(&Ok(Event::Init));
        a(&Ok(Event::InitDone));
        // A relist of the same stream does not count twice.
        a(&Ok(Event::InitDone));
        assert!(!*rx.borrow(), "one stream of two listed");
        b(&Ok(Event::InitApply(())));
        b(&Ok(Event::InitDone));
        assert!(*rx.borrow(), "both listed");
    }
}
