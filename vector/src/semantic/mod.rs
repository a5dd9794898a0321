//! The semantic cache of prototyped calls: an answer the model gave for one
//! input is reused for a later input that means the same.
//!
//! Each entry is a Redis HASH indexed by RediSearch (one index per embedding
//! dimension, `eol-semantic-<dims>`): tags `feature`, `operation`, `phase`,
//! `model`, `embedder` and `source_hash` (the hash of the feature's source: a
//! changed feature never reuses old answers), a `scope` tag (a hash of those
//! six values), the prompt text (the canonical JSON of the input) and its
//! embedding, the answer (JSON) and the structured input (canonical JSON).
//! Every entry expires after the TTL.
//!
//! # When a lookup hits
//!
//! [`SemanticCache::lookup`] embeds the input's canonical JSON and sends one
//! `FT.SEARCH` (DIALECT 2): the 3 nearest entries whose `scope` tag is the
//! call's, returning only their distance, input and answer. (One TAG filter,
//! not six: RediSearch intersects one inverted index instead of six, which
//! matters once many entries were written and deleted. A scope that is a
//! large share of the cache is searched instead on a second, HNSW index over
//! the same entries, `eol-semantic-<dims>-graph`: the `crowding` module.)
//! Candidates are taken
//! nearest first while their cosine distance is at most the threshold; the
//! first one whose stored input passes the **guard** against the new input is
//! a hit. Embeddings alone confuse inputs that are close in wording but differ
//! in meaning, so the guard compares the structured inputs; [`guard`](fn@guard)
//! gives its rules.
//!
//! With an error bound (`cache.semantic.max_error_rate`), a candidate that
//! passed the guard is reused only within the distance its verdicts proved
//! (the `bound` module): a farther one is a [`MissReason::Unproven`] that
//! carries the candidate, so the caller can compare the model's answer with
//! it and [`record`](SemanticCache::record_verdict) the verdict; a sampled
//! share of hits asks for the same ([`Lookup::Hit`]'s `check`).
//!
//! # Where things are
//!
//! This module holds the cache ([`SemanticCache`]: prepare, lookup, store,
//! invalidation, verdicts), the [`CallContext`] of a call, the errors and
//! outcomes, and the index schemas. The `settings` module reads the `cache:`
//! block; `crowding` picks the index a look-up searches its scope on; `bound`
//! counts the verdicts and proves the distance of reuse for the error bound;
//! `schema` the Redis index schemas; `guard` holds the guard and its
//! comparison of the structured inputs;
//! `language` whether a free-text field is English (the only language the
//! rules on free text read; text in another language must be the same text);
//! `tokens` the tokenizer of free text and `numbers` its reading of numbers,
//! dates, times of day and durations; the rules on free text are in `marks`
//! (over all free-text fields together: polarity, numbers, names, questions;
//! with `periods`, the periods of the calendar), `wording` and `roles` (per
//! field: near-identical wording, exchanged roles).

mod bound;
mod crowding;
mod guard;
mod language;
mod marks;
mod numbers;
mod periods;
mod roles;
mod schema;
mod settings;
mod tokens;
mod wording;

pub use bound::{
    ALPHA, BUCKET, EXACT_DISTANCE, Proof, Verdicts, YOUNG_CHECKS, proves_rate_below, verdicts_key,
    wilson_upper,
};
pub use guard::{GuardFailure, guard};
pub use schema::{semantic_graph_schema, semantic_schema};
pub use settings::{
    DEFAULT_CHECK_RATE, DEFAULT_DISTANCE_THRESHOLD, DEFAULT_TTL, ErrorBound, SemanticSettings,
};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use serde_json::Value;

use crate::digest::{canonical_json, sha256_hex};
use crate::index::{
    Document, Filter, HybridPolicy, IndexError, KnnQuery, SchemaError, VectorIndex,
};
use crate::{EmbedError, Embedder};

/// Candidates fetched per lookup.
const CANDIDATES: usize = 3;

