//! The built-in Redis tool server: the Redis commands an LLM may use while it
//! runs a prototyped operation, each confined to the feature's key prefix.
//!
//! The model names keys as it likes (`cart:42`); the server stores them under
//! `eol:<feature>:` ([`key_prefix`]), so one feature can never read or write
//! another's data. Index names (FT.SEARCH) and stream names (XADD) are prefixed
//! the same way, and keys in search results are shown without the prefix.
//!
//! Every tool runs through the one command table ([`crate::store::commands`]),
//! as sandboxed code does: a few named tools for the commonest commands (easy
//! for small models), `command` for any command of the table, and `pipeline`
//! for several in one round trip, optionally as a MULTI/EXEC transaction.

use crate::sandbox::{BridgeError, BridgeErrorKind};
use crate::store::commands::{self, Family};
use crate::store::{RedisStore, Scope, key_prefix};
use rmcp::handler::server::common::{schema_for_empty_input, schema_for_input};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::schemars::JsonSchema;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
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
struct KeyArgs {
    /// The key, as the feature names it (the server adds the feature's prefix).
    #[schemars(length(min = 1))]
    key: String,
}

/// Arguments of `set`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
struct SetArgs {
    /// The key, as the feature names it.
    #[schemars(length(min = 1))]
    key: String,
    /// The string value to store.
    value: String,
    /// Seconds until the key expires (omit to keep it).
    #[serde(default)]
    #[schemars(range(min = 1))]
    ex: Option<u64>,
}

/// Arguments of `del`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
struct DelArgs {
    /// The keys to delete.
    #[schemars(length(min = 1))]
    keys: Vec<String>,
}

/// Arguments of `incr`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
struct IncrArgs {
    /// The key holding an integer (a missing key counts as 0).
    #[schemars(length(min = 1))]
    key: String,
    /// How much to add (negative to subtract); 1 when omitted.
    #[serde(default = "one")]
    by: i64,
}

fn one() -> i64 {
    1
}

/// Arguments of `expire`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
struct ExpireArgs {
    /// The key.
    #[schemars(length(min = 1))]
    key: String,
    /// Seconds until the key expires.
    #[schemars(range(min = 1))]
    seconds: u64,
}

/// Arguments of `hset`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
struct HsetArgs {
    /// The hash's key.
    #[schemars(length(min = 1))]
    key: String,
    /// Field names and their string values.
    fields: BTreeMap<String, String>,
}

/// Arguments of `json_get`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
struct JsonGetArgs {
    /// The JSON document's key.
    #[schemars(length(min = 1))]
    key: String,
    /// A JSONPath; `$` (the default) is the whole document. A `$` path returns a list of matches.
    #[serde(default)]
    path: Option<String>,
}

/// Arguments of `json_set`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
struct JsonSetArgs {
    /// The JSON document's key.
    #[schemars(length(min = 1))]
    key: String,
    /// A JSONPath; `$` (the default) replaces the whole document.
    #[serde(default)]
    path: Option<String>,
    /// The JSON value to store at `path`.
    value: Value,
}

/// Arguments of `ft_search`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
struct FtSearchArgs {
    /// The search index, as the feature names it.
    #[schemars(length(min = 1))]
    index: String,
    /// A RediSearch query, e.g. `@title:redis` or `*`.
    #[schemars(length(min = 1))]
    query: String,
    /// How many documents to return (1 to 100, default 10).
    #[serde(default)]
    #[schemars(range(min = 1, max = 100))]
    limit: Option<u32>,
}

/// Arguments of `xadd`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
struct XaddArgs {
    /// The stream, as the feature names it.
    #[schemars(length(min = 1))]
    stream: String,
    /// The entry's field names and string values (at least one).
    fields: BTreeMap<String, String>,
}

/// One argument of a Redis command: text, a number or a boolean (sent as 1 or 0).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(crate = "rmcp::schemars")]
enum Arg {
    Text(String),
    Number(serde_json::Number),
    Flag(bool),
}

