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
//! matters once many entries were written and deleted.) Candidates are taken
//! nearest first while their cosine distance is at most the threshold; the
//! first one whose stored input passes the **guard** against the new input is
//! a hit. Embeddings alone confuse inputs that are close in wording but differ
//! in meaning, so the guard compares the structured inputs:
//!
//! - both inputs have the same fields (recursively; arrays of equal length);
//! - numbers, booleans and nulls are equal;
//! - strings are equal when either of them has no whitespace (enums, ids,
//!   codes, single words) or when the field is listed as exact in the
//!   [`CallContext`] (by its dotted path such as `order.id`, or its last key);
//! - other strings are free text and may differ in wording. They are read as
//!   tokens: double-quoted spans whole; URLs, e-mails, domains, words with
//!   digits (`KB-104`) and all-capital compounds (`LAMP-OAK`) as codes;
//!   numbers normalised (`1,500`, `twelve`, `12th`, `a dozen`, `twice`,
//!   `double`, `twenty-five`, `5kg` → `5` + `kg`, `8-hour` → `8` + `hour`,
//!   `30 percent` → `30%`, `order 88's` → `88`, a ratio `16:9` → `16` and
//!   `9` (a time of day writes its minutes with two digits), an ISO date
//!   `2024-03-05` → `5 March 2024`; a number with a time unit is one
//!   duration, so `two weeks` is `14 days` and `half an hour`, `a quarter
//!   of an hour` are `30` and `15 minutes`; `one`, `first` and `once` are left
//!   as words: they are as often articles or pronouns, except `one` before a
//!   unit of time, and `a`/`an` between a preposition and one, which count
//!   one unit: `within a day` is `24 hours`, `one hour` is `60 minutes`,
//!   while the rates `twice a week` and `5 euros a month` have no `1`);
//!   contractions split
//!   (`can't` → `can not`), clitics dropped (`Alice's`), other hyphenated and
//!   snake_case words split. Over **all free-text fields together** (a name
//!   may move from a subject to a body), the texts must agree on
//!   - **polarity**: as many explicit negations (`not`, `n't`, `no`, `never`,
//!     `none`, `nobody`, `nothing`, `nowhere`, `neither`, `nor`, `without`,
//!     `zero`) on both sides, except that an extra one may be balanced by a
//!     word of negative meaning that only the other side has: an `un-` or
//!     `non-` word, a `not-`/`non-` compound, `missing`, `lack`, `fail`,
//!     `instead`, `absent`, `unless`, `stop` (`hasn't paid` / `unpaid`,
//!     `can't attach` / `attaching fails`); negative words alone never refuse;
//!   - **numbers**, as sets (a paraphrase may repeat or reorder them); a
//!     `1` left unmatched may be the other side's word `one`, `once` or
//!     `first`, and one unit of time the other's unit with no number (`one
//!     week` / `a week later`, `24 hours` / `a day`); a
//!     time of day with its half of the day (`7 pm`, `7:30am`, `19:30`) is
//!     read on the 24-hour clock, and matches the same hour written without
//!     it (`7 pm` / `19:00` / `at 7`) but not the other half (`7 am` /
//!     `7 pm`);
//!   - **names**: every code, quoted string (or the same words unquoted) and
//!     name needs a counterpart on the other side (same code; for a name the
//!     same word in any case, or an inflection of it). A name is a word
//!     capitalised in mid-sentence outside a title-cased line; a capital at
//!     the start of a sentence makes a name only when the word is capitalised
//!     in mid-sentence somewhere too (so "Record", "Transfer", "Someone" are
//!     not names). A word in mixed case, with a capital after its first
//!     letter (`iPad`, `eBay`, `YouTube`), is a name wherever it stands: no
//!     rule of the language writes it so. A place matches its adjective:
//!     two names sharing a stem of at least four letters, after which one
//!     ends in an adjective suffix (`-n`, `-an`, `-ian`, `-ean`, `-ese`,
//!     `-ish`, `-i`) or nothing and the other in at most two letters
//!     (`Italy` / `Italian`, `Canada` / `Canadian`, `China` / `Chinese`).
//!     Acronyms (`SKU`, `URL`) are weaker: one may be dropped or
//!     spelled out (`PO` / `post office`), but acronyms unmatched on both
//!     sides (`DHL` / `UPS`) are a different entity;
//!   - **questions**: two questions asking for different things (`when`,
//!     `where`, `who`, `why`, `how much`/`many`, `how long`, `how often`,
//!     `how fast`, plain `how`) differ; `what`/`which` and imperatives match
//!     any. A question how to do something (plain `how` followed by `to`,
//!     or by a verb and a person, `how do I`, `how can we`, in a sentence
//!     that ends with `?`; "how do X and Y compare?" asks about X and Y)
//!     differs from a text that asks no question at all: that
//!     is a request to do it or a report that it fails, not a request for
//!     instructions ("How do I rename a folder?" / "Please let me rename
//!     folders.", "The rename button does nothing.").
//!
//!   Then **per field**:
//!   - **a near-identical text may not change a content word**: when the two
//!     keep at least 70% of their tokens in order (2·LCS/(|a|+|b|)), or differ
//!     by a single token, every token left over must be an article,
//!     politeness or discourse word (`a`, `the`, `one`, `please`, `just`,
//!     `yet`, `still`, ...) or have a left-over counterpart with the same stem
//!     (a moved word, an inflection); `each`, `every` and `all` count as one
//!     word. This is what catches near-misses with
//!     lower-case words: "reserved" / "in stock", "wool" / "cotton socks",
//!     "paid" / "unpaid", "Carol paid Bob" / "Alice paid Bob";
//!   - **roles may not be exchanged**: a word's role is the nearest marker
//!     (`from`, `to`, `into`, `by`, `for`, `with`, `at`, `on`, `of`, ...) at
//!     most three tokens before it in its clause, shared by a run or a list of
//!     names (`12 September`, `Priya and Omar`). Two names (or two words that
//!     both carry a marker) that trade roles are refused ("from Leeds to
//!     York" / "from York to Leeds", "merge 702 into 715" / "715 into 702",
//!     "in which Aisha interviews Tom" / "Tom interviews Aisha"); so are two
//!     names with the same role in one clause in the opposite order ("Alice
//!     refunded Bob" / "Bob refunded Alice", "to Acme ... to Umbrella") when
//!     the texts keep at least half their tokens in order. Items of a list
//!     (`DHL or UPS`, `sam@... and kim@...`) may come in any order. With the
//!     same share kept in order, a marker found once in each text whose
//!     object (the words and names up to four tokens after it, before a
//!     comma or another marker) moves to other words, each
//!     found in the other text too, has exchanged them, lower-case or not
//!     ("put the lamp after the mirror" / "put the mirror after the lamp",
//!     "bill it to marketing instead of sales" / "to sales instead of
//!     marketing"); a list in the object is read whole, so its items may
//!     come in any order. When the texts keep at least 70% of their tokens
//!     in order, two content words found once in each that trade places,
//!     each standing where the other stood (the word just before, or just
//!     after, is exchanged and differs), are refused too: "raising prices
//!     cut churn and grew sales" / "raising prices cut sales and grew
//!     churn"; not when the exchanged neighbour is `and`, `or` or a comma
//!     (a list in another order).
//!
//! The guard errs on the side of a miss: a real paraphrase that changes one
//! word of a short request ("Cancel my plan" / "Stop my plan"), that adds a
//! name or a number ("every weekday" / "Monday to Friday", "twice" /
//! "a duplicate charge") or that negates where the other uses a verb of negative
//! meaning it does not know (`hold` / `don't ship`) is computed again. What it
//! cannot see: a different request in different words with the same names,
//! numbers and polarity ("Add 25 units of X to stock" / "Reserve 25 units of
//! X for an order"), and roles given by word order alone when the texts are
//! reworded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use serde::Deserialize;
use serde_json::Value;

use crate::digest::{canonical_json, sha256_hex};
use crate::index::{
    Document, FieldAttrs, FieldSpec, FieldType, Filter, IndexError, IndexInfo, IndexSchema,
    SchemaError, VectorIndex,
};
use crate::{EmbedError, Embedder};

/// The distance threshold when the `cache:` block gives none (cosine distance).
pub const DEFAULT_DISTANCE_THRESHOLD: f32 = 0.1;
/// How long entries live when the `cache:` block gives no `ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Candidates fetched per lookup.
const CANDIDATES: usize = 3;

/// The semantic cache settings: the frontmatter `cache:` block
/// (`enabled`, `distance_threshold`, `ttl` in seconds) with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticSettings {
    /// Whether answers are cached and reused.
    pub enabled: bool,
    /// Largest cosine distance that still counts as the same input.
    pub distance_threshold: f32,
    /// How long an entry lives.
    pub ttl: Duration,
}

impl Default for SemanticSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            distance_threshold: DEFAULT_DISTANCE_THRESHOLD,
            ttl: DEFAULT_TTL,
        }
    }
}

/// The `cache:` block as written in the frontmatter (same keys as
/// `eol_core::feature::CacheSettings`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheBlock {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    distance_threshold: Option<f64>,
    #[serde(default)]
    ttl: Option<u64>,
}

fn yes() -> bool {
    true
}

impl SemanticSettings {
    /// Settings from the fields of the frontmatter `cache:` block.
    pub fn from_frontmatter(
        enabled: bool,
        distance_threshold: Option<f64>,
        ttl: Option<u64>,
    ) -> Result<Self, SemanticError> {
        let threshold = distance_threshold.unwrap_or(f64::from(DEFAULT_DISTANCE_THRESHOLD));
        if !(0.0..=2.0).contains(&threshold) {
            return Err(SemanticError::Settings(format!(
                "cache.distance_threshold {threshold} is out of range: a cosine distance is between 0 and 2"
            )));
        }
        if ttl == Some(0) {
            return Err(SemanticError::Settings(
                "cache.ttl must be at least 1 second".into(),
            ));
        }
        Ok(Self {
            enabled,
            distance_threshold: threshold as f32,
            ttl: ttl.map_or(DEFAULT_TTL, Duration::from_secs),
        })
    }

    /// Settings from the YAML of a `cache:` block.
    pub fn from_yaml(text: &str) -> Result<Self, SemanticError> {
        let block: CacheBlock = serde_yaml::from_str(text)
            .map_err(|e| SemanticError::Settings(format!("cache: {e}")))?;
        Self::from_frontmatter(block.enabled, block.distance_threshold, block.ttl)
    }
}

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
}

#[derive(Debug, Default)]
struct Counters {
    hit: AtomicU64,
    miss_distance: AtomicU64,
    miss_guard: AtomicU64,
}

