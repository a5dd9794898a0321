//! Shadow switches (`spec.rollout.strategy: Shadow`), as pure functions: when
//! one runs, the candidate's objects, and what its tally concludes.
//!
//! The candidate configuration runs as a Deployment and a Service of its own,
//! whose pods the Feature's Service does not select; the serving Deployment
//! keeps the last good configuration. The serving pods copy a sample of their
//! calls to the candidate and record each verdict in Redis (see
//! [`eol_core::shadow`]); the operator reads the tally from a ready candidate
//! pod and decides: promote (the switch then rolls out as a rolling update,
//! gated by the tests as always) or hold (`PhaseSwitch=False`, reason
//! `Disagreement`, and the candidate is not tried again until the spec
//! changes). The counts live in Redis, so an operator restart loses none.
//!
//! A canary ([`canary`]) is the same shadow whose candidate also answers a
//! growing share of the live calls, and which is rolled back when it fails
//! too many of them or disagrees.

pub mod canary;

use super::children;
use super::decide::{self, Decision, Event, Requeue, condition, event, reason};
use super::rollout::Rollout;
use crate::conditions::Status;
use crate::config::OperatorConfig;
use crate::source::Prepared;
use eol_core::crd::{
    Feature, FeatureStatus, RolloutStrategy, ShadowOperationStatus, ShadowSpec, ShadowStatus,
};
use eol_core::runner_contract::HTTP_PORT;
use eol_core::shadow::{Tally, env};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{EnvVar, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::time::Duration;

/// The `app.kubernetes.io/name` of candidate pods: not [`children::COMPONENT`], so
/// neither the Feature's Service nor its Deployment selects them.
pub const CANDIDATE_COMPONENT: &str = "eol-feature-candidate";

/// The states of [`ShadowStatus::state`].
pub mod state {
    /// The candidate pods are starting (running their tests).
    pub const STARTING: &str = "Starting";
    /// The candidate is ready and samples are being compared.
    pub const SAMPLING: &str = "Sampling";
    /// The candidate agreed: the switch rolls out.
    pub const PROMOTED: &str = "Promoted";
    /// The candidate disagreed, or too few samples came within the window.
    pub const HELD: &str = "Held";
    /// The candidate pods did not become ready within the deadline.
    pub const FAILED: &str = "Failed";
    /// A canary failed a gate: its candidate answers no more live calls.
    pub const ROLLED_BACK: &str = "RolledBack";
}

/// The `PhaseSwitch` reasons of shadow switches.
pub mod shadow_reason {
    /// `PhaseSwitch=Unknown`: the candidate runs beside the serving pods.
    pub const SHADOWING: &str = "Shadowing";
    /// `PhaseSwitch=False`: the candidate did not agree enough; the old configuration keeps serving.
    pub const DISAGREEMENT: &str = "Disagreement";
    /// `PhaseSwitch=Unknown`: a canary's candidate answers a share of the live calls.
    pub const CANARY: &str = "Canary";
    /// `PhaseSwitch=False`: a canary's candidate failed too many live calls and was rolled back.
    pub const CANARY_ERRORS: &str = "CanaryErrors";
}

/// The events of shadow switches.
pub mod shadow_event {
    /// The candidate pods were started.
    pub const STARTED: &str = "ShadowStarted";
    /// The candidate agreed and is rolled out.
    pub const PROMOTED: &str = "ShadowPromoted";
    /// A canary moved to its next step.
    pub const CANARY_STEP: &str = "CanaryStep";
    /// A canary passed every step and is rolled out.
    pub const CANARY_PROMOTED: &str = "CanaryPromoted";
    /// A canary failed a gate and was rolled back.
    pub const CANARY_ROLLED_BACK: &str = "CanaryRolledBack";
}

/// Disagreements shown in status (and kept per operation in Redis).
pub const DISAGREEMENTS_SHOWN: usize = 5;
/// Seconds verdicts and sampled inputs stay in the feature's Redis.
pub const SAMPLES_TTL_SECONDS: u64 = 86_400;

/// The name of the candidate's Deployment and Service.
pub fn candidate_name(feature: &Feature) -> String {
    format!("{}-candidate", feature.name_any())
}

/// The labels selecting the candidate pods.
pub fn candidate_selector(feature: &Feature) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            CANDIDATE_COMPONENT.to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), feature.name_any()),
    ])
}

