//! What a Feature's reconcile concludes, as pure functions of what it found:
//! the next status, the events a user must see, whether to roll back, and when
//! to look again. The controller gathers the facts and carries the decision
//! out; every branch here is tested without a client.

use super::rollout::Rollout;
use crate::conditions::{self, Status};
use crate::source::{Prepared, SpecProblem, reason as spec_reason};
use eol_core::crd::{Feature, FeatureStatus};
use std::time::Duration;

/// The Feature's condition types.
pub mod condition {
    /// The pods wanted are ready (or none are wanted).
    pub const READY: &str = "Ready";
    /// The source, tests, documents and code are valid.
    pub const SPEC_VALID: &str = "SpecValid";
    /// Prototyped operations have a model to run on.
    pub const MODEL_CONFIGURED: &str = "ModelConfigured";
    /// Where a change of configuration stands.
    pub const PHASE_SWITCH: &str = "PhaseSwitch";
    /// The budget's window is spent (set only for a Feature with a budget).
    pub const BUDGET_EXCEEDED: &str = "BudgetExceeded";
}

/// The reasons of the Feature's conditions (`SpecValid=False` takes [`crate::source::reason`]).
pub mod reason {
    /// `SpecValid=True`.
    pub const VALID: &str = "Valid";
    /// `ModelConfigured=True`: a model is set for prototyped operations.
    pub const CONFIGURED: &str = "Configured";
    /// `ModelConfigured=True`: no operation runs on the model.
    pub const NOT_REQUIRED: &str = "NotRequired";
    /// `ModelConfigured=False`: prototyped operations have no base URL.
    pub const NOT_CONFIGURED: &str = "NotConfigured";
    /// `ModelConfigured=False`: the API-key Secret or its key is missing.
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// `PhaseSwitch=Unknown`: new pods are starting, or Redis is not ready yet.
    pub const PROGRESSING: &str = "Progressing";
    /// `PhaseSwitch=True`: every replica runs the current configuration.
    pub const COMPLETE: &str = "Complete";
    /// `PhaseSwitch=False`: the new pods were not ready within the deadline.
    pub const FAILED: &str = "Failed";
    /// `PhaseSwitch=False`: the switch failed and the last served configuration is back.
    pub const ROLLED_BACK: &str = "RolledBack";
    /// `Ready=True`: every wanted pod is ready.
    pub const READY: &str = "Ready";
    /// `Ready=False`: fewer pods are ready than wanted.
    pub const NOT_READY: &str = "NotReady";
    /// `Ready=True`: `replicas` is 0.
    pub const SCALED_TO_ZERO: &str = "ScaledToZero";
    /// `BudgetExceeded=True`: prototyped calls get the budget's `onExceeded`.
    pub const EXCEEDED: &str = "Exceeded";
    /// `BudgetExceeded=False`: the window has budget left.
    pub const WITHIN_BUDGET: &str = "WithinBudget";
}

/// The reasons of the Feature's events (besides `SpecValid` and `ModelConfigured` reasons).
pub mod event {
    /// A rollout to a new configuration began.
    pub const SWITCH_STARTED: &str = "PhaseSwitchStarted";
    /// Every replica serves the new configuration.
    pub const SWITCH_COMPLETE: &str = "PhaseSwitchComplete";
    /// The new pods were not ready within the deadline.
    pub const SWITCH_FAILED: &str = "PhaseSwitchFailed";
    /// The failed configuration was replaced by the last one that served.
    pub const ROLLED_BACK: &str = "RolledBack";
    /// The Python could not be checked by the operator (the pods check it).
    pub const CODE_NOT_CHECKED: &str = "CodeNotChecked";
    /// The budget's window is spent (Warning).
    pub const BUDGET_EXCEEDED: &str = "BudgetExceeded";
}

/// An event to publish about the Feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Warning, or Normal.
    pub warning: bool,
    /// A reason from [`event`], or a condition reason.
    pub reason: &'static str,
    /// What the operator was doing (`Validate`, `Configure`, `Rollout`, `Rollback`).
    pub action: &'static str,
    /// The note.
    pub note: String,
    /// The configuration it is about (its ConfigMap is the event's related object).
    pub config: Option<String>,
}

