//! A feature's async calls on a Redis Stream: what `eol serve` enqueues for
//! `Prefer: respond-async` (and the operator for FeatureRuns in `mode: Queue`),
//! and what the serving pods' workers take, answer and acknowledge.
//!
//! - The stream `eol-queue:<feature>` holds one entry per accepted call; every
//!   serving pod reads it through the consumer group `eol-workers`, so each
//!   entry goes to one pod at a time.
//! - The key `eol-result:<feature>:<id>` holds the call's state: `queued`,
//!   then `done` with the answer, kept for a set time.
//! - Enqueueing is one Lua script: the idempotency key, the length check (a
//!   full queue refuses) and the entry are written together or not at all.
//! - Answering is one Lua script too: the first answer is kept, the entry
//!   acknowledged and deleted, so a call delivered twice (at-least-once) is
//!   still answered once. The stream's length is thus the calls accepted and
//!   not yet answered.
//! - A pod renews its claim on the entries it runs; entries whose pod stopped
//!   renewing (it was killed) are taken over by another with `XAUTOCLAIM`.

use crate::runner_contract::{env, queue};
use redis::aio::ConnectionLike;
use redis::streams::{StreamAutoClaimOptions, StreamClaimOptions, StreamId, StreamReadOptions};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::LazyLock;
use std::time::Duration;

/// A queue command that failed.
#[derive(Debug, thiserror::Error)]
#[error("failed to {what}: {source}")]
pub struct QueueError {
    /// What was being done, naming the queue.
    pub what: String,
    /// The client's error.
    #[source]
    pub source: redis::RedisError,
}

impl QueueError {
    /// Whether the stream or its group does not exist (yet): no call was ever
    /// queued, or the Redis lost its data. Nothing to read, not a failure.
    pub fn is_no_queue(&self) -> bool {
        self.source.code() == Some("NOGROUP")
    }
}

/// How a feature's queue behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// The most calls accepted and not yet answered; more are refused (429).
    pub max_length: u64,
    /// How many queued calls this pod runs at once.
    pub concurrency: usize,
    /// How long a call may go without its pod renewing the claim before another pod takes it.
    pub claim_after: Duration,
    /// How long a result, and the idempotency key that led to it, is kept.
    pub result_ttl: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            max_length: 10_000,
            concurrency: 4,
            claim_after: Duration::from_secs(30),
            result_ttl: Duration::from_secs(3600),
        }
    }
}

impl QueueSettings {
    /// From `EOL_QUEUE_*`, each defaulting to [`Self::default`]'s.
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any source of variables (for tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let defaults = Self::default();
        let number = |name: &str, default: u64, min: u64| -> Result<u64, String> {
            match var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
            {
                None => Ok(default),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if n >= min => Ok(n),
                    _ => Err(format!(
                        "{name}={v:?}: expected a whole number of at least {min}"
                    )),
                },
            }
        };
        Ok(Self {
            max_length: number(env::QUEUE_MAX_LENGTH, defaults.max_length, 1)?,
            concurrency: number(env::QUEUE_CONCURRENCY, defaults.concurrency as u64, 1)? as usize,
            claim_after: Duration::from_secs(number(
                env::QUEUE_CLAIM_AFTER_SECONDS,
                defaults.claim_after.as_secs(),
                1,
            )?),
            result_ttl: Duration::from_secs(number(
                env::QUEUE_RESULT_TTL_SECONDS,
                defaults.result_ttl.as_secs(),
                1,
            )?),
        })
    }
}

/// One accepted call, as the stream entry holds it (field `call`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueuedCall {
    /// The call's id, the one `GET /v1/results/{id}` takes.
    pub id: String,
    /// The operation.
    pub operation: String,
    /// Its input.
    pub input: Value,
    /// Who called (`system:anonymous` without auth).
    pub user: String,
    /// Their groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The W3C `traceparent` of the request that enqueued it, so the run joins its trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Where an async call is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CallState {
    /// Accepted, not answered yet (waiting or running).
    Queued,
    /// Answered: the record holds the answer.
    Done,
}