/// The Feature's shadow settings, when its strategy is `Shadow` or `Canary`
/// (a canary is gated on the same samples).
pub fn settings(feature: &Feature) -> Option<ShadowSpec> {
    let rollout = feature.spec.rollout.as_ref()?;
    matches!(
        rollout.strategy,
        RolloutStrategy::Shadow | RolloutStrategy::Canary
    )
    .then(|| rollout.shadow.clone().unwrap_or_default())
}

/// Whether this reconcile runs a shadow of `prepared`: the strategy is
/// `Shadow`, another configuration serves, this one was not held or failed
/// before, and it has not been promoted yet.
pub fn wanted(feature: &Feature, previous: &FeatureStatus, prepared: &Prepared) -> bool {
    let promoted = previous
        .shadow
        .as_ref()
        .is_some_and(|s| s.candidate == prepared.config_hash && s.state == state::PROMOTED);
    settings(feature).is_some()
        && previous
            .last_good_config
            .as_ref()
            .is_some_and(|good| *good != prepared.config_hash)
        && !decide::held_back(previous, prepared)
        && !promoted
}

/// The operations to shadow: the spec's list, else those whose phase the
/// switch changes, else every one (an empty list).
pub fn operations(spec: &ShadowSpec, previous: &FeatureStatus, prepared: &Prepared) -> Vec<String> {
    if !spec.operations.is_empty() {
        return spec.operations.clone();
    }
    prepared
        .operation_phases
        .iter()
        .filter(|(op, phase)| previous.operation_phases.get(*op) != Some(*phase))
        .map(|(op, _)| op.clone())
        .collect()
}

/// The shadow of `prepared` as the previous status left it, or a new one.
pub fn begin(previous: &FeatureStatus, prepared: &Prepared, now: Timestamp) -> ShadowStatus {
    match &previous.shadow {
        Some(s)
            if s.candidate == prepared.config_hash
                && (s.state == state::STARTING || s.state == state::SAMPLING) =>
        {
            s.clone()
        }
        _ => ShadowStatus {
            candidate: prepared.config_hash.clone(),
            id: format!("{}-{}", prepared.config_hash, now.as_second()),
            started_at: None,
            state: state::STARTING.to_owned(),
            ..ShadowStatus::default()
        },
    }
}

/// The candidate's pod template: the desired one, labelled as a candidate,
/// with the shadow settings the candidate publishes to the serving pods.
pub fn candidate_template(
    feature: &Feature,
    mut template: PodTemplateSpec,
    spec: &ShadowSpec,
    shadow: &ShadowStatus,
    operations: &[String],
) -> PodTemplateSpec {
    let ns = feature.namespace().unwrap_or_default();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.extend(candidate_selector(feature));
    }
    let preview = if spec.redact_inputs {
        0
    } else {
        spec.preview_bytes
    };
    let settings = [
        (env::ID, shadow.id.clone()),
        (
            env::URL,
            format!("http://{}.{ns}.svc:{HTTP_PORT}", candidate_name(feature)),
        ),
        (env::SAMPLE_PERCENT, spec.sample_percent.to_string()),
        (env::OPERATIONS, operations.join(",")),
        (env::PREVIEW_BYTES, preview.to_string()),
        (env::MAX_DISAGREEMENTS, DISAGREEMENTS_SHOWN.to_string()),
        (env::TTL_SECONDS, SAMPLES_TTL_SECONDS.to_string()),
        (env::TIMEOUT_SECONDS, spec.timeout_seconds.to_string()),
    ];
    if let Some(container) = template
        .spec
        .as_mut()
        .and_then(|s| s.containers.first_mut())
    {
        let vars = container.env.get_or_insert_with(Vec::new);
        vars.extend(settings.into_iter().map(|(name, value)| EnvVar {
            name: name.to_owned(),
            value: Some(value),
            ..EnvVar::default()
        }));
    }
    template
}

/// The candidate's pods: one for a shadow (sampling needs no more); for a
/// canary, the Feature's replicas times its largest step (at least one), as
/// the candidate answers that share of the calls.
pub fn candidate_replicas(feature: &Feature) -> i32 {
    let Some(spec) = canary::settings(feature) else {
        return 1;
    };
    let largest = spec.steps.iter().copied().fold(0.0, f64::max);
    let wanted = (f64::from(feature.spec.replicas) * largest / 100.0).ceil();
    // Bounded by the Feature's replicas (at most 100, the CRD's rule).
    (wanted as i32).clamp(1, feature.spec.replicas.max(1))
}