/// When to reconcile again without a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// Only on a change of the Feature or its children.
    OnChange,
    /// After this long.
    After(Duration),
}

/// What a reconcile concludes.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The status to write (written only when it differs from the previous one).
    pub status: FeatureStatus,
    /// Events to publish.
    pub events: Vec<Event>,
    /// Roll the Deployment back to this configuration's pod template.
    pub roll_back_to: Option<String>,
    /// When to look again.
    pub requeue: Requeue,
}

impl Decision {
    fn new(status: FeatureStatus, requeue: Requeue) -> Self {
        Self {
            status,
            events: Vec::new(),
            roll_back_to: None,
            requeue,
        }
    }
}

/// The status every decision starts from: the previous one, for this generation.
fn base(feature: &Feature, previous: &FeatureStatus) -> FeatureStatus {
    FeatureStatus {
        observed_generation: feature.metadata.generation,
        ..previous.clone()
    }
}

/// Sets condition `type_` of `status` for the Feature's generation.
pub(super) fn set(
    status: &mut FeatureStatus,
    type_: &str,
    value: Status,
    reason: &str,
    message: impl Into<String>,
) {
    let generation = status.observed_generation;
    conditions::set(
        &mut status.conditions,
        type_,
        value,
        reason,
        message,
        generation,
    );
}

/// The source cannot be served: `SpecValid=False`, an event when the problem
/// is new, and nothing else changes (pods already serving keep serving). A
/// missing ConfigMap is looked for again; anything else waits for an edit.
pub fn spec_invalid(feature: &Feature, previous: &FeatureStatus, problem: SpecProblem) -> Decision {
    let mut status = base(feature, previous);
    let repeated = conditions::get(&previous.conditions, condition::SPEC_VALID)
        .is_some_and(|c| c.status == "False" && c.message == problem.message);
    set(
        &mut status,
        condition::SPEC_VALID,
        Status::False,
        problem.reason,
        &problem.message,
    );
    let requeue = if problem.reason == spec_reason::SOURCE_NOT_FOUND {
        Requeue::After(Duration::from_secs(15))
    } else {
        Requeue::OnChange
    };
    let mut decision = Decision::new(status, requeue);
    if !repeated {
        decision.events.push(Event {
            warning: true,
            reason: problem.reason,
            action: "Validate",
            note: problem.message,
            config: None,
        });
    }
    decision
}

/// The source is valid: `SpecValid=True`, the desired phase, and — before any
/// pod served — the phase the first rollout brings.
pub fn spec_valid(
    feature: &Feature,
    previous: &FeatureStatus,
    prepared: &Prepared,
    unchecked: Option<&str>,
) -> Decision {
    let mut status = base(feature, previous);
    status.desired_phase = Some(prepared.phase);
    if status.last_good_config.is_none() {
        status.phase = Some(prepared.phase);
        status.operation_phases = prepared.operation_phases.clone();
    }
    let mut message = format!("the source parses; phase {}", prepared.phase);
    if let Some(why) = unchecked {
        message.push_str(&format!(
            "; its Python was not checked here ({why}): the pods check it before it runs"
        ));
    }
    let note_new = unchecked.is_some()
        && conditions::get(&previous.conditions, condition::SPEC_VALID)
            .is_none_or(|c| c.message != message);
    set(
        &mut status,
        condition::SPEC_VALID,
        Status::True,
        reason::VALID,
        &message,
    );
    let mut decision = Decision::new(status, Requeue::OnChange);
    if note_new {
        decision.events.push(Event {
            warning: true,
            reason: event::CODE_NOT_CHECKED,
            action: "Validate",
            note: message,
            config: None,
        });
    }
    decision
}

