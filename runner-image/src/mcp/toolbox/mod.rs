//! The tools a prototyped operation may call: the built-in Redis tool server
//! and every MCP server the feature lists, behind one [`Tools`] implementation.
//!
//! Each tool is exposed to the model as `<server>__<tool>` (the built-in
//! server is called [`REDIS_SERVER`]). Nothing a server does can fail or hang a
//! run: every call is bounded by a timeout, and unknown tools, bad arguments,
//! tool errors and servers that crash all come back as messages for the model.
//!
//! This module holds the [`Toolbox`] and its calls (arguments, timeouts, the
//! messages for the model); `connect.rs` starts and connects the servers, lists
//! their tools, and closes them again.

mod connect;

pub use connect::ToolboxError;

use crate::mcp::redis_tools::RedisToolServer;
use crate::prototype::Tools;
use crate::store::Scope;
use connect::Connection;
use eol_core::process::otel::{OtelSpan, Parent};
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanBuilder;
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, ResourceContents};
use rmcp::service::ServiceError;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The name of the built-in Redis tool server; its tools are `redis__get`, `redis__set`, ...
pub const REDIS_SERVER: &str = "redis";

/// Between a server's name and its tool's name in the names the model sees.
pub const NAME_SEPARATOR: &str = "__";

/// How long one tool call may take before the model is told the server did not answer.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long starting and initialising one server, and listing its tools, may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// One tool as the model sees it.
struct ExposedTool {
    /// `<server>__<tool>`.
    name: String,
    /// Index into `Toolbox::servers`.
    server: usize,
    /// The tool's own name on its server.
    tool: String,
    /// The OpenAI function-tool definition.
    definition: Value,
}

/// The MCP tools of one feature, connected and ready to call.
///
/// Build it with [`Toolbox::connect`], hand it to the prototyping engine as a
/// [`Tools`], and [`close`](Toolbox::close) it when the run ends (dropping it
/// also stops the servers, less gracefully).
pub struct Toolbox {
    feature: String,
    /// The built-in Redis tool server itself, for calls in another keyspace.
    builtin: Option<RedisToolServer>,
    servers: Vec<Connection>,
    tools: Vec<ExposedTool>,
    by_name: HashMap<String, usize>,
    call_timeout: Duration,
}