/// The candidate's Deployment: [`candidate_replicas`] pods, the Feature's
/// rollout deadline, selected apart from the serving pods.
pub fn candidate_deployment(
    feature: &Feature,
    template: PodTemplateSpec,
    config: &OperatorConfig,
) -> Deployment {
    let mut deployment = children::deployment(feature, template, config);
    deployment.metadata.name = Some(candidate_name(feature));
    if let Some(spec) = deployment.spec.as_mut() {
        spec.replicas = Some(candidate_replicas(feature));
        spec.selector = LabelSelector {
            match_labels: Some(candidate_selector(feature)),
            ..LabelSelector::default()
        };
    }
    deployment
}

/// The candidate's Service, which the serving pods send their samples to.
pub fn candidate_service(feature: &Feature) -> Service {
    let mut service = children::service(feature);
    service.metadata.name = Some(candidate_name(feature));
    if let Some(spec) = service.spec.as_mut() {
        spec.selector = Some(candidate_selector(feature));
        if let Some(port) = spec.ports.as_mut().and_then(|p| p.first_mut()) {
            // The URL the candidate publishes names the runner's own port.
            port.port = i32::from(HTTP_PORT);
        }
    }
    service
}

/// A Go-style duration of seconds, minutes or hours (`30s`, `10m`, `1h`).
pub fn window(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(seconds))
}

/// Agreement in percent of `agree` over `samples`.
fn percent(agree: i64, samples: i64) -> f64 {
    if samples == 0 {
        0.0
    } else {
        agree as f64 * 100.0 / samples as f64
    }
}

/// Fills `shadow` from the candidate's tally: counts per operation (those
/// shadowed, with or without samples), the overall agreement, the newest
/// disagreements.
pub fn fill(shadow: &mut ShadowStatus, tally: Tally, operations: &[String]) {
    let mut by_name: BTreeMap<String, ShadowOperationStatus> = operations
        .iter()
        .map(|op| {
            (
                op.clone(),
                ShadowOperationStatus {
                    name: op.clone(),
                    ..ShadowOperationStatus::default()
                },
            )
        })
        .collect();
    for t in tally.operations {
        let entry = by_name
            .entry(t.operation.clone())
            .or_insert_with(|| ShadowOperationStatus {
                name: t.operation.clone(),
                ..ShadowOperationStatus::default()
            });
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        entry.agree = count(t.agree);
        entry.disagree = count(t.disagree);
        entry.errors = count(t.error);
        entry.samples = count(t.samples());
        entry.canary_routed = count(t.canary_routed);
        entry.canary_failed = count(t.canary_failed);
    }
    for op in by_name.values_mut() {
        op.agreement = (op.samples > 0).then(|| format!("{:.1}", percent(op.agree, op.samples)));
    }
    shadow.operations = by_name.into_values().collect();
    let (agree, samples) = shadow
        .operations
        .iter()
        .fold((0, 0), |(a, s), op| (a + op.agree, s + op.samples));
    shadow.agreement = Some(format!("{:.1}% of {samples}", percent(agree, samples)));
    shadow.disagreements = tally.disagreements;
    shadow
        .disagreements
        .truncate(DISAGREEMENTS_SHOWN * shadow.operations.len().max(1));
}

/// What the samples so far conclude.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Not enough samples yet, within the window.
    Wait(String),
    /// Enough samples, agreeing enough.
    Promote(String),
    /// Enough samples that do not agree enough, or too few within the window.
    Hold(String),
    /// A canary's step passed: on to the next one.
    Step(String),
    /// A canary's candidate failed more live calls than allowed.
    TooManyErrors(String),
}

/// The verdict on `shadow` under `spec` at `now`: decided as soon as there
/// are `minSamples` (overall), each operation with samples and the whole
/// needing `minAgreement`.
pub fn evaluate(spec: &ShadowSpec, shadow: &ShadowStatus, now: Timestamp) -> Outcome {
    let (agree, samples) = shadow
        .operations
        .iter()
        .fold((0, 0), |(a, s), op| (a + op.agree, s + op.samples));
    let overall = percent(agree, samples);
    if samples >= spec.min_samples {
        let low: Vec<String> = shadow
            .operations
            .iter()
            .filter(|op| op.samples > 0 && percent(op.agree, op.samples) < spec.min_agreement)
            .map(|op| {
                format!(
                    "{} agreed on {:.1}% of {}",
                    op.name,
                    percent(op.agree, op.samples),
                    op.samples
                )
            })
            .collect();
        return if overall >= spec.min_agreement && low.is_empty() {
            Outcome::Promote(format!(
                "the candidate agreed on {overall:.1}% of {samples} samples (minAgreement {}%)",
                spec.min_agreement
            ))
        } else {
            let detail = if low.is_empty() {
                format!("{overall:.1}% of {samples} samples")
            } else {
                low.join(", ")
            };
            Outcome::Hold(format!(
                "the candidate agreed below minAgreement {}%: {detail}",
                spec.min_agreement
            ))
        };
    }
    let window = window(&spec.window).unwrap_or(Duration::from_secs(3600));
    let elapsed = shadow
        .started_at
        .as_ref()
        .map(|t| Duration::from_secs(u64::try_from((now - t.0).get_seconds()).unwrap_or(0)))
        .unwrap_or_default();
    if elapsed >= window {
        Outcome::Hold(format!(
            "only {samples} of minSamples {} samples came within the window of {} ({overall:.1}% agreed)",
            spec.min_samples, spec.window
        ))
    } else {
        Outcome::Wait(format!(
            "{samples}/{} samples, {overall:.1}% agreed, {}s of the window left",
            spec.min_samples,
            (window - elapsed).as_secs()
        ))
    }
}

