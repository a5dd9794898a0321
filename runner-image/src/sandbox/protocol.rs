//! The JSON-lines protocol between the host and a Python worker.
//!
//! Host to worker: `ping`, `check`, `call`, and `redis_reply` while a call runs.
//! Worker to host: `ready` once, then `pong`, `checked`, `redis` (a Redis command
//! the code wants run), `redis_pipeline` (several, in one round trip) and `result`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A message the host sends to a worker.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Request<'a> {
    /// Liveness check.
    Ping,
    /// Static checks of `code` without running it.
    Check {
        code: &'a str,
        function: &'a str,
        params: &'a [String],
    },
    /// Run `function` from `code` with `args`.
    Call {
        id: u64,
        code: &'a str,
        function: &'a str,
        args: &'a Value,
        cpu_seconds: f64,
    },
    /// The answer to a `redis` or `redis_pipeline` message (for a pipeline,
    /// `value` holds one `{"ok", "value"}` or `{"ok", "error", "kind"}` per command).
    RedisReply {
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The error's kind: refused, server, connection or timeout.
        #[serde(skip_serializing_if = "Option::is_none")]
        kind: Option<&'static str>,
    },
}

/// A message a worker sends to the host.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Reply {
    /// The worker has started.
    Ready {},
    /// Answer to `ping`.
    Pong,
    /// Answer to `check`.
    Checked { errors: Vec<CodeError> },
    /// A Redis command the running code asks for.
    Redis { command: Vec<Value> },
    /// Redis commands to run in one round trip (a transaction when `transaction`).
    RedisPipeline {
        commands: Vec<Vec<Value>>,
        #[serde(default)]
        transaction: bool,
    },
    /// The outcome of a `call`.
    Result(CallResult),
}

/// A problem found in Python code, located inside the code (the check is core's).
pub use eol_core::sandbox_check::CodeProblem as CodeError;

/// The outcome of one call, as the worker reports it.
#[derive(Debug, Deserialize)]
pub(crate) struct CallResult {
    /// The request's id, echoed.
    pub id: u64,
    pub ok: bool,
    #[serde(default)]
    pub value: Value,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub error: Option<WorkerError>,
    /// The worker asks to be replaced (after a resource limit was hit).
    #[serde(default)]
    pub recycle: bool,
}

/// Why a call failed inside the worker.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WorkerError {
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub line: Option<usize>,
    #[serde(default)]
    pub traceback: Option<String>,
}
