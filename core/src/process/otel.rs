//! OpenTelemetry tracing: `tracing` spans exported over OTLP (HTTP/protobuf),
//! W3C trace context in and out, and trace ids in JSON log lines.
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: then no exporter, no thread
//! and no OpenTelemetry layer exist, and spans cost what `tracing` spans cost.
//! When on, the SDK reads the other standard variables itself
//! (`OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`, `OTEL_TRACES_SAMPLER[_ARG]`,
//! `OTEL_BSP_*`, `OTEL_RESOURCE_ATTRIBUTES`); `OTEL_SDK_DISABLED=true` turns it off.
//!
//! Only spans of the EOL crates at INFO or above are exported ([`span_filter`]),
//! whatever `RUST_LOG` says, so the exporter's own HTTP client is never traced.

use opentelemetry::trace::{Status, TraceContextExt, TracerProvider as _};
use opentelemetry::{Array, StringValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use std::collections::HashMap;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The W3C header (and environment variable, in upper case) carrying the parent span.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header carrying vendor trace state.
pub const TRACESTATE: &str = "tracestate";

/// Where spans go: nowhere, or an OTLP endpoint under a service name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// Whether spans are exported.
    pub enabled: bool,
    /// The OTLP/HTTP base URL (`http://host:4318`); `None`: the SDK reads the
    /// standard environment variables.
    pub endpoint: Option<String>,
    /// The `service.name` of the exported spans.
    pub service_name: String,
}

impl TelemetrySettings {
    /// From the standard OTEL_* variables; `service` when `OTEL_SERVICE_NAME` is unset.
    pub fn from_env(service: &str) -> Self {
        Self::from_vars(service, |name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any source of variables (for tests).
    pub fn from_vars(service: &str, var: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
        let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim() == "true");
        Self {
            enabled: !disabled
                && (set("OTEL_EXPORTER_OTLP_ENDPOINT")
                    || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
            endpoint: None,
            service_name: var("OTEL_SERVICE_NAME")
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| service.to_owned()),
        }
    }

    /// Export to the OTLP/HTTP endpoint at `base_url` (`/v1/traces` is added).
    pub fn exporting_to(base_url: &str, service: &str) -> Self {
        Self {
            enabled: true,
            endpoint: Some(format!("{}/v1/traces", base_url.trim_end_matches('/'))),
            service_name: service.to_owned(),
        }
    }

    /// No export.
    pub fn off(service: &str) -> Self {
        Self {
            enabled: false,
            endpoint: None,
            service_name: service.to_owned(),
        }
    }
}

/// The span exporter of a process, if tracing is on. Dropping it flushes the
/// spans not sent yet and stops the exporter (so a short `eol run` loses none).
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// Why tracing is off although it was asked for.
    error: Option<String>,
}

impl Telemetry {
    /// Starts the exporter `settings` ask for (none when they say off).
    pub fn start(settings: &TelemetrySettings) -> Self {
        if !settings.enabled {
            return Self::default();
        }
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        if let Some(endpoint) = &settings.endpoint {
            exporter = exporter.with_endpoint(endpoint.clone());
        }
        match exporter.build() {
            Ok(exporter) => {
                let provider = SdkTracerProvider::builder()
                    // The batch processor exports from a thread of its own:
                    // a call never waits for the trace backend.
                    .with_batch_exporter(exporter)
                    .with_resource(
                        Resource::builder()
                            .with_service_name(settings.service_name.clone())
                            .build(),
                    )
                    .build();
                Self {
                    provider: Some(provider),
                    error: None,
                }
            }
            Err(e) => Self {
                provider: None,
                error: Some(format!("failed to build the OTLP span exporter: {e}")),
            },
        }
    }

    /// Whether spans are exported.
    pub fn is_exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Why tracing is off although the settings asked for it.
    pub fn setup_error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The tracer spans are exported with, when tracing is on.
    pub fn tracer(&self) -> Option<SdkTracer> {
        self.provider.as_ref().map(|p| p.tracer("eol"))
    }

