//! `GET /dashboard/api/state`: what the page draws, read from the caches.

use super::history::{History, Point};
use eol_core::Phase;
use eol_core::cost::Budget;
use eol_core::crd::{Feature, FeatureRun, FeatureRunStatus, FeatureStatus, RunMode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use serde::Serialize;
use std::collections::HashSet;

/// The FeatureRuns shown: the newest ones (a fleet has thousands).
pub const RUNS_SHOWN: usize = 50;

/// The page's data.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// When this was read.
    pub generated_at: Time,
    /// Seconds per chart point.
    pub sample_seconds: u64,
    /// Points kept per Feature: the charts span `samples_kept × sample_seconds`.
    pub samples_kept: u64,
    /// Every Feature, by namespace and name.
    pub features: Vec<FeatureView>,
    /// The newest FeatureRuns, newest first.
    pub runs: Vec<RunView>,
    /// FeatureRuns in the cache (`runs` holds at most [`RUNS_SHOWN`]).
    pub runs_total: usize,
}

/// A Feature as the page shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureView {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `spec.phase`: the phase asked for.
    pub spec_phase: Option<Phase>,
    /// `spec.replicas`.
    pub spec_replicas: i32,
    /// `spec.budget`.
    pub budget: Option<Budget>,
    /// Its status as the operator last wrote it (phases per operation, switch,
    /// shadow agreement, usage, conditions).
    pub status: Option<FeatureStatus>,
    /// The chart points, oldest first.
    pub history: Vec<Point>,
}

/// A FeatureRun as the page shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created: Option<Time>,
    /// The Feature it runs.
    pub feature: String,
    /// The operation (none for a test run).
    pub operation: Option<String>,
    /// A run of the Feature's tests.
    pub tests: bool,
    /// `Pod` or `Queue`.
    pub mode: Option<RunMode>,
    /// Its status (the `Succeeded` condition, times, the summary).
    pub status: Option<FeatureRunStatus>,
}

impl State {
    /// Reads the caches and the charts.
    pub fn read(
        features: &Store<Feature>,
        runs: &Store<FeatureRun>,
        history: &History,
        sample_seconds: u64,
        samples_kept: u64,
    ) -> Self {
        let mut features: Vec<FeatureView> = features
            .state()
            .iter()
            .map(|f| {
                let namespace = f.namespace().unwrap_or_default();
                let name = f.name_any();
                FeatureView {
                    history: history.points(&format!("{namespace}/{name}")),
                    namespace,
                    name,
                    spec_phase: f.spec.phase,
                    spec_replicas: f.spec.replicas,
                    budget: f.spec.budget.clone(),
                    status: f.status.clone(),
                }
            })
            .collect();
        features.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let all_runs = runs.state();
        let runs_total = all_runs.len();
        let mut newest: Vec<_> = all_runs.iter().collect();
        newest.sort_by(|a, b| {
            let key = |r: &FeatureRun| r.creation_timestamp().map(|t| t.0);
            key(b)
                .cmp(&key(a))
                .then_with(|| a.name_any().cmp(&b.name_any()))
        });
        let runs = newest
            .into_iter()
            .take(RUNS_SHOWN)
            .map(|r| RunView {
                namespace: r.namespace().unwrap_or_default(),
                name: r.name_any(),
                created: r.creation_timestamp(),
                feature: r.spec.feature_ref.clone(),
                operation: r.spec.operation.clone(),
                tests: r.spec.tests.unwrap_or(false),
                mode: r.spec.mode,
                status: r.status.clone(),
            })
            .collect();
        Self {
            generated_at: Time(Timestamp::now()),
            sample_seconds,
            samples_kept,
            features,
            runs,
            runs_total,
        }
    }
}

/// The `namespace/name` keys of the Features in `features`.
pub fn keys(features: &Store<Feature>) -> HashSet<String> {
    features
        .state()
        .iter()
        .map(|f| format!("{}/{}", f.namespace().unwrap_or_default(), f.name_any()))
        .collect()
}