/// An async call's record: its state and, once done, what a synchronous call
/// would have answered (the status and the output or the error).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CallRecord {
    /// The call's id.
    pub id: String,
    /// The operation.
    pub operation: String,
    /// Where it is.
    pub state: CallState,
    /// Who called: only they may read the result.
    pub user: String,
    /// The SHA-256 of the input, to tell a reused idempotency key from a retry.
    pub input_sha256: String,
    /// When it was accepted (RFC 3339).
    pub accepted: String,
    /// When it was answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// The HTTP status a synchronous call would have had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The phase that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The output, when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The error (`{kind, message}`), when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// How many times a pod started it: above 1 when a pod died running it.
    #[serde(default)]
    pub attempts: u32,
}

/// What became of an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Accepted; `depth` calls are now waiting or running, this one included.
    Accepted {
        /// The calls accepted and not yet answered.
        depth: u64,
    },
    /// The idempotency key was seen: this is the call it led to.
    Existing {
        /// That call's id.
        id: String,
        /// The SHA-256 of that call's input.
        input_sha256: String,
    },
    /// The queue is full; nothing was written.
    Full {
        /// The calls waiting or running.
        depth: u64,
    },
}

/// Taking an entry to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Taken {
    /// Run it (the record says how many attempts, this one included).
    Run(Box<CallRecord>),
    /// Already answered (a pod died after answering, before the entry went): nothing to run.
    Answered,
}

/// One entry taken from the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The stream entry's id.
    pub entry: String,
    /// The call, or why the entry could not be read as one.
    pub call: Result<QueuedCall, String>,
}

// Enqueue: KEYS stream, record, idempotency key (or the empty string);
// ARGV id, max length, ttl seconds, entry, record, idempotency value, group.
// The first call makes the stream and its group (and any call remakes a
// group that was lost): a feature that never queues a call leaves nothing in Redis.
static ENQUEUE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if KEYS[3] ~= '' then
  local seen = redis.call('GET', KEYS[3])
  if seen then return {'existing', seen} end
end
local depth = redis.call('XLEN', KEYS[1])
if depth >= tonumber(ARGV[2]) then return {'full', tostring(depth)} end
-- BUSYGROUP (it exists) is the usual answer: pcall keeps it from failing the script.
redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[7], '0', 'MKSTREAM')
redis.call('XADD', KEYS[1], '*', 'call', ARGV[4])
redis.call('SET', KEYS[2], ARGV[5], 'EX', ARGV[3])
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[6], 'EX', ARGV[3]) end
return {'accepted', tostring(depth + 1)}
",
    )
});

// Take: KEYS record; ARGV ttl seconds. Counts an attempt on a queued call;
// says `answered` for a done one and `gone` for one whose record expired.
static TAKE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local raw = redis.call('GET', KEYS[1])
if not raw then return {'gone', ''} end
local record = cjson.decode(raw)
if record.state == 'done' then return {'answered', ''} end
record.attempts = (record.attempts or 0) + 1
raw = cjson.encode(record)
redis.call('SET', KEYS[1], raw, 'KEEPTTL')
return {'run', raw}
",
    )
});

// Answer: KEYS record, stream; ARGV answered record, ttl seconds, entry id, group.
// The first answer stays; the entry is acknowledged and deleted either way.
static ANSWER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local raw = redis.call('GET', KEYS[1])
local first = 1
if raw and cjson.decode(raw).state == 'done' then
  first = 0
else
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
redis.call('XACK', KEYS[2], ARGV[4], ARGV[3])
redis.call('XDEL', KEYS[2], ARGV[3])
return first
",
    )
});

/// One feature's queue: its Redis names and settings, and the commands on
/// them, over any connection.
#[derive(Debug, Clone)]
pub struct FeatureQueue {
    feature: String,
    stream: String,
    settings: QueueSettings,
}

impl FeatureQueue {
    /// The queue of `feature`.
    pub fn new(feature: &str, settings: QueueSettings) -> Self {
        Self {
            feature: feature.to_owned(),
            stream: queue::stream(feature),
            settings,
        }
    }

