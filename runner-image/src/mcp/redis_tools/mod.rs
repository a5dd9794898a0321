//! The built-in Redis tool server: the Redis commands an LLM may use while it
//! runs a prototyped operation, each confined to the feature's key prefix.
//!
//! The model names keys as it likes (`cart:42`); the server stores them under
//! `eol:<feature>:` ([`crate::store::key_prefix`]), so one feature can never read or write
//! another's data. Index names (FT.SEARCH) and stream names (XADD) are prefixed
//! the same way, and keys in search results are shown without the prefix.
//!
//! Every tool runs through the one command table ([`crate::store::commands`]),
//! as sandboxed code does: a few named tools for the commonest commands (easy
//! for small models), `command` for any command of the table, and `pipeline`
//! for several in one round trip, optionally as a MULTI/EXEC transaction.

mod tools;

pub use tools::{DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT};

use crate::sandbox::{BridgeError, BridgeErrorKind};
use crate::store::commands;
use crate::store::{RedisStore, Scope};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;
use tools::*;

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
            scope: Scope::of_feature(feature),
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
