//! Shadow comparison: does an implementation's output agree with the output the
//! prototype gave for the same input?
//!
//! An operation's `Compare:` block ([`CompareRule`]) says how its outputs are
//! compared. Without one, enum, number and boolean fields (and strings with a
//! `pattern`, `format` or `const`) must be equal, and free-text strings must
//! mean the same thing. This module is pure: meaning needs an embedding model
//! or a judging model, which only the runner has, so [`compare`] returns the
//! free-text pairs it could not settle ([`TextCheck`]) and the judge's question
//! ([`JudgeRequest`]) for the runner to answer.

use crate::diagnostic::{Collector, Position};
use crate::parse::{check_keys, key_line, yaml_message, yaml_position};
use serde::Serialize;
use serde_json::{Map, Value};

/// The keys a `Compare:` block accepts.
pub const KEYS: [&str; 6] = [
    "exact",
    "fields",
    "tolerance",
    "semantic",
    "distance",
    "judge",
];

/// The largest embedding (cosine) distance at which two free texts still agree,
/// when the rule gives no `distance`. Measured with all-MiniLM-L6-v2: close
/// paraphrases are 0.07-0.09 apart, a negation 0.19, unrelated texts 0.9.
pub const DEFAULT_DISTANCE: f64 = 0.15;

/// How an operation's implementation output is compared with the prototype's
/// (the `Compare:` block; [`CompareRule::default`] when there is none).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct CompareRule {
    /// `exact: true`: the whole output must be equal (canonical JSON: key order
    /// and `1` against `1.0` do not matter), free text included.
    pub exact: bool,
    /// `fields`: only these output fields (dotted paths) are compared; empty: all.
    pub fields: Vec<String>,
    /// `tolerance`: the largest absolute difference between two numbers that
    /// still agree (default 0).
    pub tolerance: f64,
    /// `semantic`: which free-text fields are compared by meaning.
    pub semantic: SemanticFields,
    /// `distance`: the largest embedding distance for a semantic match
    /// (default [`DEFAULT_DISTANCE`]).
    pub distance: Option<f64>,
    /// `judge`: the model decides whether the outputs agree, and says why;
    /// `Some("")` for `judge: true`, else the criterion it is given.
    pub judge: Option<String>,
}

/// Which string fields are compared by meaning rather than character by character.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SemanticFields {
    /// Every free-text string field (`semantic: true`, or no `semantic` key).
    #[default]
    FreeText,
    /// None: free text must be equal too (`semantic: false`).
    Off,
    /// Only these fields (`semantic: [summary, reply.body]`); other strings are exact.
    Only(Vec<String>),
}

impl CompareRule {
    /// The distance a semantic match allows.
    pub fn max_distance(&self) -> f64 {
        self.distance.unwrap_or(DEFAULT_DISTANCE)
    }
}

/// One output field on which the two outputs disagree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// Where, as a dotted path with array indices (`items[2].name`); `""` is the whole output.
    pub path: String,
    /// The prototype's value (`null` when it has none).
    pub expected: Value,
    /// The implementation's value (`null` when it has none).
    pub actual: Value,
    /// Why they disagree.
    pub reason: String,
}

/// Two different free texts whose meaning must be compared by the runner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextCheck {
    /// Where, as in [`Difference::path`].
    pub path: String,
    /// The prototype's text.
    pub expected: String,
    /// The implementation's text.
    pub actual: String,
}

impl TextCheck {
    /// The offline fallback: equal once case, punctuation and spacing are set aside.
    pub fn normalized_equal(&self) -> bool {
        normalize_text(&self.expected) == normalize_text(&self.actual)
    }

    /// The difference to report when the texts do not mean the same.
    pub fn difference(&self, reason: impl Into<String>) -> Difference {
        Difference {
            path: self.path.clone(),
            expected: Value::String(self.expected.clone()),
            actual: Value::String(self.actual.clone()),
            reason: reason.into(),
        }
    }
}

