//! Connecting a [`Toolbox`] to its servers: the built-in Redis tool server in
//! process, the feature's `command` servers over stdio (their stderr kept for
//! error messages) and `url` servers over streamable HTTP; the MCP handshake,
//! listing their tools as the model will see them, and closing them again.
//! Each step is bounded by [`CONNECT_TIMEOUT`] or [`CLOSE_TIMEOUT`].

use super::{
    CONNECT_TIMEOUT, DEFAULT_CALL_TIMEOUT, ExposedTool, NAME_SEPARATOR, REDIS_SERVER, Toolbox,
};
use crate::mcp::redis_tools::RedisToolServer;
use crate::store::RedisStore;
use eol_core::{Feature, ToolServer};
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{ClientInitializeError, RunningService, ServiceError};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::task::JoinHandle;

/// How long closing one server may take before it is left to be killed.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Lines of a server's stderr kept for error messages.
const STDERR_LINES_KEPT: usize = 20;

/// Why the toolbox could not be set up. Each names the feature and the server.
#[derive(Debug, thiserror::Error)]
pub enum ToolboxError {
    /// The feature's `tools:` entry cannot be used as written.
    #[error("failed to configure MCP server '{server}' for feature '{feature}': {reason}")]
    InvalidServer {
        /// The feature.
        feature: String,
        /// The server's name as written.
        server: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server's command did not start.
    #[error("failed to start MCP server '{server}' ({command}) for feature '{feature}': {source}")]
    Spawn {
        /// The feature.
        feature: String,
        /// The server.
        server: String,
        /// The command line.
        command: String,
        /// Why it did not start.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client for a streamable-HTTP server could not be built.
    #[error(
        "failed to build the HTTP client for MCP server '{server}' of feature '{feature}': {source}"
    )]
    HttpClient {
        /// The feature.
        feature: String,
        /// The server.
        server: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The MCP handshake failed.
    #[error("failed to initialize MCP server '{server}' for feature '{feature}': {source}{stderr}")]
    Initialize {
        /// The feature.
        feature: String,
        /// The server.
        server: String,
        /// What the handshake reported.
        #[source]
        source: Box<ClientInitializeError>,
        /// The server's last stderr lines, if any (formatted for the message).
        stderr: String,
    },
    /// Listing the server's tools failed.
    #[error(
        "failed to list the tools of MCP server '{server}' for feature '{feature}': {source}{stderr}"
    )]
    ListTools {
        /// The feature.
        feature: String,
        /// The server.
        server: String,
        /// The request's error.
        #[source]
        source: Box<ServiceError>,
        /// The server's last stderr lines, if any (formatted for the message).
        stderr: String,
    },
    /// The server did not finish starting in time.
    #[error(
        "failed to connect to MCP server '{server}' for feature '{feature}': it did not answer within {} s{stderr}",
        timeout.as_secs()
    )]
    ConnectTimeout {
        /// The feature.
        feature: String,
        /// The server.
        server: String,
        /// The limit.
        timeout: Duration,
        /// The server's last stderr lines, if any (formatted for the message).
        stderr: String,
    },
}

/// The last lines a child server wrote to stderr, and whether it has closed it (exited).
#[derive(Default)]
struct StderrTail {
    lines: Mutex<VecDeque<String>>,
    closed: tokio::sync::Notify,
    is_closed: std::sync::atomic::AtomicBool,
}

impl StderrTail {
    fn push(&self, line: String) {
        if let Ok(mut lines) = self.lines.lock() {
            if lines.len() == STDERR_LINES_KEPT {
                lines.pop_front();
            }
            let mut line = line;
            if line.len() > 300 {
                let cut = (0..=300)
                    .rev()
                    .find(|&i| line.is_char_boundary(i))
                    .unwrap_or(0);
                line.truncate(cut);
                line.push('…');
            }
            lines.push_back(line);
        }
    }

    fn close(&self) {
        self.is_closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.closed.notify_waiters();
    }

    /// Waits (briefly) for the server to close stderr, so its last words are in.
    async fn settle(&self, limit: Duration) {
        let notified = self.closed.notified();
        if self.is_closed.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let _ = tokio::time::timeout(limit, notified).await;
    }

    /// The last few lines, as a message suffix (empty when there are none).
    fn suffix(&self) -> String {
        let Ok(lines) = self.lines.lock() else {
            return String::new();
        };
        let last: Vec<&str> = lines
            .iter()
            .rev()
            .take(5)
            .rev()
            .map(String::as_str)
            .collect();
        if last.is_empty() {
            String::new()
        } else {
            format!("; its stderr ended with: {}", last.join(" | "))
        }
    }
}

/// One connected MCP server.
pub(super) struct Connection {
    /// The server's name (the prefix of its tools' names).
    pub(super) name: String,
    /// The MCP client session.
    pub(super) client: RunningService<RoleClient, ClientConfig>,
    stderr: Option<Arc<StderrTail>>,
    /// The in-process server's task (built-in servers only).
    task: Option<JoinHandle<()>>,
}

