//! What every reconcile shares.

use crate::config::OperatorConfig;
use crate::metrics::Metrics;
use crate::source::code::CodeCheck;
use crate::status::StatusWriter;
use eol_core::crd::{Feature, FeatureRun};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod, Service};
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use std::sync::Arc;

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
    /// The runner pods of FeatureRuns (metadata and status only: see
    /// `runtime::slim_pod`).
    pub run_pods: Store<Pod>,
    /// Metadata of the ConfigMaps the operator created (Features' configurations).
    pub config_maps: Store<PartialObjectMeta<ConfigMap>>,
    /// The Features' Deployments (without managedFields).
    pub deployments: Store<Deployment>,
    /// Metadata of the Features' Services.
    pub services: Store<PartialObjectMeta<Service>>,
    /// The managed Redis StatefulSets.
    pub redis: Store<StatefulSet>,
}

impl Caches {
    /// Caches that always miss (tests; every read goes to the API).
    pub fn empty() -> Self {
        Self {
            features: reflector::store().0,
            runs: reflector::store().0,
            run_pods: reflector::store().0,
            config_maps: reflector::store().0,
            deployments: reflector::store().0,
            services: reflector::store().0,
            redis: reflector::store().0,
        }
    }

    /// The cached Feature `namespace/name`.
    pub fn feature(&self, namespace: &str, name: &str) -> Option<Arc<Feature>> {
        self.features.get(&ObjectRef::new(name).within(namespace))
    }

    /// The cached pod `namespace/name`.
    pub fn run_pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
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
