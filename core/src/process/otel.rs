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
//! Two kinds of spans are exported:
//! - the runner's ([`OtelSpan`]), on every call's path, are made straight with
//!   the SDK's tracer ([`install`]): a `tracing` span turned into an
//!   OpenTelemetry one by `tracing-opentelemetry` cost a warm implemented call
//!   three times as much (benches/tracing.rs, README);
//! - the operator's reconciles are `tracing` spans ([`layer`]): only spans of
//!   the EOL crates at INFO or above are exported ([`span_filter`]), whatever
//!   `RUST_LOG` says, so the exporter's own HTTP client is never traced.

use opentelemetry::trace::{
    SpanBuilder, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
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

/// The tracer [`OtelSpan`]s are made with; `None`: tracing is off.
static TRACER: RwLock<Option<SdkTracer>> = RwLock::new(None);

/// Makes `tracer` the one [`OtelSpan`]s are made with from now on; `None`
/// turns them off ([`super::init_tracing`] installs the process's tracer).
pub fn install(tracer: Option<SdkTracer>) {
    *TRACER.write().unwrap_or_else(PoisonError::into_inner) = tracer;
}

/// Where an [`OtelSpan`] hangs in its trace.
#[derive(Debug, Clone, Copy)]
pub enum Parent<'a> {
    /// The span current where it starts (see [`OtelSpan::instrument`]); with
    /// none, the W3C `TRACEPARENT` of the process (the carrier for processes:
    /// work nothing in the process asked for joins the trace of whoever
    /// started it), else a new trace.
    Current,
    /// A caller's W3C `traceparent` (and `tracestate`), e.g. from a request's
    /// headers; a new trace when there is none or it is malformed.
    Remote(Option<&'a str>, Option<&'a str>),
}

/// A span of the runner, made straight with the OpenTelemetry SDK rather
/// than through `tracing` (see the module's note). Clones share the span; it
/// ends when the last clone is dropped, like a `tracing` span. With tracing
/// off it is empty and every method does nothing.
#[derive(Debug, Clone, Default)]
pub struct OtelSpan {
    /// The parent's context with this span in it; `None`: not traced.
    cx: Option<Context>,
}

impl OtelSpan {
    /// Starts the span `builder` describes under `parent`. `builder` runs only
    /// when tracing is on, so names and attributes cost nothing when it is off.
    pub fn start(parent: Parent<'_>, builder: impl FnOnce() -> SpanBuilder) -> Self {
        let tracer = TRACER.read().unwrap_or_else(PoisonError::into_inner);
        let Some(tracer) = tracer.as_ref() else {
            return Self::default();
        };
        let parent = match parent {
            Parent::Current => {
                let current = Context::current();
                if current.has_active_span() {
                    current
                } else {
                    process_parent()
                }
            }
            Parent::Remote(Some(traceparent), tracestate) => {
                remote_context(traceparent, tracestate).unwrap_or_default()
            }
            Parent::Remote(None, _) => Context::new(),
        };
        let span = tracer.build_with_context(builder(), &parent);
        Self {
            cx: Some(parent.with_span(span)),
        }
    }

    /// Sets an attribute.
    pub fn set(&self, key: &'static str, value: impl Into<Value>) {
        if let Some(cx) = &self.cx {
            cx.span().set_attribute(KeyValue::new(key, value));
        }
    }

    /// Sets a string-array attribute, e.g. `gen_ai.response.finish_reasons`.
    pub fn set_strings(&self, key: &'static str, values: &[String]) {
        if let Some(cx) = &self.cx {
            let values: Vec<StringValue> = values.iter().map(|v| v.clone().into()).collect();
            cx.span()
                .set_attribute(KeyValue::new(key, Value::Array(Array::String(values))));
        }
    }

    /// Marks the span failed: status Error with `description`, and
    /// `error.type` (the failure's stable kind), as the conventions ask.
    pub fn record_error(&self, error_type: &str, description: &str) {
        if let Some(cx) = &self.cx {
            let span = cx.span();
            span.set_attribute(KeyValue::new("error.type", error_type.to_owned()));
            span.set_status(Status::error(description.to_owned()));
        }
    }

    /// The trace id (32 hex digits), when the span is traced.
    pub fn trace_id(&self) -> Option<String> {
        ids_of(self.cx.as_ref()?).map(|(trace, _)| trace)
    }

    /// The W3C headers that make a callee's spans children of this span;
    /// empty when it is not traced.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        self.cx.as_ref().map(headers_of).unwrap_or_default()
    }

    /// [`Self::headers`] of the span current here (none: empty).
    pub fn current_headers() -> Vec<(&'static str, String)> {
        let current = Context::current();
        if current.has_active_span() {
            headers_of(&current)
        } else {
            Vec::new()
        }
    }

    /// Runs `work` with this span current (each poll): spans started in it
    /// are its children, and its log lines carry its ids.
    pub async fn instrument<F: Future>(&self, work: F) -> F::Output {
        use opentelemetry::context::FutureExt as _;
        match &self.cx {
            Some(cx) => work.with_context(cx.clone()).await,
            None => work.await,
        }
    }
}

