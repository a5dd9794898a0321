//! The feature model: what a `.eol` file means, independent of how it was written.

use crate::compare::CompareRule;
use crate::diagnostic::Position;
use crate::phase::{OperationPhase, Phase};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where something was found in its source file.
///
/// Locations say where things were written, not what they mean: two models that
/// differ only in locations compare equal, which is what lets a round trip
/// (parse, write, parse) compare models even when the frontmatter was reflowed.
#[derive(Debug, Clone, Copy, Default, Eq)]
pub struct SourceLocation(pub Position);

impl PartialEq for SourceLocation {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

/// A parsed and validated feature (`NAME.eol`).
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    /// The frontmatter settings.
    pub frontmatter: Frontmatter,
    /// The `# Title` heading, if the body has one.
    pub title: Option<String>,
    /// The shared context: all prose outside the operations, verbatim.
    pub prose: String,
    /// The operations, in file order.
    pub operations: Vec<Operation>,
    /// `@path` and `@feature:name` references found in prose, in file order.
    pub references: Vec<Reference>,
    /// The text as written, so that rewriting an unchanged feature changes nothing
    /// but its normalised frontmatter, and edits keep comments and layout.
    pub(crate) verbatim: Verbatim,
}

/// A feature's source text as written (bookkeeping, like [`SourceLocation`]).
#[derive(Debug, Clone, Default, Eq)]
pub(crate) struct Verbatim {
    /// The YAML between the `---` lines.
    pub frontmatter: String,
    /// Everything after the closing `---` line.
    pub body: String,
    /// Line number of the body's first line.
    pub body_line: usize,
}

impl PartialEq for Verbatim {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

/// The YAML frontmatter of a feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frontmatter {
    /// The feature's name, a DNS-1123 label (it names Kubernetes objects and Redis key prefixes).
    pub name: String,
    /// The feature's version (semver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// One line saying what the feature does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The phase the feature runs in.
    pub phase: Phase,
    /// Model settings for prototyped operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSettings>,
    /// Extra context for the LLM: file paths, or `feature:NAME`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<String>,
    /// MCP servers the LLM may call, besides the built-in Redis tools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolServer>,
    /// Semantic cache for prototyped operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSettings>,
    /// A limit on what prototyped calls spend per hour, day or month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::cost::Budget>,
}

impl Frontmatter {
    /// The top-level keys the frontmatter accepts, in the order the writer emits them.
    pub const KEYS: [&'static str; 9] = [
        "name",
        "version",
        "description",
        "phase",
        "model",
        "context",
        "tools",
        "cache",
        "budget",
    ];
}

/// Which model prototyped operations use, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// Model name as the API knows it (e.g. `gpt-4o-mini`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Upper bound on tokens generated per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling seed, for repeatable answers where the server supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// The price of `name` (USD per million input and output tokens), so runs
    /// report their cost; a deployment's price table (`EOL_LLM_PRICES`) wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<crate::cost::ModelPrice>,
    /// Models asked, in order, while the one before is failing (5xx, 429,
    /// timeouts, unreachable, after its own retries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<ModelFallback>,
    /// Seconds a failing model is left alone before it is asked again (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<f64>,
}

/// The seconds a failing model cools down when the frontmatter sets none.
pub const DEFAULT_COOLDOWN_SECS: f64 = 30.0;

/// A model asked when the ones before it in the `model:` block are failing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFallback {
    /// Base URL of its OpenAI-compatible API.
    pub base_url: String,
    /// Model name as that API knows it.
    pub name: String,
    /// The name of the environment variable holding its API key (never the key itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
}

impl ModelSettings {
    /// What is wrong with the fallbacks and cooldown, if anything.
    pub fn fallback_problem(&self) -> Option<String> {
        if let Some(c) = self.cooldown
            && !(c.is_finite() && c >= 0.0)
        {
            return Some(format!(
                "model.cooldown {c} is out of range: expected seconds, 0 or more"
            ));
        }
        for (i, f) in self.fallbacks.iter().enumerate() {
            if f.base_url.trim().is_empty() {
                return Some(format!("model.fallbacks[{i}].base_url is empty"));
            }
            if f.name.trim().is_empty() {
                return Some(format!("model.fallbacks[{i}].name is empty"));
            }
            if f.api_key_env
                .as_deref()
                .is_some_and(|v| v.trim().is_empty())
            {
                return Some(format!(
                    "model.fallbacks[{i}].api_key_env is empty: name the environment variable holding the key"
                ));
            }
        }
        None
    }
}

/// An MCP server the LLM may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolServer {
    /// A short name; tools are exposed to the model as `<name>__<tool>`.
    pub name: String,
    /// A command to start (stdio transport).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Arguments for `command`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// A streamable-HTTP endpoint (instead of `command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Environment for `command`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// The `cache:` block: the semantic cache of prototyped calls, the embeddings
/// cache and the result cache of implementation calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// Whether prototyped answers are cached and reused (the semantic cache).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Largest embedding (cosine) distance that still counts as the same input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_threshold: Option<f64>,
    /// Seconds a cached answer, vector or result lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// Input fields the semantic cache compares exactly even when they hold
    /// free text (dotted paths such as `order.note`, or last keys such as `note`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exact: Vec<String>,
    /// Whether computed embeddings are kept in Redis by text hash (default: yes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<bool>,
    /// Implementation-phase operations whose outputs are cached by the hash of
    /// code and input: `true` for all, or a list of names. Only for
    /// deterministic operations: one that reads or writes stored data must not
    /// be listed. Default: none.
    #[serde(default, skip_serializing_if = "ResultCaching::is_off")]
    pub results: ResultCaching,
    /// The semantic cache's error bound (`semantic:`): reused answers are
    /// checked against the model and the distance of reuse is learnt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic: Option<SemanticBound>,
}