/// The question for the judging model: do these outputs agree?
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeRequest {
    /// What the rule asks the model to check (empty: "the same answer").
    pub criterion: String,
    /// The prototype's output (only the rule's `fields`, when it lists some).
    pub expected: Value,
    /// The implementation's output, likewise.
    pub actual: Value,
}

/// What the pure part of a comparison found.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Comparison {
    /// Fields that differ for certain.
    pub differences: Vec<Difference>,
    /// Free texts that differ in their characters: the runner decides by meaning.
    pub text_checks: Vec<TextCheck>,
    /// Under `judge`, the question for the model (then nothing else is compared).
    pub judge: Option<JudgeRequest>,
}

/// Compares the implementation's output `actual` with the prototype's
/// `expected` under `rule`, field kinds read from the operation's `schema`.
pub fn compare(rule: &CompareRule, schema: &Value, expected: &Value, actual: &Value) -> Comparison {
    let mut out = Comparison::default();
    if let Some(criterion) = &rule.judge {
        let (expected, actual) = if rule.fields.is_empty() {
            (expected.clone(), actual.clone())
        } else {
            (
                project(&rule.fields, expected),
                project(&rule.fields, actual),
            )
        };
        out.judge = Some(JudgeRequest {
            criterion: criterion.clone(),
            expected,
            actual,
        });
        return out;
    }
    let walker = Walker { rule };
    if rule.fields.is_empty() {
        walker.walk("", "", Some(schema), Some(expected), Some(actual), &mut out);
    } else {
        for field in &rule.fields {
            let segments: Vec<&str> = field.split('.').collect();
            walker.field(
                &segments,
                "",
                "",
                Some(schema),
                Some(expected),
                Some(actual),
                &mut out,
            );
        }
    }
    out
}

/// The listed fields of `value`, as an object keyed by their dotted paths.
fn project(fields: &[String], value: &Value) -> Value {
    let mut map = Map::new();
    for field in fields {
        let segments: Vec<&str> = field.split('.').collect();
        map.insert(field.clone(), value_at(value, &segments));
    }
    Value::Object(map)
}

/// The value at `segments` under `value`; through an array, the list of its
/// items' values; `null` where there is none.
fn value_at(value: &Value, segments: &[&str]) -> Value {
    let Some((first, rest)) = segments.split_first() else {
        return value.clone();
    };
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|i| value_at(i, segments)).collect()),
        Value::Object(map) => map.get(*first).map_or(Value::Null, |v| value_at(v, rest)),
        _ => Value::Null,
    }
}

/// Text with case, punctuation and runs of spaces set aside.
pub fn normalize_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() {
                c.to_lowercase().next().unwrap_or(c)
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

struct Walker<'r> {
    rule: &'r CompareRule,
}

