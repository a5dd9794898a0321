//! The shadow contract between the operator, the serving pods and the
//! candidate pods of a Feature whose switch runs with `strategy: Shadow`.
//!
//! - The operator starts the candidate configuration as pods of their own
//!   (no traffic reaches them through the Feature's Service) and sets the
//!   [`env`] variables below on them only.
//! - Each ready candidate pod publishes an [`Offer`] in Redis under
//!   [`offer_key`] (with a short expiry, refreshed while it serves), so the
//!   serving pods learn of it without a restart and stop when it is gone.
//! - A serving pod copies a sampled share of its successful calls, off the
//!   response path, to the candidate's [`SHADOW_PATH`] as a [`ShadowRequest`];
//!   the candidate runs the input in a keyspace of its own (no writes beside
//!   the feature's data), compares its output with the serving one under the
//!   operation's `Compare:` rule and answers a [`ShadowAnswer`]. A candidate
//!   that fails, times out or does not answer gives [`Verdict::Error`],
//!   counted as a disagreement.
//! - The serving pod is the only writer of the verdicts, in one atomic Redis
//!   transaction per sample (counts, the bounded list of disagreements, the
//!   sample itself with a TTL), under [`counts_key`], [`disagreements_key`]
//!   and [`samples_key`] of the offer's id.
//! - The operator reads the [`Tally`] from a ready candidate pod
//!   ([`TALLY_PATH`]); the candidate truncates or drops the inputs it shows
//!   there (`EOL_SHADOW_PREVIEW_BYTES`). The counts live in Redis, so an
//!   operator restart neither loses nor counts a sample twice.
//!
//! The shadow endpoints of a candidate ([`SHADOW_PATH`], [`TALLY_PATH`],
//! [`CANARY_PATH`]) answer only requests carrying the shadow's token in
//! [`TOKEN_HEADER`]: without it anyone reaching the pod could run its
//! operations past the Feature's auth, read the sampled inputs, or set the
//! canary share. The first candidate pod makes the token (random) under
//! [`token_key`], its other pods read it there, the serving pods get it in the
//! [`Offer`] and the operator reads it from Redis: whoever holds it could
//! write the verdicts in Redis anyway.
//!
//! A canary (`strategy: Canary`) is a shadow whose candidate also answers a
//! share of the live calls. The operator sets that share on the candidate
//! ([`CANARY_PATH`], a [`CanaryWeight`], on any one of its pods, which keeps it
//! under [`canary_key`]); every candidate pod publishes it in its offer
//! ([`Offer::canary_percent`]). A serving pod then forwards that share
//! of the calls of the operations covered to the candidate's own call
//! endpoint and returns its answer (header [`CANARY_HEADER`]). When the
//! candidate fails such a call (a 5xx, or no answer within the timeout) the
//! serving pod answers it itself, so callers see no error, and counts it as
//! [`CanaryOutcome::Failed`]: the error rate the canary is gated on. The
//! calls the serving pods answer themselves are still sampled and compared.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Environment variables the operator sets on candidate pods only.
pub mod env {
    /// The shadow's id (`<config>-<unix seconds it started>`): the verdicts' keys.
    pub const ID: &str = "EOL_SHADOW_ID";
    /// The candidate's own base URL, as serving pods reach it (its Service).
    pub const URL: &str = "EOL_SHADOW_URL";
    /// Share of the serving calls copied to the candidate, in percent (0-100).
    pub const SAMPLE_PERCENT: &str = "EOL_SHADOW_SAMPLE_PERCENT";
    /// Operations to shadow, comma-separated; empty or unset: every operation.
    pub const OPERATIONS: &str = "EOL_SHADOW_OPERATIONS";
    /// Bytes of each input (and output) shown in the tally; 0: none at all.
    pub const PREVIEW_BYTES: &str = "EOL_SHADOW_PREVIEW_BYTES";
    /// Disagreements kept per operation (the newest).
    pub const MAX_DISAGREEMENTS: &str = "EOL_SHADOW_MAX_DISAGREEMENTS";
    /// Seconds the verdicts and sampled inputs stay in Redis.
    pub const TTL_SECONDS: &str = "EOL_SHADOW_TTL_SECONDS";
    /// Seconds a serving pod waits for the candidate's answer before counting an error.
    pub const TIMEOUT_SECONDS: &str = "EOL_SHADOW_TIMEOUT_SECONDS";
}

