//! Index schemas in the RedisVL YAML format: [`IndexSchema`] and its parts,
//! parsed and validated (the error names the part and what is wrong), their
//! vector settings resolved, a stable hash of each, and the `FT.CREATE`
//! arguments built from one.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::DISTANCE_FIELD;
use crate::digest::{canonical_json, hex};

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
    pub(super) fn name(self) -> &'static str {
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
    pub(super) fn create_args(&self) -> Vec<String> {
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