/// Which call an entry answers: only entries with all the same values are candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    /// The feature name.
    pub feature: String,
    /// The operation name.
    pub operation: String,
    /// The phase (`prototyping`, ...).
    pub phase: String,
    /// The LLM answering the call.
    pub model: String,
    /// The hash of the feature's source.
    pub source_hash: String,
    /// Input fields compared exactly even when they hold free text (dotted
    /// paths like `order.note`, or last keys like `note`).
    pub exact_fields: Vec<String>,
}

impl CallContext {
    /// A context with no extra exact fields.
    pub fn new(
        feature: impl Into<String>,
        operation: impl Into<String>,
        phase: impl Into<String>,
        model: impl Into<String>,
        source_hash: impl Into<String>,
    ) -> Self {
        Self {
            feature: feature.into(),
            operation: operation.into(),
            phase: phase.into(),
            model: model.into(),
            source_hash: source_hash.into(),
            exact_fields: Vec::new(),
        }
    }

    /// Adds fields to compare exactly.
    pub fn exact<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.exact_fields.extend(fields.into_iter().map(Into::into));
        self
    }
}

/// Why the semantic cache failed.
#[derive(Debug, thiserror::Error)]
pub enum SemanticError {
    /// The `cache:` settings are invalid.
    #[error("invalid semantic cache settings: {0}")]
    Settings(String),
    /// The input could not be embedded.
    #[error("failed to embed the input for the semantic cache: {0}")]
    Embed(#[from] EmbedError),
    /// The index failed.
    #[error("semantic cache: {0}")]
    Index(#[from] IndexError),
    /// The cache's own schema is invalid (an embedder of dimension 0).
    #[error("semantic cache: {0}")]
    Schema(#[from] SchemaError),
}

/// Why a lookup found no usable answer.
#[derive(Debug, Clone, PartialEq)]
pub enum MissReason {
    /// The cache is disabled in the settings.
    Disabled,
    /// No entry with the same tags lies within the threshold (the nearest distance, if any).
    Distance {
        /// The distance of the nearest candidate.
        nearest: Option<f32>,
    },
    /// Entries lie within the threshold but their inputs differ in meaning.
    Guard {
        /// The first difference found for the nearest candidate.
        why: GuardFailure,
    },
    /// With an error bound: the nearest candidate that passed the guard lies
    /// beyond the distance its scope's verdicts proved. Compare the model's
    /// answer with the candidate's and record the verdict.
    Unproven {
        /// The candidate.
        candidate: Candidate,
        /// The distance proven so far (0: none yet).
        threshold: f32,
    },
    /// With an error bound: every candidate that passed the guard lies at or
    /// beyond a distance at which its own answer was found wrong.
    Refuted {
        /// The nearest such candidate's distance.
        distance: f32,
        /// The distance of its nearest disagreement.
        limit: f32,
    },
}

/// A cache entry a verdict is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The entry's key.
    pub key: String,
    /// Its distance from the new input.
    pub distance: f32,
    /// Its stored answer.
    pub answer: Value,
}

/// An operation input with its embedding, made by [`SemanticCache::prepare`].
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedInput {
    input: Value,
    /// The text embedded: the input's canonical JSON.
    prompt: String,
    vector: Vec<f32>,
}

impl PreparedInput {
    /// The input it was made from.
    pub fn input(&self) -> &Value {
        &self.input
    }
}

/// The outcome of [`SemanticCache::lookup`].
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// A stored answer to reuse.
    Hit {
        /// The answer.
        answer: Value,
        /// The distance of the entry's input.
        distance: f32,
        /// The entry's key.
        key: String,
        /// With an error bound: this hit was drawn for a check (compare the
        /// model's answer with it off the response path, then record the verdict).
        check: bool,
    },
    /// Nothing to reuse.
    Miss(MissReason),
}

impl Lookup {
    /// The answer, when a hit.
    pub fn answer(&self) -> Option<&Value> {
        match self {
            Self::Hit { answer, .. } => Some(answer),
            Self::Miss(_) => None,
        }
    }
}

/// Lookup outcomes counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SemanticStats {
    /// Answers reused.
    pub hit: u64,
    /// Misses with no candidate within the threshold.
    pub miss_distance: u64,
    /// Misses where the guard refused every candidate within the threshold.
    pub miss_guard: u64,
    /// Misses where a candidate passed the guard beyond the proven distance
    /// (or its own limit): only with an error bound.
    pub miss_bound: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hit: AtomicU64,
    miss_distance: AtomicU64,
    miss_guard: AtomicU64,
    miss_bound: AtomicU64,
}