    /// Sends the spans not sent yet and stops the exporter; later spans are dropped.
    /// Blocks up to the exporter's timeout when the backend does not answer.
    pub fn shutdown(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: failed to send the last OpenTelemetry spans: {e}");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The layer turning `tracing` spans into OpenTelemetry spans.
pub fn layer<S>(tracer: SdkTracer) -> tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Busy/idle times, source locations, thread ids and targets say nothing
        // the span names do not. Activating the OpenTelemetry context on every
        // poll is not needed either (trace ids are read from the span itself);
        // without it and targets a warm implemented call gained 11-16 us instead
        // of 14-21 us (benches/tracing.rs, README).
        .with_tracked_inactivity(false)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_context_activation(false)
}

/// Which spans are exported: those of the EOL crates (`eol`, `eol_runner`,
/// `eol_operator`, ... — targets are matched by prefix) at INFO and above.
pub fn span_filter() -> Targets {
    Targets::new().with_target("eol", tracing::Level::INFO)
}

/// Makes the W3C `traceparent` (and `tracestate`) the parent of `span`.
/// Returns whether it took: false for an invalid header, a span already
/// entered, or tracing off.
pub fn set_remote_parent(
    span: &tracing::Span,
    traceparent: &str,
    tracestate: Option<&str>,
) -> bool {
    use opentelemetry::propagation::TextMapPropagator;
    if span.is_disabled() {
        return false;
    }
    let mut carrier = HashMap::with_capacity(2);
    carrier.insert(TRACEPARENT.to_owned(), traceparent.to_owned());
    if let Some(state) = tracestate {
        carrier.insert(TRACESTATE.to_owned(), state.to_owned());
    }
    let parent = TraceContextPropagator::new().extract(&carrier);
    if !parent.span().span_context().is_valid() {
        return false;
    }
    span.set_parent(parent).is_ok()
}

/// [`set_remote_parent`] from the `TRACEPARENT` and `TRACESTATE` environment
/// variables (the carrier for processes, as the operator sets them in a run's
/// pod), when `TRACEPARENT` is set and `span` is a root span (no span is
/// current): work nothing in the process asked for joins the trace of
/// whoever started the process. The variables are read once per process.
pub fn set_parent_from_env(span: &tracing::Span) -> bool {
    use crate::runner_contract::env;
    static PARENT: std::sync::OnceLock<Option<(String, Option<String>)>> =
        std::sync::OnceLock::new();
    if span.is_disabled() || !tracing::Span::current().is_none() {
        return false;
    }
    let parent = PARENT.get_or_init(|| {
        let parent = std::env::var(env::TRACEPARENT).ok()?;
        Some((parent, std::env::var(env::TRACESTATE).ok()))
    });
    match parent {
        Some((parent, state)) => set_remote_parent(span, parent, state.as_deref()),
        None => false,
    }
}

/// The W3C headers that make a callee's spans children of `span`; empty when
/// `span` is not traced.
pub fn trace_headers(span: &tracing::Span) -> Vec<(&'static str, String)> {
    use opentelemetry::propagation::TextMapPropagator;
    if span.is_disabled() {
        return Vec::new();
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    [TRACEPARENT, TRACESTATE]
        .into_iter()
        .filter_map(|name| carrier.remove(name).map(|v| (name, v)))
        .collect()
}

/// The trace id of `span` (32 hex digits), when it is traced.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    ids(span).map(|(trace, _)| trace)
}

fn ids(span: &tracing::Span) -> Option<(String, String)> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// Marks `span` failed: status Error with `description`, and `error.type`
/// (the failure's stable kind), as the OpenTelemetry conventions ask.
pub fn record_error(span: &tracing::Span, error_type: &str, description: &str) {
    if span.is_disabled() {
        return;
    }
    span.set_attribute("error.type", error_type.to_owned());
    span.set_status(Status::error(description.to_owned()));
}

/// Sets a string-array attribute (tracing fields hold no arrays), e.g.
/// `gen_ai.response.finish_reasons`.
pub fn set_string_array(span: &tracing::Span, key: &'static str, values: &[String]) {
    if span.is_disabled() {
        return;
    }
    let values: Vec<StringValue> = values.iter().map(|v| v.clone().into()).collect();
    span.set_attribute(key, Value::Array(Array::String(values)));
}

/// JSON log lines with `trace_id` and `span_id` of the current span, when it
/// is traced (lines outside any exported span have none). Used only when
/// tracing is on; read through the global dispatcher, so the ids appear only
/// under [`super::init_tracing`].
#[derive(Debug)]
pub struct WithTraceIds {
    json: Format<Json>,
}

impl Default for WithTraceIds {
    fn default() -> Self {
        Self::new()
    }
}

impl WithTraceIds {
    /// The default JSON format, with the ids added.
    pub fn new() -> Self {
        Self {
            json: Format::default().json(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for WithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace, span)) = ids(&tracing::Span::current()) else {
            return self.json.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.json.format_event(ctx, Writer::new(&mut line), event)?;
        // The JSON format writes one object and a newline: the ids go inside it.
        match line.trim_end().strip_suffix('}') {
            Some(object) => writeln!(
                writer,
                "{object},\"trace_id\":\"{trace}\",\"span_id\":\"{span}\"}}"
            ),
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn tracing_is_on_only_with_an_endpoint() {
        let off = TelemetrySettings::from_vars("eol-runner", vars(&[]));
        assert!(!off.enabled);
        assert_eq!(off.service_name, "eol-runner");
        let blank = TelemetrySettings::from_vars(
            "eol-runner",
            vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]),
        );
        assert!(!blank.enabled, "a blank endpoint is no endpoint");
        let on = TelemetrySettings::from_vars(
            "eol-runner",
            vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_SERVICE_NAME", "checkout"),
            ]),
        );
        assert!(on.enabled);
        assert_eq!(on.service_name, "checkout");
        let traces_only = TelemetrySettings::from_vars(
            "eol-operator",
            vars(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces",
            )]),
        );
        assert!(traces_only.enabled);
        let disabled = TelemetrySettings::from_vars(
            "eol-operator",
            vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ]),
        );
        assert!(!disabled.enabled);
    }

    #[test]
    fn off_means_no_exporter() {
        let telemetry = Telemetry::start(&TelemetrySettings::off("eol-runner"));
        assert!(!telemetry.is_exporting());
        assert!(telemetry.tracer().is_none());
        assert!(telemetry.setup_error().is_none());
    }

    #[test]
    fn an_explicit_endpoint_gets_the_traces_path() {
        let s = TelemetrySettings::exporting_to("http://127.0.0.1:4318/", "eol-runner");
        assert_eq!(
            s.endpoint.as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
    }

    /// A span under a remote parent keeps its trace id, gets a span id of its
    /// own, and hands the same trace on; a malformed header is refused.
    #[test]
    fn trace_context_goes_in_and_out() {
        use opentelemetry_sdk::trace::InMemorySpanExporter;
        use tracing_subscriber::layer::SubscriberExt;
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(layer(provider.tracer("test")).with_filter(span_filter()));
        use tracing_subscriber::Layer as _;
        tracing::subscriber::with_default(subscriber, || {
            let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
            let span = tracing::info_span!("operation");
            assert!(set_remote_parent(&span, parent, Some("vendor=1")));
            assert_eq!(
                trace_id(&span).as_deref(),
                Some("0af7651916cd43dd8448eb211c80319c")
            );
            let headers = trace_headers(&span);
            let traceparent = &headers
                .iter()
                .find(|(k, _)| *k == TRACEPARENT)
                .expect("a traceparent header")
                .1;
            assert!(
                traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-")
                    && !traceparent.contains("b7ad6b7169203331"),
                "{traceparent}"
            );
            assert!(
                headers.contains(&(TRACESTATE, "vendor=1".to_owned())),
                "{headers:?}"
            );
            let other = tracing::info_span!("unparented");
            assert!(!set_remote_parent(&other, "00-nonsense", None));
        });
        provider.force_flush().expect("flush");
        let spans = exporter.get_finished_spans().expect("spans");
        let operation = spans
            .iter()
            .find(|s| s.name == "operation")
            .expect("the operation span was exported");
        assert_eq!(
            operation.parent_span_id.to_string(),
            "b7ad6b7169203331",
            "the remote span is the parent"
        );
        let unparented = spans
            .iter()
            .find(|s| s.name == "unparented")
            .expect("the other span was exported");
        assert_ne!(
            unparented.span_context.trace_id(),
            operation.span_context.trace_id(),
            "a malformed traceparent starts a trace of its own"
        );
    }
}
