//! Vector index schemas declared in YAML (the RedisVL schema format) and the
//! RediSearch index built from one: idempotent creation, schema-change
//! detection and recreation, document loading and KNN queries with tag and
//! numeric filters.
//!
//! ```yaml
//! index: {name: docs, prefix: doc, storage_type: hash}
//! fields:
//!   - {name: feature, type: tag}
//!   - {name: body, type: text}
//!   - {name: year, type: numeric}
//!   - name: embedding
//!     type: vector
//!     attrs: {algorithm: hnsw, dims: 384, distance_metric: cosine, datatype: float32, m: 16, ef_construction: 200, ef_runtime: 10}
//! ```
//!
//! A document with id `x` lives in the Redis HASH `<prefix><key_separator>x`
//! (`doc:x`); vectors are stored as little-endian `f32` bytes.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Embedder;
use crate::digest::{canonical_json, hex};

/// The alias of the KNN distance in queries; no schema field may use it.
pub const DISTANCE_FIELD: &str = "__vector_distance";

/// HSET commands sent per pipeline round trip by [`VectorIndex::load`]:
/// HNSW insertion costs about a millisecond per vector, so a round trip stays
/// well under the client's response timeout (500 ms by default).
const LOAD_BATCH: usize = 100;

/// Why a schema could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The YAML does not parse into the schema's shape.
    #[error("failed to parse the index schema{}: {message}", origin.as_deref().map(|o| format!(" {o}")).unwrap_or_default())]
    Yaml {
        /// Where the schema came from (a file path), if known.
        origin: Option<String>,
        /// The parser's message, with its line and column.
        message: String,
    },
    /// The schema parses but one of its parts is wrong.
    #[error("invalid index schema{}: {location}: {problem}", origin.as_deref().map(|o| format!(" {o}")).unwrap_or_default())]
    Invalid {
        /// Where the schema came from (a file path), if known.
        origin: Option<String>,
        /// Which part: `index.name`, `fields[2] (embedding).attrs.dims`, ...
        location: String,
        /// What is wrong and what is accepted.
        problem: String,
    },
}

/// Why an index operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The server answers `unknown command 'FT.*'`.
    #[error(
        "Redis has no search module (RediSearch): use Redis Stack / scripts/redis.sh (the server said: {message})"
    )]
    NoSearchModule {
        /// The server's reply.
        message: String,
    },
    /// The live index was created from another schema and recreation is not allowed.
    #[error(
        "the schema of index `{index}` changed (live schema hash {live}, declared {declared}); to migrate, allow \
         recreation (SchemaChangePolicy::Recreate: the index is dropped without its documents and created again, \
         RediSearch re-indexes the existing hashes) or drop it by hand with `FT.DROPINDEX {index}`"
    )]
    SchemaChanged {
        /// The index name.
        index: String,
        /// The hash stored when the live index was created (`none` when it was not created by EOL).
        live: String,
        /// The hash of the declared schema.
        declared: String,
    },
    /// Vectors of one length meet an index field of another.
    #[error(
        "dimension mismatch for index `{index}` field `{field}`: the schema declares dims {schema_dims} but {source_name} gives {actual} dimensions; \
         make the schema's dims {actual} (or use an embedder of {schema_dims} dimensions)"
    )]
    DimensionMismatch {
        /// The index name.
        index: String,
        /// The vector field.
        field: String,
        /// The dimension the schema declares.
        schema_dims: usize,
        /// The dimension met.
        actual: usize,
        /// What gave the vector (`embedder `all-MiniLM-L6-v2``, `the query vector`, `document `x``).
        source_name: String,
    },
    /// A filter names a field the schema lacks or uses it with the wrong type.
    #[error("invalid filter for index `{index}`: field `{field}`: {problem}")]
    Filter {
        /// The index name.
        index: String,
        /// The field named by the filter.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The schema has no vector field to search.
    #[error("index `{index}` has no vector field: KNN needs one in its schema")]
    NoVectorField {
        /// The index name.
        index: String,
    },
    /// A Redis command failed.
    #[error("failed to {action} for index `{index}`: {source}")]
    Redis {
        /// What was being done.
        action: String,
        /// The index name.
        index: String,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },
    /// A reply did not have the expected shape.
    #[error("failed to {action} for index `{index}`: unexpected reply: {detail}")]
    Reply {
        /// What was being done.
        action: String,
        /// The index name.
        index: String,
        /// What was unexpected.
        detail: String,
    },
}

/// The `index:` block of a schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexInfo {
    /// The RediSearch index name.
    pub name: String,
    /// The key prefix of the documents (without the separator).
    pub prefix: String,
    /// Between the prefix and the document id (`:` by default).
    #[serde(default = "default_key_separator")]
    pub key_separator: String,
    /// Only `hash` is supported.
    #[serde(default = "default_storage_type")]
    pub storage_type: String,
}

fn default_key_separator() -> String {
    ":".to_owned()
}

fn default_storage_type() -> String {
    "hash".to_owned()
}