/// The `cache.semantic:` block: the error bound of the semantic cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticBound {
    /// The largest share of reused answers that may differ from the model's
    /// answer (at 95% confidence), above 0 and below 1 (`maxErrorRate` too).
    #[serde(
        alias = "maxErrorRate",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub max_error_rate: Option<f64>,
    /// The share of reused answers also answered by the model off the
    /// response path and compared, 0 to 1 (default 0.05; `checkRate` too).
    #[serde(alias = "checkRate", skip_serializing_if = "Option::is_none", default)]
    pub check_rate: Option<f64>,
}

impl SemanticBound {
    /// What is wrong with these settings, if anything.
    pub fn problem(&self) -> Option<String> {
        match (self.max_error_rate, self.check_rate) {
            (None, _) => Some("cache.semantic needs max_error_rate (the share of reused answers that may be wrong, such as 0.01)".into()),
            (Some(rate), _) if !(rate > 0.0 && rate < 1.0) => Some(format!(
                "cache.semantic.max_error_rate {rate} is out of range: expected a share above 0 and below 1 (0.01 is 1%)"
            )),
            (_, Some(check)) if !(0.0..=1.0).contains(&check) => Some(format!(
                "cache.semantic.check_rate {check} is out of range: expected a share from 0 to 1"
            )),
            _ => None,
        }
    }
}

/// Which implementation-phase operations the result cache serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResultCaching {
    /// `true`: every operation; `false`: none.
    All(bool),
    /// These operations.
    Operations(Vec<String>),
}

impl Default for ResultCaching {
    fn default() -> Self {
        Self::All(false)
    }
}

impl ResultCaching {
    /// Whether no operation is cached.
    pub fn is_off(&self) -> bool {
        match self {
            Self::All(all) => !all,
            Self::Operations(ops) => ops.is_empty(),
        }
    }

    /// Whether `operation` is cached.
    pub fn covers(&self, operation: &str) -> bool {
        match self {
            Self::All(all) => *all,
            Self::Operations(ops) => ops.iter().any(|o| o == operation),
        }
    }
}

fn default_true() -> bool {
    true
}

/// One operation of a feature (`### name` under `## Operations`).
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// snake_case name; also the Python function's name.
    pub name: String,
    /// The phase it runs in, after defaults are applied.
    pub phase: OperationPhase,
    /// The phase its `Phase:` line gives, if it has one.
    pub declared_phase: Option<OperationPhase>,
    /// The prose that specifies it, verbatim (trimmed of blank lines at both ends).
    pub spec: String,
    /// JSON Schema of its input (an object schema).
    pub input: Schema,
    /// JSON Schema of its output.
    pub output: Schema,
    /// Its Python implementation, if it has one.
    pub code: Option<Code>,
    /// How its implementation's outputs are compared with the prototype's
    /// (its `Compare:` block; `None`: the defaults of [`CompareRule::default`]).
    pub compare: Option<CompareRule>,
    /// Where its `###` heading is.
    pub location: SourceLocation,
    /// Line numbers of its parts, for rewriting the file.
    pub(crate) layout: OperationLayout,
}

impl Operation {
    /// The input schema's property names, in schema order: the function's parameters.
    pub fn parameters(&self) -> Vec<String> {
        self.input
            .value
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// Line numbers (in the whole file) of an operation's parts.
#[derive(Debug, Clone, Copy, Default, Eq)]
pub(crate) struct OperationLayout {
    pub heading_line: usize,
    pub phase_line: Option<usize>,
    pub output_close_line: usize,
    pub code_lines: Option<(usize, usize)>,
}

impl PartialEq for OperationLayout {
    fn eq(&self, _other: &Self) -> bool {
        // Layout is bookkeeping for rewrites, like SourceLocation.
        true
    }
}

/// A JSON Schema written as a YAML (or JSON) block.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// The schema.
    pub value: serde_json::Value,
    /// Where its code block starts.
    pub location: SourceLocation,
}

/// An operation's Python implementation.
#[derive(Debug, Clone, PartialEq)]
pub struct Code {
    /// The Python source, verbatim.
    pub source: String,
    /// Line of the file holding the code's first line, so errors in the code can
    /// be reported against the `.eol` file.
    pub first_line: SourceLocation,
}

impl Code {
    /// Maps a 1-based line inside the code to its line in the `.eol` file.
    pub fn file_line(&self, code_line: usize) -> usize {
        self.first_line.0.line + code_line.saturating_sub(1)
    }
}

/// A reference in prose, resolved into context for the LLM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `@path/to/file.md`: a file, relative to the feature file.
    Path {
        /// The path as written.
        path: String,
        /// Where it was written.
        location: SourceLocation,
    },
    /// `@feature:name`: another feature's prose and operations.
    Feature {
        /// The referenced feature's name.
        name: String,
        /// Where it was written.
        location: SourceLocation,
    },
}

impl Feature {
    /// The feature's name.
    pub fn name(&self) -> &str {
        &self.frontmatter.name
    }

    /// The operation called `name`, if there is one.
    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.iter().find(|o| o.name == name)
    }

    /// The names of all operations, in file order.
    pub fn operation_names(&self) -> Vec<&str> {
        self.operations.iter().map(|o| o.name.as_str()).collect()
    }

    /// The body (everything after the frontmatter), verbatim.
    pub fn body(&self) -> &str {
        &self.verbatim.body
    }
}
