//! The candidate pod of a shadow: it publishes its [`Offer`] while ready
//! (with the canary share the operator sets, [`Candidate::set_canary`]),
//! answers copied calls ([`Candidate::answer`]) and shows the verdicts and
//! canary counts the serving pods recorded ([`Candidate::tally`]).

use super::CandidateSettings;
pub use super::tally::{REASON_BYTES, disagreement, operation_tallies};
use crate::compare::{self, TextComparer};
use crate::engine::Runtime;
use crate::store::StoreError;
use crate::testing::TestKeyspace;
use eol_core::Operation;
use eol_core::shadow::{
    CanaryWeight, FieldDifference, OFFER_REFRESH_SECONDS, OFFER_TTL_SECONDS, Offer, Sample,
    ShadowAnswer, ShadowRequest, ShadowToken, Tally, Verdict, canary_key, counts_key,
    disagreements_key, offer_key, token_key,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, OnceCell};

/// Why the tally could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TallyError {
    /// Redis could not be reached.
    #[error("failed to reach Redis for the tally of shadow '{id}': {source}")]
    Store {
        /// The shadow.
        id: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// Redis refused or failed a read.
    #[error("failed to read {key} for the tally of shadow '{id}': {source}")]
    Command {
        /// The shadow.
        id: String,
        /// The key read.
        key: String,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },
}

/// Why a canary weight was refused or not published.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    /// The percent is not a finite number from 0 to 100.
    #[error("the canary percent must be a number from 0 to 100, not {0}")]
    Percent(f64),
    /// The weight is meant for another shadow.
    #[error("this candidate is shadow '{ours}', not '{theirs}': the weight is for another shadow")]
    WrongShadow {
        /// This candidate's id.
        ours: String,
        /// The id in the weight.
        theirs: String,
    },
    /// The weight is kept but the offer could not be written to Redis.
    #[error(
        "the canary weight is kept but the offer could not be published (the periodic publisher retries): {0}"
    )]
    Publish(String),
}

/// This pod as a shadow candidate.
pub struct Candidate {
    settings: CandidateSettings,
    /// How free text is compared: made on the first copied call (loading an
    /// embedding model is slow and most outputs never need it).
    texts: OnceCell<TextComparer>,
    /// Set once the pod shuts down: the offer is withdrawn and not published again.
    withdrawn: AtomicBool,
    /// The canary share of live calls, in percent, as `f64` bits (0 until the
    /// operator sets one: a candidate starts as a shadow only).
    canary_percent: AtomicU64,
    /// The offer last published (JSON). Held while publishing, so that the
    /// periodic refresh and a new canary weight never overwrite each other
    /// with an older percent, and the withdrawal deletes exactly what was published.
    published: Mutex<Option<String>>,
    /// The shadow's token as last read from Redis (empty until then): the
    /// shadow endpoints answer only requests that carry it.
    token: std::sync::RwLock<ShadowToken>,
}

impl Candidate {
    /// A candidate with `settings`.
    pub fn new(settings: CandidateSettings) -> Self {
        Self {
            settings,
            texts: OnceCell::new(),
            withdrawn: AtomicBool::new(false),
            canary_percent: AtomicU64::new(0f64.to_bits()),
            published: Mutex::new(None),
            token: std::sync::RwLock::new(ShadowToken::default()),
        }
    }

    /// Its settings.
    pub fn settings(&self) -> &CandidateSettings {
        &self.settings
    }

    /// The canary share of live calls now, in percent.
    pub fn canary_percent(&self) -> f64 {
        f64::from_bits(self.canary_percent.load(Ordering::Relaxed))
    }

    /// The offer this candidate publishes now: its settings and canary share.
    pub fn offer(&self) -> Offer {
        Offer {
            canary_percent: self.canary_percent(),
            token: self.cached_token(),
            ..self.settings.offer()
        }
    }