/// A semantic cache on a RediSearch index.
#[derive(Clone)]
pub struct SemanticCache {
    index: VectorIndex,
    embedder: Arc<dyn Embedder>,
    settings: SemanticSettings,
    counters: Arc<Counters>,
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

const TAGS: [&str; 6] = [
    "feature",
    "operation",
    "phase",
    "model",
    "embedder",
    "source_hash",
];

/// The schema of a semantic cache index named `name` for vectors of `dims`.
pub fn semantic_schema(name: &str, dims: usize) -> IndexSchema {
    let tag = |n: &str| FieldSpec {
        name: n.to_owned(),
        kind: FieldType::Tag,
        attrs: FieldAttrs {
            case_sensitive: Some(true),
            ..FieldAttrs::default()
        },
    };
    let mut fields: Vec<FieldSpec> = TAGS.iter().map(|t| tag(t)).collect();
    fields.push(tag("scope"));
    fields.push(FieldSpec {
        name: "prompt".into(),
        kind: FieldType::Text,
        attrs: FieldAttrs::default(),
    });
    fields.push(FieldSpec {
        name: "created_at".into(),
        kind: FieldType::Numeric,
        attrs: FieldAttrs::default(),
    });
    fields.push(FieldSpec {
        name: "embedding".into(),
        kind: FieldType::Vector,
        attrs: FieldAttrs {
            algorithm: Some("flat".into()),
            dims: Some(dims as i64),
            distance_metric: Some("cosine".into()),
            datatype: Some("float32".into()),
            ..FieldAttrs::default()
        },
    });
    IndexSchema {
        index: IndexInfo {
            name: name.to_owned(),
            prefix: format!("eol:{name}"),
            key_separator: ":".into(),
            storage_type: "hash".into(),
        },
        fields,
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
        Ok(Self {
            index,
            embedder,
            settings,
            counters: Arc::default(),
        })
    }

    /// The index under the cache.
    pub fn index(&self) -> &VectorIndex {
        &self.index
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
        let hits = self
            .index
            .knn(
                &prepared.vector,
                CANDIDATES,
                &Filter::tag("scope", self.scope(ctx)),
                &["input", "answer"],
            )
            .await?;
        let mut refused: Option<GuardFailure> = None;
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
            match guard(&stored, input, &ctx.exact_fields) {
                Ok(()) => {
                    let answer = hit
                        .fields
                        .get("answer")
                        .and_then(|s| serde_json::from_str(s).ok());
                    if let Some(answer) = answer {
                        self.counters.hit.fetch_add(1, Ordering::Relaxed);
                        return Ok(Lookup::Hit {
                            answer,
                            distance: hit.distance,
                            key: hit.key.clone(),
                        });
                    }
                    tracing::warn!(key = %hit.key, "semantic cache entry without a readable answer; skipped");
                }
                Err(why) => {
                    refused.get_or_insert(why);
                }
            }
        }
        Ok(Lookup::Miss(match refused {
            Some(why) => {
                self.counters.miss_guard.fetch_add(1, Ordering::Relaxed);
                MissReason::Guard { why }
            }
            None => {
                self.counters.miss_distance.fetch_add(1, Ordering::Relaxed);
                MissReason::Distance {
                    nearest: hits.first().map(|h| h.distance),
                }
            }
        }))
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

/// Where and why two inputs were judged different in meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardFailure {
    /// The dotted path of the field (`$` for the whole input).
    pub path: String,
    /// What differs.
    pub reason: String,
}

impl std::fmt::Display for GuardFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Whether a stored input may answer a new one (see the module docs for the rules).
/// Only free-text fields that differ are tokenised; identical inputs return at once.
pub fn guard(stored: &Value, new: &Value, exact_fields: &[String]) -> Result<(), GuardFailure> {
    let mut texts = Vec::new();
    compare(stored, new, "", exact_fields, &mut texts)?;
    if texts.iter().all(|t| t.a == t.b) {
        return Ok(());
    }
    // Each text tokenised once; a field equal on both sides once for both.
    let sides: Vec<(Vec<Tok>, Vec<Tok>)> = texts
        .iter()
        .map(|t| {
            let a = tokens(t.a);
            let b = if t.a == t.b { a.clone() } else { tokens(t.b) };
            (a, b)
        })
        .collect();
    // The whole input (every free-text field, so that a name may move from
    // the subject to the body): polarity, numbers, names, questions.
    let mut differing = texts.iter().zip(&sides).filter(|(t, _)| t.a != t.b);
    let path = match (differing.next(), differing.next()) {
        (Some((t, _)), None) => t.path.clone(),
        _ => String::new(),
    };
    let join = |stored: bool| {
        let mut all: Vec<Tok> = Vec::new();
        for (a, b) in &sides {
            let base = all.last().map_or(0, |x| x.sentence + 1);
            all.extend((if stored { a } else { b }).iter().cloned().map(|mut x| {
                x.sentence += base;
                x
            }));
        }
        all
    };
    compare_marks(&join(true), &join(false)).or_else(|r| fail(&path, r))?;
    // Per field: a near-identical rewording must not change a content word,
    // nor exchange the roles of two names.
    for (t, (a, b)) in texts.iter().zip(&sides).filter(|(t, _)| t.a != t.b) {
        local_edit(a, b)
            .and_then(|share| swapped_roles(a, b, share).map(|()| share))
            .and_then(|share| moved_objects(a, b, share).map(|()| share))
            .and_then(|share| exchanged_contexts(a, b, share))
            .or_else(|r| fail(&t.path, r))?;
    }
    Ok(())
}

/// A pair of free-text strings at the same path of both inputs.
struct FreeText<'a> {
    path: String,
    a: &'a str,
    b: &'a str,
}

fn fail(path: &str, reason: impl Into<String>) -> Result<(), GuardFailure> {
    Err(GuardFailure {
        path: if path.is_empty() {
            "$".into()
        } else {
            path.to_owned()
        },
        reason: reason.into(),
    })
}

fn compare<'a>(
    a: &'a Value,
    b: &'a Value,
    path: &str,
    exact: &[String],
    texts: &mut Vec<FreeText<'a>>,
) -> Result<(), GuardFailure> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            if let Some(k) = x
                .keys()
                .chain(y.keys())
                .find(|k| !(x.contains_key(*k) && y.contains_key(*k)))
            {
                return fail(&join(path, k), "present in one input only");
            }
            for (k, va) in x {
                if let Some(vb) = y.get(k) {
                    compare(va, vb, &join(path, k), exact, texts)?;
                }
            }
            Ok(())
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return fail(path, format!("{} items vs {}", x.len(), y.len()));
            }
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                compare(va, vb, &format!("{path}[{i}]"), exact, texts)?;
            }
            Ok(())
        }
        (Value::String(x), Value::String(y)) => {
            let leaf = path.rsplit('.').next().unwrap_or(path);
            let listed = exact.iter().any(|e| e == path || e == leaf);
            let free =
                !listed && x.contains(char::is_whitespace) && y.contains(char::is_whitespace);
            if free {
                texts.push(FreeText {
                    path: if path.is_empty() {
                        "$".into()
                    } else {
                        path.to_owned()
                    },
                    a: x,
                    b: y,
                });
                Ok(())
            } else if x == y {
                Ok(())
            } else {
                fail(path, "exact values differ")
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            if x == y || x.as_f64() == y.as_f64() {
                Ok(())
            } else {
                fail(path, format!("{x} vs {y}"))
            }
        }
        _ if a == b => Ok(()),
        _ => fail(path, format!("{a} vs {b}")),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// What a token of free text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    /// A number, normalised (`12th`, `twelve`, `a dozen` and `1,2` all read `12` / `1.2`).
    Number,
    /// An identifier: has digits and letters (`KB-104`), or is a URL, e-mail,
    /// domain or an all-capitals compound (`LAMP-OAK`).
    Code,
    /// The content of a double-quoted span, verbatim.
    Quoted,
    /// A comma or dash between words.
    Comma,
}

/// The polarity a word carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Neg {
    None,
    /// `not`, `n't`, `no`, `never`, `without`, `zero`, ...
    Explicit,
    /// Negative by its form or meaning: `un-`/`non-` words, `missing`, `fails`, `instead`.
    Implicit,
}

#[derive(Debug, Clone)]
struct Tok {
    /// Lower case for words and codes, canonical for numbers, verbatim for quotes.
    norm: String,
    kind: Kind,
    /// Written with a capital first letter.
    cap: bool,
    /// Written in capitals (`SKU`, `URLs`).
    acronym: bool,
    /// Written in mixed case with a capital after the first letter (`iOS`,
    /// `eBay`, `GitHub`): a brand or identifier wherever it stands.
    mixed: bool,
    /// First word of its sentence.
    initial: bool,
    /// In a sentence where most words are capitalised (a title).
    title: bool,
    /// A number written in words (may combine with the next number word).
    spelled: bool,
    /// A time of day whose half of the day is known (`3 pm` read `15:00`).
    half_day: bool,
    /// In a sentence that ends with a question mark.
    asks: bool,
    neg: Neg,
    sentence: usize,
}

/// Free text as tokens: quoted spans whole; contractions split (`can't` →
/// `can not`); clitics dropped; hyphenated and snake_case words split unless
/// they hold digits or are all capitals; numbers normalised.
fn tokens(text: &str) -> Vec<Tok> {
    let text = text.replace(['\u{2019}', '\u{2018}'], "'");
    let mut t = Tokenizer::default();
    let mut rest = text.as_str();
    while let Some(open) = rest.find(['"', '\u{201C}']) {
        t.chunks(&rest[..open]);
        let after = &rest[open + rest[open..].chars().next().map_or(1, char::len_utf8)..];
        match after.find(['"', '\u{201D}']) {
            Some(close) => {
                t.quoted(after[..close].trim());
                rest = &after[close + after[close..].chars().next().map_or(1, char::len_utf8)..];
            }
            None => rest = after,
        }
    }
    t.chunks(rest);
    t.finish()
}

#[derive(Default)]
struct Tokenizer {
    out: Vec<Tok>,
    sentence: usize,
    /// Whether the next word starts a sentence (inverted so that the default starts one).
    mid_sentence: bool,
}