impl Arg {
    fn into_value(self) -> Value {
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
struct CommandArgs {
    /// The command, e.g. `ZINCRBY` (or a whole line, `ZINCRBY scores 5 alice`, without `args`).
    #[schemars(length(min = 1))]
    command: String,
    /// Its arguments, e.g. `["scores", 5, "alice"]`.
    #[serde(default)]
    args: Option<Vec<Arg>>,
}

/// One command of a pipeline: `["INCR", "visits"]` or `"INCR visits"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(crate = "rmcp::schemars")]
enum PipelineCommand {
    Parts(Vec<Arg>),
    Line(String),
}

/// Arguments of `pipeline`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
struct PipelineArgs {
    /// The commands in order, e.g. `[["INCR", "visits"], "EXPIRE visits 60"]`.
    #[schemars(length(min = 1))]
    commands: Vec<PipelineCommand>,
    /// Run them as one MULTI/EXEC transaction.
    #[serde(default)]
    transaction: bool,
}

/// A command line split on whitespace.
fn split_line(line: &str) -> Vec<Value> {
    line.split_whitespace()
        .map(|w| Value::String(w.to_owned()))
        .collect()
}

/// What `command` offers: the families of the table (the whole list would
/// cost a small model's context; a refused command's error lists them).
const COMMAND_DESCRIPTION: &str = "Run one Redis command on this feature's keys, as in redis-cli: {\"command\": \"ZINCRBY\", \"args\": [\"scores\", 5, \"alice\"]}. Strings (GET, SET ... EX, MGET, INCR), hashes, lists, sets, sorted sets (ZADD, ZREVRANGE ... WITHSCORES), streams (XADD, XRANGE), JSON (JSON.SET, JSON.GET), SCAN, FT.SEARCH. Returns the reply as JSON.";

/// The table's commands by family, for a refused command's error.
fn command_list() -> String {
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
fn tool_definitions() -> Vec<Tool> {
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
fn input<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    schema_for_input::<T>().unwrap_or_else(|_| schema_for_empty_input())
}

/// An MCP server offering Redis commands confined to one feature's keys.
///
/// Calls that go wrong (invalid arguments, a Redis error, no Redis) are tool
/// errors (`isError` results whose text says why), so the model can correct
/// itself; successful results are JSON text.
#[derive(Clone)]
pub struct RedisToolServer {
    store: Arc<RedisStore>,
    feature: String,
    scope: Scope,
    tools: Arc<Vec<Tool>>,
}

impl std::fmt::Debug for RedisToolServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisToolServer")
            .field("feature", &self.feature)
            .field("store", &self.store)
            .finish()
    }
}

impl RedisToolServer {
    /// A server for feature `feature` on `store` (connected on the first call).
    pub fn new(store: Arc<RedisStore>, feature: &str) -> Self {
        Self {
            store,
            feature: feature.to_owned(),
            scope: Scope::new(key_prefix(feature)),
            tools: Arc::new(tool_definitions()),
        }
    }

    /// The same server with its keys in `scope` (a test run's keyspace).
    pub fn in_scope(&self, scope: Scope) -> Self {
        Self {
            scope,
            ..self.clone()
        }
    }