/// What the reconcile found of a shadow: the candidate's rollout, and its
/// tally once it is ready (or why it could not be read).
#[derive(Debug, Clone)]
pub struct ShadowObserved {
    /// The candidate Deployment's rollout.
    pub rollout: Rollout,
    /// The tally, when the candidate is ready and answered.
    pub tally: Result<Tally, String>,
    /// The operations shadowed (empty: all).
    pub operations: Vec<String>,
    /// Ready pods of the serving Deployment.
    pub ready_replicas: i32,
    /// The configuration the serving Deployment runs.
    pub serving: String,
}

/// The decision of a reconcile that runs a shadow: the serving pods keep the
/// last good configuration; `PhaseSwitch` and `status.shadow` follow the
/// candidate; a promotion or a hold is announced once.
pub fn decide(
    mut decision: Decision,
    feature: &Feature,
    prepared: &Prepared,
    spec: &ShadowSpec,
    mut shadow: ShadowStatus,
    observed: ShadowObserved,
    now: Timestamp,
) -> Decision {
    let phase = prepared.phase;
    let candidate = shadow.candidate.clone();
    let serving = observed.serving.clone();
    let switch = |status: &mut FeatureStatus, value, why: &str, message: String| {
        decide::set(status, condition::PHASE_SWITCH, value, why, message)
    };
    let mut requeue = Duration::from_secs(5);
    let new = decision.status.shadow.as_ref().map(|s| &s.id) != Some(&shadow.id);
    if new {
        decision.events.push(Event {
            warning: false,
            reason: shadow_event::STARTED,
            action: "Shadow",
            note: format!(
                "starting candidate pods for phase {phase} (config {candidate}) beside the serving ones (config {serving})"
            ),
            config: Some(candidate.clone()),
        });
    }
    match observed.rollout {
        Rollout::Progressing { new_ready, wanted } => {
            shadow.state = state::STARTING.to_owned();
            switch(
                &mut decision.status,
                Status::Unknown,
                shadow_reason::SHADOWING,
                format!(
                    "starting the candidate for phase {phase} (config {candidate}): {new_ready}/{wanted} pods ready; config {serving} keeps serving"
                ),
            );
        }
        Rollout::Failed { message } => {
            shadow.state = state::FAILED.to_owned();
            decision.status.failed_config = Some(candidate.clone());
            let note = format!(
                "the candidate for phase {phase} (config {candidate}) did not become ready: {message}; config {serving} keeps serving"
            );
            switch(
                &mut decision.status,
                Status::False,
                reason::FAILED,
                note.clone(),
            );
            decision.events.push(Event {
                warning: true,
                reason: event::SWITCH_FAILED,
                action: "Shadow",
                note,
                config: Some(candidate.clone()),
            });
        }
        Rollout::Complete => {
            if shadow.started_at.is_none() {
                shadow.started_at = Some(Time(now));
            }
            shadow.state = state::SAMPLING.to_owned();
            let unread = match observed.tally {
                Ok(tally) => {
                    fill(&mut shadow, tally, &observed.operations);
                    None
                }
                Err(why) => Some(why),
            };
            let canary = canary::settings(feature);
            let outcome = match &canary {
                Some(canary_spec) => {
                    canary::start(&mut shadow, canary_spec, now);
                    canary::fill(&mut shadow);
                    canary::evaluate(spec, canary_spec, &shadow, now)
                }
                None => evaluate(spec, &shadow, now),
            };
            let (kind, action) = match canary {
                Some(_) => ("canary", "Canary"),
                None => ("shadow", "Shadow"),
            };
            if !matches!(outcome, Outcome::Wait(_) | Outcome::Step(_)) {
                canary::end(&mut shadow);
            }
            match outcome {
                Outcome::Step(why) => {
                    if let (Some(c), Some(canary_spec)) = (shadow.canary.as_mut(), canary.as_ref())
                    {
                        canary::advance(c, canary_spec, now);
                    }
                    switch(
                        &mut decision.status,
                        Status::Unknown,
                        shadow_reason::CANARY,
                        format!(
                            "canary of phase {phase} (config {candidate}): {why}; config {serving} answers the other calls"
                        ),
                    );
                    decision.events.push(Event {
                        warning: false,
                        reason: shadow_event::CANARY_STEP,
                        action,
                        note: why,
                        config: Some(candidate.clone()),
                    });
                    requeue = Duration::from_secs(1);
                }
                Outcome::TooManyErrors(why) => {
                    shadow.state = state::ROLLED_BACK.to_owned();
                    decision.status.failed_config = Some(candidate.clone());
                    let note = format!(
                        "{why}; the canary is rolled back: config {serving} answers every call again, and the switch to phase {phase} (config {candidate}) is held until the spec changes"
                    );
                    switch(
                        &mut decision.status,
                        Status::False,
                        shadow_reason::CANARY_ERRORS,
                        note.clone(),
                    );
                    decision.events.push(Event {
                        warning: true,
                        reason: shadow_event::CANARY_ROLLED_BACK,
                        action,
                        note,
                        config: Some(candidate.clone()),
                    });
                }
                Outcome::Promote(why) => {
                    shadow.state = state::PROMOTED.to_owned();
                    let note = format!("{why}; rolling out phase {phase} (config {candidate})");
                    switch(
                        &mut decision.status,
                        Status::Unknown,
                        reason::PROGRESSING,
                        note.clone(),
                    );
                    decision.events.push(Event {
                        warning: false,
                        reason: if kind == "canary" {
                            shadow_event::CANARY_PROMOTED
                        } else {
                            shadow_event::PROMOTED
                        },
                        action,
                        note,
                        config: Some(candidate.clone()),
                    });
                    requeue = Duration::from_secs(1);
                }
                Outcome::Hold(why) => {
                    shadow.state = if kind == "canary" {
                        state::ROLLED_BACK
                    } else {
                        state::HELD
                    }
                    .to_owned();
                    decision.status.failed_config = Some(candidate.clone());
                    let shown: Vec<String> = shadow
                        .disagreements
                        .iter()
                        .take(3)
                        .map(|d| match &d.input {
                            Some(input) => format!("{} {input}: {}", d.operation, d.reason),
                            None => format!("{}: {}", d.operation, d.reason),
                        })
                        .collect();
                    let mut note = if kind == "canary" {
                        format!(
                            "{why}; the canary is rolled back: config {serving} answers every call again, and the switch to phase {phase} (config {candidate}) is held until the spec changes"
                        )
                    } else {
                        format!(
                            "{why}; config {serving} keeps serving, the switch to phase {phase} (config {candidate}) is held until the spec changes"
                        )
                    };
                    if !shown.is_empty() {
                        note.push_str(&format!("; disagreements: {}", shown.join(" | ")));
                    }
                    switch(
                        &mut decision.status,
                        Status::False,
                        shadow_reason::DISAGREEMENT,
                        note.clone(),
                    );
                    decision.events.push(Event {
                        warning: true,
                        reason: if kind == "canary" {
                            shadow_event::CANARY_ROLLED_BACK
                        } else {
                            shadow_reason::DISAGREEMENT
                        },
                        action,
                        note,
                        config: Some(candidate.clone()),
                    });
                }
                Outcome::Wait(progress) => {
                    let (because, mut message) = if kind == "canary" {
                        (
                            shadow_reason::CANARY,
                            format!(
                                "canary of phase {phase} (config {candidate}): {progress}; config {serving} answers the other calls"
                            ),
                        )
                    } else {
                        (
                            shadow_reason::SHADOWING,
                            format!(
                                "shadowing phase {phase} (config {candidate}) on live traffic: {progress}; config {serving} keeps serving"
                            ),
                        )
                    };
                    if let Some(why) = unread {
                        message.push_str(&format!("; the tally could not be read: {why}"));
                    }
                    switch(&mut decision.status, Status::Unknown, because, message);
                }
            }
        }
    }
    decision.status.shadow = Some(shadow);
    decision.status.config = Some(serving);
    decide::ready(&mut decision.status, feature, observed.ready_replicas);
    decision.requeue = Requeue::After(requeue);
    decision
}

#[cfg(test)]
mod tests;
