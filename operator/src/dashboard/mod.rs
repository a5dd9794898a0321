//! The read-only web dashboard, off unless `--dashboard`: `GET /dashboard/`
//! on the operator's `/metrics` server. It shows every Feature (phase per
//! operation, switch, agreement, usage) and the latest FeatureRuns from the
//! controllers' own caches, with charts of latency, cost and cache hit rate
//! sampled from the Features' serving pods.
//!
//! It adds no credentials and no write path: viewers reach it through the
//! Kubernetes API with their own token (the `services/proxy` of the metrics
//! Service, which their RBAC must allow) or `kubectl port-forward`, and every
//! route is a `GET` of what the operator already reads.

pub mod history;
mod sample;
mod state;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eol_core::crd::{Feature, FeatureRun};
use history::History;
use kube::runtime::reflector::Store;
use std::sync::{Arc, Mutex, OnceLock};

/// The dashboard's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DashboardOptions {
    /// Serve the read-only dashboard at `/dashboard/` on the `--listen` address.
    #[arg(long = "dashboard", env = "EOL_DASHBOARD", default_value_t = false)]
    pub enabled: bool,
    /// Seconds between samples of the Features' pods' metrics: one point of
    /// each chart, and one `GET /metrics` per serving pod.
    #[arg(long = "dashboard-sample-seconds", env = "EOL_DASHBOARD_SAMPLE_SECONDS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub sample_seconds: u64,
    /// Points kept per Feature (240 samples of 15 s: the last hour).
    #[arg(long = "dashboard-samples", env = "EOL_DASHBOARD_SAMPLES", default_value_t = 240,
          value_parser = clap::value_parser!(u64).range(2..=100_000))]
    pub samples: u64,
}

/// The dashboard: its routes, and the state they read.
#[derive(Clone)]
pub struct Dashboard {
    inner: Arc<Inner>,
}

struct Inner {
    options: DashboardOptions,
    /// The controllers' caches, set once this replica leads (a standby has none).
    stores: OnceLock<Stores>,
    history: Mutex<History>,
}

/// The caches the dashboard reads.
#[derive(Clone)]
struct Stores {
    features: Store<Feature>,
    runs: Store<FeatureRun>,
}

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// Only the page's own script, style and `api/state` may load: Feature data
/// is rendered as text, and even injected markup could run nothing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

impl Dashboard {
    /// A dashboard with `options`; it shows nothing until [`Dashboard::attach`].
    pub fn new(options: DashboardOptions) -> Self {
        let capacity = usize::try_from(options.samples).unwrap_or(usize::MAX);
        Self {
            inner: Arc::new(Inner {
                options,
                stores: OnceLock::new(),
                history: Mutex::new(History::new(capacity)),
            }),
        }
    }

    /// Gives the dashboard the controllers' caches (once leading).
    pub fn attach(&self, features: Store<Feature>, runs: Store<FeatureRun>) {
        let _ = self.inner.stores.set(Stores { features, runs });
    }

    /// The routes under `/dashboard`, all `GET` (anything else gets 405).
    pub fn router(&self) -> Router {
        let state = self.clone();
        Router::new()
            // Relative, so that the API server's proxy path is kept.
            .route(
                "/dashboard",
                get(|| async {
                    (
                        StatusCode::PERMANENT_REDIRECT,
                        [(header::LOCATION, "dashboard/")],
                    )
                }),
            )
            .route(
                "/dashboard/",
                get(|| async { asset("text/html; charset=utf-8", INDEX) }),
            )
            .route(
                "/dashboard/app.js",
                get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
            )
            .route(
                "/dashboard/app.css",
                get(|| async { asset("text/css; charset=utf-8", STYLE) }),
            )
            .route(
                "/dashboard/api/state",
                get(move || {
                    let dashboard = state.clone();
                    async move { dashboard.state_response() }
                }),
            )
    }

    fn state_response(&self) -> Response {
        let Some(stores) = self.inner.stores.get() else {
            return no_store(
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({
                    "error": "this operator replica is standing by for the leader Lease; the leader serves the dashboard (port-forward to the leading pod)"
                })),
            );
        };
        let state = match self.inner.history.lock() {
            Ok(history) => state::State::read(
                &stores.features,
                &stores.runs,
                &history,
                self.inner.options.sample_seconds,
                self.inner.options.samples,
            ),
            Err(_) => {
                return no_store(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(
                        serde_json::json!({"error": "the chart history is unavailable (a sampler panicked)"}),
                    ),
                );
            }
        };
        no_store(StatusCode::OK, axum::Json(state))
    }

    /// Samples the Features' serving pods every `--dashboard-sample-seconds`,
    /// forever (spawned once leading).
    pub async fn sample_forever(
        self,
        client: kube::Client,
        http: reqwest::Client,
        namespace: Option<String>,
    ) {
        let Some(stores) = self.inner.stores.get().cloned() else {
            return;
        };
        let every = std::time::Duration::from_secs(self.inner.options.sample_seconds);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            sample::once(
                &self.inner.history,
                &stores.features,
                &client,
                &http,
                namespace.as_deref(),
                every,
            )
            .await;
        }
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn no_store(status: StatusCode, body: impl IntoResponse) -> Response {
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests;