impl Tokenizer {
    fn push(&mut self, norm: String, kind: Kind, original: &str) {
        let letters: Vec<char> = original.chars().filter(|c| c.is_alphabetic()).collect();
        let stem = original.strip_suffix('s').unwrap_or(original);
        let acronym = kind == Kind::Word
            && stem.chars().filter(|c| c.is_alphabetic()).count() >= 2
            && stem.chars().all(|c| c.is_uppercase() || !c.is_alphabetic());
        let mixed = kind == Kind::Word
            && !acronym
            && letters.iter().skip(1).any(|c| c.is_uppercase())
            && letters.iter().any(|c| c.is_lowercase());
        let norm = if acronym && original.ends_with('s') && !stem.ends_with('S') {
            stem.to_lowercase()
        } else {
            norm
        };
        self.out.push(Tok {
            norm,
            kind,
            cap: letters.first().is_some_and(|c| c.is_uppercase()),
            acronym,
            mixed,
            initial: !self.mid_sentence,
            title: false,
            spelled: false,
            half_day: false,
            asks: false,
            neg: Neg::None,
            sentence: self.sentence,
        });
        self.mid_sentence = true;
    }

    fn end_sentence(&mut self) {
        if self.mid_sentence {
            self.sentence += 1;
        }
        self.mid_sentence = false;
    }

    fn comma(&mut self) {
        if self.out.last().is_some_and(|t| t.kind != Kind::Comma) {
            let mut c = self.out.last().cloned().expect("a token");
            c.kind = Kind::Comma;
            c.norm = ",".into();
            c.neg = Neg::None;
            c.acronym = false;
            c.mixed = false;
            self.out.push(c);
        }
    }

    fn quoted(&mut self, content: &str) {
        if !content.is_empty() {
            self.push(content.to_owned(), Kind::Quoted, "");
        }
    }

    fn chunks(&mut self, text: &str) {
        for chunk in text.split_whitespace() {
            let core = chunk.trim_start_matches(|c: char| !c.is_alphanumeric());
            let end = core
                .char_indices()
                .rev()
                .find(|(_, c)| c.is_alphanumeric() || *c == '%')
                .map_or(0, |(i, c)| i + c.len_utf8());
            let (core, tail) = core.split_at(end);
            let tail = if core.is_empty() { chunk } else { tail };
            if !core.is_empty() {
                self.chunk(core);
            }
            if tail.contains('?') {
                let s = self.sentence;
                for t in self.out.iter_mut().rev().take_while(|t| t.sentence == s) {
                    t.asks = true;
                }
            }
            if tail.contains(['.', '!', '?', ';', ':']) {
                self.end_sentence();
            } else if tail.contains([',', '\u{2014}', '\u{2013}', '-', '(', ')']) {
                self.comma();
            }
        }
    }

    fn chunk(&mut self, core: &str) {
        let lower = core.to_lowercase();
        let has_digit = core.chars().any(|c| c.is_ascii_digit());
        let internal_dot = core
            .char_indices()
            .any(|(i, c)| c == '.' && i > 0 && core[i + 1..].starts_with(char::is_alphabetic));
        if lower.contains("://")
            || lower.starts_with("www.")
            || (core.contains('@') && core.contains('.'))
        {
            // URLs are case-sensitive past the host; e-mails are not.
            let norm = if core.contains('@') {
                lower
            } else {
                core.to_owned()
            };
            return self.push(norm, Kind::Code, core);
        }
        if core.contains('/') && (internal_dot || has_digit) {
            return self.push(core.to_owned(), Kind::Code, core);
        }
        if has_digit {
            // A possessive on a number (`ticket 4583's`) is the number.
            let core = core
                .strip_suffix("'s")
                .or_else(|| core.strip_suffix('\''))
                .unwrap_or(core);
            let lower = core.to_lowercase();
            if let Some((y, m, d)) = iso_date(core) {
                // `2025-08-21` as `21 August 2025`.
                self.push(format!("{d}"), Kind::Number, core);
                self.push(MONTHS[m - 1].into(), Kind::Word, MONTHS[m - 1]);
                return self.push(format!("{y}"), Kind::Number, core);
            }
            if let Some(parts) = ratio(core) {
                // `1:1`, `16:9`: a ratio, not a time of day (minutes have two digits).
                for p in parts {
                    self.push(p, Kind::Number, core);
                }
                return;
            }
            if let Some(n) = plain_number(core) {
                return self.push(n, Kind::Number, core);
            }
            // `12th`, `500s`, `5kg`, `2FA`: the number, then the unit as a word;
            // `40-minute`, `3-day`: the number, then the words.
            let split = core
                .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | ',' | ':')))
                .unwrap_or(core.len());
            let (digits, unit) = core.split_at(split);
            let hyphened = unit.strip_prefix('-').filter(|u| {
                !u.is_empty()
                    && u.chars().all(|c| c.is_alphabetic() || c == '-')
                    && u.chars().any(char::is_lowercase)
            });
            if !digits.is_empty()
                && let Some(words) = hyphened
                && let Some(n) = plain_number(digits)
            {
                self.push(n, Kind::Number, digits);
                for w in words.split('-').filter(|w| !w.is_empty()) {
                    self.word(w);
                }
                return;
            }
            if !digits.is_empty()
                && unit.chars().all(char::is_alphabetic)
                && let Some(n) = plain_number(digits)
            {
                self.push(n, Kind::Number, digits);
                if !["st", "nd", "rd", "th", "s"].contains(&unit.to_lowercase().as_str()) {
                    self.word(unit);
                }
                return;
            }
            return self.push(lower, Kind::Code, core);
        }
        if internal_dot {
            return self.push(lower, Kind::Code, core);
        }
        if core.contains(['-', '_', '/']) {
            let parts: Vec<&str> = core
                .split(['-', '_', '/'])
                .filter(|p| !p.is_empty())
                .collect();
            let letters = core.chars().filter(|c| c.is_alphabetic());
            if parts.len() > 1 && core.contains('-') && letters.clone().all(char::is_uppercase) {
                return self.push(lower, Kind::Code, core);
            }
            for (i, part) in parts.iter().enumerate() {
                let p = part.to_lowercase();
                if i == 0 && parts.len() > 1 && (p == "non" || p == "not") {
                    // `non-root`, `not-found`: a negative compound, not a negated clause.
                    self.push(p, Kind::Word, part);
                    if let Some(t) = self.out.last_mut() {
                        t.neg = Neg::Implicit;
                    }
                } else {
                    self.word(part);
                }
            }
            return;
        }
        if let Some((base, clitic)) = lower.split_once('\'') {
            let original = &core[..base.len()];
            if clitic == "t" && base.ends_with('n') {
                let stem = &base[..base.len() - 1];
                let stem = match stem {
                    "ca" => "can",
                    "wo" => "will",
                    "sha" => "shall",
                    s => s,
                };
                self.word(&original[..stem.len().min(original.len())]);
                if let Some(t) = self.out.last_mut() {
                    t.norm = stem.to_owned();
                }
                return self.negation("not");
            }
            return self.word(original);
        }
        self.word(core);
    }

    fn negation(&mut self, norm: &str) {
        self.push(norm.to_owned(), Kind::Word, norm);
        if let Some(t) = self.out.last_mut() {
            t.neg = Neg::Explicit;
        }
    }

    fn word(&mut self, w: &str) {
        if w.is_empty() {
            return;
        }
        let lower = w.to_lowercase();
        if lower == "cannot" {
            self.push("can".into(), Kind::Word, w);
            return self.negation("not");
        }
        if NEGATIONS.contains(&lower.as_str()) {
            self.push(lower, Kind::Word, w);
            if let Some(t) = self.out.last_mut() {
                t.neg = Neg::Explicit;
            }
            return;
        }
        if let Some(n) = number_word(&lower) {
            if let Some(prev) = self.out.last_mut().filter(|t| t.spelled) {
                let p: f64 = prev.norm.parse().unwrap_or(0.0);
                let combined =
                    if ["hundred", "thousand", "million", "dozen"].contains(&lower.as_str()) {
                        Some(p * n)
                    } else if (20.0..100.0).contains(&p) && p % 10.0 == 0.0 && n < 10.0 {
                        Some(p + n)
                    } else {
                        None
                    };
                if let Some(c) = combined {
                    prev.norm = format!("{c}");
                    return;
                }
            }
            self.push(format!("{n}"), Kind::Number, w);
            if let Some(t) = self.out.last_mut() {
                t.spelled = true;
            }
            return;
        }
        let implicit = implicit_negative(&lower);
        self.push(lower, Kind::Word, w);
        if implicit && let Some(t) = self.out.last_mut() {
            t.neg = Neg::Implicit;
        }
    }

    /// Reads a number and its time unit as one duration in seconds (or
    /// months), so `two weeks` is `14 days`; marks title-cased sentences,
    /// where capitals say nothing about names.
    fn finish(mut self) -> Vec<Tok> {
        // `half an hour`, `a quarter of an hour`: a fraction of one unit of time.
        let mut i = 0;
        while i < self.out.len() {
            let fraction = match self.out[i].norm.as_str() {
                "half" => Some(0.5),
                "quarter" => Some(0.25),
                _ => None,
            };
            let at = |j: usize| self.out.get(j).map_or("", |t: &Tok| t.norm.as_str());
            let mut j = i + 1;
            if at(j) == "of" {
                j += 1;
            }
            if at(j) == "a" || at(j) == "an" {
                j += 1;
            }
            let singular =
                |w: &str| duration_unit(w).is_some() && duration_unit(&format!("{w}s")).is_some();
            if let Some(f) = fraction
                && self.out[i].kind == Kind::Word
                && singular(at(j))
            {
                self.out[i].norm = format!("{f}");
                self.out[i].kind = Kind::Number;
                self.out.drain(i + 1..j);
            }
            i += 1;
        }
        // `one hour`, and `in a week`, `for an hour` after a preposition, are
        // one unit of time (not a rate: `twice a week`, `5 euros a month`).
        for i in 0..self.out.len().saturating_sub(1) {
            let unit = &self.out[i + 1];
            let singular = unit.kind == Kind::Word
                && duration_unit(&unit.norm).is_some()
                && duration_unit(&format!("{}s", unit.norm)).is_some();
            let after_preposition = i > 0 && {
                let p = &self.out[i - 1];
                p.kind == Kind::Word
                    && p.sentence == unit.sentence
                    && (ROLE_MARKERS.contains(&p.norm.as_str()) || p.norm == "within")
            };
            let t = &self.out[i];
            let one = t.kind == Kind::Word
                && (t.norm == "one" || (after_preposition && (t.norm == "a" || t.norm == "an")));
            if singular && one {
                self.out[i].norm = "1".into();
                self.out[i].kind = Kind::Number;
            }
        }
        let mut i = 0;
        while i + 1 < self.out.len() {
            // `3 pm`, `3:30pm`, `11 a.m.` as a time of day on the 24-hour clock.
            let pm = match self.out[i + 1].norm.as_str() {
                "am" | "a.m" => Some(false),
                "pm" | "p.m" => Some(true),
                _ => None,
            };
            if self.out[i].kind == Kind::Number
                && let Some(pm) = pm
                && let Some((h, m)) = clock(&self.out[i].norm)
                && (1..=12).contains(&h)
            {
                let h = h % 12 + if pm { 12 } else { 0 };
                self.out[i].norm = format!("{h}:{m:02}");
                self.out[i].half_day = true;
                self.out.remove(i + 1);
                i += 1;
                continue;
            }
            // `12 percent`, `12 per cent` as `12%`.
            let cent = self.out.get(i + 2).is_some_and(|t| t.norm == "cent");
            let percent = match self.out[i + 1].norm.as_str() {
                "percent" => Some(1),
                "per" if cent => Some(2),
                _ => None,
            };
            if self.out[i].kind == Kind::Number
                && !self.out[i].norm.ends_with('%')
                && let Some(n) = percent
            {
                self.out[i].norm.push('%');
                self.out.drain(i + 1..i + 1 + n);
                i += 1;
                continue;
            }
            if self.out[i].kind == Kind::Number
                && self.out[i + 1].kind == Kind::Word
                && let Some((factor, unit)) = duration_unit(&self.out[i + 1].norm)
                && let Ok(x) = self.out[i].norm.parse::<f64>()
            {
                self.out[i].norm = format!("{}{unit}", x * factor);
                self.out.remove(i + 1);
            }
            i += 1;
        }
        let mut start = 0;
        while start < self.out.len() {
            let s = self.out[start].sentence;
            let end = self.out[start..]
                .iter()
                .position(|t| t.sentence != s)
                .map_or(self.out.len(), |p| start + p);
            let words: Vec<&Tok> = self.out[start..end]
                .iter()
                .filter(|t| t.kind == Kind::Word && !t.acronym)
                .collect();
            let caps = words.iter().filter(|t| t.cap).count();
            if words.len() >= 3 && caps * 5 >= words.len() * 3 {
                for t in &mut self.out[start..end] {
                    t.title = true;
                }
            }
            start = end;
        }
        self.out
    }
}