    fn cached_token(&self) -> ShadowToken {
        self.token.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// The shadow's token, read from Redis (and made there by the first of
    /// the candidate's pods to ask) unless this pod has it already.
    pub async fn token(&self, runtime: &Runtime) -> Result<ShadowToken, String> {
        let cached = self.cached_token();
        if !cached.is_empty() {
            return Ok(cached);
        }
        let mut conn = runtime
            .store()
            .connection()
            .await
            .map_err(|e| e.to_string())?;
        self.refresh_token(runtime, &mut conn).await
    }

    /// Makes the shadow's token under [`token_key`] when none is there yet
    /// (`SET NX`: the candidate's pods agree on the first), pushes its expiry
    /// back to the verdicts' and keeps it.
    async fn refresh_token(
        &self,
        runtime: &Runtime,
        conn: &mut redis::aio::ConnectionManager,
    ) -> Result<ShadowToken, String> {
        let key = token_key(runtime.feature().name(), &self.settings.id);
        let ttl = self.settings.ttl_seconds.max(1);
        let fresh = format!(
            "{:032x}{:032x}",
            rand::random::<u128>(),
            rand::random::<u128>()
        );
        redis::cmd("SET")
            .arg(&key)
            .arg(&fresh)
            .arg("NX")
            .arg("EX")
            .arg(ttl)
            .query_async::<()>(conn)
            .await
            .map_err(|e| format!("{key}: {e}"))?;
        let token: Option<String> = redis::cmd("GETEX")
            .arg(&key)
            .arg("EX")
            .arg(ttl)
            .query_async(conn)
            .await
            .map_err(|e| format!("{key}: {e}"))?;
        let token = ShadowToken(
            token.ok_or_else(|| format!("{key}: the token was gone as soon as it was set"))?,
        );
        if let Ok(mut cached) = self.token.write() {
            cached.clone_from(&token);
        }
        Ok(token)
    }

    /// Publishes the offer every [`OFFER_REFRESH_SECONDS`] once `ready()` holds,
    /// for ever; a Redis failure is logged and retried at the next tick.
    pub async fn publish_offers(&self, runtime: &Runtime, ready: impl Fn() -> bool) {
        loop {
            if self.withdrawn.load(Ordering::Relaxed) {
                return;
            }
            if !ready() {
                // Readiness settles once the tests ran: check often until then.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            if let Err(error) = self.publish(runtime).await {
                tracing::warn!(%error, "failed to publish the shadow offer; retrying");
            }
            tokio::time::sleep(Duration::from_secs(OFFER_REFRESH_SECONDS)).await;
        }
    }

    /// Writes the current offer under [`offer_key`] with [`OFFER_TTL_SECONDS`];
    /// after the withdrawal, writes nothing.
    async fn publish(&self, runtime: &Runtime) -> Result<Offer, String> {
        let mut published = self.published.lock().await;
        if self.withdrawn.load(Ordering::Relaxed) {
            return Err("the candidate is shutting down: its offer is withdrawn".into());
        }
        let key = offer_key(runtime.feature().name());
        let mut conn = runtime
            .store()
            .connection()
            .await
            .map_err(|e| format!("{key}: {e}"))?;
        // The share the operator set on any of the candidate's pods: all of
        // them offer the same, and a restarted pod keeps it.
        let shared = canary_key(runtime.feature().name(), &self.settings.id);
        let percent: Option<String> = redis::cmd("GET")
            .arg(&shared)
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("{shared}: {e}"))?;
        if let Some(percent) = percent.and_then(|p| p.parse::<f64>().ok())
            && (0.0..=100.0).contains(&percent)
        {
            self.canary_percent
                .store(percent.to_bits(), Ordering::Relaxed);
        }
        self.refresh_token(runtime, &mut conn).await?;
        let offer = self.offer();
        let json = serde_json::to_string(&offer)
            .map_err(|e| format!("the shadow offer cannot be written as JSON: {e}"))?;
        redis::cmd("SET")
            .arg(&key)
            .arg(&json)
            .arg("EX")
            .arg(OFFER_TTL_SECONDS)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| format!("{key}: {e}"))?;
        *published = Some(json);
        Ok(offer)
    }

    /// Sets the canary share from the operator's `weight` and, when `ready`,
    /// publishes the offer at once (serving pods see it at their next poll);
    /// when not ready the periodic publisher carries it once ready. Answers
    /// the offer with the new share.
    pub async fn set_canary(
        &self,
        runtime: &Runtime,
        weight: &CanaryWeight,
        ready: bool,
    ) -> Result<Offer, CanaryError> {
        if !(weight.percent.is_finite() && (0.0..=100.0).contains(&weight.percent)) {
            return Err(CanaryError::Percent(weight.percent));
        }
        if weight.id != self.settings.id {
            return Err(CanaryError::WrongShadow {
                ours: self.settings.id.clone(),
                theirs: weight.id.clone(),
            });
        }
        self.canary_percent
            .store(weight.percent.to_bits(), Ordering::Relaxed);
        tracing::info!(id = %weight.id, percent = weight.percent, ready, "canary share set");
        // Kept for the candidate's other pods, which read it when they publish.
        let shared = canary_key(runtime.feature().name(), &self.settings.id);
        let stored = async {
            let mut conn = runtime
                .store()
                .connection()
                .await
                .map_err(|e| e.to_string())?;
            redis::cmd("SET")
                .arg(&shared)
                .arg(weight.percent.to_string())
                .arg("EX")
                .arg(self.settings.ttl_seconds.max(1))
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        stored
            .await
            .map_err(|e| CanaryError::Publish(format!("{shared}: {e}")))?;
        if !ready {
            return Ok(self.offer());
        }
        self.publish(runtime).await.map_err(CanaryError::Publish)
    }

    /// Withdraws the offer when the pod shuts down (the shadow ended, or the
    /// pod is replaced), so that serving pods stop copying at their next poll
    /// rather than count errors until the offer expires. Only this
    /// candidate's own offer, as last published, is deleted (compared in one
    /// script), and none is published afterwards.
    pub async fn withdraw(&self, runtime: &Runtime) {
        let published = self.published.lock().await;
        self.withdrawn.store(true, Ordering::Relaxed);
        let Some(offer) = published.clone() else {
            return;
        };
        let key = offer_key(runtime.feature().name());
        let script = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
        let result = match runtime.store().connection().await {
            Ok(mut conn) => redis::cmd("EVAL")
                .arg(script)
                .arg(1)
                .arg(&key)
                .arg(&offer)
                .query_async::<i64>(&mut conn)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(n) => tracing::info!(key, withdrawn = n == 1, "shadow offer withdrawn"),
            Err(error) => {
                tracing::warn!(%error, key, "failed to withdraw the shadow offer; it expires by itself")
            }
        }
    }

    /// Runs a copied call of `op` in this candidate's own configuration, in a
    /// scratch keyspace that is cleared afterwards, and compares its output
    /// with the serving one. A failed run is the verdict `error`, not an
    /// error of the endpoint: the serving pod records it.
    pub async fn answer(
        &self,
        runtime: &Runtime,
        op: &Operation,
        request: &ShadowRequest,
    ) -> ShadowAnswer {
        // Reads see the feature's data; writes stay in the scratch keys.
        let keyspace = TestKeyspace::reading_through(runtime.feature().name());
        let run = runtime
            .execute_unrecorded(keyspace.scope(), &op.name, &request.input, None)
            .await;
        keyspace.clear(runtime.store()).await;
        let output = match run {
            Ok(exec) => exec.output,
            Err(e) => return failed(None, e.to_string()),
        };
        let texts = self.texts.get_or_init(TextComparer::from_env).await;
        match compare::differences(runtime, op, &request.input, &request.output, &output, texts)
            .await
        {
            Ok(diffs) => ShadowAnswer {
                verdict: if diffs.is_empty() {
                    Verdict::Agree
                } else {
                    Verdict::Disagree
                },
                output: Some(output),
                differences: diffs
                    .into_iter()
                    .map(|d| FieldDifference {
                        path: d.path,
                        reason: d.reason,
                    })
                    .collect(),
                error: None,
            },
            Err(why) => failed(Some(output), why),
        }
    }

    /// The verdicts the serving pods recorded for this shadow: counts per
    /// operation and the newest disagreements, as previews.
    pub async fn tally(&self, runtime: &Runtime) -> Result<Tally, TallyError> {
        let feature = runtime.feature().name();
        let id = &self.settings.id;
        let mut conn = runtime
            .store()
            .connection()
            .await
            .map_err(|source| TallyError::Store {
                id: id.clone(),
                source,
            })?;
        let key = counts_key(feature, id);
        let counts: HashMap<String, u64> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(|source| TallyError::Command {
                id: id.clone(),
                key,
                source,
            })?;
        let operations = operation_tallies(&counts);
        let mut disagreements = Vec::new();
        let kept = isize::try_from(self.settings.max_disagreements).unwrap_or(isize::MAX);
        for op in &operations {
            if kept == 0 {
                break;
            }
            let key = disagreements_key(feature, id, &op.operation);
            let entries: Vec<String> = redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(kept - 1)
                .query_async(&mut conn)
                .await
                .map_err(|source| TallyError::Command {
                    id: id.clone(),
                    key: key.clone(),
                    source,
                })?;
            disagreements.extend(
                entries
                    .iter()
                    .filter_map(|e| serde_json::from_str::<Sample>(e).ok())
                    .map(|s| disagreement(&s, self.settings.preview_bytes)),
            );
        }
        // Timestamps are fixed-width RFC 3339: newest first as text.
        disagreements.sort_by(|a, b| b.at.cmp(&a.at));
        Ok(Tally {
            id: id.clone(),
            operations,
            disagreements,
        })
    }
}

/// The answer of a candidate whose run or comparison failed.
fn failed(output: Option<serde_json::Value>, why: String) -> ShadowAnswer {
    ShadowAnswer {
        verdict: Verdict::Error,
        output,
        differences: Vec::new(),
        error: Some(why),
    }
}