/// The candidate's endpoint for a copied call: `POST /v1/shadow/{operation}`.
pub const SHADOW_PATH: &str = "/v1/shadow/{operation}";
/// The candidate's tally of its shadow: `GET`, a [`Tally`].
pub const TALLY_PATH: &str = "/v1/shadow/tally";
/// The candidate's share of live calls: `PUT` a [`CanaryWeight`]; it answers
/// the [`Offer`] it now publishes, or 409 when the id is not its own.
pub const CANARY_PATH: &str = "/v1/shadow/canary";
/// The response header a serving pod sets on a call the candidate answered:
/// the shadow's id.
pub const CANARY_HEADER: &str = "x-eol-canary";
/// Seconds an offer lives in Redis unless refreshed.
pub const OFFER_TTL_SECONDS: u64 = 15;
/// How often a ready candidate refreshes its offer.
pub const OFFER_REFRESH_SECONDS: u64 = 5;

/// Where a feature's candidate publishes its [`Offer`] (`feature`: the `.eol` name).
pub fn offer_key(feature: &str) -> String {
    format!("eol:{feature}:shadow:offer")
}

/// The hash of verdict counts of shadow `id`: field `<operation>:<verdict>`.
pub fn counts_key(feature: &str, id: &str) -> String {
    format!("eol:{feature}:shadow:{id}:counts")
}

/// The field of [`counts_key`] counting `verdict` for `operation`.
pub fn count_field(operation: &str, verdict: Verdict) -> String {
    format!("{operation}:{}", verdict.as_str())
}

/// The field of [`counts_key`] counting canary `outcome` for `operation`.
pub fn canary_field(operation: &str, outcome: CanaryOutcome) -> String {
    format!("{operation}:{}", outcome.as_str())
}

/// The list (newest first, bounded) of [`Disagreement`]s of `operation` in shadow `id`.
pub fn disagreements_key(feature: &str, id: &str, operation: &str) -> String {
    format!("eol:{feature}:shadow:{id}:disagreements:{operation}")
}

/// The list (newest first, bounded) of every [`Sample`] of shadow `id`, with a TTL.
pub fn samples_key(feature: &str, id: &str) -> String {
    format!("eol:{feature}:shadow:{id}:samples")
}

/// The canary share of shadow `id` (percent, as text), written by the
/// candidate pod the operator set it on and read by every candidate pod when
/// it publishes the offer: all of them offer the same share, and a restarted
/// one keeps it.
pub fn canary_key(feature: &str, id: &str) -> String {
    format!("eol:{feature}:shadow:{id}:canary")
}

/// The token of shadow `id` ([`TOKEN_HEADER`]), set by its first candidate
/// pod (`SET NX`) and kept as long as its verdicts.
pub fn token_key(feature: &str, id: &str) -> String {
    format!("eol:{feature}:shadow:{id}:token")
}

/// The request header carrying the shadow's token to a candidate's shadow
/// endpoints; a request without the right one is answered 401.
pub const TOKEN_HEADER: &str = "x-eol-shadow-token";

/// A shadow's token: compared, sent, never shown (`Debug` hides it).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShadowToken(pub String);

impl ShadowToken {
    /// Whether there is no token (none read or sent yet).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `presented` is this token (an empty token matches nothing).
    /// The SHA-256 digests are compared, so the time taken says nothing of
    /// how much of the token a guess got right.
    pub fn matches(&self, presented: Option<&str>) -> bool {
        use sha2::{Digest, Sha256};
        match presented {
            Some(p) if !self.is_empty() => {
                Sha256::digest(p.as_bytes()) == Sha256::digest(self.0.as_bytes())
            }
            _ => false,
        }
    }
}

impl std::fmt::Debug for ShadowToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_empty() {
            "ShadowToken(none)"
        } else {
            "ShadowToken(<hidden>)"
        })
    }
}