    /// How it behaves.
    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    fn failed(&self, what: &str) -> impl Fn(redis::RedisError) -> QueueError + '_ {
        let what = format!("{what} (queue {})", self.stream);
        move |source| QueueError {
            what: what.clone(),
            source,
        }
    }

    fn ttl_seconds(&self) -> u64 {
        self.settings.result_ttl.as_secs().max(1)
    }

    /// Enqueues `call` (its record says `queued`, accepted `now`), unless the
    /// idempotency key `idempotency` (a digest, or any short string safe in a
    /// key, already scoped to the caller) was seen or the queue is full.
    pub async fn enqueue(
        &self,
        conn: &mut impl ConnectionLike,
        call: &QueuedCall,
        input_sha256: &str,
        idempotency: Option<&str>,
        now: &str,
    ) -> Result<Enqueued, QueueError> {
        let record = CallRecord {
            id: call.id.clone(),
            operation: call.operation.clone(),
            state: CallState::Queued,
            user: call.user.clone(),
            input_sha256: input_sha256.to_owned(),
            accepted: now.to_owned(),
            finished: None,
            status: None,
            phase: None,
            output: None,
            error: None,
            attempts: 0,
        };
        let idempotency_key = idempotency
            .map(|key| queue::idempotency_key(&self.feature, key))
            .unwrap_or_default();
        let (outcome, value): (String, String) = ENQUEUE
            .key(&self.stream)
            .key(queue::result_key(&self.feature, &call.id))
            .key(&idempotency_key)
            .arg(&call.id)
            .arg(self.settings.max_length)
            .arg(self.ttl_seconds())
            .arg(json(call))
            .arg(json(&record))
            .arg(format!("{} {input_sha256}", call.id))
            .arg(queue::GROUP)
            .invoke_async(conn)
            .await
            .map_err(self.failed("enqueue a call"))?;
        Ok(match outcome.as_str() {
            "existing" => {
                let (id, digest) = value.split_once(' ').unwrap_or((value.as_str(), ""));
                Enqueued::Existing {
                    id: id.to_owned(),
                    input_sha256: digest.to_owned(),
                }
            }
            "full" => Enqueued::Full {
                depth: value.parse().unwrap_or(self.settings.max_length),
            },
            _ => Enqueued::Accepted {
                depth: value.parse().unwrap_or(0),
            },
        })
    }

    /// The record of call `id`, if it is kept.
    pub async fn record(
        &self,
        conn: &mut impl ConnectionLike,
        id: &str,
    ) -> Result<Option<CallRecord>, QueueError> {
        let raw: Option<String> = redis::cmd("GET")
            .arg(queue::result_key(&self.feature, id))
            .query_async(conn)
            .await
            .map_err(self.failed("read a call's result"))?;
        Ok(raw.and_then(|raw| serde_json::from_str(&raw).ok()))
    }

    /// The calls accepted and not yet answered.
    pub async fn depth(&self, conn: &mut impl ConnectionLike) -> Result<u64, QueueError> {
        redis::cmd("XLEN")
            .arg(&self.stream)
            .query_async(conn)
            .await
            .map_err(self.failed("measure the queue"))
    }

    /// Waits up to `block` for one new entry for `consumer` (on a connection
    /// of its own: the read holds it up meanwhile).
    pub async fn read(
        &self,
        conn: &mut impl ConnectionLike,
        consumer: &str,
        block: Duration,
    ) -> Result<Option<Delivery>, QueueError> {
        let options = StreamReadOptions::default()
            .group(queue::GROUP, consumer)
            .count(1)
            .block(block.as_millis() as usize);
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREADGROUP")
            .arg(options)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(conn)
            .await
            .map_err(self.failed("read the queue"))?;
        Ok(reply
            .and_then(|r| r.keys.into_iter().next())
            .and_then(|k| k.ids.into_iter().next())
            .map(delivery))
    }

    /// Takes over, for `consumer`, up to `count` entries whose pods have not
    /// renewed them for the claim time (`XAUTOCLAIM`).
    pub async fn reclaim(
        &self,
        conn: &mut impl ConnectionLike,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let reply: redis::streams::StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(queue::GROUP)
            .arg(consumer)
            .arg(self.settings.claim_after.as_millis() as u64)
            .arg("0-0")
            .arg(StreamAutoClaimOptions::default().count(count))
            .query_async(conn)
            .await
            .map_err(self.failed("reclaim calls of stopped pods"))?;
        Ok(reply.claimed.into_iter().map(delivery).collect())
    }

    /// Renews `consumer`'s claim on `entry` (its idle time starts again), so
    /// no other pod takes a call that is still running.
    pub async fn renew(
        &self,
        conn: &mut impl ConnectionLike,
        consumer: &str,
        entry: &str,
    ) -> Result<(), QueueError> {
        redis::cmd("XCLAIM")
            .arg(&self.stream)
            .arg(queue::GROUP)
            .arg(consumer)
            .arg(0)
            .arg(entry)
            .arg(StreamClaimOptions::default().with_justid())
            .query_async::<Vec<String>>(conn)
            .await
            .map(drop)
            .map_err(self.failed("renew a call's claim"))
    }

    /// Counts an attempt at call `id` and says whether to run it.
    pub async fn take(
        &self,
        conn: &mut impl ConnectionLike,
        id: &str,
    ) -> Result<Option<Taken>, QueueError> {
        let (outcome, raw): (String, String) = TAKE
            .key(queue::result_key(&self.feature, id))
            .arg(self.ttl_seconds())
            .invoke_async(conn)
            .await
            .map_err(self.failed("take a call"))?;
        Ok(match outcome.as_str() {
            "run" => serde_json::from_str(&raw)
                .ok()
                .map(Box::new)
                .map(Taken::Run),
            "answered" => Some(Taken::Answered),
            _ => None,
        })
    }

    /// Stores `record` (state done) unless the call was answered already, and
    /// acknowledges and deletes `entry`; true when this was the first answer.
    pub async fn answer(
        &self,
        conn: &mut impl ConnectionLike,
        entry: &str,
        record: &CallRecord,
    ) -> Result<bool, QueueError> {
        let first: i64 = ANSWER
            .key(queue::result_key(&self.feature, &record.id))
            .key(&self.stream)
            .arg(json(record))
            .arg(self.ttl_seconds())
            .arg(entry)
            .arg(queue::GROUP)
            .invoke_async(conn)
            .await
            .map_err(self.failed("store a call's result"))?;
        Ok(first == 1)
    }

    /// Acknowledges and deletes `entry` without answering (unreadable, or its record gone).
    pub async fn drop_entry(
        &self,
        conn: &mut impl ConnectionLike,
        entry: &str,
    ) -> Result<(), QueueError> {
        redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(&self.stream)
            .arg(queue::GROUP)
            .arg(entry)
            .ignore()
            .cmd("XDEL")
            .arg(&self.stream)
            .arg(entry)
            .ignore()
            .query_async::<()>(conn)
            .await
            .map_err(self.failed("drop an entry"))
    }
}