/// A normalised number read as a time of day: `3` or `3:30` as (hour, minute).
fn clock(norm: &str) -> Option<(u32, u32)> {
    let (h, m) = norm.split_once(':').unwrap_or((norm, "0"));
    let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

/// Month names, for dates written `2025-08-21`.
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// An ISO date `YYYY-MM-DD` as (year, month, day).
fn iso_date(s: &str) -> Option<(u32, usize, u32)> {
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return None;
    };
    let digits = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_digit());
    if !(digits(y, 4) && digits(m, 2) && digits(d, 2)) {
        return None;
    }
    let (y, m, d) = (y.parse().ok()?, m.parse::<usize>().ok()?, d.parse().ok()?);
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y, m, d))
}

/// A ratio `1:1`, `16:9` as its numbers: digits and colons where a part after
/// the first has a single digit (a time of day writes minutes with two).
fn ratio(s: &str) -> Option<Vec<String>> {
    let parts: Vec<&str> = s.split(':').collect();
    let numeric = parts
        .iter()
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    (parts.len() >= 2 && numeric && parts[1..].iter().any(|p| p.len() == 1))
        .then(|| parts.iter().filter_map(|p| plain_number(p)).collect())
}

/// Whether two numbers left unmatched are one time of day: a time whose half
/// of the day is known (`3 pm`, `15:00`) and an hour written without it
/// (`3`, `3:00`), twelve hours apart at most.
fn same_time(x: &Tok, y: &Tok) -> bool {
    let known = |t: &Tok| {
        t.half_day
            || (t.norm.contains(':') && clock(&t.norm).is_some_and(|(h, _)| h == 0 || h > 12))
    };
    let (Some((hx, mx)), Some((hy, my))) = (clock(&x.norm), clock(&y.norm)) else {
        return false;
    };
    let open = |t: &Tok, h: u32| !known(t) && (1..=12).contains(&h);
    mx == my && hx % 12 == hy % 12 && (open(x, hx) || open(y, hy))
}

/// Whether the number `t` is one of what the word `w` says: `1` and `one`,
/// `once`, `first`; `3600s` and `hour`.
fn counts_one(t: &Tok, w: &str) -> bool {
    if t.norm == "1" {
        return ["one", "once", "first"].contains(&w);
    }
    duration_unit(&format!("{w}s")).is_some()
        && duration_unit(w).is_some_and(|(factor, unit)| t.norm == format!("{factor}{unit}"))
}

/// A time unit as (factor, canonical unit): seconds, or months for months and years.
fn duration_unit(w: &str) -> Option<(f64, &'static str)> {
    Some(match w {
        "second" | "seconds" | "sec" | "secs" | "s" => (1.0, "s"),
        "minute" | "minutes" | "min" | "mins" => (60.0, "s"),
        "hour" | "hours" | "hr" | "hrs" | "h" => (3600.0, "s"),
        "day" | "days" => (86_400.0, "s"),
        "week" | "weeks" => (604_800.0, "s"),
        "month" | "months" => (1.0, "mo"),
        "year" | "years" => (12.0, "mo"),
        _ => return None,
    })
}

/// `1,200`, `3.5`, `9:15`, `30%` as a canonical string; `None` when not a plain number.
fn plain_number(s: &str) -> Option<String> {
    let (body, pct) = match s.strip_suffix('%') {
        Some(b) => (b, "%"),
        None => (s, ""),
    };
    if body.is_empty()
        || !body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | ':'))
    {
        return None;
    }
    if body.contains(':') {
        // `9:05` and `09:05` alike; minutes and seconds keep two digits.
        let parts: Option<Vec<String>> = body
            .split(':')
            .enumerate()
            .map(|(i, p)| {
                p.parse::<u64>().ok().map(|n| {
                    if i == 0 {
                        n.to_string()
                    } else {
                        format!("{n:02}")
                    }
                })
            })
            .collect();
        return parts.map(|p| p.join(":") + pct);
    }
    // A comma before exactly three digits groups thousands; otherwise it is a decimal point.
    let mut canon = String::new();
    let groups: Vec<&str> = body.split(',').collect();
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            if g.len() == 3 && g.chars().all(|c| c.is_ascii_digit()) {
            } else {
                canon.push('.');
            }
        }
        canon.push_str(g);
    }
    canon.parse::<f64>().ok().map(|x| format!("{x}{pct}"))
}

/// Explicit negations (`n't` and `cannot` are split into `not`; `zero` reads as `no`).
const NEGATIONS: [&str; 11] = [
    "not", "no", "never", "none", "nobody", "nothing", "nowhere", "neither", "nor", "without",
    "zero",
];

/// Words negative by their form (`un-`, `non-`) or meaning; they balance an
/// explicit negation on the other side (`unpaid` / `hasn't paid`, `missing` /
/// `not there`, `instead of X` / `not X`).
fn implicit_negative(w: &str) -> bool {
    const NOT_PREFIXED: [&str; 9] = [
        "under",
        "unit",
        "union",
        "uniq",
        "univers",
        "unix",
        "unif",
        "until",
        "unlimited",
    ];
    const NEGATIVE: [&str; 13] = [
        "missing", "lack", "lacks", "lacking", "lacked", "fail", "fails", "failed", "failing",
        "failure", "instead", "absent", "unless",
    ];
    let prefixed =
        (w.len() >= 5 && w.starts_with("un") && !NOT_PREFIXED.iter().any(|p| w.starts_with(p)))
            || (w.len() >= 6 && w.starts_with("non"));
    prefixed || NEGATIVE.contains(&w) || ["stop", "stops", "stopped", "stopping"].contains(&w)
}

/// Cardinal and ordinal number words. `one`, `first` and `once` are left as
/// words: `one` is as often a pronoun or article (`attach one`, `an hour` /
/// `one hour`) as a count.
fn number_word(w: &str) -> Option<f64> {
    Some(match w {
        "two" | "twice" | "both" | "double" => 2.0,
        "three" | "third" | "thrice" | "triple" => 3.0,
        "four" | "fourth" => 4.0,
        "five" | "fifth" => 5.0,
        "six" | "sixth" => 6.0,
        "seven" | "seventh" => 7.0,
        "eight" | "eighth" => 8.0,
        "nine" | "ninth" => 9.0,
        "ten" | "tenth" => 10.0,
        "eleven" | "eleventh" => 11.0,
        "twelve" | "twelfth" | "dozen" => 12.0,
        "thirteen" => 13.0,
        "fourteen" => 14.0,
        "fifteen" => 15.0,
        "sixteen" => 16.0,
        "seventeen" => 17.0,
        "eighteen" => 18.0,
        "nineteen" => 19.0,
        "twenty" => 20.0,
        "thirty" => 30.0,
        "forty" => 40.0,
        "fifty" => 50.0,
        "sixty" => 60.0,
        "seventy" => 70.0,
        "eighty" => 80.0,
        "ninety" => 90.0,
        "hundred" => 100.0,
        "thousand" => 1000.0,
        "million" => 1_000_000.0,
        _ => return None,
    })
}

/// A crude stem: enough for `passwords`/`password`, `locked`/`lock`, `caching`/`cached`.
fn stem(w: &str) -> &str {
    for (suffix, min) in [("ies", 5), ("ing", 6), ("ed", 5), ("es", 5), ("s", 4)] {
        if w.len() >= min
            && let Some(s) = w.strip_suffix(suffix)
        {
            if suffix == "s" && s.ends_with('s') {
                return w;
            }
            return s;
        }
    }
    w
}

/// Words that may come and go in a light rewording: articles (`one` for
/// `a`), politeness and discourse adverbs.
const IGNORABLE: [&str; 14] = [
    "a",
    "an",
    "one",
    "the",
    "please",
    "kindly",
    "just",
    "also",
    "really",
    "actually",
    "yet",
    "still",
    "already",
    "currently",
];

/// Words that mark the role of what follows (`from X to Y`, `X into Y`).
const ROLE_MARKERS: [&str; 22] = [
    "from", "to", "into", "onto", "than", "by", "for", "with", "at", "on", "in", "of", "over",
    "under", "between", "after", "before", "via", "toward", "towards", "as", "per",
];

/// Words that join the items of a list, whose order is free (`DHL or UPS`).
const COORDINATORS: [&str; 6] = ["and", "or", "nor", "plus", "both", "either"];