/// Samples kept in [`samples_key`] (the counts are exact whatever this bound).
pub const MAX_SAMPLES_KEPT: usize = 1000;

/// What a ready candidate publishes (JSON) under [`offer_key`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Offer {
    /// The shadow's id ([`env::ID`]).
    pub id: String,
    /// The candidate's base URL ([`env::URL`]).
    pub url: String,
    /// Share of calls to copy, in percent.
    pub sample_percent: f64,
    /// Operations to copy; empty: all.
    #[serde(default)]
    pub operations: Vec<String>,
    /// Disagreements kept per operation.
    pub max_disagreements: usize,
    /// Seconds the verdicts and samples stay in Redis.
    pub ttl_seconds: u64,
    /// Seconds to wait for the candidate's answer.
    pub timeout_seconds: f64,
    /// Share of the live calls of the operations covered that the candidate
    /// answers itself, in percent (0-100; 0: a shadow only).
    #[serde(default)]
    pub canary_percent: f64,
    /// The shadow's token, for the serving pods to send with their copies.
    #[serde(default)]
    pub token: ShadowToken,
}

impl Offer {
    /// Whether calls of `operation` are copied.
    pub fn covers(&self, operation: &str) -> bool {
        self.operations.is_empty() || self.operations.iter().any(|o| o == operation)
    }
}

/// What the operator `PUT`s to [`CANARY_PATH`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryWeight {
    /// The shadow's id: a candidate refuses a weight meant for another.
    pub id: String,
    /// Share of the live calls the candidate answers, in percent (0-100).
    pub percent: f64,
}

/// What became of a live call forwarded to a canary candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CanaryOutcome {
    /// Forwarded to the candidate (whatever came of it): the error rate's denominator.
    Routed,
    /// The candidate answered a 5xx or nothing within the timeout; the serving pod answered instead.
    Failed,
}

impl CanaryOutcome {
    /// The outcome as written in keys (`canary_routed`, `canary_failed`) and metrics (`routed`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Routed => "canary_routed",
            Self::Failed => "canary_failed",
        }
    }
}

/// A copied call, as the serving pod sends it to [`SHADOW_PATH`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowRequest {
    /// The input the serving pod answered.
    pub input: Value,
    /// The serving pod's output.
    pub output: Value,
    /// The shadow the copy is for ([`Offer::id`]): a pod of another
    /// candidate behind the same Service (one still stopping, which the
    /// Service may route to while the new one is not ready) answers
    /// [`WRONG_CANDIDATE`] instead of a verdict that is not this one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// The HTTP status a candidate answers a copy meant for another shadow
/// ([`ShadowRequest::id`]), or a canary call whose [`SHADOW_ID_HEADER`]
/// names another shadow: 409 Conflict.
pub const WRONG_CANDIDATE: u16 = 409;

/// The header a serving pod puts on a call it forwards to a canary: the
/// shadow's id, which a pod of another candidate refuses ([`WRONG_CANDIDATE`]).
pub const SHADOW_ID_HEADER: &str = "x-eol-shadow-id";

/// How one copied call compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The candidate's output agrees with the serving one.
    Agree,
    /// It does not.
    Disagree,
    /// The candidate failed, timed out or gave no answer.
    Error,
}

impl Verdict {
    /// The verdict as written in metrics and keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agree => "agree",
            Self::Disagree => "disagree",
            Self::Error => "error",
        }
    }
}

/// One difference, as the candidate reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDifference {
    /// The field's path (`""`: the whole output).
    pub path: String,
    /// Why they differ.
    pub reason: String,
}

/// The candidate's answer to a [`ShadowRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowAnswer {
    /// Agree, disagree, or error (the candidate's run failed).
    pub verdict: Verdict,
    /// The candidate's output, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The fields that differ.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<FieldDifference>,
    /// Why the candidate failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A sample as kept in Redis ([`samples_key`], and [`disagreements_key`] when it disagreed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// The operation.
    pub operation: String,
    /// When it was compared (RFC 3339).
    pub at: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The input.
    pub input: Value,
    /// The serving pod's output.
    pub serving: Value,
    /// The candidate's output, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<Value>,
    /// The fields that differ.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<FieldDifference>,
    /// Why the candidate failed (verdict `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A disagreement as the tally shows it: inputs and outputs as truncated
