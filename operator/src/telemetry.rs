//! The reconcile spans' OpenTelemetry side: the trace id in the span's
//! `trace_id` field, so every log line of a reconcile carries it (in text
//! logs in the span's context, in JSON logs in `span` and at top level), and
//! the error kind on a failed reconcile. The exporter itself is set up by
//! `eol_core::process::init_tracing` (off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set).

use crate::error::Error;
use eol_core::process::otel;

/// Records the current span's trace id in its `trace_id` field (declared
/// empty by the reconcile span); nothing when tracing is off.
pub fn record_trace_id() {
    let span = tracing::Span::current();
    if let Some(id) = otel::trace_id(&span) {
        span.record("trace_id", id);
    }
}

/// Marks the current span failed with the error's stable kind.
pub fn record_outcome<T>(result: &Result<T, Error>) {
    if let Err(e) = result {
        otel::record_error(&tracing::Span::current(), e.kind(), &e.to_string());
    }
}

#[cfg(test)]
mod tests {
    use crate::feature::controller::reconcile;
    use crate::fixtures::context;
    use eol_core::crd::Feature;
    use eol_core::process::otel;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use std::sync::Arc;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;

    /// A reconcile is exported as one span naming the Feature, and the
    /// `trace_id` its log lines carry is that span's trace.
    #[tokio::test]
    async fn a_reconcile_is_a_span_whose_trace_id_its_logs_carry() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(otel::layer(provider.tracer("test")).with_filter(otel::span_filter()));
        let _guard = tracing::subscriber::set_default(subscriber);
        // A Feature being deleted: the reconcile returns before any API call.
        let feature: Feature = serde_json::from_value(serde_json::json!({
            "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
            "metadata": {"name": "inventory", "namespace": "shop", "uid": "u1",
                "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"source": {"inline": ""}}
        }))
        .expect("a Feature");
        let (ctx, _server) = context(crate::config::OperatorConfig::default());
        reconcile(Arc::new(feature), ctx).await.expect("reconciled");
        provider.force_flush().expect("flush");
        let spans = exporter.get_finished_spans().expect("spans");
        let span = spans
            .iter()
            .find(|s| s.name == "reconcile")
            .unwrap_or_else(|| panic!("no reconcile span in {spans:?}"));
        let attribute = |key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(attribute("feature").as_deref(), Some("inventory"));
        assert_eq!(attribute("namespace").as_deref(), Some("shop"));
        assert_eq!(
            attribute("trace_id"),
            Some(span.span_context.trace_id().to_string())
        );
    }
}