/// The type of an indexed field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Exact-match labels (`@f:{x}`).
    Tag,
    /// Full-text searchable.
    Text,
    /// Numbers, filtered by ranges.
    Numeric,
    /// Fixed-length float vectors for KNN.
    Vector,
}

impl FieldType {
    fn name(self) -> &'static str {
        match self {
            Self::Tag => "tag",
            Self::Text => "text",
            Self::Numeric => "numeric",
            Self::Vector => "vector",
        }
    }
}

/// The vector search algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Approximate nearest neighbours on a graph.
    Hnsw,
    /// Exact brute-force search.
    Flat,
}

/// How vector distances are measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DistanceMetric {
    /// `1 - cos(a, b)`, in `[0, 2]`.
    Cosine,
    /// Squared Euclidean distance.
    L2,
    /// `1 - a·b`.
    Ip,
}

/// The `attrs:` of a field, as written (validated by [`IndexSchema::validate`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldAttrs {
    /// Vector: `hnsw` or `flat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// Vector: the number of dimensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dims: Option<i64>,
    /// Vector: `cosine` (default), `l2` or `ip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_metric: Option<String>,
    /// Vector: only `float32`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datatype: Option<String>,
    /// HNSW: edges per node (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<i64>,
    /// HNSW: candidates kept while building (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef_construction: Option<i64>,
    /// HNSW: candidates kept while querying (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef_runtime: Option<i64>,
    /// Tag: the separator of several values in one field (default `,`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
    /// Tag: match values case-sensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_sensitive: Option<bool>,
    /// Tag, text, numeric: keep a sortable copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sortable: Option<bool>,
    /// Text: the weight in scoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

/// One field of a schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// The hash field name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// Type-specific settings.
    #[serde(default, skip_serializing_if = "is_default_attrs")]
    pub attrs: FieldAttrs,
}

fn is_default_attrs(a: &FieldAttrs) -> bool {
    *a == FieldAttrs::default()
}

/// The resolved settings of a vector field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VectorParams {
    /// HNSW or FLAT.
    pub algorithm: Algorithm,
    /// Number of dimensions.
    pub dims: usize,
    /// The distance metric.
    pub metric: DistanceMetric,
    /// HNSW `M`.
    pub m: u32,
    /// HNSW `EF_CONSTRUCTION`.
    pub ef_construction: u32,
    /// HNSW `EF_RUNTIME`.
    pub ef_runtime: u32,
}

/// An index schema in the RedisVL format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexSchema {
    /// Name, prefix and storage.
    pub index: IndexInfo,
    /// The indexed fields.
    pub fields: Vec<FieldSpec>,
}