/// previews (none when the preview size is 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Disagreement {
    /// The operation.
    pub operation: String,
    /// When it was compared (RFC 3339).
    pub at: String,
    /// `disagree`, or `error`.
    pub verdict: Verdict,
    /// The input's JSON, truncated to the preview size; absent when redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// The serving output's JSON, truncated; absent when redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<String>,
    /// The candidate output's JSON, truncated; absent when redacted or when it gave none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// What differs (`path: reason; ...`) or why the candidate failed, truncated to 256 bytes.
    pub reason: String,
}

/// The counts of one operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationTally {
    /// The operation.
    pub operation: String,
    /// Samples that agreed.
    pub agree: u64,
    /// Samples that disagreed.
    pub disagree: u64,
    /// Samples on which the candidate failed (counted as disagreements).
    pub error: u64,
    /// Live calls forwarded to a canary candidate.
    #[serde(default)]
    pub canary_routed: u64,
    /// Of those, the calls it failed.
    #[serde(default)]
    pub canary_failed: u64,
}

impl OperationTally {
    /// Every sample.
    pub fn samples(&self) -> u64 {
        self.agree + self.disagree + self.error
    }
}

/// What [`TALLY_PATH`] answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    /// The shadow's id.
    pub id: String,
    /// Counts per operation that has samples, by name.
    pub operations: Vec<OperationTally>,
    /// The newest disagreements, newest first, at most `EOL_SHADOW_MAX_DISAGREEMENTS` per operation.
    pub disagreements: Vec<Disagreement>,
}

/// `text` cut to at most `max` bytes on a character boundary, with `…` when cut.
pub fn preview(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shadow-only offer of every operation, with `token`.
    fn offer(token: ShadowToken) -> Offer {
        Offer {
            id: "c-1".into(),
            url: "http://x".into(),
            sample_percent: 10.0,
            operations: Vec::new(),
            max_disagreements: 5,
            ttl_seconds: 60,
            timeout_seconds: 5.0,
            canary_percent: 0.0,
            token,
        }
    }

    #[test]
    fn a_preview_is_cut_on_a_character_boundary() {
        assert_eq!(preview("abc", 3), "abc");
        assert_eq!(preview("abcdef", 3), "abc…");
        // "é" is two bytes: cutting inside it steps back.
        assert_eq!(preview("aé", 2), "a…");
    }

    #[test]
    fn an_offer_without_operations_covers_every_operation() {
        let mut offer = offer(ShadowToken::default());
        assert!(offer.covers("any"));
        offer.operations = vec!["a".into()];
        assert!(offer.covers("a") && !offer.covers("b"));
    }

    #[test]
    fn an_offer_from_before_canaries_reads_as_a_shadow_only() {
        let offer: Offer = serde_json::from_str(
            r#"{"id":"c-1","url":"http://x","samplePercent":10,"maxDisagreements":5,"ttlSeconds":60,"timeoutSeconds":5}"#,
        )
        .expect("an offer");
        assert_eq!(offer.canary_percent, 0.0);
        assert_eq!(offer.token, ShadowToken::default(), "and without a token");
        assert_eq!(
            canary_field("op", CanaryOutcome::Failed),
            "op:canary_failed"
        );
    }

    /// A token matches itself only; an empty one nothing; it travels as a
    /// plain string in the offer and never shows in `Debug`.
    #[test]
    fn a_token_matches_only_itself_and_is_never_shown() {
        let token = ShadowToken("s3cret-token".into());
        assert!(token.matches(Some("s3cret-token")));
        assert!(!token.matches(Some("s3cret-tokeN")));
        assert!(!token.matches(Some("")));
        assert!(!token.matches(None));
        assert!(!ShadowToken::default().matches(Some("")));
        let offer = offer(token.clone());
        let json = serde_json::to_value(&offer).expect("json");
        assert_eq!(json["token"], "s3cret-token");
        assert!(!format!("{offer:?}").contains("s3cret"), "{offer:?}");
    }
}