/// Whether the model prototyped operations need can be used: `ModelConfigured`.
/// `problem` is `(reason, message)` when it cannot; then nothing rolls out
/// (old pods keep serving) and the Secret is looked for again shortly.
pub fn model(
    mut decision: Decision,
    previous: &FeatureStatus,
    prepared: &Prepared,
    configured: &str,
    problem: Option<(&'static str, String)>,
) -> Decision {
    match problem {
        Some((why, message)) => {
            set(
                &mut decision.status,
                condition::MODEL_CONFIGURED,
                Status::False,
                why,
                &message,
            );
            if !conditions::is(
                &previous.conditions,
                condition::MODEL_CONFIGURED,
                Status::False,
            ) {
                decision.events.push(Event {
                    warning: true,
                    reason: why,
                    action: "Configure",
                    note: message,
                    config: None,
                });
            }
            decision.requeue = Requeue::After(Duration::from_secs(10));
        }
        None => {
            let (why, message) = if prepared.needs_model {
                (reason::CONFIGURED, configured.to_owned())
            } else {
                (
                    reason::NOT_REQUIRED,
                    "no operation runs on the model".to_owned(),
                )
            };
            set(
                &mut decision.status,
                condition::MODEL_CONFIGURED,
                Status::True,
                why,
                message,
            );
        }
    }
    decision
}

/// New pods run their tests at start, against Redis: starting them before it
/// answers would fail the tests for nothing. Pods already serving stay.
pub fn waiting_for_redis(mut decision: Decision, redis: &str) -> Decision {
    set(
        &mut decision.status,
        condition::PHASE_SWITCH,
        Status::Unknown,
        reason::PROGRESSING,
        format!("waiting for the namespace's Redis ({redis}) to be ready"),
    );
    decision.requeue = Requeue::After(Duration::from_secs(2));
    decision
}

/// Whether `prepared` is the configuration whose switch failed and was rolled
/// back: it is not tried again until the spec changes, and the Deployment
/// keeps the last configuration that served.
pub fn held_back(previous: &FeatureStatus, prepared: &Prepared) -> bool {
    previous.failed_config.as_deref() == Some(prepared.config_hash.as_str())
        && previous
            .last_good_config
            .as_ref()
            .is_some_and(|good| *good != prepared.config_hash)
}

/// What the Deployment shows after the apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The configuration the applied template runs (the desired one, or the
    /// last good one while held back).
    pub target: String,
    /// Where its rollout stands.
    pub rollout: Rollout,
    /// What the new pods say about why they are not ready (their `/readyz`),
    /// read when the rollout failed.
    pub pods_say: Option<String>,
    /// Ready pods of the Deployment, old and new.
    pub ready_replicas: i32,
}