/// A semantic cache on two RediSearch indexes over the same entries.
#[derive(Clone)]
pub struct SemanticCache {
    /// FLAT: every look-up but those in a crowded scope.
    index: VectorIndex,
    /// HNSW over the same entries: look-ups in a crowded scope.
    graph: VectorIndex,
    embedder: Arc<dyn Embedder>,
    settings: SemanticSettings,
    counters: Arc<Counters>,
    calibration: Arc<bound::Calibration>,
    policies: Arc<crowding::ScopePolicies>,
}

impl std::fmt::Debug for SemanticCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SemanticCache")
            .field("index", &self.index.name())
            .field("embedder", &self.embedder.model_id())
            .field("settings", &self.settings)
            .finish()
    }
}

impl SemanticCache {
    /// Opens (creating or recreating its index) the cache `eol-semantic-<dims>`.
    pub async fn new(
        conn: ConnectionManager,
        embedder: Arc<dyn Embedder>,
        settings: SemanticSettings,
    ) -> Result<Self, SemanticError> {
        Self::with_index_name(conn, embedder, settings, "eol-semantic").await
    }

    /// Opens the cache on the index `<base>-<dims>`.
    pub async fn with_index_name(
        conn: ConnectionManager,
        embedder: Arc<dyn Embedder>,
        settings: SemanticSettings,
        base: &str,
    ) -> Result<Self, SemanticError> {
        // Entries are only a cache: a schema change may drop the index.
        let index = VectorIndex::open_recreatable::<SemanticError>(
            conn,
            embedder.as_ref(),
            base,
            semantic_schema,
        )
        .await?;
        let graph = VectorIndex::open_recreatable::<SemanticError>(
            index.connection(),
            embedder.as_ref(),
            base,
            semantic_graph_schema,
        )
        .await?;
        let calibration = Arc::new(bound::Calibration::new(settings.bound));
        Ok(Self {
            index,
            graph,
            embedder,
            settings,
            counters: Arc::default(),
            calibration,
            policies: Arc::default(),
        })
    }

    /// The index under the cache (FLAT; see [`Self::graph`]).
    pub fn index(&self) -> &VectorIndex {
        &self.index
    }

    /// The HNSW index over the same entries, for crowded scopes.
    pub fn graph(&self) -> &VectorIndex {
        &self.graph
    }

    /// Drops both indexes; the entries too when `delete_entries`.
    pub async fn drop_indexes(&self, delete_entries: bool) -> Result<(), SemanticError> {
        self.graph.drop_index(false).await?;
        self.index.drop_index(delete_entries).await?;
        Ok(())
    }

    /// The settings.
    pub fn settings(&self) -> &SemanticSettings {
        &self.settings
    }

    /// Counts so far.
    pub fn stats(&self) -> SemanticStats {
        SemanticStats {
            hit: self.counters.hit.load(Ordering::Relaxed),
            miss_distance: self.counters.miss_distance.load(Ordering::Relaxed),
            miss_guard: self.counters.miss_guard.load(Ordering::Relaxed),
            miss_bound: self.counters.miss_bound.load(Ordering::Relaxed),
        }
    }