impl IndexSchema {
    /// Parses and validates a schema from YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, SchemaError> {
        Self::parse(text, None)
    }

    /// Reads, parses and validates a schema file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, SchemaError> {
        let origin = Some(path.display().to_string());
        let text = std::fs::read_to_string(path).map_err(|e| SchemaError::Yaml {
            origin: origin.clone(),
            message: format!("failed to read: {e}"),
        })?;
        Self::parse(&text, origin)
    }

    fn parse(text: &str, origin: Option<String>) -> Result<Self, SchemaError> {
        let schema: Self = serde_yaml::from_str(text).map_err(|e| SchemaError::Yaml {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        schema.validate().map_err(|e| match e {
            SchemaError::Invalid {
                location, problem, ..
            } => SchemaError::Invalid {
                origin,
                location,
                problem,
            },
            other => other,
        })?;
        Ok(schema)
    }

    /// Checks every part; the error names the part and what is wrong.
    pub fn validate(&self) -> Result<(), SchemaError> {
        let invalid = |location: String, problem: String| SchemaError::Invalid {
            origin: None,
            location,
            problem,
        };
        let ident_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.'))
        };
        if !ident_ok(&self.index.name) {
            return Err(invalid(
                "index.name".into(),
                format!(
                    "`{}` must be non-empty and use only letters, digits, `_`, `-`, `:`, `.`",
                    self.index.name
                ),
            ));
        }
        if self.index.prefix.is_empty() || self.index.prefix.contains(char::is_whitespace) {
            return Err(invalid(
                "index.prefix".into(),
                format!("`{}` must be non-empty without spaces", self.index.prefix),
            ));
        }
        if self.index.storage_type != "hash" {
            return Err(invalid(
                "index.storage_type".into(),
                format!(
                    "`{}` is not supported; use `hash` (vectors as little-endian float32 bytes)",
                    self.index.storage_type
                ),
            ));
        }
        if self.fields.is_empty() {
            return Err(invalid(
                "fields".into(),
                "at least one field is needed".into(),
            ));
        }
        let mut seen = HashSet::new();
        let mut vector_field: Option<&str> = None;
        for (i, f) in self.fields.iter().enumerate() {
            let at = |part: &str| format!("fields[{i}] ({}){part}", f.name);
            if f.name.is_empty()
                || !f
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(invalid(
                    at(".name"),
                    "field names use only letters, digits and `_`".into(),
                ));
            }
            if f.name == DISTANCE_FIELD {
                return Err(invalid(
                    at(".name"),
                    format!("`{DISTANCE_FIELD}` is reserved for the KNN distance"),
                ));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(invalid(
                    at(".name"),
                    "a field of this name comes earlier".into(),
                ));
            }
            let a = &f.attrs;
            let vector_only = [
                ("algorithm", a.algorithm.is_some()),
                ("dims", a.dims.is_some()),
                ("distance_metric", a.distance_metric.is_some()),
                ("datatype", a.datatype.is_some()),
                ("m", a.m.is_some()),
                ("ef_construction", a.ef_construction.is_some()),
                ("ef_runtime", a.ef_runtime.is_some()),
            ];
            let misplaced = |set: &[(&str, bool)], kinds: &str| {
                set.iter().find(|(_, present)| *present).map(|(name, _)| {
                    invalid(
                        at(&format!(".attrs.{name}")),
                        format!(
                            "applies to {kinds} fields only, not to a {} field",
                            f.kind.name()
                        ),
                    )
                })
            };
            if f.kind != FieldType::Vector
                && let Some(e) = misplaced(&vector_only, "vector")
            {
                return Err(e);
            }
            if f.kind != FieldType::Tag
                && let Some(e) = misplaced(
                    &[
                        ("separator", a.separator.is_some()),
                        ("case_sensitive", a.case_sensitive.is_some()),
                    ],
                    "tag",
                )
            {
                return Err(e);
            }
            if f.kind != FieldType::Text
                && let Some(e) = misplaced(&[("weight", a.weight.is_some())], "text")
            {
                return Err(e);
            }
            if let Some(sep) = &a.separator
                && sep.chars().count() != 1
            {
                return Err(invalid(
                    at(".attrs.separator"),
                    format!("`{sep}` must be exactly one character"),
                ));
            }
            if f.kind == FieldType::Vector {
                if let Some(other) = vector_field {
                    return Err(invalid(
                        at(""),
                        format!("a schema has at most one vector field (`{other}` is one)"),
                    ));
                }
                vector_field = Some(&f.name);
                self.vector_params_of(i, f)
                    .map_err(|(part, problem)| invalid(at(&part), problem))?;
            }
        }
        Ok(())
    }

    fn vector_params_of(&self, _i: usize, f: &FieldSpec) -> Result<VectorParams, (String, String)> {
        let a = &f.attrs;
        let algorithm = match a
            .algorithm
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("hnsw") => Algorithm::Hnsw,
            Some("flat") => Algorithm::Flat,
            Some(other) => {
                return Err((
                    ".attrs.algorithm".into(),
                    format!("unknown algorithm `{other}`; use `hnsw` or `flat`"),
                ));
            }
            None => {
                return Err((
                    ".attrs.algorithm".into(),
                    "missing; a vector field needs `hnsw` or `flat`".into(),
                ));
            }
        };
        let dims = match a.dims {
            Some(d) if (1..=32_768).contains(&d) => d as usize,
            Some(d) => {
                return Err((
                    ".attrs.dims".into(),
                    format!("{d} is out of range; dims must be between 1 and 32768"),
                ));
            }
            None => {
                return Err((
                    ".attrs.dims".into(),
                    "missing; a vector field needs its number of dimensions".into(),
                ));
            }
        };
        let metric = match a
            .distance_metric
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("cosine") => DistanceMetric::Cosine,
            Some("l2") => DistanceMetric::L2,
            Some("ip") => DistanceMetric::Ip,
            Some(other) => {
                return Err((
                    ".attrs.distance_metric".into(),
                    format!("unknown metric `{other}`; use `cosine`, `l2` or `ip`"),
                ));
            }
        };
        match a
            .datatype
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("float32") => {}
            Some(other) => {
                return Err((
                    ".attrs.datatype".into(),
                    format!("`{other}` is not supported; use `float32`"),
                ));
            }
        }
        let hnsw_param =
            |name: &str, v: Option<i64>, default: u32| -> Result<u32, (String, String)> {
                match v {
                    None => Ok(default),
                    Some(_) if algorithm == Algorithm::Flat => Err((
                        format!(".attrs.{name}"),
                        "applies to the hnsw algorithm only, not to flat".into(),
                    )),
                    Some(x) if (1..=1_000_000).contains(&x) => Ok(x as u32),
                    Some(x) => Err((
                        format!(".attrs.{name}"),
                        format!("{x} is out of range; it must be a positive integer"),
                    )),
                }
            };
        Ok(VectorParams {
            algorithm,
            dims,
            metric,
            m: hnsw_param("m", a.m, 16)?,
            ef_construction: hnsw_param("ef_construction", a.ef_construction, 200)?,
            ef_runtime: hnsw_param("ef_runtime", a.ef_runtime, 10)?,
        })
    }

    /// The vector field and its settings, if the schema has one.
    pub fn vector_field(&self) -> Option<(&FieldSpec, VectorParams)> {
        self.fields.iter().enumerate().find_map(|(i, f)| {
            (f.kind == FieldType::Vector)
                .then(|| self.vector_params_of(i, f).ok().map(|p| (f, p)))
                .flatten()
        })
    }

    /// The field of this name, if any.
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The Redis key of document `id`.
    pub fn key(&self, id: &str) -> String {
        format!("{}{}{id}", self.index.prefix, self.index.key_separator)
    }

    /// A stable hash of the schema (sha256 of its canonical JSON form), stored
    /// next to the index to notice changes.
    pub fn hash(&self) -> String {
        let json = serde_json::to_value(self).unwrap_or_default();
        hex(&Sha256::digest(canonical_json(&json).as_bytes()))
    }

    /// The arguments of `FT.CREATE` after the index name.
    fn create_args(&self) -> Vec<String> {
        let mut args = vec![
            "ON".to_owned(),
            "HASH".to_owned(),
            "PREFIX".to_owned(),
            "1".to_owned(),
            format!("{}{}", self.index.prefix, self.index.key_separator),
            "SCHEMA".to_owned(),
        ];
        for (i, f) in self.fields.iter().enumerate() {
            args.push(f.name.clone());
            let a = &f.attrs;
            match f.kind {
                FieldType::Tag => {
                    args.push("TAG".into());
                    if let Some(sep) = &a.separator {
                        args.extend(["SEPARATOR".into(), sep.clone()]);
                    }
                    if a.case_sensitive == Some(true) {
                        args.push("CASESENSITIVE".into());
                    }
                }
                FieldType::Text => {
                    args.push("TEXT".into());
                    if let Some(w) = a.weight {
                        args.extend(["WEIGHT".into(), w.to_string()]);
                    }
                }
                FieldType::Numeric => args.push("NUMERIC".into()),
                FieldType::Vector => {
                    // Validated before any index is built from the schema.
                    let Ok(p) = self.vector_params_of(i, f) else {
                        continue;
                    };
                    let metric = match p.metric {
                        DistanceMetric::Cosine => "COSINE",
                        DistanceMetric::L2 => "L2",
                        DistanceMetric::Ip => "IP",
                    };
                    let mut attrs = vec![
                        "TYPE".to_owned(),
                        "FLOAT32".to_owned(),
                        "DIM".to_owned(),
                        p.dims.to_string(),
                        "DISTANCE_METRIC".to_owned(),
                        metric.to_owned(),
                    ];
                    let algorithm = match p.algorithm {
                        Algorithm::Flat => "FLAT",
                        Algorithm::Hnsw => {
                            attrs.extend([
                                "M".to_owned(),
                                p.m.to_string(),
                                "EF_CONSTRUCTION".to_owned(),
                                p.ef_construction.to_string(),
                                "EF_RUNTIME".to_owned(),
                                p.ef_runtime.to_string(),
                            ]);
                            "HNSW"
                        }
                    };
                    args.extend(["VECTOR".into(), algorithm.into(), attrs.len().to_string()]);
                    args.extend(attrs);
                }
            }
            if a.sortable == Some(true) && f.kind != FieldType::Vector {
                args.push("SORTABLE".into());
            }
        }
        args
    }
}