impl Walker<'_> {
    /// Follows `segments` (a `fields` entry) down both outputs, through arrays
    /// element by element, and compares what is there.
    #[allow(clippy::too_many_arguments)] // A recursive walk carrying both paths.
    fn field(
        &self,
        segments: &[&str],
        path: &str,
        shape: &str,
        schema: Option<&Value>,
        expected: Option<&Value>,
        actual: Option<&Value>,
        out: &mut Comparison,
    ) {
        let Some((first, rest)) = segments.split_first() else {
            self.walk(path, shape, schema, expected, actual, out);
            return;
        };
        if let (Some(Value::Array(e)), Some(Value::Array(a))) = (expected, actual) {
            if e.len() != a.len() {
                out.differences.push(length_difference(path, e, a));
                return;
            }
            let items = schema.and_then(|s| s.get("items"));
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                let p = format!("{path}[{i}]");
                self.field(segments, &p, shape, items, Some(ev), Some(av), out);
            }
            return;
        }
        let descend = |v: Option<&Value>| v.is_none_or(Value::is_object);
        if !(descend(expected) && descend(actual)) {
            // Not objects on both sides (a string where the prototype had an
            // object, say): the values themselves differ, so compare them whole.
            self.walk(path, shape, schema, expected, actual, out);
            return;
        }
        let sub = schema
            .and_then(|s| s.get("properties"))
            .and_then(|p| p.get(*first));
        let p = join(path, first);
        let s = join(shape, first);
        self.field(
            rest,
            &p,
            &s,
            sub,
            expected.and_then(|v| v.get(*first)),
            actual.and_then(|v| v.get(*first)),
            out,
        );
    }

    /// Compares two values field by field; `path` has array indices, `shape`
    /// does not (it is what `semantic` lists name).
    fn walk(
        &self,
        path: &str,
        shape: &str,
        schema: Option<&Value>,
        expected: Option<&Value>,
        actual: Option<&Value>,
        out: &mut Comparison,
    ) {
        let differ = |reason: String, out: &mut Comparison| {
            out.differences.push(Difference {
                path: path.to_owned(),
                expected: expected.cloned().unwrap_or(Value::Null),
                actual: actual.cloned().unwrap_or(Value::Null),
                reason,
            })
        };
        let (e, a) = match (expected, actual) {
            (None, None) => return,
            (Some(_), None) => {
                return differ("missing from the implementation's output".into(), out);
            }
            (None, Some(_)) => return differ("not in the prototype's output".into(), out),
            (Some(e), Some(a)) => (e, a),
        };
        match (e, a) {
            (Value::Object(em), Value::Object(am)) => {
                let props = schema.and_then(|s| s.get("properties"));
                // Declared keys first (serde_json keeps them sorted), then any others, so reports are stable.
                let mut keys: Vec<&String> = props
                    .and_then(Value::as_object)
                    .map(|p| p.keys().collect())
                    .unwrap_or_default();
                let mut extra: Vec<&String> = em
                    .keys()
                    .chain(am.keys())
                    .filter(|k| !keys.contains(k))
                    .collect();
                extra.sort();
                extra.dedup();
                keys.extend(extra);
                for k in keys {
                    self.walk(
                        &join(path, k),
                        &join(shape, k),
                        props.and_then(|p| p.get(k)),
                        em.get(k),
                        am.get(k),
                        out,
                    );
                }
            }
            (Value::Array(ea), Value::Array(aa)) => {
                if ea.len() != aa.len() {
                    out.differences.push(length_difference(path, ea, aa));
                    return;
                }
                let items = schema.and_then(|s| s.get("items"));
                for (i, (ev, av)) in ea.iter().zip(aa).enumerate() {
                    self.walk(
                        &format!("{path}[{i}]"),
                        shape,
                        items,
                        Some(ev),
                        Some(av),
                        out,
                    );
                }
            }
            (Value::Number(en), Value::Number(an)) => {
                let (x, y) = (
                    en.as_f64().unwrap_or(f64::NAN),
                    an.as_f64().unwrap_or(f64::NAN),
                );
                let tolerance = if self.rule.exact {
                    0.0
                } else {
                    self.rule.tolerance
                };
                let gap = (x - y).abs();
                // A hair of slack for binary rounding (0.1 + 0.2 against 0.3).
                if gap.is_nan() || gap > tolerance + 1e-9 * x.abs().max(y.abs()).max(1.0) {
                    let reason = if tolerance > 0.0 {
                        format!("numbers differ by {gap}, more than the tolerance {tolerance}")
                    } else {
                        "numbers differ".to_owned()
                    };
                    differ(reason, out);
                }
            }
            (Value::String(es), Value::String(as_)) if es != as_ => {
                if self.semantic(shape, schema) {
                    if normalize_text(es) != normalize_text(as_) {
                        out.text_checks.push(TextCheck {
                            path: path.to_owned(),
                            expected: es.clone(),
                            actual: as_.clone(),
                        });
                    }
                } else {
                    differ(format!("{} differ", string_kind(schema)), out);
                }
            }
            _ if e == a => {}
            _ if type_name(e) == type_name(a) => differ("values differ".into(), out),
            _ => differ(format!("{} against {}", type_name(e), type_name(a)), out),
        }
    }

    /// Whether the string at `shape` is compared by meaning.
    fn semantic(&self, shape: &str, schema: Option<&Value>) -> bool {
        if self.rule.exact {
            return false;
        }
        match &self.rule.semantic {
            SemanticFields::Off => false,
            SemanticFields::Only(fields) => fields.iter().any(|f| f == shape),
            SemanticFields::FreeText => schema.is_some_and(is_free_text),
        }
    }
}