/// The context a W3C `traceparent` (and `tracestate`) names, when valid.
fn remote_context(traceparent: &str, tracestate: Option<&str>) -> Option<Context> {
    use opentelemetry::propagation::TextMapPropagator;
    let mut carrier = HashMap::with_capacity(2);
    carrier.insert(TRACEPARENT.to_owned(), traceparent.to_owned());
    if let Some(state) = tracestate {
        carrier.insert(TRACESTATE.to_owned(), state.to_owned());
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// The parent named by the process's `TRACEPARENT` (and `TRACESTATE`)
/// variables, read once; an empty context when unset or invalid.
fn process_parent() -> Context {
    use crate::runner_contract::env;
    static PARENT: std::sync::OnceLock<Option<Context>> = std::sync::OnceLock::new();
    PARENT
        .get_or_init(|| {
            let parent = std::env::var(env::TRACEPARENT).ok()?;
            remote_context(&parent, std::env::var(env::TRACESTATE).ok().as_deref())
        })
        .clone()
        .unwrap_or_default()
}

fn headers_of(cx: &Context) -> Vec<(&'static str, String)> {
    use opentelemetry::propagation::TextMapPropagator;
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    [TRACEPARENT, TRACESTATE]
        .into_iter()
        .filter_map(|name| carrier.remove(name).map(|v| (name, v)))
        .collect()
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

/// The trace id of `span` (32 hex digits), when it is traced.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    ids(span).map(|(trace, _)| trace)
}

/// The ids of the [`OtelSpan`] current here, if any.
fn current_ids() -> Option<(String, String)> {
    ids_of(&Context::current())
}

/// The trace and span ids of the span in `cx`, when it holds a valid one.
fn ids_of(cx: &Context) -> Option<(String, String)> {
    let sc = cx.span().span_context().clone();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

fn ids(span: &tracing::Span) -> Option<(String, String)> {
    if span.is_disabled() {
        return None;
    }
    ids_of(&span.context())
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

/// JSON log lines with `trace_id` and `span_id` of the current span (an
/// [`OtelSpan`] or, in the operator, a `tracing` span), when it is traced
/// (lines outside any exported span have none). Used only when
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
        let Some((trace, span)) = current_ids().or_else(|| ids(&tracing::Span::current())) else {
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
    /// own, and hands the same trace on; a span started inside it is its
    /// child; a malformed header starts a trace of its own; with no tracer
    /// installed nothing is made. (The only test that installs a tracer.)
    #[tokio::test]
    async fn trace_context_goes_in_and_out() {
        use opentelemetry_sdk::trace::InMemorySpanExporter;
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let untraced = OtelSpan::start(Parent::Current, || SpanBuilder::from_name("off"));
        assert!(untraced.trace_id().is_none() && untraced.headers().is_empty());
        install(Some(provider.tracer("test")));
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let span = OtelSpan::start(Parent::Remote(Some(parent), Some("vendor=1")), || {
            SpanBuilder::from_name("request")
        });
        assert_eq!(
            span.trace_id().as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        let headers = span.headers();
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
        let inside = span
            .instrument(async {
                assert_eq!(OtelSpan::current_headers(), headers);
                assert!(current_ids().is_some(), "log lines get the ids");
                let child = OtelSpan::start(Parent::Current, || SpanBuilder::from_name("child"));
                child.set("eol.phase", "implementation");
                child.record_error("timeout", "took too long");
                child.trace_id()
            })
            .await;
        assert_eq!(inside, span.trace_id());
        assert!(current_ids().is_none(), "outside the span no ids");
        drop(span);
        let other = OtelSpan::start(Parent::Remote(Some("00-nonsense"), None), || {
            SpanBuilder::from_name("unparented")
        });
        drop(other);
        install(None);
        provider.force_flush().expect("flush");
        let spans = exporter.get_finished_spans().expect("spans");
        let find = |name: &str| {
            spans
                .iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("span {name} was not exported: {spans:?}"))
        };
        let (request, child, unparented) = (find("request"), find("child"), find("unparented"));
        assert!(spans.iter().all(|s| s.name != "off"), "no tracer, no span");
        assert_eq!(
            request.parent_span_id.to_string(),
            "b7ad6b7169203331",
            "the remote span is the parent"
        );
        assert_eq!(child.parent_span_id, request.span_context.span_id());
        assert!(
            child
                .attributes
                .iter()
                .any(|kv| kv.key.as_str() == "error.type" && kv.value.as_str() == "timeout")
                && matches!(child.status, Status::Error { .. }),
            "{child:?}"
        );
        assert_ne!(
            unparented.span_context.trace_id(),
            request.span_context.trace_id(),
            "a malformed traceparent starts a trace of its own"
        );
    }
}