impl std::fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toolbox")
            .field("feature", &self.feature)
            .field(
                "servers",
                &self.servers.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field("tools", &self.tool_names())
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

impl Toolbox {
    /// Sets the per-call timeout (default [`DEFAULT_CALL_TIMEOUT`]).
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The names the model sees (`<server>__<tool>`), in listing order.
    pub fn tool_names(&self) -> Vec<&str> {
        self.tools.iter().map(|t| t.name.as_str()).collect()
    }

    /// The names of the connected servers, the built-in one first.
    pub fn server_names(&self) -> Vec<&str> {
        self.servers.iter().map(|s| s.name.as_str()).collect()
    }

    /// Calls tool `name` (`<server>__<tool>`) with `arguments` (JSON object text).
    ///
    /// Returns the tool's text content, or a message for the model saying what went wrong.
    pub async fn call_tool(&self, name: &str, arguments: &str) -> Result<String, String> {
        let Some(&index) = self.by_name.get(name) else {
            return Err(format!(
                "there is no tool '{name}'; the available tools are: {}",
                self.tool_names().join(", ")
            ));
        };
        let tool = &self.tools[index];
        let arguments = parse_arguments(name, arguments)?;
        let server = &self.servers[tool.server];
        if server.client.peer().is_transport_closed() {
            let stderr = server.stderr_suffix().await;
            return Err(format!(
                "MCP server '{}' is no longer running (it crashed or closed the connection earlier){stderr}; tool '{name}' is unavailable for the rest of this run",
                server.name
            ));
        }
        let params = CallToolRequestParams::new(tool.tool.clone()).with_arguments(arguments);
        let started = std::time::Instant::now();
        let outcome =
            tokio::time::timeout(self.call_timeout, server.client.call_tool(params)).await;
        tracing::debug!(feature = %self.feature, tool = name, elapsed_ms = started.elapsed().as_millis() as u64, "MCP tool call");
        match outcome {
            Err(_) => Err(format!(
                "tool '{name}' did not answer within {} s (MCP server '{}' may be stuck); do without it or try different arguments",
                self.call_timeout.as_secs_f64(),
                server.name
            )),
            Ok(Err(error)) => Err(self.service_error(name, server, error).await),
            Ok(Ok(result)) => {
                let text = result_text(&result);
                if result.is_error == Some(true) {
                    Err(format!("tool '{name}' failed: {text}"))
                } else {
                    Ok(text)
                }
            }
        }
    }

    /// [`Self::call_tool`] with the built-in Redis tools confined to `scope`:
    /// they run in process against that keyspace; other servers' tools as usual.
    pub async fn call_tool_in(
        &self,
        scope: &Scope,
        name: &str,
        arguments: &str,
    ) -> Result<String, String> {
        let builtin = self.by_name.get(name).and_then(|&i| {
            let tool = &self.tools[i];
            (self.servers[tool.server].name == REDIS_SERVER).then_some(tool)
        });
        let (Some(tool), Some(server)) = (builtin, &self.builtin) else {
            return self.call_tool(name, arguments).await;
        };
        let arguments = parse_arguments(name, arguments)?;
        let result = server
            .in_scope(scope.clone())
            .call(&tool.tool, Some(arguments))
            .await;
        let text = result_text(&result);
        if result.is_error == Some(true) {
            Err(format!("tool '{name}' failed: {text}"))
        } else {
            Ok(text)
        }
    }

    async fn service_error(&self, tool: &str, server: &Connection, error: ServiceError) -> String {
        match error {
            ServiceError::McpError(e) => format!(
                "MCP server '{}' rejected the call to tool '{tool}': {}",
                server.name, e.message
            ),
            ServiceError::TransportClosed => {
                let stderr = server.stderr_suffix().await;
                tracing::warn!(feature = %self.feature, server = %server.name, tool, "MCP server crashed or closed the connection");
                format!(
                    "MCP server '{}' crashed or closed the connection during the call to tool '{tool}'{stderr}; its tools are unavailable for the rest of this run",
                    server.name
                )
            }
            ServiceError::TransportSend(e) => {
                let cause = causes(e.error.as_ref());
                let stderr = server.stderr_suffix().await;
                tracing::warn!(feature = %self.feature, server = %server.name, tool, %cause, "MCP server could not be reached");
                format!(
                    "MCP server '{}' could not be reached for the call to tool '{tool}' (it may have crashed): {cause}{stderr}",
                    server.name
                )
            }
            other => format!(
                "the call to tool '{tool}' on MCP server '{}' failed: {other}",
                server.name
            ),
        }
    }
}

/// An error and its sources, as one line.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

/// The model's argument text as a JSON object (empty text counts as `{}`).
fn parse_arguments(tool: &str, text: &str) -> Result<rmcp::model::JsonObject, String> {
    if text.trim().is_empty() {
        return Ok(Default::default());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!(
            "the arguments of tool '{tool}' must be a JSON object matching its parameters, not {}",
            kind(&other)
        )),
        Err(e) => Err(format!(
            "the arguments of tool '{tool}' are not valid JSON ({e}); send a JSON object matching its parameters"
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A tool result's content as text: text blocks joined by newlines, other
/// blocks described; structured content when there is no content at all.
fn result_text(result: &CallToolResult) -> String {
    let parts: Vec<String> = result
        .content
        .iter()
        .map(|block| match block {
            ContentBlock::Text(t) => t.text.clone(),
            ContentBlock::Image(i) => format!("[image, {}]", i.mime_type),
            ContentBlock::Audio(a) => format!("[audio, {}]", a.mime_type),
            ContentBlock::Resource(r) => match &r.resource {
                ResourceContents::TextResourceContents { text, .. } => text.clone(),
                ResourceContents::BlobResourceContents { uri, .. } => {
                    format!("[binary resource {uri}]")
                }
                #[allow(unreachable_patterns)]
                _ => "[resource]".to_owned(),
            },
            ContentBlock::ResourceLink(l) => format!("[resource link {}]", l.uri),
            #[allow(unreachable_patterns)]
            _ => "[content the runner cannot show]".to_owned(),
        })
        .collect();
    if parts.is_empty() {
        return result
            .structured_content
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default();
    }
    parts.join("\n")
}

/// `call` in an `execute_tool {name}` span (OpenTelemetry GenAI and MCP
/// conventions), marked failed when the model gets an error message instead.
async fn traced(
    name: &str,
    call: impl Future<Output = Result<String, String>>,
) -> Result<String, String> {
    let span = OtelSpan::start(Parent::Current, || {
        SpanBuilder::from_name(format!("execute_tool {name}")).with_attributes([
            KeyValue::new("gen_ai.operation.name", "execute_tool"),
            KeyValue::new("gen_ai.tool.name", name.to_owned()),
            KeyValue::new("gen_ai.tool.type", "function"),
            KeyValue::new("mcp.method.name", "tools/call"),
        ])
    });
    let result = span.instrument(call).await;
    if let Err(message) = &result {
        span.record_error("tool_error", message);
    }
    result
}

impl Tools for Toolbox {
    fn definitions(&self) -> Vec<Value> {
        self.tools.iter().map(|t| t.definition.clone()).collect()
    }

    fn call<'a>(
        &'a self,
        name: &'a str,
        arguments: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(traced(name, self.call_tool(name, arguments)))
    }

    fn call_in<'a>(
        &'a self,
        scope: &'a Scope,
        name: &'a str,
        arguments: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(traced(name, self.call_tool_in(scope, name, arguments)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_must_be_a_json_object() {
        assert!(parse_arguments("t", "").is_ok_and(|m| m.is_empty()));
        assert!(parse_arguments("t", r#"{"a": 1}"#).is_ok_and(|m| m.len() == 1));
        let e = parse_arguments("t", "[1]").expect_err("array");
        assert!(
            e.contains("must be a JSON object") && e.contains("an array"),
            "{e}"
        );
        let e = parse_arguments("t", "{nope").expect_err("not JSON");
        assert!(e.contains("not valid JSON"), "{e}");
    }
}
