//! A loaded feature as an MCP server: its operations are tools, its context is
//! resources. `eol mcp` serves it over stdio; any MCP client can then call the
//! feature's operations, each in its own phase.
//!
//! Resources:
//! - `eol://<feature>/prose`: the feature's shared prose (Markdown);
//! - `eol://<feature>/operations/<op>`: one operation's spec and schemas (Markdown);
//! - `eol://<feature>/references/<path>`: each `@path` reference in the prose,
//!   read from disk (relative to the feature file) when asked for.

use crate::engine::Runtime;
use eol_core::{Operation, Reference};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, ServerInitializeError};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

/// The URI scheme of the feature's resources.
pub const URI_SCHEME: &str = "eol";

/// Why serving a feature over MCP stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The client's `initialize` handshake failed.
    #[error("failed to start the MCP session for feature '{feature}': {source}")]
    Initialize {
        /// The feature.
        feature: String,
        /// What the handshake reported.
        #[source]
        source: Box<ServerInitializeError>,
    },
    /// The session's task failed (it panicked or was aborted).
    #[error("failed to serve feature '{feature}' over MCP until the client disconnected: {source}")]
    Session {
        /// The feature.
        feature: String,
        /// The task's error.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// An MCP server exposing one loaded feature.
///
/// Tools: one per operation (name, spec as description, Input schema, and the
/// Output schema when it describes an object). Calling one runs the operation
/// in its own phase through [`Runtime::execute`]; the output comes back as JSON
/// text (and as structured content), a failure as a tool error carrying the
/// runner's message.
#[derive(Clone)]
pub struct FeatureMcpServer {
    runtime: Arc<Runtime>,
    feature_dir: PathBuf,
    tools: Arc<Vec<Tool>>,
    references: Arc<Vec<String>>,
}

impl std::fmt::Debug for FeatureMcpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureMcpServer")
            .field("feature", &self.runtime.feature().name())
            .field("feature_dir", &self.feature_dir)
            .finish()
    }
}

impl FeatureMcpServer {
    /// A server for `runtime`'s feature; `feature_dir` is the directory of the
    /// `.eol` file, against which `@path` references are resolved.
    pub fn new(runtime: Arc<Runtime>, feature_dir: PathBuf) -> Self {
        let feature = runtime.feature();
        let tools = feature.operations.iter().map(operation_tool).collect();
        let mut references: Vec<String> = Vec::new();
        for r in &feature.references {
            if let Reference::Path { path, .. } = r
                && !references.contains(path)
            {
                references.push(path.clone());
            }
        }
        Self {
            runtime,
            feature_dir,
            tools: Arc::new(tools),
            references: Arc::new(references),
        }
    }

    fn name(&self) -> &str {
        self.runtime.feature().name()
    }

    fn uri(&self, rest: &str) -> String {
        format!("{URI_SCHEME}://{}/{rest}", self.name())
    }

    /// The tools: one per operation, in file order.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// The resources: the prose, each operation, each `@path` reference.
    pub fn resources(&self) -> Vec<Resource> {
        let feature = self.runtime.feature();
        let mut out = vec![
            Resource::new(self.uri("prose"), "prose")
                .with_title(format!("{}: shared context", feature.name()))
                .with_description("The feature's prose outside its operations: the context every operation shares.")
                .with_mime_type("text/markdown"),
        ];
        for op in &feature.operations {
            out.push(
                Resource::new(
                    self.uri(&format!("operations/{}", op.name)),
                    op.name.clone(),
                )
                .with_title(format!("operation {}", op.name))
                .with_description(format!(
                    "The spec, phase and schemas of operation '{}'.",
                    op.name
                ))
                .with_mime_type("text/markdown"),
            );
        }
        for path in self.references.iter() {
            out.push(
                Resource::new(self.uri(&format!("references/{path}")), path.clone())
                    .with_description(format!("The file @{path} the feature's prose refers to."))
                    .with_mime_type(mime_for(path)),
            );
        }
        out
    }

    /// Reads resource `uri`. Unknown URIs and reference files that cannot be
    /// read are resource errors.
    pub async fn read(&self, uri: &str) -> Result<ReadResourceResult, ErrorData> {
        let feature = self.runtime.feature();
        let not_found = || {
            ErrorData::resource_not_found(
                format!(
                    "feature '{}' has no resource '{uri}' (resources/list shows them)",
                    feature.name()
                ),
                None,
            )
        };
        let prefix = self.uri("");
        let Some(rest) = uri.strip_prefix(&prefix) else {
            return Err(not_found());
        };
        let text_resource = |text: String, mime: &str| {
            ReadResourceResult::new(vec![
                ResourceContents::text(text, uri).with_mime_type(mime.to_owned()),
            ])
        };
        if rest == "prose" {
            let mut text = String::new();
            if let Some(title) = &feature.title {
                text.push_str(&format!("# {title}\n\n"));
            }
            text.push_str(&feature.prose);
            text.push('\n');
            return Ok(text_resource(text, "text/markdown"));
        }
        if let Some(op) = rest
            .strip_prefix("operations/")
            .and_then(|name| feature.operation(name))
        {
            return Ok(text_resource(operation_markdown(op), "text/markdown"));
        }
        if let Some(path) = rest.strip_prefix("references/")
            && self.references.iter().any(|r| r == path)
        {
            let file = self.feature_dir.join(path);
            return match tokio::fs::read_to_string(&file).await {
                Ok(text) => Ok(text_resource(text, mime_for(path))),
                Err(e) => Err(ErrorData::resource_not_found(
                    format!(
                        "failed to read reference @{path} for feature '{}' ({}): {e}",
                        feature.name(),
                        file.display()
                    ),
                    None,
                )),
            };
        }
        Err(not_found())
    }

