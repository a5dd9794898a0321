//! A Feature's model use in its status: every minute or so, while any
//! operation runs on the model, the totals of the last hour and day are read
//! from a ready serving pod (`GET /v1/usage`, which sums the Redis counters
//! every replica adds to) into `status.usage`.

use super::children;
use super::controller::ready_pod_url;
use super::decide::{Decision, Event, Requeue, condition, event, reason, set};
use crate::conditions::{self, Status};
use crate::context::Context;
use eol_core::cost::{FeatureUsage, USAGE_PATH};
use eol_core::crd::{Feature, FeatureStatus, UsageStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the usage is read: fresh enough for `kubectl get`, and one small
/// request a minute per Feature.
pub const REFRESH: Duration = Duration::from_secs(60);

/// When each Feature's usage was last asked for, successfully or not, so that
/// a pod that does not answer (or a node whose pods cannot be reached) costs
/// one attempt per [`REFRESH`], not one per reconcile.
#[derive(Debug, Default)]
pub struct UsageReads {
    attempts: Mutex<HashMap<String, Instant>>,
}

impl UsageReads {
    /// Whether `key`'s usage is due at `now`, noting the attempt when it is.
    fn take_turn(&self, key: &str, now: Instant) -> bool {
        let Ok(mut attempts) = self.attempts.lock() else {
            return true;
        };
        if attempts
            .get(key)
            .is_some_and(|last| now.duration_since(*last) < REFRESH)
        {
            return false;
        }
        // Deleted Features' entries go once they are stale.
        if attempts.len() >= 1024 {
            attempts.retain(|_, last| now.duration_since(*last) < REFRESH);
        }
        attempts.insert(key.to_owned(), now);
        true
    }
}

/// Reads the usage into `decision`'s status when it is due, and has the
/// Feature looked at again by the next refresh.
pub async fn refresh(ctx: &Context, feature: &Feature, ns: &str, decision: &mut Decision) {
    let status = &decision.status;
    if !uses_model(status) || status.ready_replicas == 0 {
        return;
    }
    let key = format!("{ns}/{}", feature.name_any());
    if ctx.usage_reads.take_turn(&key, Instant::now()) {
        match read(ctx, feature, ns).await {
            Ok(usage) => {
                budget_condition(decision, &usage);
                decision.status.usage = Some(UsageStatus {
                    usage,
                    updated_at: Some(Time(Timestamp::now())),
                });
            }
            Err(error) => {
                tracing::warn!(%error, feature = %key, "failed to read the model usage; trying again at the next refresh");
            }
        }
    }
    decision.requeue = sooner(decision.requeue, REFRESH);
}

/// `BudgetExceeded` from the budget's state, with a Warning event when it
/// becomes True; no condition without a budget.
fn budget_condition(decision: &mut Decision, usage: &FeatureUsage) {
    let status = &mut decision.status;
    let Some(budget) = &usage.budget else {
        status
            .conditions
            .retain(|c| c.type_ != condition::BUDGET_EXCEEDED);
        return;
    };
    let was = conditions::get(&status.conditions, condition::BUDGET_EXCEEDED)
        .is_some_and(|c| c.status == "True");
    let (value, why) = if budget.exceeded {
        (Status::True, reason::EXCEEDED)
    } else {
        (Status::False, reason::WITHIN_BUDGET)
    };
    let message = format!("{} (window {})", budget.summary, budget.window);
    set(status, condition::BUDGET_EXCEEDED, value, why, &message);
    if budget.exceeded && !was {
        decision.events.push(Event {
            warning: true,
            reason: event::BUDGET_EXCEEDED,
            action: "Meter",
            note: format!("the model budget is spent: {message}"),
            config: None,
        });
    }
}

/// Whether some operation of the configuration that serves runs on the model.
fn uses_model(status: &FeatureStatus) -> bool {
    status
        .operation_phases
        .values()
        .any(|phase| phase == "prototyping")
}

fn sooner(requeue: Requeue, after: Duration) -> Requeue {
    match requeue {
        Requeue::After(d) if d <= after => Requeue::After(d),
        _ => Requeue::After(after),
    }
}

async fn read(ctx: &Context, feature: &Feature, ns: &str) -> Result<FeatureUsage, String> {
    let base = ready_pod_url(ctx, ns, &children::selector(feature), "serving").await?;
    let url = format!("{base}{USAGE_PATH}");
    let response = ctx
        .http
        .get(&url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(format!("GET {url}: HTTP {status}: {body:.300}"));
    }
    response
        .json()
        .await
        .map_err(|e| format!("GET {url}: not a usage: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn status(phases: &[(&str, &str)]) -> FeatureStatus {
        FeatureStatus {
            operation_phases: phases
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            ..FeatureStatus::default()
        }
    }

    #[test]
    fn only_features_on_the_model_are_read_once_a_minute() {
        assert!(uses_model(&status(&[
            ("a", "implementation"),
            ("b", "prototyping")
        ])));
        assert!(!uses_model(&status(&[("a", "implementation")])));
        let reads = UsageReads::default();
        let now = Instant::now();
        assert!(reads.take_turn("ns/a", now));
        assert!(!reads.take_turn("ns/a", now + Duration::from_secs(30)));
        assert!(reads.take_turn("ns/b", now + Duration::from_secs(30)));
        assert!(reads.take_turn("ns/a", now + REFRESH));
    }

    #[test]
    fn the_refresh_never_delays_a_sooner_requeue() {
        assert_eq!(
            sooner(Requeue::After(Duration::from_secs(5)), REFRESH),
            Requeue::After(Duration::from_secs(5))
        );
        assert_eq!(sooner(Requeue::OnChange, REFRESH), Requeue::After(REFRESH));
        assert_eq!(
            sooner(Requeue::After(Duration::from_secs(600)), REFRESH),
            Requeue::After(REFRESH)
        );
    }

    #[test]
    fn a_spent_budget_sets_the_condition_and_warns_once() {
        use eol_core::cost::{BudgetSpend, BudgetState};
        let usage = |exceeded| FeatureUsage {
            budget: Some(BudgetState {
                window: "hour:1".into(),
                spent: BudgetSpend {
                    tokens: 120,
                    cost_nanos: 0,
                },
                exceeded,
                summary: "120/100 tokens per hour".into(),
            }),
            ..FeatureUsage::default()
        };
        let mut decision = Decision {
            status: FeatureStatus::default(),
            events: Vec::new(),
            roll_back_to: None,
            requeue: Requeue::OnChange,
        };
        budget_condition(&mut decision, &usage(true));
        let c = conditions::get(&decision.status.conditions, condition::BUDGET_EXCEEDED).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Exceeded"));
        assert_eq!(c.message, "120/100 tokens per hour (window hour:1)");
        assert_eq!(decision.events.len(), 1);
        assert_eq!(decision.events[0].reason, "BudgetExceeded");
        // Still spent at the next read: no second event.
        budget_condition(&mut decision, &usage(true));
        assert_eq!(decision.events.len(), 1);
        budget_condition(&mut decision, &usage(false));
        let c = conditions::get(&decision.status.conditions, condition::BUDGET_EXCEEDED).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "WithinBudget")
        );
        // The budget removed: so is the condition.
        budget_condition(&mut decision, &FeatureUsage::default());
        assert!(conditions::get(&decision.status.conditions, condition::BUDGET_EXCEEDED).is_none());
    }
}