/// Where the rollout stands, from the Deployment just applied: the
/// `PhaseSwitch` condition, events for a switch that starts, completes, fails
/// or is rolled back, the rollback itself, and `Ready`.
pub fn rollout(
    mut decision: Decision,
    feature: &Feature,
    previous: &FeatureStatus,
    prepared: &Prepared,
    observed: Observed,
) -> Decision {
    let status = &mut decision.status;
    let target = observed.target.clone();
    let phase = prepared.phase;
    let switch = conditions::get(&previous.conditions, condition::PHASE_SWITCH);
    let previously = |reason: &str| switch.is_some_and(|c| c.reason == reason);
    // The same rollout as the one the previous status described.
    let same_target = previous.config.as_deref() == Some(target.as_str());
    let good = previous.last_good_config.clone();
    let mut requeue = Requeue::After(Duration::from_secs(300));

    if held_back(previous, prepared) {
        // The Deployment runs the last good configuration again: keep the
        // failure on record (a rollback, a failed or held shadow), and raise
        // nothing new about a switch.
        let (why, message) = switch
            .filter(|c| c.status == Status::False.as_str())
            .map(|c| (c.reason.clone(), c.message.clone()))
            .unwrap_or_else(|| {
                (
                    reason::ROLLED_BACK.to_owned(),
                    format!(
                        "config {} failed before; serving config {target}",
                        prepared.config_hash
                    ),
                )
            });
        set(
            status,
            condition::PHASE_SWITCH,
            Status::False,
            &why,
            message,
        );
        if !matches!(observed.rollout, Rollout::Complete) {
            requeue = Requeue::After(Duration::from_secs(5));
        }
    } else {
        match &observed.rollout {
            Rollout::Complete => {
                status.last_good_config = Some(target.clone());
                status.phase = Some(phase);
                status.operation_phases = prepared.operation_phases.clone();
                status.failed_config = None;
                set(
                    status,
                    condition::PHASE_SWITCH,
                    Status::True,
                    reason::COMPLETE,
                    format!("every replica serves phase {phase} (config {target})"),
                );
                if !(previously(reason::COMPLETE) && same_target) {
                    decision.events.push(Event {
                        warning: false,
                        reason: event::SWITCH_COMPLETE,
                        action: "Rollout",
                        note: format!("serving phase {phase} (config {target})"),
                        config: Some(target.clone()),
                    });
                }
            }
            Rollout::Progressing { new_ready, wanted } => {
                requeue = Requeue::After(Duration::from_secs(5));
                let serving = match &good {
                    Some(g) if *g != target => {
                        format!("the previous pods (config {g}) keep serving")
                    }
                    _ => "no pods served before".to_owned(),
                };
                set(
                    status,
                    condition::PHASE_SWITCH,
                    Status::Unknown,
                    reason::PROGRESSING,
                    format!(
                        "rolling out phase {phase} (config {target}): {new_ready}/{wanted} new pods ready; {serving}"
                    ),
                );
                if !(previously(reason::PROGRESSING) && same_target) {
                    decision.events.push(Event {
                        warning: false,
                        reason: event::SWITCH_STARTED,
                        action: "Rollout",
                        note: format!("rolling out phase {phase} (config {target})"),
                        config: Some(target.clone()),
                    });
                }
            }
            Rollout::Failed { message } => {
                let why = observed.pods_say.clone().unwrap_or_else(|| message.clone());
                let failed = format!("the switch to phase {phase} (config {target}) failed: {why}");
                let auto = feature
                    .spec
                    .rollout
                    .as_ref()
                    .is_some_and(|r| r.auto_rollback);
                match good.filter(|g| *g != target) {
                    Some(g) if auto => {
                        let served = previous
                            .phase
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| "the previous one".to_owned());
                        let note = format!("{failed}; rolled back to phase {served} (config {g})");
                        status.failed_config = Some(target.clone());
                        decision.roll_back_to = Some(g);
                        set(
                            status,
                            condition::PHASE_SWITCH,
                            Status::False,
                            reason::ROLLED_BACK,
                            &note,
                        );
                        decision.events.push(Event {
                            warning: true,
                            reason: event::ROLLED_BACK,
                            action: "Rollback",
                            note,
                            config: Some(target.clone()),
                        });
                        requeue = Requeue::After(Duration::from_secs(5));
                    }
                    serving => {
                        let note = match serving {
                            Some(g) => {
                                format!("{failed}; the previous pods (config {g}) keep serving")
                            }
                            None => format!("{failed}; no pods serve the feature"),
                        };
                        if !(previously(reason::FAILED) && same_target) {
                            decision.events.push(Event {
                                warning: true,
                                reason: event::SWITCH_FAILED,
                                action: "Rollout",
                                note: note.clone(),
                                config: Some(target.clone()),
                            });
                        }
                        set(
                            status,
                            condition::PHASE_SWITCH,
                            Status::False,
                            reason::FAILED,
                            note,
                        );
                    }
                }
            }
        }
    }

    // After a rollback the Deployment runs the last good configuration again.
    status.config = Some(decision.roll_back_to.clone().unwrap_or(target));
    ready(status, feature, observed.ready_replicas);
    decision.requeue = requeue;
    decision
}

/// `readyReplicas` and the `Ready` condition.
pub(super) fn ready(status: &mut FeatureStatus, feature: &Feature, ready: i32) {
    status.ready_replicas = ready;
    let wanted = super::children::replicas(feature);
    let (value, why, message) = if wanted == 0 {
        (
            Status::True,
            reason::SCALED_TO_ZERO,
            "replicas is 0".to_owned(),
        )
    } else if ready >= wanted {
        (
            Status::True,
            reason::READY,
            format!("{ready}/{wanted} pods ready"),
        )
    } else {
        (
            Status::False,
            reason::NOT_READY,
            format!("{ready}/{wanted} pods ready"),
        )
    };
    set(status, condition::READY, value, why, message);
}