/// The near-miss rule: when one text keeps at least [`LOCAL_EDIT_SHARE`] of
/// the other's tokens (in order), every token it drops or adds must be an
/// article-like word or reappear elsewhere in the other text (a moved word, an
/// inflection); a changed content word ("reserved" / "in stock", "wool" /
/// "cotton", "paid" / "unpaid") is a different request.
fn local_edit(a: &[Tok], b: &[Tok]) -> Result<f64, String> {
    let ka: Vec<&str> = a
        .iter()
        .filter(|t| t.kind != Kind::Comma)
        .map(|t| same_word(&t.norm))
        .collect();
    let kb: Vec<&str> = b
        .iter()
        .filter(|t| t.kind != Kind::Comma)
        .map(|t| same_word(&t.norm))
        .collect();
    let (n, m) = (ka.len(), kb.len());
    if n == 0 || m == 0 {
        return Ok(0.0);
    }
    // Longest common subsequence, with the matched tokens of each side.
    let mut dp = vec![0u16; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            dp[at(i, j)] = if ka[i] == kb[j] {
                dp[at(i + 1, j + 1)] + 1
            } else {
                dp[at(i + 1, j)].max(dp[at(i, j + 1)])
            };
        }
    }
    let common = usize::from(dp[at(0, 0)]);
    let share = (2 * common) as f64 / ((n + m) as f64);
    // A single word changed, added or dropped is a light edit however short the text.
    let single = common >= 2 && n - common <= 1 && m - common <= 1;
    if share < LOCAL_EDIT_SHARE && !single {
        return Ok(share);
    }
    let (mut ma, mut mb) = (vec![false; n], vec![false; m]);
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if ka[i] == kb[j] {
            (ma[i], mb[j]) = (true, true);
            (i, j) = (i + 1, j + 1);
        } else if dp[at(i + 1, j)] >= dp[at(i, j + 1)] {
            i += 1;
        } else {
            j += 1;
        }
    }
    let left = |k: &[&str], matched: &[bool]| -> Vec<String> {
        k.iter()
            .zip(matched)
            .filter(|(w, m)| !**m && !IGNORABLE.contains(*w))
            .map(|(w, _)| (*w).to_owned())
            .collect()
    };
    let (la, lb) = (left(&ka, &ma), left(&kb, &mb));
    // A word left over on one side is fine when the other side has one left
    // over with the same stem: a moved word or an inflection.
    let changed = |mine: &[String], other: &[String]| -> Vec<String> {
        mine.iter()
            .filter(|w| !other.iter().any(|o| stem(o) == stem(w)))
            .cloned()
            .collect()
    };
    let (ca, cb) = (changed(&la, &lb), changed(&lb, &la));
    if ca.is_empty() && cb.is_empty() {
        return Ok(share);
    }
    Err(format!(
        "wording: a near-identical text changes {ca:?} to {cb:?}"
    ))
}

/// One spelling for function words that say the same: the universal
/// quantifiers (`each`, `every`, `all`).
fn same_word(w: &str) -> &str {
    match w {
        "each" | "all" => "every",
        w => w,
    }
}

/// Share of tokens two texts keep in order (2·LCS / (|a| + |b|)) from which
/// the second is taken for a light edit of the first.
const LOCAL_EDIT_SHARE: f64 = 0.7;

/// Share of tokens kept in order from which two names in the opposite order
/// (and no marker telling their roles apart) count as swapped; below it the
/// text is reworded enough for the order of clauses to change.
const FLIP_SHARE: f64 = 0.5;

/// Whether `t` names something: a number, code, quote, or a capitalised word
/// that is not merely first in its sentence or in a title.
fn is_entity(t: &Tok) -> bool {
    match t.kind {
        Kind::Number | Kind::Code | Kind::Quoted => true,
        Kind::Word => t.acronym || t.mixed || (t.cap && !t.initial && !t.title && t.norm != "i"),
        Kind::Comma => false,
    }
}

/// The word marking the role of the token at `i`: the nearest role marker
/// at most three tokens before it in its clause; a run of adjacent names
/// (`12 September`, `order 7730`) or a list of them (`Priya and Omar`)
/// shares the role of its first token.
fn role(toks: &[Tok], i: usize) -> Option<&str> {
    let s = toks[i].sentence;
    let mut start = i;
    // Back over the run of names, and over the items of a list (`X, Y and Z`).
    while start > 0 && toks[start - 1].sentence == s {
        let prev = &toks[start - 1];
        let joins = prev.kind == Kind::Comma
            || (prev.kind == Kind::Word && COORDINATORS.contains(&prev.norm.as_str()));
        if is_entity(prev) {
            start -= 1;
        } else if joins
            && start >= 2
            && toks[start - 2].sentence == s
            && is_entity(&toks[start - 2])
        {
            start -= 2;
        } else {
            break;
        }
    }
    for t in toks[..start].iter().rev().take(3) {
        if t.sentence != s || t.kind == Kind::Comma || is_entity(t) {
            return None;
        }
        if t.kind == Kind::Word && ROLE_MARKERS.contains(&t.norm.as_str()) {
            return Some(t.norm.as_str());
        }
    }
    None
}

fn compare_marks(a: &[Tok], b: &[Tok]) -> Result<(), String> {
    // Polarity: as many explicit negations on both sides, except that an
    // extra one may be balanced by a negative word only the other side has
    // (`hasn't paid` / `unpaid`, `can't attach` / `attaching fails`).
    let implicit = |x: &[Tok]| -> Vec<String> {
        x.iter()
            .filter(|t| t.neg == Neg::Implicit)
            .map(|t| stem(&t.norm).to_owned())
            .collect()
    };
    let (ia, ib) = (implicit(a), implicit(b));
    let explicit = |x: &[Tok]| x.iter().filter(|t| t.neg == Neg::Explicit).count();
    let only =
        |mine: &[String], other: &[String]| mine.iter().filter(|w| !other.contains(w)).count();
    let (ea, eb) = (explicit(a), explicit(b));
    let balanced = if ea >= eb {
        ea - eb <= only(&ib, &ia)
    } else {
        eb - ea <= only(&ia, &ib)
    };
    if !balanced {
        let show = |x: &[Tok]| -> Vec<String> {
            x.iter()
                .filter(|t| t.neg != Neg::None)
                .map(|t| t.norm.clone())
                .collect()
        };
        return Err(format!("negation differs ({:?} vs {:?})", show(a), show(b)));
    }

    // Numbers, as sets (a paraphrase may repeat or reorder them).
    let numbers = |x: &[Tok]| -> std::collections::BTreeSet<String> {
        x.iter()
            .filter(|t| t.kind == Kind::Number)
            .map(|t| t.norm.clone())
            .collect()
    };
    let (na, nb) = (numbers(a), numbers(b));
    // A number only one side has may still be the other's time of day
    // written with or without its half of the day (`3 pm` / `15:00` / `3`).
    type Set = std::collections::BTreeSet<String>;
    // A `1` may be the other's `one`, `once` or `first` (left as words), and
    // one unit of time the other's unit with no number (`one year` / `a year`).
    let unmatched = |x: &[Tok], nx: &Set, y: &[Tok], ny: &Set| {
        x.iter().any(|t| {
            t.kind == Kind::Number
                && !ny.contains(&t.norm)
                && !y
                    .iter()
                    .any(|u| u.kind == Kind::Number && !nx.contains(&u.norm) && same_time(t, u))
                && !y
                    .iter()
                    .any(|u| u.kind == Kind::Word && counts_one(t, &u.norm))
        })
    };
    if na != nb && (unmatched(a, &na, b, &nb) || unmatched(b, &nb, a, &na)) {
        return Err(format!("numbers differ ({na:?} vs {nb:?})"));
    }

    // Names, codes, quotes, acronyms.
    let (ua, ub) = (unmatched_entities(a, b), unmatched_entities(b, a));
    let strong = |u: &[&Tok]| u.iter().any(|t| !t.acronym);
    if strong(&ua) || strong(&ub) || (!ua.is_empty() && !ub.is_empty()) {
        let show = |u: &[&Tok]| -> Vec<String> { u.iter().map(|t| t.norm.clone()).collect() };
        return Err(format!(
            "entities differ ({:?} vs {:?})",
            show(&ua),
            show(&ub)
        ));
    }

    questions(a, b)
}

/// The entities of `x` with no counterpart in `y`.
fn unmatched_entities<'a>(x: &'a [Tok], y: &[Tok]) -> Vec<&'a Tok> {
    // An initial capitalised word is a name when it is also capitalised mid-sentence somewhere.
    let named = |w: &str| {
        x.iter()
            .chain(y)
            .any(|t| t.norm == w && t.cap && !t.initial && !t.title && w != "i")
    };
    let entities: Vec<&Tok> = x
        .iter()
        .filter(|t| {
            is_entity(t)
                || (t.kind == Kind::Word && t.cap && t.initial && !t.title && named(&t.norm))
        })
        .filter(|t| t.kind != Kind::Number)
        .collect();
    if entities.is_empty() {
        return entities;
    }
    let words_y: Vec<&str> = y
        .iter()
        .filter(|t| t.kind != Kind::Comma)
        .map(|t| t.norm.as_str())
        .collect();
    let plain_y = format!(" {} ", words_y.join(" "));
    let stems_y: Vec<&str> = words_y.iter().map(|w| stem(w)).collect();
    entities
        .into_iter()
        .filter(|t| match t.kind {
            Kind::Code => !y.iter().any(|u| u.kind == Kind::Code && u.norm == t.norm),
            Kind::Quoted => {
                let words: Vec<String> = tokens(&t.norm)
                    .into_iter()
                    .filter(|w| w.kind != Kind::Comma)
                    .map(|w| w.norm)
                    .collect();
                !y.iter().any(|u| u.kind == Kind::Quoted && u.norm == t.norm)
                    && !plain_y.contains(&format!(" {} ", words.join(" ")))
            }
            _ => {
                let s = stem(&t.norm);
                let spelled = t.acronym && {
                    let letters: Vec<char> = t.norm.chars().collect();
                    words_y
                        .windows(letters.len())
                        .any(|w| w.iter().zip(&letters).all(|(word, l)| word.starts_with(*l)))
                };
                let adjective = t.kind == Kind::Word
                    && y.iter()
                        .any(|u| u.kind == Kind::Word && u.cap && demonym(&t.norm, &u.norm));
                !stems_y.contains(&s) && !spelled && !adjective
            }
        })
        .collect()
}

