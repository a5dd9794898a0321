//! The operator's Prometheus metrics (prometheus-client, prefix `eol_operator`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Instant;

/// Labels of per-controller series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `feature` or `featurerun`.
    pub controller: &'static str,
}

/// Labels of error series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `feature` or `featurerun`.
    pub controller: &'static str,
    /// The error's stable kind.
    pub kind: &'static str,
}

/// Labels of API request series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The HTTP method: GET for reads, POST/PUT/PATCH/DELETE for writes.
    pub method: String,
    /// The resource (plural, with its subresource: `featureruns/status`).
    pub resource: String,
}

impl RequestLabels {
    /// The labels of a request to `path` (`/api/v1/namespaces/ns/pods/p`,
    /// `/apis/eol.dev/v1alpha1/namespaces/ns/featureruns/r/status`).
    pub fn of(method: &str, path: &str) -> Self {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        // Skip `api/v1` or `apis/<group>/<version>`, then `namespaces/<ns>`
        // unless namespaces are the resource itself.
        let mut rest: &[&str] = match parts.first() {
            Some(&"api") => parts.get(2..).unwrap_or_default(),
            Some(&"apis") => parts.get(3..).unwrap_or_default(),
            _ => &[],
        };
        if rest.first() == Some(&"namespaces") && rest.len() > 2 {
            rest = &rest[2..];
        }
        let resource = match rest {
            [] => "other".to_owned(),
            [plural] | [plural, _] => (*plural).to_owned(),
            [plural, _, sub, ..] => format!("{plural}/{sub}"),
        };
        Self {
            method: method.to_owned(),
            resource,
        }
    }
}

/// Reconcile counts, errors and durations, and the operator's API requests.
#[derive(Clone)]
pub struct Metrics {
    /// Requests to the API server, by method (writes are what a lifecycle costs the cluster).
    pub api_requests: Family<RequestLabels, Counter>,
    /// Reconciles started, by controller.
    pub reconciles: Family<ControllerLabels, Counter>,
    /// Failed reconciles, by controller and error kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile durations, by controller.
    pub duration: Family<ControllerLabels, Histogram>,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            api_requests: Family::default(),
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0])
            }),
        };
        registry.register(
            "api_requests",
            "Requests to the API server, by method",
            metrics.api_requests.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles started",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error kind",
            metrics.errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciles took",
            metrics.duration.clone(),
        );
        metrics
    }

    /// Counts a reconcile and times it until the returned guard drops.
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer {
        self.reconciles
            .get_or_create(&ControllerLabels { controller })
            .inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self
                .duration
                .get_or_create(&ControllerLabels { controller })
                .clone(),
        }
    }

    /// Counts a failed reconcile.
    pub fn error(&self, controller: &'static str, kind: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { controller, kind })
            .inc();
    }
}

/// Observes a reconcile's duration when dropped.
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric the operator updates is in the registry `/metrics` serves.
    #[test]
    fn every_metric_is_registered() {
        let mut registry = Registry::with_prefix("eol_operator");
        let metrics = Metrics::register(&mut registry);
        metrics
            .api_requests
            .get_or_create(&RequestLabels::of(
                "POST",
                "/apis/events.k8s.io/v1/namespaces/shop/events",
            ))
            .inc();
        drop(metrics.reconcile("feature"));
        metrics.error("feature", "Kube");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "eol_operator_api_requests_total{method=\"POST\",resource=\"events\"} 1",
            "eol_operator_reconciles_total{controller=\"feature\"} 1",
            "eol_operator_reconcile_errors_total{controller=\"feature\",kind=\"Kube\"} 1",
            "eol_operator_reconcile_duration_seconds_count{controller=\"feature\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn requests_are_labelled_by_resource_and_subresource() {
        let of = |path| RequestLabels::of("PATCH", path).resource;
        assert_eq!(of("/api/v1/namespaces/shop/pods/r-1"), "pods");
        assert_eq!(of("/api/v1/namespaces/shop/pods"), "pods");
        assert_eq!(
            of("/apis/eol.dev/v1alpha1/namespaces/shop/featureruns/r/status"),
            "featureruns/status"
        );
        assert_eq!(of("/apis/apps/v1/deployments"), "deployments");
        assert_eq!(of("/api/v1/namespaces/shop"), "namespaces");
        assert_eq!(of("/version"), "other");
    }
}
