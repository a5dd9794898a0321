//! What every reconcile shares.

use crate::config::OperatorConfig;
use crate::metrics::Metrics;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

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
}

impl Context {
    /// A context for `client`.
    pub fn new(client: Client, config: OperatorConfig, metrics: Metrics) -> Self {
        let reporter = Reporter {
            controller: "eol-operator".to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(2))
                .build()
                .unwrap_or_default(),
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
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, object).await {
            tracing::warn!(%error, reason, "failed to publish an event");
        }
    }
}