/// Whether two names are a place and its adjective (`Italy` / `Italian`,
/// `Canada` / `Canadian`, `Europe` / `European`, `China` / `Chinese`): they
/// share a stem of at least four letters, after which one ends in an
/// adjective suffix (`-n`, `-an`, `-ian`, `-ean`, `-ese`, `-ish`, `-i`) or
/// nothing and the other in at most two letters.
fn demonym(x: &str, y: &str) -> bool {
    const SUFFIXES: [&str; 8] = ["", "n", "an", "ian", "ean", "ese", "ish", "i"];
    let common = x
        .chars()
        .zip(y.chars())
        .take_while(|(p, q)| p == q)
        .map(|(p, _)| p.len_utf8())
        .sum::<usize>();
    if x == y || common < 4 || !x.is_char_boundary(common) || !y.is_char_boundary(common) {
        return false;
    }
    let (rx, ry) = (&x[common..], &y[common..]);
    let ending = |r: &str| r.chars().count() <= 2;
    (SUFFIXES.contains(&rx) && ending(ry)) || (SUFFIXES.contains(&ry) && ending(rx))
}

/// A word or name mentioned as often in both texts.
struct Shared<'a> {
    key: &'a str,
    /// Its first mention in each text.
    ia: usize,
    ib: usize,
    /// A name (not a lower-case word) in either text.
    named: bool,
    /// The marker of its role at its first mention in each text.
    role_a: Option<&'a str>,
    role_b: Option<&'a str>,
}

/// The comparison key of each token that may hold a role (`None` for the others).
fn role_keys(x: &[Tok]) -> Vec<Option<&str>> {
    x.iter()
        .map(|t| {
            if is_entity(t) {
                Some(t.norm.as_str())
            } else if t.kind == Kind::Word
                && t.neg == Neg::None
                && !IGNORABLE.contains(&t.norm.as_str())
                && !ROLE_MARKERS.contains(&t.norm.as_str())
                && !COORDINATORS.contains(&t.norm.as_str())
            {
                Some(stem(&t.norm))
            } else {
                None
            }
        })
        .collect()
}

/// Two names that exchange roles: `from X to Y` / `from Y to X`, `X into Y`
/// / `Y into X`, or, with the same marker or none, `X <verb> Y` / `Y <verb> X`
/// in one clause. Items of a list (`X or Y`, `X, Y and Z`) may come in any
/// order. Names are compared at their first mention and must be mentioned as
/// often in both texts; lower-case words only count when a marker's role moves.
fn swapped_roles(a: &[Tok], b: &[Tok], share: f64) -> Result<(), String> {
    let (ka, kb) = (role_keys(a), role_keys(b));
    let mut shared: Vec<Shared> = Vec::new();
    for (i, k) in ka.iter().enumerate() {
        let Some(k) = *k else { continue };
        if shared.iter().any(|s| s.key == k) {
            continue;
        }
        let Some(j) = kb.iter().position(|u| *u == Some(k)) else {
            continue;
        };
        let mentions = |keys: &[Option<&str>]| keys.iter().filter(|u| **u == Some(k)).count();
        if mentions(&ka) != mentions(&kb) {
            continue;
        }
        let named = (0..a.len()).any(|m| ka[m] == Some(k) && is_entity(&a[m]))
            || (0..b.len()).any(|m| kb[m] == Some(k) && is_entity(&b[m]));
        shared.push(Shared {
            key: k,
            ia: i,
            ib: j,
            named,
            role_a: role(a, i),
            role_b: role(b, j),
        });
    }
    let coordinated = |x: &[Tok], i: usize, j: usize| {
        let (lo, hi) = (i.min(j), i.max(j));
        x[lo + 1..hi].iter().all(|t| {
            t.kind == Kind::Comma
                || (t.kind == Kind::Word && COORDINATORS.contains(&t.norm.as_str()))
                || is_entity(t)
        })
    };
    for (p, x) in shared.iter().enumerate() {
        for y in &shared[p + 1..] {
            let (rax, ray, rbx, rby) = (x.role_a, y.role_a, x.role_b, y.role_b);
            let exchanged = rax != ray && rax == rby && ray == rbx;
            let marked = exchanged
                && ((x.named && y.named && (rax.is_some() || ray.is_some()))
                    || (rax.is_some() && ray.is_some()));
            // Two names with one role in one clause of each text, in opposite orders.
            let flipped = share >= FLIP_SHARE
                && x.named
                && y.named
                && rax == ray
                && rbx == rby
                && rax == rbx
                && a[x.ia].sentence == a[y.ia].sentence
                && b[x.ib].sentence == b[y.ib].sentence
                && (x.ia < y.ia) != (x.ib < y.ib)
                && !coordinated(a, x.ia, y.ia)
                && !coordinated(b, x.ib, y.ib);
            if marked || flipped {
                return Err(format!("roles swapped ({} and {})", x.key, y.key));
            }
        }
    }
    Ok(())
}

/// Tokens after a role marker that make its object (`before the design review`).
const OBJECT_SPAN: usize = 4;

/// The object of the marker at `i`: the keys of the content words and names
/// up to [`OBJECT_SPAN`] tokens after it, before a comma, the end of the
/// sentence or another marker. A list (`with Priya and Omar`, `to X, Y or
/// Z`) is read whole, to the end of its clause: its items come in any order.
fn marker_object<'a>(x: &[Tok], keys: &[Option<&'a str>], i: usize) -> Vec<&'a str> {
    let end = x[i + 1..]
        .iter()
        .position(|t| {
            t.sentence != x[i].sentence
                || (t.kind == Kind::Word && ROLE_MARKERS.contains(&t.norm.as_str()))
        })
        .map_or(x.len(), |p| i + 1 + p);
    let clause = &x[i + 1..end];
    let list = clause
        .iter()
        .any(|t| t.kind == Kind::Word && COORDINATORS.contains(&t.norm.as_str()));
    let span = if list {
        clause.len()
    } else {
        clause
            .iter()
            .take(OBJECT_SPAN)
            .position(|t| t.kind == Kind::Comma)
            .unwrap_or(OBJECT_SPAN.min(clause.len()))
    };
    let mut object = Vec::new();
    for k in keys[i + 1..i + 1 + span].iter().flatten() {
        if !object.contains(k) {
            object.push(*k);
        }
    }
    object
}