/// A vector as the little-endian `f32` bytes RediSearch reads.
pub fn vector_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// What [`VectorIndex::ensure`] does when the live index has another schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemaChangePolicy {
    /// Fail with [`IndexError::SchemaChanged`], which says how to migrate.
    #[default]
    Error,
    /// Drop the index (keeping the documents) and create it again; RediSearch
    /// re-indexes the existing hashes in the background.
    Recreate,
}

/// What [`VectorIndex::ensure`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnsureOutcome {
    /// The index did not exist and was created.
    Created,
    /// The index exists with this schema.
    Unchanged,
    /// The index existed with another schema and was recreated.
    Recreated,
}

/// One value of a document field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A string (tag or text or unindexed).
    Text(String),
    /// A number.
    Number(f64),
    /// A vector, stored as little-endian `f32` bytes.
    Vector(Vec<f32>),
    /// Raw bytes.
    Bytes(Vec<u8>),
}

/// A document to load into an index.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Its id (the key is `<prefix><separator><id>`).
    pub id: String,
    /// Its fields; names outside the schema are stored but not indexed.
    pub fields: Vec<(String, FieldValue)>,
    /// Seconds until the document expires, if it should.
    pub ttl: Option<Duration>,
}

impl Document {
    /// An empty document.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            fields: Vec::new(),
            ttl: None,
        }
    }

    /// Adds a string field (tag, text, or unindexed).
    pub fn text(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields
            .push((name.into(), FieldValue::Text(value.into())));
        self
    }

    /// Adds a numeric field.
    pub fn number(mut self, name: impl Into<String>, value: f64) -> Self {
        self.fields.push((name.into(), FieldValue::Number(value)));
        self
    }

    /// Adds a vector field.
    pub fn vector(mut self, name: impl Into<String>, value: Vec<f32>) -> Self {
        self.fields.push((name.into(), FieldValue::Vector(value)));
        self
    }

    /// Makes the document expire after `ttl`.
    pub fn expire(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

enum Clause {
    Tag(String, Vec<String>),
    Range(String, Option<f64>, Option<f64>),
}

/// A pre-filter of KNN queries: tag equality and numeric ranges, combined with AND.
#[derive(Default)]
pub struct Filter {
    clauses: Vec<Clause>,
}

impl Filter {
    /// No condition: every document is a candidate.
    pub fn all() -> Self {
        Self::default()
    }

    /// Documents whose tag field `field` has the value `value`. A stored value
    /// is split on the field's separator (`,` by default), so store values
    /// that do not contain it.
    pub fn tag(field: impl Into<String>, value: impl Into<String>) -> Self {
        Self::all().and_tag(field, value)
    }

    /// Adds: tag field `field` has the value `value`.
    pub fn and_tag(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.clauses
            .push(Clause::Tag(field.into(), vec![value.into()]));
        self
    }

    /// Adds: tag field `field` has one of `values`.
    pub fn and_tag_any<S: Into<String>>(
        mut self,
        field: impl Into<String>,
        values: impl IntoIterator<Item = S>,
    ) -> Self {
        self.clauses.push(Clause::Tag(
            field.into(),
            values.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Adds: numeric field `field` lies in `[min, max]` (an open end when `None`).
    pub fn and_range(
        mut self,
        field: impl Into<String>,
        min: Option<f64>,
        max: Option<f64>,
    ) -> Self {
        self.clauses.push(Clause::Range(field.into(), min, max));
        self
    }

    /// Whether the filter has no condition.
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// The RediSearch query expression (`*` when empty), checked against `schema`.
    pub fn to_query(&self, schema: &IndexSchema) -> Result<String, IndexError> {
        if self.clauses.is_empty() {
            return Ok("*".to_owned());
        }
        let err = |field: &str, problem: String| IndexError::Filter {
            index: schema.index.name.clone(),
            field: field.to_owned(),
            problem,
        };
        let mut parts = Vec::with_capacity(self.clauses.len());
        for clause in &self.clauses {
            let (Clause::Tag(field, _) | Clause::Range(field, _, _)) = clause;
            let Some(spec) = schema.field(field) else {
                return Err(err(field, "the schema has no such field".into()));
            };
            match clause {
                Clause::Tag(field, values) => {
                    if spec.kind != FieldType::Tag {
                        return Err(err(
                            field,
                            format!(
                                "tag equality needs a tag field; this one is {}",
                                spec.kind.name()
                            ),
                        ));
                    }
                    if values.is_empty() || values.iter().any(String::is_empty) {
                        return Err(err(field, "tag values must be non-empty".into()));
                    }
                    let alternatives: Vec<String> = values.iter().map(|v| escape_tag(v)).collect();
                    parts.push(format!("@{field}:{{{}}}", alternatives.join(" | ")));
                }
                Clause::Range(field, min, max) => {
                    if spec.kind != FieldType::Numeric {
                        return Err(err(
                            field,
                            format!(
                                "a range needs a numeric field; this one is {}",
                                spec.kind.name()
                            ),
                        ));
                    }
                    let bound = |b: Option<f64>, open: &str| -> Result<String, IndexError> {
                        match b {
                            None => Ok(open.to_owned()),
                            Some(x) if x.is_nan() => Err(err(field, "NaN is not a bound".into())),
                            Some(x) if x == f64::INFINITY => Ok("+inf".into()),
                            Some(x) if x == f64::NEG_INFINITY => Ok("-inf".into()),
                            Some(x) => Ok(format!("{x}")),
                        }
                    };
                    parts.push(format!(
                        "@{field}:[{} {}]",
                        bound(*min, "-inf")?,
                        bound(*max, "+inf")?
                    ));
                }
            }
        }
        Ok(format!("({})", parts.join(" ")))
    }
}

/// Escapes a tag value for a RediSearch query (DIALECT 2): every character
/// other than a letter, digit or `_` is preceded by a backslash.
pub fn escape_tag(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for c in value.chars() {
        if !(c.is_alphanumeric() || c == '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One KNN result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The document id (the key without the prefix).
    pub id: String,
    /// The Redis key.
    pub key: String,
    /// The distance to the query vector under the schema's metric.
    pub distance: f32,
    /// The requested fields the document has.
    pub fields: HashMap<String, String>,
}

/// A KNN query with all its options.
pub struct KnnQuery<'a> {
    /// The query vector.
    pub vector: &'a [f32],
    /// How many neighbours.
    pub k: usize,
    /// The pre-filter.
    pub filter: &'a Filter,
    /// Fields to return with each hit.
    pub return_fields: &'a [&'a str],
    /// HNSW `EF_RUNTIME` for this query (the schema's when `None`).
    pub ef_runtime: Option<u32>,
}

/// A RediSearch index built from an [`IndexSchema`].
#[derive(Clone)]
pub struct VectorIndex {
    schema: IndexSchema,
    hash: String,
    conn: ConnectionManager,
    policy: SchemaChangePolicy,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("name", &self.schema.index.name)
            .field("hash", &self.hash)
            .field("policy", &self.policy)
            .finish()
    }
}

/// The server's message in lower case, whole: the client splits
/// `Unknown index name` into a code (`Unknown`) and a detail.
fn message(e: &redis::RedisError) -> String {
    e.to_string()
        .to_ascii_lowercase()
        .replace('"', "")
        .replace(": ", " ")
}

/// Whether the server lacks RediSearch, judged from an error.
fn no_module(e: &redis::RedisError) -> bool {
    let s = message(e);
    s.contains("unknown command") && s.contains("ft.")
}

/// Whether an error says the index does not exist.
fn missing_index(e: &redis::RedisError) -> bool {
    let s = message(e);
    s.contains("unknown index name") || s.contains("no such index")
}

fn as_string(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::Int(i) => Some(i.to_string()),
        redis::Value::Double(d) => Some(d.to_string()),
        redis::Value::Okay => Some("OK".into()),
        redis::Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// Live state of an index from `FT.INFO`.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexStatus {
    /// Documents indexed.
    pub num_docs: u64,
    /// Whether a background scan (after creation) is still running.
    pub indexing: bool,
    /// Fraction of the existing keys scanned, in `[0, 1]`.
    pub percent_indexed: f64,
}

impl VectorIndex {
    /// An index for `schema` on `conn` (nothing is sent until [`Self::ensure`]).
    pub fn new(conn: ConnectionManager, schema: IndexSchema) -> Result<Self, SchemaError> {
        schema.validate()?;
        Ok(Self {
            hash: schema.hash(),
            schema,
            conn,
            policy: SchemaChangePolicy::Error,
        })
    }

    /// Sets what [`Self::ensure`] does on a schema change.
    pub fn with_policy(mut self, policy: SchemaChangePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Opens the index `<base>-<dims>` (`dims` of `embedder`) with the schema
    /// `schema(name, dims)` for the vectors of `embedder`, creating it, or
    /// recreating it on a schema change: for an index of what can be rebuilt.
    pub(crate) async fn open_recreatable<E>(
        conn: ConnectionManager,
        embedder: &dyn Embedder,
        base: &str,
        schema: impl FnOnce(&str, usize) -> IndexSchema,
    ) -> Result<Self, E>
    where
        E: From<SchemaError> + From<IndexError>,
    {
        let dims = embedder.dimension();
        let index = Self::new(conn, schema(&format!("{base}-{dims}"), dims))?
            .with_policy(SchemaChangePolicy::Recreate);
        index.check_embedder(embedder)?;
        index.ensure().await?;
        Ok(index)
    }

    /// The schema.
    pub fn schema(&self) -> &IndexSchema {
        &self.schema
    }

    /// The connection the index uses.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The index name.
    pub fn name(&self) -> &str {
        &self.schema.index.name
    }

    /// The key holding the hash of the schema the live index was created from.
    pub fn schema_hash_key(&self) -> String {
        format!("eol:index-schema:{}", self.schema.index.name)
    }

    fn redis_err(&self, action: &str, source: redis::RedisError) -> IndexError {
        if no_module(&source) {
            IndexError::NoSearchModule {
                message: source.to_string(),
            }
        } else {
            IndexError::Redis {
                action: action.to_owned(),
                index: self.schema.index.name.clone(),
                source,
            }
        }
    }

    fn reply_err(&self, action: &str, detail: impl Into<String>) -> IndexError {
        IndexError::Reply {
            action: action.to_owned(),
            index: self.schema.index.name.clone(),
            detail: detail.into(),
        }
    }

    /// Fails when `embedder`'s vectors do not have the schema's dimension.
    pub fn check_embedder(&self, embedder: &dyn Embedder) -> Result<(), IndexError> {
        self.check_dims(
            embedder.dimension(),
            &format!("embedder `{}`", embedder.model_id()),
        )
    }

    fn check_dims(&self, actual: usize, source_name: &str) -> Result<(), IndexError> {
        let (field, params) =
            self.schema
                .vector_field()
                .ok_or_else(|| IndexError::NoVectorField {
                    index: self.schema.index.name.clone(),
                })?;
        if params.dims != actual {
            return Err(IndexError::DimensionMismatch {
                index: self.schema.index.name.clone(),
                field: field.name.clone(),
                schema_dims: params.dims,
                actual,
                source_name: source_name.to_owned(),
            });
        }
        Ok(())
    }

    /// Whether the index exists on the server.
    pub async fn exists(&self) -> Result<bool, IndexError> {
        match self.info_raw().await {
            Ok(_) => Ok(true),
            Err(e) if missing_index(&e) => Ok(false),
            Err(e) => Err(self.redis_err("read FT.INFO", e)),
        }
    }

    async fn info_raw(&self) -> redis::RedisResult<redis::Value> {
        let mut conn = self.conn.clone();
        redis::cmd("FT.INFO")
            .arg(&self.schema.index.name)
            .query_async(&mut conn)
            .await
    }

    /// The live state of the index (`FT.INFO`).
    pub async fn status(&self) -> Result<IndexStatus, IndexError> {
        let info = self
            .info_raw()
            .await
            .map_err(|e| self.redis_err("read FT.INFO", e))?;
        let pairs: Vec<(String, &redis::Value)> = match &info {
            redis::Value::Array(items) => items
                .chunks(2)
                .filter_map(|c| match c {
                    [k, v] => as_string(k).map(|k| (k, v)),
                    _ => None,
                })
                .collect(),
            redis::Value::Map(items) => items
                .iter()
                .filter_map(|(k, v)| as_string(k).map(|k| (k, v)))
                .collect(),
            other => return Err(self.reply_err("read FT.INFO", format!("{other:?}"))),
        };
        let get = |name: &str| -> Option<f64> {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| as_string(v))
                .and_then(|s| s.parse().ok())
        };
        Ok(IndexStatus {
            num_docs: get("num_docs").unwrap_or(0.0) as u64,
            indexing: get("indexing").unwrap_or(0.0) != 0.0,
            percent_indexed: get("percent_indexed").unwrap_or(1.0),
        })
    }

    /// Waits until the background scan that follows creation has finished.
    pub async fn wait_indexed(&self, timeout: Duration) -> Result<IndexStatus, IndexError> {
        let start = Instant::now();
        loop {
            let status = self.status().await?;
            if !status.indexing || start.elapsed() >= timeout {
                return Ok(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn create(&self) -> Result<bool, IndexError> {
        let mut conn = self.conn.clone();
        let created: redis::RedisResult<()> = redis::cmd("FT.CREATE")
            .arg(&self.schema.index.name)
            .arg(self.schema.create_args())
            .query_async(&mut conn)
            .await;
        match created {
            Ok(()) => {}
            // Another process created it between our check and our create.
            Err(e)
                if e.to_string()
                    .to_ascii_lowercase()
                    .contains("index already exists") =>
            {
                return Ok(false);
            }
            Err(e) => return Err(self.redis_err("create the index (FT.CREATE)", e)),
        }
        let _: () = redis::cmd("SET")
            .arg(self.schema_hash_key())
            .arg(&self.hash)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis_err("store the schema hash", e))?;
        Ok(true)
    }

    /// Creates the index if it is missing; when it exists with another schema,
    /// recreates it or fails, as the [`SchemaChangePolicy`] says.
    pub async fn ensure(&self) -> Result<EnsureOutcome, IndexError> {
        if !self.exists().await? && self.create().await? {
            tracing::info!(index = %self.name(), "created the vector index");
            return Ok(EnsureOutcome::Created);
        }
        let mut conn = self.conn.clone();
        let live: Option<String> = redis::cmd("GET")
            .arg(self.schema_hash_key())
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis_err("read the schema hash", e))?;
        if live.as_deref() == Some(self.hash.as_str()) {
            return Ok(EnsureOutcome::Unchanged);
        }
        let live = live.unwrap_or_else(|| "none".to_owned());
        if self.policy == SchemaChangePolicy::Error {
            return Err(IndexError::SchemaChanged {
                index: self.name().to_owned(),
                live,
                declared: self.hash.clone(),
            });
        }
        tracing::warn!(index = %self.name(), live = %live, declared = %self.hash,
            "the index schema changed: dropping the index (documents kept) and creating it again");
        self.drop_index(false).await?;
        self.create().await?;
        Ok(EnsureOutcome::Recreated)
    }

    /// Drops the index; its documents too when `delete_documents`. A missing index is not an error.
    pub async fn drop_index(&self, delete_documents: bool) -> Result<(), IndexError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("FT.DROPINDEX");
        cmd.arg(self.name());
        if delete_documents {
            cmd.arg("DD");
        }
        match cmd.query_async::<()>(&mut conn).await {
            Ok(()) => {}
            Err(e) if missing_index(&e) => {}
            Err(e) => return Err(self.redis_err("drop the index (FT.DROPINDEX)", e)),
        }
        let _: () = redis::cmd("DEL")
            .arg(self.schema_hash_key())
            .query_async(&mut conn)
            .await
            .map_err(|e| self.redis_err("delete the schema hash", e))?;
        Ok(())
    }

    /// Writes documents (HSET, plus EXPIRE when they have a TTL), pipelined in batches.
    pub async fn load(&self, docs: &[Document]) -> Result<(), IndexError> {
        let vector = self
            .schema
            .vector_field()
            .map(|(f, p)| (f.name.clone(), p.dims));
        for doc in docs {
            for (name, value) in &doc.fields {
                if let (FieldValue::Vector(v), Some((field, dims))) = (value, &vector)
                    && name == field
                    && v.len() != *dims
                {
                    return Err(IndexError::DimensionMismatch {
                        index: self.name().to_owned(),
                        field: field.clone(),
                        schema_dims: *dims,
                        actual: v.len(),
                        source_name: format!("document `{}`", doc.id),
                    });
                }
            }
        }
        let mut conn = self.conn.clone();
        for batch in docs.chunks(LOAD_BATCH) {
            let mut pipe = redis::pipe();
            for doc in batch {
                let key = self.schema.key(&doc.id);
                let mut hset = redis::cmd("HSET");
                hset.arg(&key);
                for (name, value) in &doc.fields {
                    hset.arg(name);
                    match value {
                        FieldValue::Text(s) => hset.arg(s),
                        FieldValue::Number(x) => hset.arg(x.to_string()),
                        FieldValue::Vector(v) => hset.arg(vector_bytes(v)),
                        FieldValue::Bytes(b) => hset.arg(b.as_slice()),
                    };
                }
                pipe.add_command(hset).ignore();
                if let Some(ttl) = doc.ttl {
                    pipe.cmd("PEXPIRE")
                        .arg(&key)
                        .arg(ttl.as_millis().max(1) as u64)
                        .ignore();
                }
            }
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(|e| self.redis_err("load documents (HSET)", e))?;
        }
        Ok(())
    }

    /// The `k` nearest documents to `vector` among those `filter` admits,
    /// nearest first, with `return_fields`.
    pub async fn knn(
        &self,
        vector: &[f32],
        k: usize,
        filter: &Filter,
        return_fields: &[&str],
    ) -> Result<Vec<Hit>, IndexError> {
        self.search(&KnnQuery {
            vector,
            k,
            filter,
            return_fields,
            ef_runtime: None,
        })
        .await
    }

    /// Runs a KNN query. When the index was dropped underneath, it is created
    /// again once ([`Self::ensure`]) and the query retried, with a warning.
    pub async fn search(&self, query: &KnnQuery<'_>) -> Result<Vec<Hit>, IndexError> {
        let (field, _) = self
            .schema
            .vector_field()
            .ok_or_else(|| IndexError::NoVectorField {
                index: self.name().to_owned(),
            })?;
        self.check_dims(query.vector.len(), "the query vector")?;
        let filter = query.filter.to_query(&self.schema)?;
        let ef = query
            .ef_runtime
            .map(|ef| format!(" EF_RUNTIME {ef}"))
            .unwrap_or_default();
        let text = format!(
            "{filter}=>[KNN {} @{} $v{ef} AS {DISTANCE_FIELD}]",
            query.k, field.name
        );
        let mut cmd = redis::cmd("FT.SEARCH");
        cmd.arg(self.name())
            .arg(&text)
            .arg("PARAMS")
            .arg(2)
            .arg("v")
            .arg(vector_bytes(query.vector))
            .arg("SORTBY")
            .arg(DISTANCE_FIELD)
            .arg("ASC")
            .arg("LIMIT")
            .arg(0)
            .arg(query.k)
            .arg("RETURN")
            .arg(query.return_fields.len() + 1)
            .arg(DISTANCE_FIELD)
            .arg(query.return_fields)
            .arg("DIALECT")
            .arg(2);
        let mut conn = self.conn.clone();
        let reply = match cmd.query_async::<redis::Value>(&mut conn).await {
            Ok(r) => r,
            Err(e) if missing_index(&e) => {
                tracing::warn!(index = %self.name(), "the index was dropped underneath; creating it again and retrying the query");
                self.ensure().await?;
                // Small indexes are re-scanned at once; a large one answers with what is indexed so far.
                self.wait_indexed(Duration::from_secs(2)).await?;
                cmd.query_async::<redis::Value>(&mut conn)
                    .await
                    .map_err(|e| {
                        self.redis_err("search (FT.SEARCH) after recreating the index", e)
                    })?
            }
            Err(e) => return Err(self.redis_err("search (FT.SEARCH)", e)),
        };
        self.parse_search(reply)
    }

    fn parse_search(&self, reply: redis::Value) -> Result<Vec<Hit>, IndexError> {
        const ACTION: &str = "parse the FT.SEARCH reply";
        let redis::Value::Array(items) = reply else {
            return Err(self.reply_err(ACTION, format!("{reply:?}")));
        };
        let prefix = format!(
            "{}{}",
            self.schema.index.prefix, self.schema.index.key_separator
        );
        let mut hits = Vec::new();
        let mut rest = items.iter().skip(1);
        while let Some(key) = rest.next() {
            let key =
                as_string(key).ok_or_else(|| self.reply_err(ACTION, "a key is not a string"))?;
            let mut fields = HashMap::new();
            if let Some(redis::Value::Array(kv)) = rest.next() {
                for pair in kv.chunks(2) {
                    if let [k, v] = pair
                        && let (Some(k), Some(v)) = (as_string(k), as_string(v))
                    {
                        fields.insert(k, v);
                    }
                }
            }
            let distance = fields
                .remove(DISTANCE_FIELD)
                .and_then(|d| d.parse::<f32>().ok())
                .ok_or_else(|| self.reply_err(ACTION, format!("no distance for `{key}`")))?;
            hits.push(Hit {
                id: key.strip_prefix(&prefix).unwrap_or(&key).to_owned(),
                key,
                distance,
                fields,
            });
        }
        Ok(hits)
    }
}