    /// One tag for the six that make a candidate: a look-up filters on a
    /// single inverted index instead of intersecting six.
    fn scope(&self, ctx: &CallContext) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            ctx.feature.as_str(),
            &ctx.operation,
            &ctx.phase,
            &ctx.model,
            self.embedder.model_id(),
            &ctx.source_hash,
        ] {
            // Length-prefixed, so that no two tuples hash the same bytes.
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        crate::digest::hex(&h.finalize()[..16])
    }

    async fn embed(&self, text: String) -> Result<Vec<f32>, SemanticError> {
        let texts = [text];
        let mut vectors = self.embedder.embed(&texts).await?;
        match vectors.pop() {
            Some(v) if vectors.is_empty() => Ok(v),
            _ => Err(SemanticError::Embed(EmbedError::Failed {
                model: self.embedder.model_id().to_owned(),
                message: "expected one vector for one text".into(),
            })),
        }
    }

    /// Embeds `input` once, for a [`lookup_prepared`](Self::lookup_prepared) and,
    /// after a miss, a [`store_prepared`](Self::store_prepared) of the model's answer:
    /// a miss then costs one embedding, not two.
    pub async fn prepare(&self, input: &Value) -> Result<PreparedInput, SemanticError> {
        let prompt = canonical_json(input);
        let vector = self.embed(prompt.clone()).await?;
        Ok(PreparedInput {
            input: input.clone(),
            prompt,
            vector,
        })
    }

    /// How a look-up in `ctx`'s scope searches: `Some(Batches)` when the
    /// scope is a large share of the cache (the HNSW [`graph`](Self::graph),
    /// walked in batches), `None` otherwise (the FLAT [`index`](Self::index),
    /// brute force over the scope); the `crowding` module. Counts the scope
    /// when its last count is older than ten seconds.
    pub async fn search_policy(&self, ctx: &CallContext) -> Option<HybridPolicy> {
        let scope = self.scope(ctx);
        self.scope_policy(&scope, &Self::scope_filter(&scope)).await
    }

    /// The filter of a look-up in `scope`.
    fn scope_filter(scope: &str) -> Filter {
        Filter::tag("scope", scope)
    }

    /// How a look-up in `scope` searches (see [`Self::search_policy`]).
    async fn scope_policy(&self, scope: &str, filter: &Filter) -> Option<HybridPolicy> {
        self.policies.policy(&self.index, scope, filter).await
    }

    /// The stored answer for `input` in `ctx`, if an entry close enough passes the guard.
    pub async fn lookup(&self, ctx: &CallContext, input: &Value) -> Result<Lookup, SemanticError> {
        if !self.settings.enabled {
            return Ok(Lookup::Miss(MissReason::Disabled));
        }
        self.lookup_prepared(ctx, &self.prepare(input).await?).await
    }

    /// [`lookup`](Self::lookup) of an input embedded by [`prepare`](Self::prepare).
    pub async fn lookup_prepared(
        &self,
        ctx: &CallContext,
        prepared: &PreparedInput,
    ) -> Result<Lookup, SemanticError> {
        if !self.settings.enabled {
            return Ok(Lookup::Miss(MissReason::Disabled));
        }
        let input = &prepared.input;
        let scope = self.scope(ctx);
        let bound = self.settings.bound;
        let fields: &[&str] = if bound.is_some() {
            &["input", "answer", "limit"]
        } else {
            &["input", "answer"]
        };
        let filter = Self::scope_filter(&scope);
        let hybrid_policy = self.scope_policy(&scope, &filter).await;
        // A crowded scope walks the graph; a small one is brute-forced on the
        // FLAT index, which (unlike the graph) stays fast while deleted
        // entries wait for RediSearch's garbage collection.
        let index = match hybrid_policy {
            Some(_) => &self.graph,
            None => &self.index,
        };
        let hits = index
            .search(&KnnQuery {
                vector: &prepared.vector,
                k: CANDIDATES,
                filter: &filter,
                return_fields: fields,
                ef_runtime: None,
                hybrid_policy,
            })
            .await?;
        let proof = match bound {
            Some(b) if hits.first().is_some_and(|h| h.distance > EXACT_DISTANCE) => Some(
                self.calibration
                    .verdicts(&mut self.index_connection(), &scope)
                    .await
                    .proof(self.settings.distance_threshold, b.max_error_rate),
            ),
            Some(_) => Some(Proof::default()),
            None => None,
        };
        let mut refused: Option<GuardFailure> = None;
        let mut refuted: Option<MissReason> = None;
        for hit in &hits {
            if hit.distance > self.settings.distance_threshold {
                break;
            }
            let stored: Option<Value> = hit
                .fields
                .get("input")
                .and_then(|s| serde_json::from_str(s).ok());
            let Some(stored) = stored else {
                tracing::warn!(key = %hit.key, "semantic cache entry without a readable input; skipped");
                continue;
            };
            if let Err(why) = guard(&stored, input, &ctx.exact_fields) {
                refused.get_or_insert(why);
                continue;
            }
            let answer: Option<Value> = hit
                .fields
                .get("answer")
                .and_then(|s| serde_json::from_str(s).ok());
            let Some(answer) = answer else {
                tracing::warn!(key = %hit.key, "semantic cache entry without a readable answer; skipped");
                continue;
            };
            let mut check = false;
            if let (Some(b), Some(proof)) = (bound, proof)
                && hit.distance > EXACT_DISTANCE
            {
                let limit = hit.fields.get("limit").and_then(|l| l.parse::<f32>().ok());
                if let Some(limit) = limit.filter(|l| hit.distance >= *l) {
                    refuted.get_or_insert(MissReason::Refuted {
                        distance: hit.distance,
                        limit,
                    });
                    continue;
                }
                if hit.distance > proof.distance {
                    self.counters.miss_bound.fetch_add(1, Ordering::Relaxed);
                    return Ok(Lookup::Miss(MissReason::Unproven {
                        candidate: Candidate {
                            key: hit.key.clone(),
                            distance: hit.distance,
                            answer,
                        },
                        threshold: proof.distance,
                    }));
                }
                let share = proof.check_share(b.check_rate);
                check = share > 0.0 && rand::random::<f64>() < share;
            }
            self.counters.hit.fetch_add(1, Ordering::Relaxed);
            return Ok(Lookup::Hit {
                answer,
                distance: hit.distance,
                key: hit.key.clone(),
                check,
            });
        }
        Ok(Lookup::Miss(match (refuted, refused) {
            (Some(refuted), _) => {
                self.counters.miss_bound.fetch_add(1, Ordering::Relaxed);
                refuted
            }
            (None, Some(why)) => {
                self.counters.miss_guard.fetch_add(1, Ordering::Relaxed);
                MissReason::Guard { why }
            }
            (None, None) => {
                self.counters.miss_distance.fetch_add(1, Ordering::Relaxed);
                MissReason::Distance {
                    nearest: hits.first().map(|h| h.distance),
                }
            }
        }))
    }

    /// Records whether the answer of the entry `key` agreed with the model's
    /// answer for an input at `distance` from it (a [`MissReason::Unproven`]
    /// candidate, or a hit drawn for a check): it counts toward the scope's
    /// threshold, and a disagreement also limits the entry itself.
    pub async fn record_verdict(
        &self,
        ctx: &CallContext,
        key: &str,
        distance: f32,
        agree: bool,
    ) -> Result<(), SemanticError> {
        let scope = self.scope(ctx);
        // Off the response path (after the model answered), so the scope
        // can be counted: a scope that grew lapses its older verdicts. A
        // failed count only skips that check.
        let scope_entries = match self.index.count(&Self::scope_filter(&scope)).await {
            Ok(n) => Some(n),
            Err(error) => {
                tracing::debug!(%error, "could not count a semantic cache scope for its verdicts");
                None
            }
        };
        let verdict = bound::Verdict {
            entry: key,
            distance,
            agree,
        };
        self.calibration
            .record(
                &mut self.index_connection(),
                &scope,
                verdict,
                self.settings.ttl,
                scope_entries,
            )
            .await
            .map_err(|source| {
                SemanticError::Index(IndexError::Redis {
                    action: format!("record a verdict on entry {key}"),
                    index: self.index.name().to_owned(),
                    source,
                })
            })
    }

    /// The Redis key holding the verdict counts of `ctx`'s scope (a hash:
    /// `g`, the current generation, `c`, its verdicts, `s`, the scope's
    /// entries when it began, `n`, every verdict, and
    /// `a|d:<generation>:<bucket>`).
    pub fn verdicts_key(&self, ctx: &CallContext) -> String {
        verdicts_key(&self.scope(ctx))
    }

    /// The verdicts counted for `ctx`'s scope in its last two generations,
    /// as read from Redis now.
    pub async fn verdicts(&self, ctx: &CallContext) -> Result<Verdicts, SemanticError> {
        let key = self.verdicts_key(ctx);
        let fields: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut self.index_connection())
            .await
            .map_err(|source| IndexError::Redis {
                action: format!("read the verdicts {key}"),
                index: self.index.name().to_owned(),
                source,
            })?;
        Ok(Verdicts::from_redis(
            &fields,
            self.calibration.generation_len(),
        ))
    }

    /// Stores `answer` for `input` in `ctx`; returns the entry's key
    /// (`None` when the cache is disabled).
    pub async fn store(
        &self,
        ctx: &CallContext,
        input: &Value,
        answer: &Value,
    ) -> Result<Option<String>, SemanticError> {
        if !self.settings.enabled {
            return Ok(None);
        }
        self.store_prepared(ctx, &self.prepare(input).await?, answer)
            .await
    }

    /// [`store`](Self::store) for an input embedded by [`prepare`](Self::prepare)
    /// (for the lookup that missed).
    pub async fn store_prepared(
        &self,
        ctx: &CallContext,
        prepared: &PreparedInput,
        answer: &Value,
    ) -> Result<Option<String>, SemanticError> {
        if !self.settings.enabled {
            return Ok(None);
        }
        let prompt = prepared.prompt.clone();
        let vector = prepared.vector.clone();
        let id = format!(
            "{}:{}",
            ctx.feature,
            &sha256_hex(&canonical_json(&serde_json::json!([
                ctx.feature,
                ctx.operation,
                ctx.phase,
                ctx.model,
                self.embedder.model_id(),
                ctx.source_hash,
                prompt
            ])))[..32]
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let doc = Document::new(id.clone())
            .text("feature", &ctx.feature)
            .text("operation", &ctx.operation)
            .text("phase", &ctx.phase)
            .text("model", &ctx.model)
            .text("embedder", self.embedder.model_id())
            .text("source_hash", &ctx.source_hash)
            .text("scope", self.scope(ctx))
            .text("prompt", prompt.clone())
            .text("input", prompt)
            .text("answer", answer.to_string())
            .number("created_at", now)
            .vector("embedding", vector)
            .expire(self.settings.ttl);
        self.index.load(&[doc]).await?;
        Ok(Some(self.index.schema().key(&id)))
    }

    /// Deletes every entry of `feature` (its source changed); returns how many.
    pub async fn invalidate_feature(&self, feature: &str) -> Result<u64, SemanticError> {
        let query = Filter::tag("feature", feature).to_query(self.index.schema())?;
        let mut conn = self.index_connection();
        let mut deleted = 0;
        loop {
            let reply: Vec<redis::Value> = redis::cmd("FT.SEARCH")
                .arg(self.index.name())
                .arg(&query)
                .arg("NOCONTENT")
                .arg("LIMIT")
                .arg(0)
                .arg(1000)
                .arg("DIALECT")
                .arg(2)
                .query_async(&mut conn)
                .await
                .map_err(|source| IndexError::Redis {
                    action: format!("find the entries of feature `{feature}`"),
                    index: self.index.name().to_owned(),
                    source,
                })?;
            let keys: Vec<Vec<u8>> = reply
                .into_iter()
                .skip(1)
                .filter_map(|v| match v {
                    redis::Value::BulkString(b) => Some(b),
                    _ => None,
                })
                .collect();
            if keys.is_empty() {
                return Ok(deleted);
            }
            let n: u64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .map_err(|source| IndexError::Redis {
                    action: format!("delete the entries of feature `{feature}`"),
                    index: self.index.name().to_owned(),
                    source,
                })?;
            deleted += n;
        }
    }

    fn index_connection(&self) -> ConnectionManager {
        self.index.connection()
    }
}