fn json<T: Serialize>(value: &T) -> String {
    // Plain data with string keys: serializing cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn delivery(entry: StreamId) -> Delivery {
    let call = match entry.get::<String>("call") {
        None => Err("the entry has no `call` field".to_owned()),
        Some(raw) => {
            serde_json::from_str(&raw).map_err(|e| format!("the call is not readable: {e}"))
        }
    };
    Delivery {
        entry: entry.id,
        call,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<QueueSettings, String> {
        let vars: std::collections::HashMap<&str, &str> = vars.iter().copied().collect();
        QueueSettings::from_vars(|name| vars.get(name).map(|v| (*v).to_owned()))
    }

    #[test]
    fn queue_settings_read_from_the_environment() {
        assert_eq!(settings(&[]), Ok(QueueSettings::default()));
        let s = settings(&[
            (env::QUEUE_MAX_LENGTH, "50"),
            (env::QUEUE_CONCURRENCY, "2"),
            (env::QUEUE_CLAIM_AFTER_SECONDS, "5"),
            (env::QUEUE_RESULT_TTL_SECONDS, "60"),
        ])
        .unwrap();
        assert_eq!(
            s,
            QueueSettings {
                max_length: 50,
                concurrency: 2,
                claim_after: Duration::from_secs(5),
                result_ttl: Duration::from_secs(60),
            }
        );
        for bad in [
            (env::QUEUE_MAX_LENGTH, "0"),
            (env::QUEUE_CONCURRENCY, "many"),
            (env::QUEUE_CLAIM_AFTER_SECONDS, "-1"),
        ] {
            let err = settings(&[bad]).unwrap_err();
            assert!(err.contains(bad.0), "{err}");
        }
    }
}
