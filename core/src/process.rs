//! What both EOL binaries (`eol`, `eol-operator`) do the same way as
//! processes: log setup, OpenTelemetry tracing ([`otel`]) and waiting for the
//! signal to stop. Behind the `process` feature, so the format library itself
//! needs no runtime.

pub mod otel;

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use otel::{Telemetry, TelemetrySettings};

/// Sets up logs and tracing for the process and returns the tracing guard;
/// keep it until the process ends: dropping it sends the spans not sent yet.
///
/// Logs go to stderr: `RUST_LOG` sets the filter (else `default_level`),
/// `EOL_LOG_FORMAT=json` gives JSON lines. Spans are exported over OTLP only
/// when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set, under
/// the service name `OTEL_SERVICE_NAME`, else `service` (see [`otel`]).
pub fn init_tracing(default_level: &str, service: &str) -> Telemetry {
    let settings = TelemetrySettings::from_env(service);
    let (dispatch, telemetry) = subscriber(default_level, &settings);
    if let Err(e) = dispatch.try_init() {
        eprintln!("warning: logging was already set up: {e}");
    }
    // The runner's spans are made with the SDK's tracer itself (otel::OtelSpan).
    otel::install(telemetry.tracer());
    if let Some(error) = telemetry.setup_error() {
        tracing::warn!(%error, "OpenTelemetry tracing is off");
    }
    telemetry
}

/// The subscriber [`init_tracing`] installs, not installed: for benchmarks and
/// tests that compare tracing on and off in one process.
pub fn subscriber(
    default_level: &str,
    settings: &TelemetrySettings,
) -> (tracing::Dispatch, Telemetry) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let json = std::env::var("EOL_LOG_FORMAT").is_ok_and(|f| f == "json");
    let telemetry = Telemetry::start(settings);
    let fmt = tracing_subscriber::fmt::layer()
        // Colours only on a terminal: a pod's log (kubectl logs) gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // The log filter applies to the log lines only: spans are exported at their
    // own level whatever RUST_LOG says (see otel::span_filter).
    let fmt = match (json, telemetry.is_exporting()) {
        (true, true) => fmt
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(otel::WithTraceIds::new())
            .with_filter(filter)
            .boxed(),
        (true, false) => fmt.json().with_filter(filter).boxed(),
        (false, _) => fmt.with_filter(filter).boxed(),
    };
    let spans = telemetry
        .tracer()
        .map(|tracer| otel::layer(tracer).with_filter(otel::span_filter()));
    let dispatch = tracing_subscriber::registry().with(fmt).with(spans).into();
    (dispatch, telemetry)
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