/// A plain string in the schema: no enum, const, pattern or format, which
/// would make it an identifier or a code rather than prose.
pub fn is_free_text(schema: &Value) -> bool {
    let typed_string = match schema.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
        _ => false,
    };
    typed_string
        && ["enum", "const", "pattern", "format"]
            .iter()
            .all(|k| schema.get(k).is_none())
}

fn string_kind(schema: Option<&Value>) -> &'static str {
    match schema {
        Some(s) if s.get("enum").is_some() || s.get("const").is_some() => "enum values",
        _ => "strings",
    }
}

fn length_difference(path: &str, e: &[Value], a: &[Value]) -> Difference {
    Difference {
        path: path.to_owned(),
        expected: Value::Array(e.to_vec()),
        actual: Value::Array(a.to_vec()),
        reason: format!("{} items against {}", e.len(), a.len()),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The schema of the output field at the dotted `path` (arrays are entered
/// through their `items`), if the schema declares it under `properties`.
pub fn field_schema<'s>(schema: &'s Value, path: &str) -> Option<&'s Value> {
    path.split('.').try_fold(schema, |s, seg| {
        let mut s = s;
        while let Some(items) = s.get("items").filter(|_| s.get("properties").is_none()) {
            s = items;
        }
        s.get("properties")?.get(seg)
    })
}

/// Every field the schema declares, as dotted paths (for error messages).
fn declared_fields(schema: &Value, prefix: &str, out: &mut Vec<String>) {
    let mut s = schema;
    while let Some(items) = s.get("items").filter(|_| s.get("properties").is_none()) {
        s = items;
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            let p = join(prefix, k);
            out.push(p.clone());
            declared_fields(v, &p, out);
        }
    }
}