/// A marker whose object moved to other words of the same text: `move X
/// before Y` / `move Y before X`, `sort by price, then name` / `sort by name,
/// then price`. The marker must come once in each text, its two objects must
/// share no word and each must be found in the other text, and the texts
/// must keep at least [`FLIP_SHARE`] of their tokens in order (a reordering,
/// not a rewording). Lower-case words count as much as names here.
fn moved_objects(a: &[Tok], b: &[Tok], share: f64) -> Result<(), String> {
    if share < FLIP_SHARE {
        return Ok(());
    }
    let (ka, kb) = (role_keys(a), role_keys(b));
    let markers = |x: &[Tok], m: &str| {
        x.iter()
            .enumerate()
            .filter(|(_, t)| t.kind == Kind::Word && t.norm == m)
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    for m in ROLE_MARKERS {
        let (pa, pb) = (markers(a, m), markers(b, m));
        let ([ia], [ib]) = (pa.as_slice(), pb.as_slice()) else {
            continue;
        };
        let (oa, ob) = (marker_object(a, &ka, *ia), marker_object(b, &kb, *ib));
        let found = |o: &[&str], keys: &[Option<&str>]| {
            !o.is_empty() && o.iter().all(|w| keys.contains(&Some(*w)))
        };
        if found(&oa, &kb) && found(&ob, &ka) && !oa.iter().any(|w| ob.contains(w)) {
            return Err(format!(
                "roles swapped (the object of `{m}` moves from {oa:?} to {ob:?})"
            ));
        }
    }
    Ok(())
}

/// Two words that trade places in a near-identical text (at least
/// [`LOCAL_EDIT_SHARE`] of the tokens kept in order): each is found once in
/// both texts and stands, in one, where the other stood in the other (the
/// word before it, or after it, is exchanged and differs between the two):
/// "raising prices cut churn and grew sales" / "raising prices cut sales
/// and grew churn". Items of a list (after `and`, `or` or a comma on both
/// sides, or joined only by such words) may come in any order.
fn exchanged_contexts(a: &[Tok], b: &[Tok], share: f64) -> Result<(), String> {
    if share < LOCAL_EDIT_SHARE {
        return Ok(());
    }
    let (ka, kb) = (role_keys(a), role_keys(b));
    let near = |x: &[Tok], i: usize, after: bool| -> Option<String> {
        let j = if after { i + 1 } else { i.checked_sub(1)? };
        let t = x.get(j).filter(|t| t.sentence == x[i].sentence)?;
        Some(t.norm.clone())
    };
    let joins = |w: &Option<String>| {
        w.as_deref()
            .is_some_and(|w| w == "," || COORDINATORS.contains(&w))
    };
    let coordinated = |x: &[Tok], i: usize, j: usize| {
        let (lo, hi) = (i.min(j), i.max(j));
        x[lo + 1..hi].iter().all(|t| {
            t.kind == Kind::Comma
                || (t.kind == Kind::Word && COORDINATORS.contains(&t.norm.as_str()))
        })
    };
    let once = |keys: &[Option<&str>], k: &str| keys.iter().filter(|u| **u == Some(k)).count() == 1;
    let mut words: Vec<(usize, usize)> = Vec::new();
    for (i, k) in ka.iter().enumerate() {
        let Some(k) = *k else { continue };
        if once(&ka, k) && once(&kb, k) {
            let j = kb.iter().position(|u| *u == Some(k)).expect("found once");
            words.push((i, j));
        }
    }
    for (p, &(xa, xb)) in words.iter().enumerate() {
        for &(ya, yb) in &words[p + 1..] {
            if (xa < ya) == (xb < yb) || coordinated(a, xa, ya) || coordinated(b, xb, yb) {
                continue;
            }
            for after in [false, true] {
                let (cxa, cya) = (near(a, xa, after), near(a, ya, after));
                let (cxb, cyb) = (near(b, xb, after), near(b, yb, after));
                if cxa.is_some()
                    && cya.is_some()
                    && cxa != cya
                    && cxa == cyb
                    && cya == cxb
                    && ![&cxa, &cya].iter().any(|c| joins(c))
                {
                    return Err(format!(
                        "roles swapped ({} and {} trade places)",
                        a[xa].norm, a[ya].norm
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The kind of question asked: `when`, `where`, `who`, `why`, `how much`,
/// `how long`, `how often`, `how fast`, plain `how`. `what` and `which` ask
/// for anything and are left out.
fn question_kinds(x: &[Tok]) -> std::collections::BTreeSet<String> {
    let mut kinds = std::collections::BTreeSet::new();
    for (i, t) in x.iter().enumerate() {
        let next = x.get(i + 1).map_or("", |n| n.norm.as_str());
        match t.norm.as_str() {
            "when" | "where" | "why" => {
                kinds.insert(t.norm.clone());
            }
            "who" | "whom" | "whose" => {
                kinds.insert("who".into());
            }
            "how" => {
                kinds.insert(match next {
                    "much" | "many" => "how much".into(),
                    "long" => "how long".into(),
                    "often" => "how often".into(),
                    "fast" | "quickly" | "soon" => "how fast".into(),
                    _ => "how".into(),
                });
            }
            _ => {}
        }
    }
    kinds
}

/// Two questions asking for different things (`when` / `how much`), or a
/// question how to do something (`How do I ...?`, plain `how` in a sentence
/// ending with `?`) against a text that asks nothing: a request to do it, or
/// a report that it fails, is not a request for instructions.
fn questions(a: &[Tok], b: &[Tok]) -> Result<(), String> {
    let (qa, qb) = (question_kinds(a), question_kinds(b));
    if !qa.is_empty() && !qb.is_empty() && qa != qb {
        return Err(format!("question differs ({qa:?} vs {qb:?})"));
    }
    // Instructions are asked for with `how to` or a person as the subject
    // (`how do I`, `how can we`); `how do X and Y compare?` asks about X and Y.
    fn at(x: &[Tok], i: usize) -> &str {
        x.get(i).map_or("", |t| t.norm.as_str())
    }
    let asks_how = |x: &[Tok]| {
        x.iter().enumerate().any(|(i, t)| {
            t.asks
                && t.norm == "how"
                && question_kinds(&x[i..(i + 2).min(x.len())]).contains("how")
                && (at(x, i + 1) == "to" || ["i", "we", "you", "one"].contains(&at(x, i + 2)))
        })
    };
    let asks_nothing = |x: &[Tok], q: &std::collections::BTreeSet<String>| {
        q.is_empty() && !x.iter().any(|t| t.asks)
    };
    if (asks_how(a) && asks_nothing(b, &qb)) || (asks_how(b) && asks_nothing(a, &qa)) {
        return Err("question differs (how to do it vs no question)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(a: Value, b: Value) -> bool {
        guard(&a, &b, &[]).is_ok()
    }

    fn t(s: &str) -> Value {
        json!({"text": s})
    }

    /// The first word of the guard's reason, `None` when it accepts.
    fn why(a: &str, b: &str) -> Option<String> {
        guard(&t(a), &t(b), &[])
            .err()
            .map(|e| e.reason.split([' ', ':']).next().unwrap_or("").to_owned())
    }

    fn same(a: &str, b: &str) {
        let e = guard(&t(a), &t(b), &[]);
        assert!(e.is_ok(), "{a:?} / {b:?} refused: {e:?}");
    }

    #[test]
    fn a_near_identical_text_may_not_change_a_content_word() {
        // One word replaced, added or dropped in otherwise identical wording.
        assert_eq!(
            why(
                "Which invoices were emailed last week?",
                "Which invoices were printed last week?"
            ),
            Some("wording".into())
        );
        assert_eq!(
            why(
                "Show the price of the oak desk",
                "Show the price of the pine desk"
            ),
            Some("wording".into())
        );
        assert_eq!(
            why(
                "List the invoices that are paid",
                "List the invoices that are unpaid"
            ),
            Some("wording".into())
        );
        assert_eq!(
            why("Carol paid Bob", "Alice paid Bob"),
            Some("wording".into())
        );
        assert_eq!(
            why(
                "Archive the report about the outage",
                "Archive the report about the audit"
            ),
            Some("wording".into())
        );
        // Articles, politeness, discourse adverbs, inflections and moved words are not a change.
        same("Please archive the old report", "archive old report");
        same(
            "The printer jams every time I print on both sides",
            "The printer jams each time I print on both sides",
        );
        same("the order did not arrive", "the order didn't arrive yet");
        same(
            "Is the invoice for Acme ready",
            "Are the invoices for Acme ready",
        );
        // A real rewording keeps less than 70% of the tokens and is left to the other rules.
        same(
            "Summarize the post about Kubernetes",
            "Write a summary of the post about Kubernetes",
        );
    }

    #[test]
    fn the_runner_test_pairs_keep_their_verdicts() {
        // The pairs of runner-image/tests/caches.rs (semantic cache on the real model).
        let stored = "The app crashes every time I open the settings page.";
        same(
            stored,
            "The app crashes each time I open the settings page.",
        );
        assert_eq!(
            why(
                stored,
                "The app never crashes when I open the settings page."
            ),
            Some("negation".into())
        );
    }

    #[test]
    fn negation_polarity_allows_negative_words_on_the_other_side() {
        assert_eq!(
            why(
                "the parcel has shipped to the depot",
                "the parcel has not shipped to the depot"
            ),
            Some("negation".into())
        );
        assert_eq!(
            why("pay with card", "pay without card"),
            Some("negation".into())
        );
        // `n't`, `cannot`, `never` are negations like `not`.
        same("we cannot refund it", "a refund is not something we can do");
        same(
            "she never logged in this month",
            "she has not logged in this month at all",
        );
        // An extra `not` balanced by a negative word only the other side has.
        same(
            "Email everyone whose invoice is unpaid",
            "Email everyone who hasn't paid the invoice",
        );
        same(
            "The export to CSV fails for big reports",
            "Big reports cannot be exported to CSV",
        );
        same(
            "The parcel arrived with the receipt missing",
            "The receipt was not in the parcel when it arrived",
        );
        same(
            "Pay by bank transfer instead of by card",
            "Do not pay by card; use a bank transfer",
        );
        // `zero` reads as `no`; `non-`/`not-` compounds are words, not negated clauses.
        same(
            "a release with zero downtime for users",
            "users saw no downtime during the release",
        );
        // A negative word present on both sides balances nothing.
        assert_eq!(
            why(
                "the unpaid invoices were sent",
                "the unpaid invoices were not sent"
            ),
            Some("negation".into())
        );
    }

    #[test]
    fn numbers_are_compared_as_sets_in_any_spelling() {
        assert_eq!(
            why("send 3 boxes please", "send 30 boxes please"),
            Some("numbers".into())
        );
        assert_eq!(
            why("send three boxes please", "send 4 boxes please"),
            Some("numbers".into())
        );
        same("send three boxes please", "please send 3 boxes");
        same(
            "Book it for the 3rd of May at 14:05",
            "On May third at 14:05, book it",
        );
        same(
            "Call the supplier at 09:05 tomorrow",
            "Tomorrow at 9:05, call the supplier",
        );
        same("Order a dozen cables", "I need 12 cables ordered");
        same(
            "The fee went up by twenty-five euros",
            "The fee is 25 euros higher now",
        );
        same(
            "A limit of 1,500 requests per day",
            "We allow 1500 requests each day as the limit",
        );
        same("A 5kg box to ship", "Ship a box of 5 kg");
        same(
            "The card was charged twice",
            "There are two charges on the card",
        );
        // Durations in any unit.
        same(
            "The invoice is two weeks overdue",
            "The invoice has been due for 14 days",
        );
        same("Retry after 2 hours", "Wait 120 minutes, then retry");
        assert_eq!(
            why("The trial lasts 2 weeks", "The trial lasts 2 months"),
            Some("numbers".into())
        );
        // `one` and `first` are as often articles or pronouns as numbers.
        same(
            "Attach one file to the first ticket",
            "Attach a file to the first ticket",
        );
        // `one` before a unit of time, and `a`/`an` after a preposition, count one unit ...
        same(
            "Reply within a day to every refund request",
            "Every refund request gets an answer within 24 hours",
        );
        same(
            "Push the launch back one week",
            "Delay the launch by 7 days",
        );
        assert_eq!(
            why(
                "Archive posts older than a month",
                "Archive posts older than 2 months"
            ),
            Some("numbers".into())
        );
        // ... but a rate (`a` after no preposition) has no `1`.
        same(
            "We post twice a week on the blog",
            "Every week there are two new posts on our blog",
        );
        same(
            "The basic plan costs 9 euros a month",
            "For 9 euros per month you get the basic plan",
        );
        // A time of day with `am`/`pm` is read on the 24-hour clock; an hour
        // without its half of the day matches either half.
        same("Call the bank at 7 pm", "Call the bank at 19:00");
        same("Call the bank at 7:30pm", "At 19:30, call the bank");
        same(
            "Call the bank at 7 a.m. sharp",
            "Call the bank at 7 AM sharp",
        );
        same("Call the bank at 7 pm", "Ring the bank this evening at 7");
        same(
            "Call the bank at 7 pm",
            "At 7:00 in the evening, ring the bank",
        );
        assert_eq!(
            why("Call the bank at 7 am", "Call the bank at 7 pm"),
            Some("numbers".into())
        );
        assert_eq!(
            why("Call the bank at 7 am", "Call the bank at 19:00"),
            Some("numbers".into())
        );
        assert_eq!(
            why("Call the bank at 7 pm", "Call the bank at 8"),
            Some("numbers".into())
        );
        assert_eq!(
            why("Call the bank at 19:00", "Call the bank at 17:00"),
            Some("numbers".into())
        );
        // Reordered and repeated numbers are the same numbers.
        same(
            "Plan 12 costs 40 euros, plan 7 costs 10",
            "For 10 euros you get plan 7; plan 12 is 40 euros",
        );
    }

    #[test]
    fn names_codes_and_quotes_must_have_a_counterpart() {
        assert_eq!(
            why("Refund Alice's order please", "Refund Carol's order please"),
            Some("entities".into())
        );
        assert_eq!(
            why(
                "Invite Priya to the design review on Tuesday",
                "Add Nadia to Tuesday's design review"
            ),
            Some("entities".into())
        );
        assert_eq!(
            why(
                "Where is parcel ZX-88 right now?",
                "Tell me where parcel ZX-98 is at the moment"
            ),
            Some("entities".into())
        );
        assert_eq!(
            why(
                "Ship it with DHL to the customer",
                "Send it to the customer through UPS"
            ),
            Some("entities".into())
        );
        assert_eq!(
            why(
                "Open https://example.org/a in a tab",
                "Load https://example.org/b in a new tab"
            ),
            Some("entities".into())
        );
        // A capital at the start of a sentence is no name ...
        same(
            "Reopen the ticket about the login bug",
            "The login bug ticket needs to be opened again",
        );
        // ... a name is matched whatever its case or clitic ...
        same(
            "What's the status of Alice's order",
            "what is the status of the order of Alice",
        );
        // ... an acronym may be dropped or spelled out ...
        same(
            "What's our ETA for the parcel",
            "When do we estimate the time of arrival for the parcel",
        );
        same(
            "How many units of SKU AB-12 are left?",
            "Tell me the stock of AB-12",
        );
        // ... and a quoted string matches the same words unquoted.
        same(
            "Set the label \"spring sale\" on the post",
            "Label the post with spring sale",
        );
        // E-mails and codes ignore case; snake_case reads as words.
        same(
            "Write to Kim@Example.com about it",
            "Send kim@example.com a message about it",
        );
        same(
            "Set the utm source to the newsletter",
            "Use newsletter as utm_source",
        );
    }

    #[test]
    fn swapped_roles_are_refused() {
        let swapped = Some("roles".into());
        assert_eq!(
            why(
                "Move the team from Oslo to Bergen",
                "Move the team from Bergen to Oslo"
            ),
            swapped
        );
        assert_eq!(
            why(
                "Merge ticket 41 into ticket 52",
                "Merge ticket 52 into ticket 41"
            ),
            swapped
        );
        assert_eq!(
            why(
                "Priya thanked Omar for the review",
                "Omar thanked Priya for the review"
            ),
            swapped
        );
        assert_eq!(
            why(
                "Point example.org/old at example.org/new",
                "Point example.org/new at example.org/old"
            ),
            swapped
        );
        assert_eq!(
            why(
                "Invoice the hours to Initech and send a copy to Hooli",
                "Invoice the hours to Hooli and send a copy to Initech"
            ),
            swapped
        );
        assert_eq!(
            why(
                "Move the boxes from the cellar to the attic",
                "Move the boxes from the attic to the cellar"
            ),
            swapped
        );
        // Items of a list come in any order; a passive keeps the roles.
        same(
            "Book a call with Priya and Omar",
            "Book a call with Omar and Priya",
        );
        same(
            "Is Hooli or Initech cheaper for us?",
            "Which is cheaper for us: Initech or Hooli?",
        );
        same("Omar was paid by Priya", "Priya paid Omar");
    }

    #[test]
    fn mixed_case_words_are_names() {
        // A capital after the first letter makes a name, even in lower case first.
        assert_eq!(
            why(
                "Sell the old lamp on eBay this week",
                "This week, sell the old lamp online"
            ),
            Some("entities".into())
        );
        assert_eq!(
            why(
                "The iPad app crashes while the macOS app works",
                "The macOS app crashes while the iPad app works"
            ),
            Some("roles".into())
        );
        // ... even at the start of a sentence, and matched in any case.
        assert_eq!(
            why("GitHub rejects my token", "My token is rejected everywhere"),
            Some("entities".into())
        );
        same("Is the iPad app slow today?", "is the ipad app slow today");
        // Plurals of acronyms are acronyms, not mixed case.
        same(
            "Shorten these URLs for me",
            "Make these links shorter for me",
        );
    }

    #[test]
    fn a_marker_whose_object_moves_to_other_words_is_refused() {
        let swapped = Some("roles".into());
        assert_eq!(
            why(
                "Put the lamp after the mirror in the hallway",
                "Put the mirror after the lamp in the hallway"
            ),
            swapped
        );
        assert_eq!(
            why(
                "Bill the hours to marketing instead of sales",
                "Bill the hours to sales instead of marketing"
            ),
            swapped
        );
        assert_eq!(
            why(
                "Schedule the product demo after the weekly standup",
                "Schedule the weekly standup after the product demo"
            ),
            swapped
        );
        // The same object in another place, or a reworded text, is no exchange.
        same(
            "Put the lamp after the mirror",
            "After the mirror, put the lamp",
        );
        // A list in the object is read whole.
        same(
            "Book a table for Priya and Omar at noon",
            "At noon, book a table for Omar and Priya",
        );
    }

    #[test]
    fn different_questions_are_refused() {
        assert_eq!(
            why(
                "When is the next invoice due?",
                "How much is the next invoice?"
            ),
            Some("question".into())
        );
        assert_eq!(
            why(
                "How long does shipping to Norway take?",
                "How much does shipping to Norway cost?"
            ),
            Some("question".into())
        );
        // `what` and `which` ask for anything; an imperative asks no question.
        same(
            "What time does the spring sale start on the website?",
            "When will the website's spring sale begin?",
        );
        same("How many tickets are open?", "Count the open tickets");
        // A question how to do something is not a request to do it, nor a
        // report that it fails.
        assert_eq!(
            why("How do I rename a folder?", "Please let me rename folders."),
            Some("question".into())
        );
        assert_eq!(
            why(
                "How can I rename a folder?",
                "The button to rename a folder throws an error."
            ),
            Some("question".into())
        );
        same(
            "How do I rename a folder?",
            "What are the steps to rename a folder?",
        );
        same(
            "How do I rename a folder?",
            "Explain how to rename a folder",
        );
        // `how` in a statement asks nothing.
        same(
            "How we cut our cloud bill in 2024",
            "In 2024 our team reduced the cloud bill",
        );
    }

    #[test]
    fn numbers_written_differently_are_read_alike() {
        // A number joined to a word by a hyphen, and written with its unit.
        same(
            "We cut the 8-hour import to a few minutes",
            "The import that took eight hours now takes a few minutes",
        );
        assert_eq!(
            why("Schedule a 20-minute review", "Schedule a 25 minute review"),
            Some("numbers".into())
        );
        // `percent` and `per cent` are `%`.
        same(
            "Give Initech 15% off the next invoice",
            "Initech should see fifteen percent taken off its upcoming invoice",
        );
        same(
            "Give Initech 15% off the next invoice",
            "Initech should see 15 per cent taken off its upcoming invoice",
        );
        assert_eq!(
            why("Give Initech 15% off", "Initech gets 15 euros off"),
            Some("numbers".into())
        );
        // A possessive on a number is the number.
        same(
            "Email the owner of order 88 about the delay",
            "Order 88's owner should hear about the delay by email",
        );
        // An ISO date is a day, a month and a year.
        same(
            "Notes from the 2024-03-05 planning call",
            "What we agreed on the planning call of 5 March 2024",
        );
        assert_eq!(
            why(
                "Notes from the 2024-03-05 planning call",
                "What we agreed on the planning call of 5 April 2024"
            ),
            Some("entities".into())
        );
        // A ratio is two numbers, not a time of day; `1` may be written `one`.
        same(
            "Crop the banner to 16:9",
            "Resize that banner so its width and height are 16 by 9",
        );
        same(
            "Book a 1:1 with Dana about the roadmap",
            "Roadmap questions from Dana: a one-on-one meeting",
        );
        assert_eq!(
            why("Crop the banner to 16:9", "Crop the banner to 4:3"),
            Some("numbers".into())
        );
        // `half an hour`, `a quarter of an hour`, `double`.
        same(
            "Block 30 minutes for the demo",
            "Reserve half an hour in the calendar for the demo",
        );
        same(
            "Remind me 15 minutes before the demo",
            "Send me a reminder a quarter of an hour ahead of the demo",
        );
        assert_eq!(
            why(
                "Remind me 15 minutes before the demo",
                "Send me a reminder half an hour ahead of the demo"
            ),
            Some("numbers".into())
        );
        same(
            "Why was the card charged twice for the course?",
            "The card shows a double charge for the course, why?",
        );
        // One unit of time matches the unit with no number.
        same(
            "A week of free trial for every new team",
            "Every new team gets a free trial of one week",
        );
        same(
            "Send the survey 24 hours after checkout",
            "A day after checkout, send the survey",
        );
        assert_eq!(
            why(
                "Send the survey 48 hours after checkout",
                "A day after checkout, send the survey"
            ),
            Some("numbers".into())
        );
    }

    #[test]
    fn a_place_matches_its_adjective() {
        same(
            "List the suppliers based in Mexico",
            "Which of our suppliers are Mexican?",
        );
        same("Which orders ship to Canada?", "Show the Canadian orders");
        same(
            "Prices for customers in Italy",
            "Prices for Italian customers",
        );
        assert_eq!(
            why(
                "Prices for customers in Austria",
                "Prices for Australian customers"
            ),
            Some("entities".into())
        );
        assert_eq!(
            why(
                "Prices for customers in Spain",
                "Prices for Italian customers"
            ),
            Some("entities".into())
        );
    }

    #[test]
    fn words_that_trade_places_are_refused() {
        assert_eq!(
            why(
                "Raising prices cut churn by 2% and grew sales by 5%.",
                "Raising prices cut sales by 2% and grew churn by 5%."
            ),
            Some("roles".into())
        );
        // A list in another order is the same list.
        same(
            "Order pens, paper and staples for the office",
            "Order paper, pens and staples for the office",
        );
        // A moved word keeps its place among the others.
        same(
            "Tomorrow, cancel the standup",
            "Cancel the standup tomorrow",
        );
    }

    #[test]
    fn only_a_person_asks_how_to_do_something() {
        same(
            "Compare the prices of the oak and the pine desk",
            "How do the oak desk and the pine desk compare in price?",
        );
        assert_eq!(
            why(
                "Compare the prices of the oak and the pine desk",
                "How do I compare the prices of the oak and the pine desk?"
            ),
            Some("question".into())
        );
        assert_eq!(
            why("How to export a report?", "Export the report"),
            Some("question".into())
        );
    }

    #[test]
    fn guard_compares_structured_fields_exactly() {
        assert!(!ok(json!({"qty": 3}), json!({"qty": 30})));
        assert!(ok(json!({"qty": 3}), json!({"qty": 3.0})));
        assert!(!ok(json!({"status": "open"}), json!({"status": "closed"})));
        assert!(!ok(json!({"a": true}), json!({"a": false})));
        assert!(!ok(json!({"a": 1}), json!({"a": 1, "b": 2})));
        assert!(!ok(json!({"a": [1, 2]}), json!({"a": [1]})));
        let exact = vec!["note".to_owned()];
        let (a, b) = (
            json!({"note": "leave the parcel with the neighbour"}),
            json!({"note": "the neighbour can take the parcel in"}),
        );
        assert!(guard(&a, &b, &[]).is_ok());
        let e = guard(&a, &b, &exact).unwrap_err();
        assert_eq!(e.path, "note");
    }

    #[test]
    fn settings_from_the_cache_block() {
        let s =
            SemanticSettings::from_yaml("enabled: true\ndistance_threshold: 0.2\nttl: 60").unwrap();
        assert_eq!(s.distance_threshold, 0.2);
        assert_eq!(s.ttl, Duration::from_secs(60));
        let d = SemanticSettings::from_yaml("{}").unwrap();
        assert_eq!(d, SemanticSettings::default());
        assert!(SemanticSettings::from_yaml("ttl: 0").is_err());
        assert!(SemanticSettings::from_yaml("distance_threshold: 3").is_err());
        assert!(SemanticSettings::from_yaml("treshold: 0.1").is_err());
    }
}
