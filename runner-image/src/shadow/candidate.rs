//! The candidate pod of a shadow: it publishes its [`Offer`](eol_core::shadow::Offer)
//! while ready, answers copied calls ([`Candidate::answer`]) and shows the
//! verdicts the serving pods recorded ([`Candidate::tally`]).

use super::CandidateSettings;
use crate::compare::{self, TextComparer};
use crate::engine::Runtime;
use crate::store::{RedisStore, StoreError};
use crate::testing::TestKeyspace;
use eol_core::Operation;
use eol_core::shadow::{
    Disagreement, FieldDifference, OFFER_REFRESH_SECONDS, OFFER_TTL_SECONDS, OperationTally,
    Sample, ShadowAnswer, ShadowRequest, Tally, Verdict, counts_key, disagreements_key, offer_key,
    preview,
};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Bytes of a disagreement's reason shown in the tally.
pub const REASON_BYTES: usize = 256;

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

/// This pod as a shadow candidate.
pub struct Candidate {
    settings: CandidateSettings,
    /// How free text is compared: made on the first copied call (loading an
    /// embedding model is slow and most outputs never need it).
    texts: OnceCell<TextComparer>,
    /// Set once the pod shuts down: the offer is withdrawn and not published again.
    withdrawn: std::sync::atomic::AtomicBool,
}

impl Candidate {
    /// A candidate with `settings`.
    pub fn new(settings: CandidateSettings) -> Self {
        Self {
            settings,
            texts: OnceCell::new(),
            withdrawn: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Its settings.
    pub fn settings(&self) -> &CandidateSettings {
        &self.settings
    }

    /// Publishes the offer every [`OFFER_REFRESH_SECONDS`] once `ready()` holds,
    /// for ever; a Redis failure is logged and retried at the next tick.
    pub async fn publish_offers(&self, runtime: &Runtime, ready: impl Fn() -> bool) {
        let key = offer_key(runtime.feature().name());
        let offer = match serde_json::to_string(&self.settings.offer()) {
            Ok(offer) => offer,
            Err(error) => {
                tracing::error!(%error, "the shadow offer cannot be written as JSON");
                return;
            }
        };
        loop {
            if self.withdrawn.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            if !ready() {
                // Readiness settles once the tests ran: check often until then.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            if let Err(error) = publish(runtime.store(), &key, &offer).await {
                tracing::warn!(%error, key, "failed to publish the shadow offer; retrying");
            }
            tokio::time::sleep(Duration::from_secs(OFFER_REFRESH_SECONDS)).await;
        }
    }

    /// Withdraws the offer when the pod shuts down (the shadow ended, or the
    /// pod is replaced), so that serving pods stop copying at their next poll
    /// rather than count errors until the offer expires. Only this
    /// candidate's own offer is deleted (compared in one script), and none is
    /// published afterwards.
    pub async fn withdraw(&self, runtime: &Runtime) {
        self.withdrawn
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let Ok(offer) = serde_json::to_string(&self.settings.offer()) else {
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

async fn publish(store: &RedisStore, key: &str, offer: &str) -> Result<(), String> {
    let mut conn = store.connection().await.map_err(|e| e.to_string())?;
    redis::cmd("SET")
        .arg(key)
        .arg(offer)
        .arg("EX")
        .arg(OFFER_TTL_SECONDS)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| e.to_string())
}

/// The counts of each operation in a counts hash (fields `<operation>:<verdict>`),
/// by operation name; fields of another shape are passed over.
pub fn operation_tallies(counts: &HashMap<String, u64>) -> Vec<OperationTally> {
    let mut by_operation: BTreeMap<&str, OperationTally> = BTreeMap::new();
    for (field, n) in counts {
        let Some((operation, verdict)) = field.rsplit_once(':') else {
            continue;
        };
        let tally = by_operation
            .entry(operation)
            .or_insert_with(|| OperationTally {
                operation: operation.to_owned(),
                ..OperationTally::default()
            });
        match verdict {
            "agree" => tally.agree += n,
            "disagree" => tally.disagree += n,
            "error" => tally.error += n,
            _ => {}
        }
    }
    by_operation.into_values().collect()
}

/// `sample` as the tally shows it: previews of `preview_bytes` (none at 0)
/// and the reason cut to [`REASON_BYTES`].
pub fn disagreement(sample: &Sample, preview_bytes: usize) -> Disagreement {
    let shown =
        |v: &serde_json::Value| (preview_bytes > 0).then(|| preview(&v.to_string(), preview_bytes));
    let reason = match &sample.error {
        Some(error) => error.clone(),
        None => sample
            .differences
            .iter()
            .map(|d| format!("{}: {}", d.path, d.reason))
            .collect::<Vec<_>>()
            .join("; "),
    };
    Disagreement {
        operation: sample.operation.clone(),
        at: sample.at.clone(),
        verdict: sample.verdict,
        input: shown(&sample.input),
        serving: shown(&sample.serving),
        candidate: sample.candidate.as_ref().and_then(shown),
        reason: preview(&reason, REASON_BYTES),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Sample {
        Sample {
            operation: "score".into(),
            at: "2025-01-01T00:00:00.000Z".into(),
            verdict: Verdict::Disagree,
            input: json!({"text": "a rather long input"}),
            serving: json!({"n": 1}),
            candidate: Some(json!({"n": 2})),
            differences: vec![
                FieldDifference {
                    path: "n".into(),
                    reason: "1 != 2".into(),
                },
                FieldDifference {
                    path: "".into(),
                    reason: "whole".into(),
                },
            ],
            error: None,
        }
    }

    #[test]
    fn a_disagreement_shows_previews_and_the_differences() {
        let shown = disagreement(&sample(), 10);
        assert_eq!(shown.input.as_deref(), Some("{\"text\":\"a…"));
        assert_eq!(shown.serving.as_deref(), Some("{\"n\":1}"));
        assert_eq!(shown.candidate.as_deref(), Some("{\"n\":2}"));
        assert_eq!(shown.reason, "n: 1 != 2; : whole");
    }

    #[test]
    fn with_no_preview_bytes_no_input_or_output_is_shown() {
        let shown = disagreement(&sample(), 0);
        assert_eq!(
            (shown.input, shown.serving, shown.candidate),
            (None, None, None)
        );
    }

    #[test]
    fn an_error_is_the_reason_cut_to_its_bound() {
        let mut failed = sample();
        failed.verdict = Verdict::Error;
        failed.candidate = None;
        failed.error = Some("x".repeat(300));
        let shown = disagreement(&failed, 256);
        assert_eq!(shown.candidate, None);
        assert_eq!(shown.reason, format!("{}…", "x".repeat(REASON_BYTES)));
    }

    #[test]
    fn counts_are_grouped_by_operation_in_name_order() {
        let counts: HashMap<String, u64> = [
            ("b:agree", 3),
            ("a:disagree", 1),
            ("a:agree", 2),
            ("a:error", 4),
            ("junk", 9),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let tallies = operation_tallies(&counts);
        assert_eq!(
            tallies,
            vec![
                OperationTally {
                    operation: "a".into(),
                    agree: 2,
                    disagree: 1,
                    error: 4,
                },
                OperationTally {
                    operation: "b".into(),
                    agree: 3,
                    ..OperationTally::default()
                },
            ]
        );
    }
}
