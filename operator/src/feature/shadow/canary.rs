//! Canary switches (`spec.rollout.strategy: Canary`), as pure functions: a
//! shadow whose candidate also answers `steps[i]` percent of the live calls
//! (the serving pods forward them; see [`eol_core::shadow`]). Each step lasts
//! at least `stepDuration` and `minRequests` forwarded calls; the error gate
//! (the share of forwarded calls the candidate failed) and the shadow's
//! agreement gate are checked at every reconcile, and either failing rolls
//! the canary back: the candidate gets no more calls and is stopped.

use super::{Outcome, percent, window};
use eol_core::crd::{CanarySpec, CanaryStatus, Feature, RolloutStrategy, ShadowSpec, ShadowStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

/// The Feature's canary settings, when its strategy is `Canary`.
pub fn settings(feature: &Feature) -> Option<CanarySpec> {
    let rollout = feature.spec.rollout.as_ref()?;
    (rollout.strategy == RolloutStrategy::Canary)
        .then(|| rollout.canary.clone().unwrap_or_default())
}

/// Why `spec`'s steps cannot be used, if they cannot (the CRD's rule, checked
/// again for API servers that skip CEL).
pub fn invalid_steps(spec: &CanarySpec) -> Option<String> {
    if spec.steps.is_empty() {
        return Some("steps is empty: give at least one percentage".to_owned());
    }
    for (i, pair) in spec.steps.windows(2).enumerate() {
        if pair[1] <= pair[0] {
            return Some(format!(
                "steps[{}] is {} after {}: steps must increase",
                i + 1,
                pair[1],
                pair[0]
            ));
        }
    }
    spec.steps
        .iter()
        .position(|s| !(*s > 0.0 && *s < 100.0))
        .map(|i| {
            format!(
                "steps[{i}] is {}: each step must be above 0 and below 100",
                spec.steps[i]
            )
        })
}

/// Starts the first step, once the candidate is ready (kept as it is after).
pub fn start(shadow: &mut ShadowStatus, spec: &CanarySpec, now: Timestamp) {
    if shadow.canary.is_none() {
        shadow.canary = Some(CanaryStatus {
            step: 0,
            weight: spec.steps.first().copied().unwrap_or(0.0),
            step_started_at: Some(Time(now)),
            ..CanaryStatus::default()
        });
    }
}

/// The canary's totals from the operations' counts (filled from the tally).
pub fn fill(shadow: &mut ShadowStatus) {
    let (routed, failed) = shadow.operations.iter().fold((0, 0), |(r, f), op| {
        (r + op.canary_routed, f + op.canary_failed)
    });
    if let Some(canary) = shadow.canary.as_mut() {
        canary.routed = routed;
        canary.failed = failed;
        describe(canary);
    }
}

/// Sets the canary's `progress` line from its weight and counts.
pub fn describe(canary: &mut CanaryStatus) {
    canary.progress = Some(format!(
        "{}% of calls, {:.1}% of {} failed",
        canary.weight,
        percent(canary.failed, canary.routed),
        canary.routed
    ));
}

/// Seconds from `since` to `now` (0 when unknown or in the future).
fn elapsed(since: Option<&Time>, now: Timestamp) -> Duration {
    since
        .map(|t| Duration::from_secs(u64::try_from((now - t.0).get_seconds()).unwrap_or(0)))
        .unwrap_or_default()
}

/// The verdict on a canary at `now`. In order: the error gate (once
/// `minRequests` calls were forwarded), the agreement gate (once there are
/// `minSamples` samples, as for a shadow), then the step: the next one when
/// this one has lasted `stepDuration` with `minRequests` calls; after the
/// last, a promotion once the agreement gate was met; without it within the
/// shadow's `window`, a hold.
pub fn evaluate(
    shadow_spec: &ShadowSpec,
    spec: &CanarySpec,
    shadow: &ShadowStatus,
    now: Timestamp,
) -> Outcome {
    let Some(canary) = shadow.canary.as_ref() else {
        return Outcome::Wait("the canary has not started".to_owned());
    };
    let error_rate = percent(canary.failed, canary.routed);
    if canary.routed >= spec.min_requests && error_rate > spec.max_error_percent {
        return Outcome::TooManyErrors(format!(
            "the candidate failed {} of {} live calls ({error_rate:.1}%, maxErrorPercent {}%)",
            canary.failed, canary.routed, spec.max_error_percent
        ));
    }
    let agreement = super::evaluate(shadow_spec, shadow, now);
    if let Outcome::Hold(_) = agreement {
        return agreement;
    }
    let step = usize::try_from(canary.step).unwrap_or(0);
    let at_step = canary.routed - canary.step_start_routed;
    let step_duration = window(&spec.step_duration).unwrap_or(Duration::from_secs(60));
    let lasted = elapsed(canary.step_started_at.as_ref(), now);
    let step_done = lasted >= step_duration && at_step >= spec.min_requests;
    let progress = format!(
        "step {}/{} at {}% of calls: {at_step}/{} calls, {}s/{}s; {:.1}% of {} forwarded calls failed",
        step + 1,
        spec.steps.len(),
        canary.weight,
        spec.min_requests,
        lasted.as_secs(),
        step_duration.as_secs(),
        error_rate,
        canary.routed
    );
    match (step_done, spec.steps.get(step + 1), agreement) {
        (true, Some(next), _) => Outcome::Step(format!(
            "step {}/{} passed ({at_step} calls at {}%, {error_rate:.1}% failed); the candidate now answers {next}% of calls",
            step + 1,
            spec.steps.len(),
            canary.weight
        )),
        (true, None, Outcome::Promote(why)) => Outcome::Promote(format!(
            "every step passed ({} forwarded calls, {error_rate:.1}% failed) and {why}",
            canary.routed
        )),
        (_, _, Outcome::Wait(samples)) => Outcome::Wait(format!("{progress}; {samples}")),
        (_, _, _) => Outcome::Wait(progress),
    }
}

/// Moves `canary` to its next step at `now`.
pub fn advance(canary: &mut CanaryStatus, spec: &CanarySpec, now: Timestamp) {
    let next = canary.step + 1;
    if let Some(weight) = usize::try_from(next).ok().and_then(|i| spec.steps.get(i)) {
        canary.step = next;
        canary.weight = *weight;
        canary.step_started_at = Some(Time(now));
        canary.step_start_routed = canary.routed;
        describe(canary);
    }
}

/// Ends the canary: the candidate gets no more live calls.
pub fn end(shadow: &mut ShadowStatus) {
    if let Some(canary) = shadow.canary.as_mut() {
        canary.weight = 0.0;
        describe(canary);
    }
}