impl Connection {
    /// The server's last stderr lines as a message suffix (empty when none).
    pub(super) async fn stderr_suffix(&self) -> String {
        match &self.stderr {
            Some(tail) => {
                tail.settle(Duration::from_millis(500)).await;
                tail.suffix()
            }
            None => String::new(),
        }
    }
}

fn client_config() -> ClientConfig {
    // The newest revision that still has the `initialize` handshake, which is
    // what servers in the wild speak.
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("eol", env!("CARGO_PKG_VERSION")),
    )
    .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
}

impl Toolbox {
    /// Connects to the built-in Redis tool server (in process, confined to the
    /// feature's keys in `store`) and to every MCP server in the feature's
    /// `tools:` list (`command` over stdio, `url` over streamable HTTP), and
    /// lists their tools.
    ///
    /// Servers already started are stopped again if a later one fails.
    pub async fn connect(feature: &Feature, store: Arc<RedisStore>) -> Result<Self, ToolboxError> {
        let mut toolbox = Toolbox {
            feature: feature.name().to_owned(),
            builtin: None,
            servers: Vec::new(),
            tools: Vec::new(),
            by_name: HashMap::new(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
        };
        match toolbox.connect_all(feature, store).await {
            Ok(()) => Ok(toolbox),
            Err(error) => {
                toolbox.close().await;
                Err(error)
            }
        }
    }

    async fn connect_all(
        &mut self,
        feature: &Feature,
        store: Arc<RedisStore>,
    ) -> Result<(), ToolboxError> {
        // Check every entry before starting anything.
        let mut seen = vec![REDIS_SERVER.to_owned()];
        for server in &feature.frontmatter.tools {
            self.check_server(server, &seen)?;
            seen.push(server.name.clone());
        }
        let builtin = RedisToolServer::new(store, feature.name());
        self.builtin = Some(builtin.clone());
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn(async move {
            match builtin.serve(server_io).await {
                Ok(running) => {
                    let _ = running.waiting().await;
                }
                Err(error) => {
                    tracing::warn!(%error, "the built-in Redis tool server did not start")
                }
            }
        });
        let connection = self
            .handshake(REDIS_SERVER, client_io, None, Some(task))
            .await?;
        self.add(connection).await?;

        for server in &feature.frontmatter.tools {
            let connection = match (&server.command, &server.url) {
                (Some(command), None) => self.connect_stdio(server, command).await?,
                (None, Some(url)) => self.connect_http(server, url).await?,
                _ => {
                    return Err(self.invalid(
                        server,
                        "it needs exactly one of 'command' (stdio) or 'url' (streamable HTTP)",
                    ));
                }
            };
            self.add(connection).await?;
        }
        Ok(())
    }

    fn invalid(&self, server: &ToolServer, reason: &str) -> ToolboxError {
        ToolboxError::InvalidServer {
            feature: self.feature.clone(),
            server: server.name.clone(),
            reason: reason.to_owned(),
        }
    }

    fn check_server(&self, server: &ToolServer, seen: &[String]) -> Result<(), ToolboxError> {
        let name = &server.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || name.contains(NAME_SEPARATOR)
        {
            return Err(self.invalid(
                server,
                "a tool server's name must be letters, digits, '-' and single '_' (it prefixes its tools' names)",
            ));
        }
        if name == REDIS_SERVER {
            return Err(self.invalid(
                server,
                "the name 'redis' is taken by the built-in Redis tool server",
            ));
        }
        if seen.contains(name) {
            return Err(self.invalid(server, "another tool server has the same name"));
        }
        Ok(())
    }

    async fn connect_stdio(
        &self,
        server: &ToolServer,
        command: &str,
    ) -> Result<Connection, ToolboxError> {
        let mut cmd = tokio::process::Command::new(command);
        cmd.args(&server.args).envs(&server.env);
        let command_line = std::iter::once(command)
            .chain(server.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let (transport, stderr) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ToolboxError::Spawn {
                feature: self.feature.clone(),
                server: server.name.clone(),
                command: command_line,
                source,
            })?;
        let tail = Arc::new(StderrTail::default());
        if let Some(stderr) = stderr {
            let tail = Arc::clone(&tail);
            let name = server.name.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(server = %name, "{line}");
                    tail.push(line);
                }
                tail.close();
            });
        } else {
            tail.close();
        }
        self.handshake(&server.name, transport, Some(tail), None)
            .await
    }

    async fn connect_http(
        &self,
        server: &ToolServer,
        url: &str,
    ) -> Result<Connection, ToolboxError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| ToolboxError::HttpClient {
                feature: self.feature.clone(),
                server: server.name.clone(),
                source,
            })?;
        let transport = StreamableHttpClientTransport::with_client(
            http,
            rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                url,
            ),
        );
        self.handshake(&server.name, transport, None, None).await
    }

    /// Runs the MCP handshake on `transport`, bounded by [`CONNECT_TIMEOUT`].
    async fn handshake<T, E, A>(
        &self,
        server: &str,
        transport: T,
        stderr: Option<Arc<StderrTail>>,
        task: Option<JoinHandle<()>>,
    ) -> Result<Connection, ToolboxError>
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let suffix =
            |tail: &Option<Arc<StderrTail>>| tail.as_ref().map(|t| t.suffix()).unwrap_or_default();
        match tokio::time::timeout(CONNECT_TIMEOUT, client_config().serve(transport)).await {
            Ok(Ok(client)) => Ok(Connection {
                name: server.to_owned(),
                client,
                stderr,
                task,
            }),
            Ok(Err(source)) => {
                if let Some(t) = &stderr {
                    t.settle(Duration::from_millis(500)).await;
                }
                if let Some(task) = task {
                    task.abort();
                }
                Err(ToolboxError::Initialize {
                    feature: self.feature.clone(),
                    server: server.to_owned(),
                    source: Box::new(source),
                    stderr: suffix(&stderr),
                })
            }
            Err(_) => {
                if let Some(task) = task {
                    task.abort();
                }
                Err(ToolboxError::ConnectTimeout {
                    feature: self.feature.clone(),
                    server: server.to_owned(),
                    timeout: CONNECT_TIMEOUT,
                    stderr: suffix(&stderr),
                })
            }
        }
    }

    /// Lists `connection`'s tools and adds both to the toolbox.
    async fn add(&mut self, connection: Connection) -> Result<(), ToolboxError> {
        let listed =
            tokio::time::timeout(CONNECT_TIMEOUT, connection.client.peer().list_all_tools()).await;
        let tools = match listed {
            Ok(Ok(tools)) => tools,
            Ok(Err(source)) => {
                let stderr = connection.stderr_suffix().await;
                let error = ToolboxError::ListTools {
                    feature: self.feature.clone(),
                    server: connection.name.clone(),
                    source: Box::new(source),
                    stderr,
                };
                close_connection(connection).await;
                return Err(error);
            }
            Err(_) => {
                let error = ToolboxError::ConnectTimeout {
                    feature: self.feature.clone(),
                    server: connection.name.clone(),
                    timeout: CONNECT_TIMEOUT,
                    stderr: connection
                        .stderr
                        .as_ref()
                        .map(|t| t.suffix())
                        .unwrap_or_default(),
                };
                close_connection(connection).await;
                return Err(error);
            }
        };
        let index = self.servers.len();
        for tool in tools {
            let name = exposed_name(&connection.name, &tool.name);
            if self.by_name.contains_key(&name) {
                tracing::warn!(feature = %self.feature, server = %connection.name, tool = %tool.name, exposed = %name, "two tools have the same name once made valid for the model; keeping the first");
                continue;
            }
            let mut parameters = Value::Object(tool.input_schema.as_ref().clone());
            if let Some(obj) = parameters.as_object_mut() {
                // Metadata some OpenAI-compatible servers reject in tool parameters.
                obj.remove("$schema");
            }
            let description = tool
                .description
                .as_deref()
                .map(str::to_owned)
                .or_else(|| tool.title.clone())
                .unwrap_or_default();
            let definition = json!({
                "type": "function",
                "function": {
                    "name": name,
                    "description": description,
                    "parameters": parameters,
                }
            });
            self.by_name.insert(name.clone(), self.tools.len());
            self.tools.push(ExposedTool {
                name,
                server: index,
                tool: tool.name.to_string(),
                definition,
            });
        }
        tracing::debug!(feature = %self.feature, server = %connection.name, tools = self.tools.iter().filter(|t| t.server == index).count(), "connected to MCP server");
        self.servers.push(connection);
        Ok(())
    }

    /// Stops every server: built-in ones at once, child processes after closing
    /// their stdin (then SIGTERM, then kill), HTTP sessions by closing them.
    pub async fn close(self) {
        for connection in self.servers {
            close_connection(connection).await;
        }
    }
}

async fn close_connection(mut connection: Connection) {
    match connection.client.close_with_timeout(CLOSE_TIMEOUT).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            tracing::warn!(server = %connection.name, "MCP server did not close in time; it will be killed")
        }
        Err(error) => tracing::warn!(server = %connection.name, %error, "MCP client task failed"),
    }
    // The in-process server ends when its client closes the duplex.
    if let Some(mut task) = connection.task.take()
        && tokio::time::timeout(CLOSE_TIMEOUT, &mut task)
            .await
            .is_err()
    {
        task.abort();
    }
}

/// `<server>__<tool>`, with characters OpenAI function names do not allow replaced by `_`.
fn exposed_name(server: &str, tool: &str) -> String {
    format!("{server}{NAME_SEPARATOR}{tool}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposed_names_are_valid_function_names() {
        assert_eq!(exposed_name("redis", "get"), "redis__get");
        assert_eq!(exposed_name("fs", "read.file/v2"), "fs__read_file_v2");
    }
}
