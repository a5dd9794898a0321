//! Pre-filters of KNN queries: [`Filter`] (tag equality and numeric ranges,
//! combined with AND) checked against a schema and written as a RediSearch
//! query expression, with tag values escaped.

use super::{FieldType, IndexError, IndexSchema};

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
