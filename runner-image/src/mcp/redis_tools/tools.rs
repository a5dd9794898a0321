//! The built-in Redis tools as the model sees them: their names, descriptions
//! and argument types (JSON Schemas derived from the types below), and the
//! table's command families a refused command's error lists.

use crate::store::commands::{self, Family};
use rmcp::handler::server::common::{schema_for_empty_input, schema_for_input};
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use rmcp::schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The largest `limit` `ft_search` accepts.
pub const MAX_SEARCH_LIMIT: u32 = 100;

/// The `limit` `ft_search` uses when none is given.
pub const DEFAULT_SEARCH_LIMIT: u32 = 10;

/// Arguments naming one key.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub(super) struct KeyArgs {
    /// The key, as the feature names it (the server adds the feature's prefix).
    #[schemars(length(min = 1))]
    pub(super) key: String,
}

/// Arguments of `set`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub(super) struct SetArgs {
    /// The key, as the feature names it.
    #[schemars(length(min = 1))]
    pub(super) key: String,
    /// The string value to store.
    pub(super) value: String,
    /// Seconds until the key expires (omit to keep it).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub(super) ex: Option<u64>,
}

/// Arguments of `del`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub(super) struct DelArgs {
    /// The keys to delete.
    #[schemars(length(min = 1))]
    pub(super) keys: Vec<String>,
}

/// Arguments of `incr`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub(super) struct IncrArgs {
    /// The key holding an integer (a missing key counts as 0).
    #[schemars(length(min = 1))]
    pub(super) key: String,
    /// How much to add (negative to subtract); 1 when omitted.
    #[serde(default = "one")]
    pub(super) by: i64,
}

pub(super) fn one() -> i64 {
    1
}

/// Arguments of `expire`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub(super) struct ExpireArgs {
    /// The key.
    #[schemars(length(min = 1))]
    pub(super) key: String,
    /// Seconds until the key expires.
    #[schemars(range(min = 1))]
    pub(super) seconds: u64,
}

/// Arguments of `hset`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub(super) struct HsetArgs {
    /// The hash's key.
    #[schemars(length(min = 1))]
    pub(super) key: String,
    /// Field names and their string values.
    pub(super) fields: BTreeMap<String, String>,
}

/// Arguments of `json_get`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub(super) struct JsonGetArgs {
    /// The JSON document's key.
    #[schemars(length(min = 1))]
    pub(super) key: String,
    /// A JSONPath; `$` (the default) is the whole document. A `$` path returns a list of matches.
    #[serde(default)]
    pub(super) path: Option<String>,
}

/// Arguments of `json_set`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub(super) struct JsonSetArgs {
    /// The JSON document's key.
    #[schemars(length(min = 1))]
    pub(super) key: String,
    /// A JSONPath; `$` (the default) replaces the whole document.
    #[serde(default)]
    pub(super) path: Option<String>,
    /// The JSON value to store at `path`.
    pub(super) value: Value,
}

/// Arguments of `ft_search`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub(super) struct FtSearchArgs {
    /// The search index, as the feature names it.
    #[schemars(length(min = 1))]
    pub(super) index: String,
    /// A RediSearch query, e.g. `@title:redis` or `*`.
    #[schemars(length(min = 1))]
    pub(super) query: String,
    /// How many documents to return (1 to 100, default 10).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    pub(super) limit: Option<u32>,
}

/// Arguments of `xadd`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub(super) struct XaddArgs {
    /// The stream, as the feature names it.
    #[schemars(length(min = 1))]
    pub(super) stream: String,
    /// The entry's field names and string values (at least one).
    pub(super) fields: BTreeMap<String, String>,
}

/// One argument of a Redis command: text, a number or a boolean (sent as 1 or 0).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(crate = "rmcp::schemars")]
pub(super) enum Arg {
    Text(String),
    Number(serde_json::Number),
    Flag(bool),
}

impl Arg {
    /// The argument as the command table takes it.
    pub(super) fn into_value(self) -> Value {
        match self {
            Arg::Text(s) => Value::String(s),
            Arg::Number(n) => Value::Number(n),
            Arg::Flag(b) => Value::Bool(b),
        }
    }
}

/// Arguments of `command`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub(super) struct CommandArgs {
    /// The command, e.g. `ZINCRBY` (or a whole line, `ZINCRBY scores 5 alice`, without `args`).
    #[schemars(length(min = 1))]
    pub(super) command: String,
    /// Its arguments, e.g. `["scores", 5, "alice"]`.
    #[serde(default)]
    pub(super) args: Option<Vec<Arg>>,
}

/// One command of a pipeline: `["INCR", "visits"]` or `"INCR visits"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(crate = "rmcp::schemars")]
pub(super) enum PipelineCommand {
    Parts(Vec<Arg>),
    Line(String),
}