    /// The tools it offers.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// Runs tool `name` on `arguments`: the JSON result, or the message of a tool error.
    pub async fn run(&self, name: &str, arguments: JsonObject) -> Result<Value, String> {
        let key = |k: String| Value::String(k);
        match name {
            "get" => {
                let a: KeyArgs = parse(name, arguments)?;
                self.exec(name, vec![json!("GET"), key(a.key)]).await
            }
            "set" => {
                let a: SetArgs = parse(name, arguments)?;
                let mut cmd = vec![json!("SET"), key(a.key), Value::String(a.value)];
                if let Some(ex) = a.ex {
                    if ex == 0 {
                        return Err(invalid(name, "`ex` must be at least 1 second"));
                    }
                    cmd.extend([json!("EX"), json!(ex)]);
                }
                self.exec(name, cmd).await?;
                Ok(json!("OK"))
            }
            "del" => {
                let a: DelArgs = parse(name, arguments)?;
                if a.keys.is_empty() {
                    return Err(invalid(name, "`keys` must name at least one key"));
                }
                let mut cmd = vec![json!("DEL")];
                cmd.extend(a.keys.into_iter().map(key));
                self.exec(name, cmd).await
            }
            "incr" => {
                let a: IncrArgs = parse(name, arguments)?;
                self.exec(name, vec![json!("INCRBY"), key(a.key), json!(a.by)])
                    .await
            }
            "expire" => {
                let a: ExpireArgs = parse(name, arguments)?;
                if a.seconds == 0 {
                    return Err(invalid(name, "`seconds` must be at least 1"));
                }
                self.exec(name, vec![json!("EXPIRE"), key(a.key), json!(a.seconds)])
                    .await
            }
            "hset" => {
                let a: HsetArgs = parse(name, arguments)?;
                if a.fields.is_empty() {
                    return Err(invalid(name, "`fields` must hold at least one field"));
                }
                let mut cmd = vec![json!("HSET"), key(a.key)];
                for (f, v) in a.fields {
                    cmd.extend([Value::String(f), Value::String(v)]);
                }
                self.exec(name, cmd).await
            }
            "hgetall" => {
                let a: KeyArgs = parse(name, arguments)?;
                self.exec(name, vec![json!("HGETALL"), key(a.key)]).await
            }
            "json_get" => {
                let a: JsonGetArgs = parse(name, arguments)?;
                let path = a.path.unwrap_or_else(|| "$".to_owned());
                self.exec(
                    name,
                    vec![json!("JSON.GET"), key(a.key), Value::String(path)],
                )
                .await
            }
            "json_set" => {
                let a: JsonSetArgs = parse(name, arguments)?;
                let path = a.path.unwrap_or_else(|| "$".to_owned());
                let reply = self
                    .exec(
                        name,
                        vec![
                            json!("JSON.SET"),
                            key(a.key.clone()),
                            Value::String(path.clone()),
                            Value::String(a.value.to_string()),
                        ],
                    )
                    .await?;
                if reply.is_null() {
                    return Err(format!(
                        "redis tool '{name}': nothing was set at path '{path}' of key '{}' (a new key must be set at the root, '$')",
                        a.key
                    ));
                }
                Ok(json!("OK"))
            }
            "ft_search" => {
                let a: FtSearchArgs = parse(name, arguments)?;
                let limit = a.limit.unwrap_or(DEFAULT_SEARCH_LIMIT);
                if !(1..=MAX_SEARCH_LIMIT).contains(&limit) {
                    return Err(invalid(
                        name,
                        &format!("`limit` must be between 1 and {MAX_SEARCH_LIMIT}, got {limit}"),
                    ));
                }
                let cmd = vec![
                    json!("FT.SEARCH"),
                    key(a.index),
                    Value::String(a.query),
                    json!("LIMIT"),
                    json!(0),
                    json!(limit),
                ];
                self.exec(name, cmd).await
            }
            "xadd" => {
                let a: XaddArgs = parse(name, arguments)?;
                if a.fields.is_empty() {
                    return Err(invalid(name, "`fields` must hold at least one field"));
                }
                let mut cmd = vec![json!("XADD"), key(a.stream), json!("*")];
                for (f, v) in a.fields {
                    cmd.extend([Value::String(f), Value::String(v)]);
                }
                self.exec(name, cmd).await
            }
            "command" => {
                let a: CommandArgs = parse(name, arguments)?;
                let cmd = match a.args {
                    Some(args) => std::iter::once(Value::String(a.command))
                        .chain(args.into_iter().map(Arg::into_value))
                        .collect(),
                    None => split_line(&a.command),
                };
                self.exec(name, cmd).await
            }
            "pipeline" => {
                let a: PipelineArgs = parse(name, arguments)?;
                if a.commands.is_empty() {
                    return Err(invalid(name, "`commands` must hold at least one command"));
                }
                let cmds = a
                    .commands
                    .into_iter()
                    .map(|c| match c {
                        PipelineCommand::Parts(parts) => {
                            parts.into_iter().map(Arg::into_value).collect()
                        }
                        PipelineCommand::Line(line) => split_line(&line),
                    })
                    .collect();
                let replies = self
                    .store
                    .run_pipeline(&self.scope, cmds, a.transaction)
                    .await
                    .map_err(|e| tool_failure(name, &e))?;
                Ok(Value::Array(
                    replies
                        .into_iter()
                        .map(|r| r.unwrap_or_else(|e| json!({"error": e.message})))
                        .collect(),
                ))
            }
            other => Err(format!(
                "the Redis tool server has no tool '{other}' (it has: {})",
                self.tool_names().join(", ")
            )),
        }
    }