/// Parses an operation's `Compare:` block (`content`, whose first line is
/// `first_line` of the file) against its Output schema; every problem is
/// reported at its line.
pub(crate) fn parse_rule(
    content: &str,
    first_line: usize,
    op: &str,
    output: &Value,
    diags: &mut Collector,
) -> Option<CompareRule> {
    let at = |key: &str| Position::new(key_line(content, first_line, key), 1);
    let map = match serde_yaml::from_str::<serde_yaml::Value>(content) {
        Ok(serde_yaml::Value::Mapping(m)) => m,
        Ok(_) => {
            diags.error(
                Position::new(first_line, 1),
                format!(
                    "operation '{op}': the Compare block must be a YAML mapping with any of: {}",
                    KEYS.join(", ")
                ),
            );
            return None;
        }
        Err(e) => {
            diags.error(
                yaml_position(&e, first_line),
                format!(
                    "operation '{op}': invalid YAML in the Compare block: {}",
                    yaml_message(&e)
                ),
            );
            return None;
        }
    };
    let before = diags.len();
    check_keys(&map, &KEYS, content, first_line, "Compare", diags);
    let get = |key: &str| map.get(serde_yaml::Value::String(key.to_owned()));
    let bad = |key: &str, expected: &str, diags: &mut Collector| {
        diags.error(
            at(key),
            format!("operation '{op}': Compare '{key}' must be {expected}"),
        );
    };
    let mut rule = CompareRule::default();
    match get("exact") {
        None => {}
        Some(serde_yaml::Value::Bool(b)) => rule.exact = *b,
        Some(_) => bad("exact", "true or false", diags),
    }
    if let Some(v) = get("fields") {
        match string_list(v) {
            Some(fields) if !fields.is_empty() => rule.fields = fields,
            _ => bad(
                "fields",
                "a non-empty list of output field names (dotted paths such as order.total)",
                diags,
            ),
        }
    }
    match get("tolerance") {
        None => {}
        Some(v) => match v.as_f64() {
            Some(t) if t >= 0.0 && t.is_finite() => rule.tolerance = t,
            _ => bad(
                "tolerance",
                "a number of at least 0 (the largest absolute difference between two numbers that agree)",
                diags,
            ),
        },
    }
    match get("semantic") {
        None => {}
        Some(serde_yaml::Value::Bool(true)) => rule.semantic = SemanticFields::FreeText,
        Some(serde_yaml::Value::Bool(false)) => rule.semantic = SemanticFields::Off,
        Some(v) => match string_list(v) {
            Some(fields) if !fields.is_empty() => rule.semantic = SemanticFields::Only(fields),
            _ => bad(
                "semantic",
                "true, false, or a non-empty list of free-text output fields",
                diags,
            ),
        },
    }
    match get("distance") {
        None => {}
        Some(v) => match v.as_f64() {
            Some(d) if d > 0.0 && d <= 2.0 => rule.distance = Some(d),
            _ => bad(
                "distance",
                "a cosine distance greater than 0 and at most 2",
                diags,
            ),
        },
    }
    match get("judge") {
        None | Some(serde_yaml::Value::Bool(false)) => {}
        Some(serde_yaml::Value::Bool(true)) => rule.judge = Some(String::new()),
        Some(serde_yaml::Value::String(s)) if !s.trim().is_empty() => {
            rule.judge = Some(s.trim().to_owned())
        }
        Some(_) => bad(
            "judge",
            "true, false, or the sentence the model checks (\"the same category and a similar reason\")",
            diags,
        ),
    }
    // Settings that contradict each other would leave one of them silently unused.
    let present = |key: &str| get(key).is_some();
    if rule.exact {
        for key in ["fields", "tolerance", "semantic", "distance", "judge"]
            .into_iter()
            .filter(|k| present(k))
        {
            diags.error(at(key), format!("operation '{op}': Compare 'exact: true' compares the whole output exactly, so '{key}' cannot be set with it"));
        }
    }
    if rule.judge.is_some() {
        for key in ["tolerance", "semantic", "distance"]
            .into_iter()
            .filter(|k| present(k))
        {
            diags.error(at(key), format!("operation '{op}': under Compare 'judge' the model decides, so '{key}' cannot be set with it (only 'fields' can)"));
        }
    }
    if rule.semantic == SemanticFields::Off && present("distance") {
        diags.error(at("distance"), format!("operation '{op}': Compare 'distance' is for semantic comparison, which 'semantic: false' turns off"));
    }
    let mut known = Vec::new();
    declared_fields(output, "", &mut known);
    let unknown = |key: &str, field: &str| {
        format!(
            "operation '{op}': Compare '{key}' names '{field}', which is not a field of the Output schema (its fields: {})",
            if known.is_empty() {
                "none declared under 'properties'".to_owned()
            } else {
                known.join(", ")
            }
        )
    };
    for field in &rule.fields {
        if field_schema(output, field).is_none() {
            diags.error(at("fields"), unknown("fields", field));
        }
    }
    if let SemanticFields::Only(fields) = &rule.semantic {
        for field in fields {
            match field_schema(output, field) {
                None => diags.error(at("semantic"), unknown("semantic", field)),
                Some(s) if !is_string(s) => diags.error(
                    at("semantic"),
                    format!("operation '{op}': Compare 'semantic' names '{field}', which is not a string field of the Output schema"),
                ),
                Some(_) => {}
            }
        }
    }
    (diags.len() == before).then_some(rule)
}

fn is_string(schema: &Value) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
        _ => false,
    }
}

fn string_list(v: &serde_yaml::Value) -> Option<Vec<String>> {
    v.as_sequence()?
        .iter()
        .map(|item| item.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests;