/// Arguments of `pipeline`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub(super) struct PipelineArgs {
    /// The commands in order, e.g. `[["INCR", "visits"], "EXPIRE visits 60"]`.
    #[schemars(length(min = 1))]
    pub(super) commands: Vec<PipelineCommand>,
    /// Run them as one MULTI/EXEC transaction.
    #[serde(default)]
    pub(super) transaction: bool,
}

/// A command line split on whitespace.
pub(super) fn split_line(line: &str) -> Vec<Value> {
    line.split_whitespace()
        .map(|w| Value::String(w.to_owned()))
        .collect()
}

/// What `command` offers: the families of the table (the whole list would
/// cost a small model's context; a refused command's error lists them).
const COMMAND_DESCRIPTION: &str = "Run one Redis command on this feature's keys, as in redis-cli: {\"command\": \"ZINCRBY\", \"args\": [\"scores\", 5, \"alice\"]}. Strings (GET, SET ... EX, MGET, INCR), hashes, lists, sets, sorted sets (ZADD, ZREVRANGE ... WITHSCORES), streams (XADD, XRANGE), JSON (JSON.SET, JSON.GET), SCAN, FT.SEARCH. Returns the reply as JSON.";

/// The table's commands by family, for a refused command's error.
pub(super) fn command_list() -> String {
    Family::ALL
        .iter()
        .map(|&family| {
            let names: Vec<&str> = commands::family_commands(family).collect();
            format!("{}: {}", family.label(), names.join(" "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The tools, in the order they are listed.
pub(super) fn tool_definitions() -> Vec<Tool> {
    let read_only = || ToolAnnotations::new().read_only(true);
    vec![
        Tool::new(
            "get",
            "Read the string value of a key. Returns the value, or null when the key does not exist.",
            input::<KeyArgs>(),
        )
        .with_annotations(read_only()),
        Tool::new(
            "set",
            "Store a string value under a key, optionally expiring after `ex` seconds. Returns \"OK\".",
            input::<SetArgs>(),
        ),
        Tool::new(
            "del",
            "Delete keys. Returns how many existed.",
            input::<DelArgs>(),
        ),
        Tool::new(
            "incr",
            "Add `by` (default 1) to the integer stored at a key. Returns the new value.",
            input::<IncrArgs>(),
        ),
        Tool::new(
            "expire",
            "Make a key expire after `seconds`. Returns true, or false when the key does not exist.",
            input::<ExpireArgs>(),
        ),
        Tool::new(
            "hset",
            "Set fields of a hash. Returns how many fields were new.",
            input::<HsetArgs>(),
        ),
        Tool::new(
            "hgetall",
            "Read every field of a hash, as an object (empty when the key does not exist).",
            input::<KeyArgs>(),
        )
        .with_annotations(read_only()),
        Tool::new(
            "json_get",
            "Read a JSON document (RedisJSON), or the part at a JSONPath. Returns the JSON, or null when the key does not exist.",
            input::<JsonGetArgs>(),
        )
        .with_annotations(read_only()),
        Tool::new(
            "json_set",
            "Store a JSON value in a JSON document (RedisJSON) at a JSONPath. Returns \"OK\".",
            input::<JsonSetArgs>(),
        ),
        Tool::new(
            "ft_search",
            "Search a RediSearch index. Returns {\"total\": n, \"results\": [{\"key\", \"fields\"}]}.",
            input::<FtSearchArgs>(),
        )
        .with_annotations(read_only()),
        Tool::new(
            "xadd",
            "Append an entry to a stream. Returns the entry's id.",
            input::<XaddArgs>(),
        ),
        Tool::new("command", COMMAND_DESCRIPTION, input::<CommandArgs>()),
        Tool::new(
            "pipeline",
            "Run several Redis commands in one round trip, optionally as a transaction. Returns the replies in order (a failed one as {\"error\": ...}).",
            input::<PipelineArgs>(),
        ),
    ]
}

/// The input schema of `T` (always an object schema for these argument types;
/// a unit test checks it).
pub(super) fn input<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    schema_for_input::<T>().unwrap_or_else(|_| schema_for_empty_input())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_tool_has_an_object_schema_with_properties() {
        for tool in tool_definitions() {
            assert_eq!(
                tool.input_schema.get("type"),
                Some(&json!("object")),
                "{}",
                tool.name
            );
            assert!(
                tool.input_schema
                    .get("properties")
                    .is_some_and(|p| p.as_object().is_some_and(|p| !p.is_empty())),
                "{} has no properties",
                tool.name
            );
            assert!(tool.description.is_some(), "{}", tool.name);
        }
    }

    #[test]
    fn schemas_reject_unknown_fields_and_require_keys() {
        let tools = tool_definitions();
        let set = tools.iter().find(|t| t.name == "set").expect("set");
        assert_eq!(
            set.input_schema.get("additionalProperties"),
            Some(&json!(false))
        );
        let required = set.input_schema.get("required").expect("required");
        assert!(
            required
                .as_array()
                .is_some_and(|r| r.contains(&json!("key"))
                    && r.contains(&json!("value"))
                    && !r.contains(&json!("ex")))
        );
    }
}