    fn tool_names(&self) -> Vec<&str> {
        self.tools.iter().map(|t| t.name.as_ref()).collect()
    }

    /// Runs one command through the command table.
    async fn exec(&self, tool: &str, command: Vec<Value>) -> Result<Value, String> {
        self.store
            .run(&self.scope, command)
            .await
            .map_err(|e| tool_failure(tool, &e))
    }

    /// A `tools/call` result: JSON text, or a tool error carrying the message.
    pub async fn call(&self, name: &str, arguments: Option<JsonObject>) -> CallToolResult {
        match self.run(name, arguments.unwrap_or_default()).await {
            Ok(value) => CallToolResult::success(vec![ContentBlock::text(value.to_string())]),
            Err(message) => {
                tracing::debug!(feature = %self.feature, tool = name, %message, "redis tool error");
                CallToolResult::error(vec![ContentBlock::text(message)])
            }
        }
    }
}

/// A tool error for a command that was refused or failed; a command missing
/// from the table gets the list of those there are.
fn tool_failure(tool: &str, e: &BridgeError) -> String {
    match e.kind {
        BridgeErrorKind::Refused if e.message.contains(commands::NOT_IN_TABLE) => format!(
            "redis tool '{tool}' refused: {} (commands: {})",
            e.message,
            command_list()
        ),
        BridgeErrorKind::Refused => format!("redis tool '{tool}' refused: {}", e.message),
        _ => format!("redis tool '{tool}' failed: {}", e.message),
    }
}

fn parse<T: DeserializeOwned>(tool: &str, arguments: JsonObject) -> Result<T, String> {
    serde_json::from_value(Value::Object(arguments)).map_err(|e| invalid(tool, &e.to_string()))
}

fn invalid(tool: &str, detail: &str) -> String {
    format!("invalid arguments for redis tool '{tool}': {detail}")
}

impl ServerHandler for RedisToolServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("eol-redis", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "Redis for feature '{}'. Name keys freely: every key, index and stream is kept in this feature's own namespace.",
                self.feature
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if !self.tools.iter().any(|t| t.name == request.name) {
            return Err(ErrorData::invalid_params(
                format!(
                    "the Redis tool server has no tool '{}' (it has: {})",
                    request.name,
                    self.tool_names().join(", ")
                ),
                None,
            ));
        }
        Ok(self.call(&request.name, request.arguments).await.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn invalid_arguments_are_tool_errors_naming_the_problem() {
        // No Redis is touched: arguments are checked before connecting.
        let server = RedisToolServer::new(Arc::new(RedisStore::new(None)), "shop");
        let args = |v: Value| v.as_object().cloned().unwrap_or_default();
        let e = server
            .run("set", args(json!({"key": "a"})))
            .await
            .expect_err("missing value");
        assert!(e.contains("missing field `value`"), "{e}");
        let e = server
            .run("get", args(json!({"key": 5})))
            .await
            .expect_err("wrong type");
        assert!(e.contains("invalid type"), "{e}");
        let e = server
            .run("get", args(json!({"key": "a", "extra": 1})))
            .await
            .expect_err("unknown field");
        assert!(e.contains("unknown field `extra`"), "{e}");
        let e = server
            .run("get", args(json!({"key": ""})))
            .await
            .expect_err("empty key");
        assert!(e.contains("must not be empty"), "{e}");
        let e = server
            .run(
                "ft_search",
                args(json!({"index": "i", "query": "*", "limit": 1000})),
            )
            .await
            .expect_err("limit");
        assert!(e.contains("between 1 and 100"), "{e}");
    }
}
