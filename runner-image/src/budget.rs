//! A feature's budget, enforced by every replica against one Redis hash per
//! window (`eol:<feature>:budget:<window>`, e.g. `…:budget:day:20425`).
//!
//! Before a prototyped call asks the model, one `HMGET` reads what the window
//! has spent; each reply then adds its tokens and cost to the same hash (in
//! the pipeline that counts the usage). So the budget can be overshot only by
//! the calls already in flight when it is reached, never by later ones. A new
//! window is a new hash: the budget resets at the window's edge, and the old
//! hash expires a day after it.
//!
//! When Redis cannot be read, the call goes on (logged): a budget check that
//! fails closed would turn a Redis outage into a model outage.

use crate::spend::Spend;
use crate::store::{RedisStore, key_prefix};
use eol_core::cost::{Budget, BudgetSpend, BudgetState, OnExceeded};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a window's hash outlives the window (for `status.usage` and post-mortems).
const KEPT_AFTER: u64 = 86_400;
/// The most time the budget check may add to a call.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A spent budget, as a call sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    /// What the call does instead.
    pub on_exceeded: OnExceeded,
    /// Seconds until the window ends and the budget resets.
    pub retry_after: u64,
    /// What was spent of what, e.g. `120/100 tokens per hour`.
    pub summary: String,
}

/// One feature's budget on its Redis.
pub struct BudgetGate {
    budget: Budget,
    feature: String,
    store: Arc<RedisStore>,
}

impl std::fmt::Debug for BudgetGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetGate")
            .field("budget", &self.budget)
            .field("feature", &self.feature)
            .finish_non_exhaustive()
    }
}

impl BudgetGate {
    /// `budget` for `feature`, counted in `store`.
    pub fn new(budget: Budget, feature: &str, store: Arc<RedisStore>) -> Self {
        Self {
            budget,
            feature: feature.to_owned(),
            store,
        }
    }

    /// The budget.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The feature.
    pub fn feature(&self) -> &str {
        &self.feature
    }

    /// The Redis it is counted in.
    pub(crate) fn store(&self) -> &Arc<RedisStore> {
        &self.store
    }

    /// The hash of the window holding `at`, and the seconds left in the window.
    fn window(&self, at: u64) -> (String, String, u64) {
        let (window, left) = self.budget.per.at(at);
        let key = format!("{}budget:{window}", key_prefix(&self.feature));
        (key, window, left)
    }

    /// Adds `spend` to the window holding `at`, in `pipe`.
    pub(crate) fn add(&self, pipe: &mut redis::Pipeline, at: u64, spend: &Spend) {
        let (key, _, left) = self.window(at);
        pipe.hincr(&key, "tokens", spend.usage.total())
            .hincr(&key, "cost_nanos", spend.cost_nanos.unwrap_or(0))
            .expire(&key, (left + KEPT_AFTER) as i64)
            .ignore();
    }

    /// The window holding `at`: what it spent, and whether that is the budget.
    pub async fn state_at(
        &self,
        at: u64,
    ) -> Result<BudgetState, Box<dyn std::error::Error + Send + Sync>> {
        let (key, window, _) = self.window(at);
        let mut conn = self.store.connection().await?;
        let (tokens, cost_nanos): (Option<i64>, Option<u64>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("tokens")
            .arg("cost_nanos")
            .query_async(&mut conn)
            .await?;
        let spent = BudgetSpend {
            tokens: tokens.unwrap_or(0),
            cost_nanos: cost_nanos.unwrap_or(0),
        };
        Ok(BudgetState {
            window,
            spent,
            exceeded: self.budget.spent_by(&spent),
            summary: self.budget.describe(&spent),
        })
    }

    /// The current window's state.
    pub async fn state(&self) -> Result<BudgetState, Box<dyn std::error::Error + Send + Sync>> {
        self.state_at(unix_now()).await
    }

    /// Whether a call may ask the model now: `Some` when the budget is spent.
    pub async fn exceeded(&self, operation: &str) -> Option<Exceeded> {
        let at = unix_now();
        let state = match tokio::time::timeout(CHECK_TIMEOUT, self.state_at(at)).await {
            Ok(Ok(state)) => state,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, feature = %self.feature, operation, "failed to read the budget; the call goes on");
                return None;
            }
            Err(_) => {
                tracing::warn!(feature = %self.feature, operation, "the budget was not read within {CHECK_TIMEOUT:?}; the call goes on");
                return None;
            }
        };
        state.exceeded.then(|| Exceeded {
            on_exceeded: self.budget.on_exceeded,
            retry_after: self.window(at).2,
            summary: state.summary,
        })
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