    /// Runs operation `name` on `arguments` in its own phase.
    ///
    /// An unknown operation is a protocol error (`invalid_params`); every
    /// failure of a known one is a tool error whose text is the runner's message.
    pub async fn call(
        &self,
        name: &str,
        arguments: Option<JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        let feature = self.runtime.feature();
        if feature.operation(name).is_none() {
            return Err(ErrorData::invalid_params(
                format!(
                    "feature '{}' has no operation '{name}' (it has: {})",
                    feature.name(),
                    feature.operation_names().join(", ")
                ),
                None,
            ));
        }
        let input = Value::Object(arguments.unwrap_or_default());
        match self.runtime.execute(name, &input, None).await {
            Ok(mut execution) => {
                self.runtime
                    .settle_in_background(execution.semantic_check.take());
                Ok(CallToolResult::structured(execution.output))
            }
            Err(error) => {
                tracing::info!(feature = %feature.name(), operation = name, kind = error.kind(), %error, "MCP tool call failed");
                Ok(CallToolResult::error(vec![ContentBlock::text(
                    error.to_string(),
                )]))
            }
        }
    }

    /// Serves the feature on `transport` until the client disconnects.
    pub async fn serve_transport<T, E, A>(self, transport: T) -> Result<(), ServeError>
    where
        T: rmcp::transport::IntoTransport<RoleServer, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let feature = self.name().to_owned();
        let running =
            ServiceExt::serve(self, transport)
                .await
                .map_err(|source| ServeError::Initialize {
                    feature: feature.clone(),
                    source: Box::new(source),
                })?;
        running
            .waiting()
            .await
            .map(|_| ())
            .map_err(|source| ServeError::Session { feature, source })
    }

    /// Serves the feature over stdin/stdout until the client disconnects
    /// (closes stdin). Nothing else may write to stdout meanwhile: logs belong
    /// on stderr.
    pub async fn serve_stdio(self) -> Result<(), ServeError> {
        self.serve_transport(rmcp::transport::stdio()).await
    }
}

/// An operation as a tool.
fn operation_tool(op: &Operation) -> Tool {
    let input = match &op.input.value {
        Value::Object(schema) if schema.get("type") == Some(&Value::from("object")) => {
            schema.clone()
        }
        // Inputs are object schemas (the parser checks); this keeps the MCP
        // contract even for a hand-built feature.
        _ => {
            let mut schema = JsonObject::new();
            schema.insert("type".into(), Value::from("object"));
            schema
        }
    };
    let mut tool = Tool::new(op.name.clone(), op.spec.clone(), Arc::new(input))
        .with_title(op.name.replace('_', " "));
    if let Value::Object(schema) = &op.output.value
        && schema.get("type") == Some(&Value::from("object"))
    {
        tool = tool.with_raw_output_schema(Arc::new(schema.clone()));
    }
    tool
}

/// An operation's spec, phase and schemas, as Markdown.
fn operation_markdown(op: &Operation) -> String {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    format!(
        "# Operation `{name}`\n\nPhase: {phase}{code}\n\n{spec}\n\n## Input schema\n\n```json\n{input}\n```\n\n## Output schema\n\n```json\n{output}\n```\n",
        name = op.name,
        phase = op.phase,
        code = if op.code.is_some() {
            " (has a Python implementation)"
        } else {
            ""
        },
        spec = op.spec,
        input = pretty(&op.input.value),
        output = pretty(&op.output.value),
    )
}

fn mime_for(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("md" | "markdown") => "text/markdown",
        Some("json") => "application/json",
        Some("yaml" | "yml") => "application/yaml",
        Some("html" | "htm") => "text/html",
        Some("csv") => "text/csv",
        _ => "text/plain",
    }
}

impl ServerHandler for FeatureMcpServer {
    fn get_info(&self) -> ServerConfig {
        let feature = self.runtime.feature();
        let version = feature
            .frontmatter
            .version
            .clone()
            .unwrap_or_else(|| "0.0.0".to_owned());
        let mut info = Implementation::new(feature.name(), version);
        if let Some(title) = &feature.title {
            info = info.with_title(title.clone());
        }
        if let Some(description) = &feature.frontmatter.description {
            info = info.with_description(description.clone());
        }
        let mut instructions = format!(
            "The EOL feature '{}'. Each tool runs one of its operations; read {} for the context they share.",
            feature.name(),
            self.uri("prose")
        );
        if let Some(description) = &feature.frontmatter.description {
            instructions = format!("{description}. {instructions}");
        }
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(info)
        .with_instructions(instructions)
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
        self.call(&request.name, request.arguments)
            .await
            .map(Into::into)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(self.resources()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.read(&request.uri).await.map(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_get_a_mime_type_by_extension() {
        assert_eq!(mime_for("docs/refund-policy.md"), "text/markdown");
        assert_eq!(mime_for("data/prices.JSON"), "application/json");
        assert_eq!(mime_for("notes"), "text/plain");
    }
}
