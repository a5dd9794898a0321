//! The one Redis command table: which commands a feature's code (sandboxed
//! Python) and its model (the MCP Redis tools) may run, where their keys are,
//! whether they may be sent twice, and what shape their replies take.
//!
//! Both the sandbox bridge ([`crate::store::FeatureRedis`]) and the MCP Redis
//! tools ([`crate::mcp::RedisToolServer`]) check and prefix every command
//! through [`Scope::prepare`], and shape its reply with [`Prepared::reply`].
//! The Python proxy in `sandbox/worker.py` offers redis-py's methods on top of
//! these commands (a unit test checks that it names no command missing here).
//!
//! Keys: a key that starts with the feature's prefix (`eol:<feature>:`) is used
//! as is; any other key starting with `eol:` belongs to another feature and is
//! refused; every other key gets the prefix. `SCAN` patterns are confined the
//! same way (and a `SCAN` without `MATCH` gets one), and keys in replies
//! (`SCAN`, `XREAD`, `FT.SEARCH`) come back without the prefix.

use serde_json::{Map, Value, json};

/// A group of commands, as the docs and the MCP tool descriptions list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Commands on whole keys: DEL, EXPIRE, TTL, SCAN, ...
    Keys,
    /// Strings and counters.
    Strings,
    /// Hashes.
    Hashes,
    /// Lists.
    Lists,
    /// Sets.
    Sets,
    /// Sorted sets (leaderboards).
    SortedSets,
    /// Streams.
    Streams,
    /// RedisJSON documents.
    Json,
    /// RediSearch queries.
    Search,
    /// Connection checks.
    Server,
}

impl Family {
    /// Every family, in the order the docs list them.
    pub const ALL: [Family; 10] = [
        Family::Strings,
        Family::Hashes,
        Family::Lists,
        Family::Sets,
        Family::SortedSets,
        Family::Streams,
        Family::Json,
        Family::Keys,
        Family::Search,
        Family::Server,
    ];

    /// Its name in messages and descriptions.
    pub fn label(self) -> &'static str {
        match self {
            Family::Keys => "keys",
            Family::Strings => "strings",
            Family::Hashes => "hashes",
            Family::Lists => "lists",
            Family::Sets => "sets",
            Family::SortedSets => "sorted sets",
            Family::Streams => "streams",
            Family::Json => "JSON",
            Family::Search => "search",
            Family::Server => "server",
        }
    }
}

/// Where a command's keys are among its arguments (the name not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// No keys.
    None,
    /// The first argument.
    First,
    /// The first two (source and destination).
    FirstTwo,
    /// Every argument.
    All,
    /// Every argument but the last (`JSON.MGET key... path`).
    AllButLast,
    /// Every other argument from the first (`MSET key value ...`).
    EveryOther,
    /// Every third argument from the first (`JSON.MSET key path value ...`).
    EveryThird,
    /// The arguments before position `at`, which holds how many keys follow it
    /// (`ZUNIONSTORE dest numkeys key...`, `ZUNION numkeys key...`).
    Numkeys {
        /// Where the count is.
        at: usize,
    },
    /// `XREAD [COUNT n] STREAMS key... id...`: the first half after `STREAMS`.
    Streams,
    /// `SCAN cursor [MATCH pattern] ...`: the pattern is confined to the prefix.
    Scan,
    /// `SORT key [LIMIT o c] [ASC|DESC] [ALPHA] [STORE dest]` (BY and GET refused).
    Sort,
}

/// Whether a command may be sent again when the connection broke after it was
/// sent (so it may or may not have run). A command that was never sent (the
/// connection was already known dead, or could not be opened) is always retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Running it twice leaves the same data (replies that count changes, like
    /// DEL's, may then count 0).
    Safe,
    /// Safe unless one of these options is given (e.g. SET with NX or GET).
    SafeUnless(&'static [&'static str]),
    /// Running it twice changes more (INCR, LPUSH, XADD, ...), or its reply is
    /// the point (SETNX, GETDEL, SPOP, ...).
    Never,
}

/// How the host turns a command's reply into JSON (the Python proxy then turns
/// JSON arrays into redis-py's tuples and sets where redis-py has them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// As Redis sends it: strings, integers, null, arrays.
    Raw,
    /// 1/0, "OK" or "PONG" as true/false.
    Bool,
    /// "OK" as true, nil as null; with the `GET` option the old value as is.
    SetOk,
    /// A number sent as text (scores, INCRBYFLOAT) as a JSON number; null stays
    /// null; inf and nan as the strings "inf", "-inf", "nan".
    Float,
    /// A list of such numbers (ZMSCORE).
    Floats,
    /// Flat field/value pairs as an object (HGETALL).
    Map,
    /// With `WITHSCORES`: `[[member, score], ...]`; without: the members.
    Scores,
    /// Always `[[member, score], ...]` (ZPOPMIN, ZPOPMAX).
    ScorePairs,
    /// A rank, or with `WITHSCORE` `[rank, score]`.
    Rank,
    /// Stream entries as `[[id, {field: value}], ...]`.
    Entries,
    /// XREAD: `[[stream, entries], ...]`, stream names without the prefix.
    XRead,
    /// SCAN: `[cursor, [key, ...]]`, keys without the prefix.
    Scan,
    /// HSCAN: `[cursor, {field: value}]`.
    HScan,
    /// SSCAN: `[cursor, [member, ...]]`.
    SScan,
    /// ZSCAN: `[cursor, [[member, score], ...]]`.
    ZScan,
    /// JSON text parsed (JSON.GET); nil as null.
    Json,
    /// Each element's JSON text parsed (JSON.MGET, JSON.ARRPOP).
    JsonEach,
    /// FT.SEARCH: `{"total": n, "results": [{"key", "fields"}]}`, keys without the prefix.
    Search,
}

/// Where a command's options start, for the options that change its reply or
/// its [`Retry`] (`WITHSCORES`, `INCR`, `NX`, `GET`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opts {
    /// It has none that matter.
    None,
    /// Every non-key argument from this position on.
    From(usize),
    /// The run of option words starting at this position (ZADD's, before the scores).
    Leading(usize),
}

/// One command of the table.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Its name, upper case (`JSON.SET`).
    pub name: &'static str,
    /// Its family.
    pub family: Family,
    /// Where its keys are.
    pub keys: Keys,
    /// How many arguments it needs at least.
    pub min_args: usize,
    /// It only reads.
    pub read_only: bool,
    /// Whether it may be sent again after a broken connection.
    pub retry: Retry,
    /// The shape of its reply.
    pub reply: Reply,
    /// Where the options that matter start.
    pub opts: Opts,
    /// Options that are refused (COPY's DB: another database).
    pub refused: &'static [&'static str],
}

const fn spec(
    name: &'static str,
    family: Family,
    keys: Keys,
    min_args: usize,
    read_only: bool,
    retry: Retry,
    reply: Reply,
) -> Spec {
    Spec {
        name,
        family,
        keys,
        min_args,
        read_only,
        retry,
        reply,
        opts: Opts::None,
        refused: &[],
    }
}

impl Spec {
    const fn opts(mut self, opts: Opts) -> Self {
        self.opts = opts;
        self
    }

    const fn refuse(mut self, refused: &'static [&'static str]) -> Self {
        self.refused = refused;
        self
    }
}

use Family as F;
use Keys as K;
use Reply as R;
use Retry::{Never, Safe, SafeUnless};

/// A read: never changes data, always safe to send again.
const fn read(name: &'static str, family: Family, keys: Keys, min: usize, reply: Reply) -> Spec {
    spec(name, family, keys, min, true, Safe, reply)
}

/// A write.
const fn write(
    name: &'static str,
    family: Family,
    keys: Keys,
    min: usize,
    retry: Retry,
    reply: Reply,
) -> Spec {
    spec(name, family, keys, min, false, retry, reply)
}

/// Every command features may run.
pub static COMMANDS: &[Spec] = &[
    // Strings
    read("GET", F::Strings, K::First, 1, R::Raw),
    write(
        "SET",
        F::Strings,
        K::First,
        2,
        SafeUnless(&["NX", "XX", "GET"]),
        R::SetOk,
    )
    .opts(Opts::From(2)),
    write("SETNX", F::Strings, K::First, 2, Never, R::Bool),
    write("SETEX", F::Strings, K::First, 3, Safe, R::Bool),
    write("PSETEX", F::Strings, K::First, 3, Safe, R::Bool),
    write("GETSET", F::Strings, K::First, 2, Never, R::Raw),
    write("GETDEL", F::Strings, K::First, 1, Never, R::Raw),
    write("GETEX", F::Strings, K::First, 1, Safe, R::Raw),
    read("MGET", F::Strings, K::All, 1, R::Raw),
    write("MSET", F::Strings, K::EveryOther, 2, Safe, R::Bool),
    write("MSETNX", F::Strings, K::EveryOther, 2, Never, R::Bool),
    write("INCR", F::Strings, K::First, 1, Never, R::Raw),
    write("INCRBY", F::Strings, K::First, 2, Never, R::Raw),
    write("INCRBYFLOAT", F::Strings, K::First, 2, Never, R::Float),
    write("DECR", F::Strings, K::First, 1, Never, R::Raw),
    write("DECRBY", F::Strings, K::First, 2, Never, R::Raw),
    write("APPEND", F::Strings, K::First, 2, Never, R::Raw),
    read("STRLEN", F::Strings, K::First, 1, R::Raw),
    read("GETRANGE", F::Strings, K::First, 3, R::Raw),
    write("SETRANGE", F::Strings, K::First, 3, Safe, R::Raw),
    // Hashes
    read("HGET", F::Hashes, K::First, 2, R::Raw),
    write("HSET", F::Hashes, K::First, 3, Safe, R::Raw),
    write("HSETNX", F::Hashes, K::First, 3, Never, R::Raw),
    write("HMSET", F::Hashes, K::First, 3, Safe, R::Bool),
    read("HMGET", F::Hashes, K::First, 2, R::Raw),
    read("HGETALL", F::Hashes, K::First, 1, R::Map),
    write("HDEL", F::Hashes, K::First, 2, Safe, R::Raw),
    read("HEXISTS", F::Hashes, K::First, 2, R::Bool),
    write("HINCRBY", F::Hashes, K::First, 3, Never, R::Raw),
    write("HINCRBYFLOAT", F::Hashes, K::First, 3, Never, R::Float),
    read("HKEYS", F::Hashes, K::First, 1, R::Raw),
    read("HVALS", F::Hashes, K::First, 1, R::Raw),
    read("HLEN", F::Hashes, K::First, 1, R::Raw),
    read("HSTRLEN", F::Hashes, K::First, 2, R::Raw),
    read("HSCAN", F::Hashes, K::First, 2, R::HScan),
    // Lists
    write("LPUSH", F::Lists, K::First, 2, Never, R::Raw),
    write("RPUSH", F::Lists, K::First, 2, Never, R::Raw),
    write("LPUSHX", F::Lists, K::First, 2, Never, R::Raw),
    write("RPUSHX", F::Lists, K::First, 2, Never, R::Raw),
    write("LPOP", F::Lists, K::First, 1, Never, R::Raw),
    write("RPOP", F::Lists, K::First, 1, Never, R::Raw),
    read("LRANGE", F::Lists, K::First, 3, R::Raw),
    read("LLEN", F::Lists, K::First, 1, R::Raw),
    read("LINDEX", F::Lists, K::First, 2, R::Raw),
    read("LPOS", F::Lists, K::First, 2, R::Raw),
    write("LSET", F::Lists, K::First, 3, Safe, R::Bool),
    write("LREM", F::Lists, K::First, 3, Never, R::Raw),
    write("LTRIM", F::Lists, K::First, 3, Never, R::Bool),
    write("LINSERT", F::Lists, K::First, 4, Never, R::Raw),
    write("LMOVE", F::Lists, K::FirstTwo, 4, Never, R::Raw),
    write("RPOPLPUSH", F::Lists, K::FirstTwo, 2, Never, R::Raw),
    // Sets
    write("SADD", F::Sets, K::First, 2, Safe, R::Raw),
    write("SREM", F::Sets, K::First, 2, Safe, R::Raw),
    read("SMEMBERS", F::Sets, K::First, 1, R::Raw),
    read("SISMEMBER", F::Sets, K::First, 2, R::Raw),
    read("SMISMEMBER", F::Sets, K::First, 2, R::Raw),
    read("SCARD", F::Sets, K::First, 1, R::Raw),
    write("SPOP", F::Sets, K::First, 1, Never, R::Raw),
    read("SRANDMEMBER", F::Sets, K::First, 1, R::Raw),
    read("SINTER", F::Sets, K::All, 1, R::Raw),
    read("SUNION", F::Sets, K::All, 1, R::Raw),
    read("SDIFF", F::Sets, K::All, 1, R::Raw),
    write("SINTERSTORE", F::Sets, K::All, 2, Safe, R::Raw),
    write("SUNIONSTORE", F::Sets, K::All, 2, Safe, R::Raw),
    write("SDIFFSTORE", F::Sets, K::All, 2, Safe, R::Raw),
    write("SMOVE", F::Sets, K::FirstTwo, 3, Never, R::Bool),
    read("SSCAN", F::Sets, K::First, 2, R::SScan),
    // Sorted sets
    write(
        "ZADD",
        F::SortedSets,
        K::First,
        3,
        SafeUnless(&["INCR"]),
        R::Raw,
    )
    .opts(Opts::Leading(1)),
    write("ZINCRBY", F::SortedSets, K::First, 3, Never, R::Float),
    read("ZSCORE", F::SortedSets, K::First, 2, R::Float),
    read("ZMSCORE", F::SortedSets, K::First, 2, R::Floats),
    read("ZRANGE", F::SortedSets, K::First, 3, R::Scores).opts(Opts::From(3)),
    read("ZREVRANGE", F::SortedSets, K::First, 3, R::Scores).opts(Opts::From(3)),
    read("ZRANGEBYSCORE", F::SortedSets, K::First, 3, R::Scores).opts(Opts::From(3)),
    read("ZREVRANGEBYSCORE", F::SortedSets, K::First, 3, R::Scores).opts(Opts::From(3)),
    read("ZRANGEBYLEX", F::SortedSets, K::First, 3, R::Raw),
    read("ZREVRANGEBYLEX", F::SortedSets, K::First, 3, R::Raw),
    read("ZRANK", F::SortedSets, K::First, 2, R::Rank).opts(Opts::From(2)),
    read("ZREVRANK", F::SortedSets, K::First, 2, R::Rank).opts(Opts::From(2)),
    read("ZCARD", F::SortedSets, K::First, 1, R::Raw),
    read("ZCOUNT", F::SortedSets, K::First, 3, R::Raw),
    read("ZLEXCOUNT", F::SortedSets, K::First, 3, R::Raw),
    write("ZREM", F::SortedSets, K::First, 2, Safe, R::Raw),
    write("ZREMRANGEBYRANK", F::SortedSets, K::First, 3, Never, R::Raw),
    write("ZREMRANGEBYSCORE", F::SortedSets, K::First, 3, Safe, R::Raw),
    write("ZREMRANGEBYLEX", F::SortedSets, K::First, 3, Safe, R::Raw),
    write("ZPOPMIN", F::SortedSets, K::First, 1, Never, R::ScorePairs),
    write("ZPOPMAX", F::SortedSets, K::First, 1, Never, R::ScorePairs),
    write(
        "ZUNIONSTORE",
        F::SortedSets,
        K::Numkeys { at: 1 },
        3,
        Safe,
        R::Raw,
    ),
    write(
        "ZINTERSTORE",
        F::SortedSets,
        K::Numkeys { at: 1 },
        3,
        Safe,
        R::Raw,
    ),
    write(
        "ZDIFFSTORE",
        F::SortedSets,
        K::Numkeys { at: 1 },
        3,
        Safe,
        R::Raw,
    ),
    read("ZUNION", F::SortedSets, K::Numkeys { at: 0 }, 2, R::Scores).opts(Opts::From(1)),
    read("ZINTER", F::SortedSets, K::Numkeys { at: 0 }, 2, R::Scores).opts(Opts::From(1)),
    read("ZDIFF", F::SortedSets, K::Numkeys { at: 0 }, 2, R::Scores).opts(Opts::From(1)),
    write("ZRANGESTORE", F::SortedSets, K::FirstTwo, 4, Safe, R::Raw),
    read("ZSCAN", F::SortedSets, K::First, 2, R::ZScan),
    // Streams
    write("XADD", F::Streams, K::First, 3, Never, R::Raw),
    read("XRANGE", F::Streams, K::First, 3, R::Entries),
    read("XREVRANGE", F::Streams, K::First, 3, R::Entries),
    read("XLEN", F::Streams, K::First, 1, R::Raw),
    write("XDEL", F::Streams, K::First, 2, Safe, R::Raw),
    write("XTRIM", F::Streams, K::First, 3, Safe, R::Raw),
    read("XREAD", F::Streams, K::Streams, 3, R::XRead),
    // JSON
    write(
        "JSON.SET",
        F::Json,
        K::First,
        3,
        SafeUnless(&["NX", "XX"]),
        R::SetOk,
    )
    .opts(Opts::From(3)),
    read("JSON.GET", F::Json, K::First, 1, R::Json),
    write("JSON.DEL", F::Json, K::First, 1, Safe, R::Raw),
    write("JSON.FORGET", F::Json, K::First, 1, Safe, R::Raw),
    read("JSON.MGET", F::Json, K::AllButLast, 2, R::JsonEach),
    write("JSON.MSET", F::Json, K::EveryThird, 3, Safe, R::Bool),
    write("JSON.NUMINCRBY", F::Json, K::First, 3, Never, R::Json),
    write("JSON.NUMMULTBY", F::Json, K::First, 3, Never, R::Json),
    write("JSON.STRAPPEND", F::Json, K::First, 2, Never, R::Raw),
    read("JSON.STRLEN", F::Json, K::First, 1, R::Raw),
    write("JSON.ARRAPPEND", F::Json, K::First, 3, Never, R::Raw),
    write("JSON.ARRINSERT", F::Json, K::First, 4, Never, R::Raw),
    read("JSON.ARRLEN", F::Json, K::First, 1, R::Raw),
    write("JSON.ARRPOP", F::Json, K::First, 1, Never, R::JsonEach),
    read("JSON.ARRINDEX", F::Json, K::First, 3, R::Raw),
    write("JSON.ARRTRIM", F::Json, K::First, 4, Never, R::Raw),
    read("JSON.OBJKEYS", F::Json, K::First, 1, R::Raw),
    read("JSON.OBJLEN", F::Json, K::First, 1, R::Raw),
    read("JSON.TYPE", F::Json, K::First, 1, R::Raw),
    write("JSON.TOGGLE", F::Json, K::First, 2, Never, R::Raw),
    write("JSON.CLEAR", F::Json, K::First, 1, Safe, R::Raw),
    // Keys
    write("DEL", F::Keys, K::All, 1, Safe, R::Raw),
    write("UNLINK", F::Keys, K::All, 1, Safe, R::Raw),
    read("EXISTS", F::Keys, K::All, 1, R::Raw),
    read("TOUCH", F::Keys, K::All, 1, R::Raw),
    write("EXPIRE", F::Keys, K::First, 2, Safe, R::Bool),
    write("PEXPIRE", F::Keys, K::First, 2, Safe, R::Bool),
    write("EXPIREAT", F::Keys, K::First, 2, Safe, R::Bool),
    write("PEXPIREAT", F::Keys, K::First, 2, Safe, R::Bool),
    write("PERSIST", F::Keys, K::First, 1, Safe, R::Bool),
    read("TTL", F::Keys, K::First, 1, R::Raw),
    read("PTTL", F::Keys, K::First, 1, R::Raw),
    read("EXPIRETIME", F::Keys, K::First, 1, R::Raw),
    read("PEXPIRETIME", F::Keys, K::First, 1, R::Raw),
    read("TYPE", F::Keys, K::First, 1, R::Raw),
    write("RENAME", F::Keys, K::FirstTwo, 2, Never, R::Bool),
    write("RENAMENX", F::Keys, K::FirstTwo, 2, Never, R::Bool),
    write("COPY", F::Keys, K::FirstTwo, 2, Never, R::Bool).refuse(&["DB"]),
    read("SCAN", F::Keys, K::Scan, 1, R::Scan),
    write("SORT", F::Keys, K::Sort, 1, Safe, R::Raw),
    read("SORT_RO", F::Keys, K::Sort, 1, R::Raw),
    // Search
    read("FT.SEARCH", F::Search, K::First, 2, R::Search),
    // Server
    read("PING", F::Server, K::None, 0, R::Bool),
];

/// The table's entry for `name` (any case).
pub fn lookup(name: &str) -> Option<&'static Spec> {
    COMMANDS.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// The names of a family's commands, in table order.
pub fn family_commands(family: Family) -> impl Iterator<Item = &'static str> {
    COMMANDS
        .iter()
        .filter(move |s| s.family == family)
        .map(|s| s.name)
}

/// Why a command that is not in the table is refused.
fn refusal_reason(name: &str) -> &'static str {
    match name {
        "KEYS" | "RANDOMKEY" | "DBSIZE" => {
            "it sees every feature's keys; use SCAN (scan_iter in Python), which stays inside this feature's keys"
        }
        "FLUSHALL" | "FLUSHDB" => "it deletes every feature's data",
        "SELECT" | "SWAPDB" | "MOVE" | "MIGRATE" => "it reaches other databases or servers",
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "SCRIPT" | "FCALL" | "FCALL_RO"
        | "FUNCTION" => "scripts can reach any key",
        "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "PUBLISH"
        | "SPUBLISH" | "PUBSUB" => "channels are shared by every feature",
        "BLPOP" | "BRPOP" | "BLMOVE" | "BRPOPLPUSH" | "BLMPOP" | "BZPOPMIN" | "BZPOPMAX"
        | "BZMPOP" | "XREADGROUP" | "WAIT" | "WAITAOF" => {
            "blocking commands would hold the connection every call shares"
        }
        "MULTI" | "EXEC" | "DISCARD" | "WATCH" | "UNWATCH" => {
            "transactions run as a whole: use a pipeline (pipeline(transaction=True) in Python)"
        }
        "CONFIG" | "DEBUG" | "OBJECT" | "SHUTDOWN" | "SAVE" | "BGSAVE" | "BGREWRITEAOF"
        | "MONITOR" | "CLIENT" | "ACL" | "INFO" | "SLOWLOG" | "MODULE" | "REPLICAOF"
        | "SLAVEOF" | "CLUSTER" | "FAILOVER" | "LATENCY" | "MEMORY" | "LASTSAVE" | "AUTH"
        | "HELLO" | "RESET" | "QUIT" | "COMMAND" => "it administers the server",
        _ => NOT_IN_TABLE,
    }
}

/// Why a command missing from the table is refused.
pub const NOT_IN_TABLE: &str = "it is not in the command table of the sandbox and the Redis tools";

/// A command that was not run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One feature's view of Redis: its key prefix.
#[derive(Debug, Clone)]
pub struct Scope {
    prefix: String,
}

/// A checked command, its keys prefixed, ready to run.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Its table entry.
    pub spec: &'static Spec,
    /// Its arguments as sent (keys prefixed).
    pub args: Vec<String>,
    /// Whether it may be sent again after a broken connection.
    pub retry_safe: bool,
    reply: Reply,
    prefix: String,
}

impl Scope {
    /// The scope of keys under `prefix` (see [`crate::store::key_prefix`]).
    pub fn new(prefix: String) -> Self {
        Self { prefix }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Key `name` as stored: as is when it already has this feature's prefix,
    /// refused when it has another feature's, else prefixed.
    pub fn key(&self, name: &str) -> Result<String, Refused> {
        if name.is_empty() {
            return Err(Refused("key names must not be empty".into()));
        }
        if name.starts_with(&self.prefix) {
            return Ok(name.to_owned());
        }
        if name.starts_with("eol:") {
            return Err(Refused(format!(
                "key '{name}' is outside this feature's keys: keys starting with 'eol:' belong to features, and this feature's are under '{}'",
                self.prefix
            )));
        }
        Ok(format!("{}{name}", self.prefix))
    }

    /// A SCAN pattern confined to the prefix (prefix characters escaped).
    fn pattern(&self, pattern: &str) -> Result<String, Refused> {
        let rest = match pattern.strip_prefix(self.prefix.as_str()) {
            Some(rest) => rest,
            None if pattern.starts_with("eol:") => {
                return Err(Refused(format!(
                    "pattern '{pattern}' reaches outside this feature's keys (under '{}')",
                    self.prefix
                )));
            }
            None => pattern,
        };
        let mut out = String::with_capacity(self.prefix.len() + rest.len() + 4);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str(rest);
        Ok(out)
    }

    /// `name` without the prefix (keys in replies).
    pub fn strip<'a>(&self, name: &'a str) -> &'a str {
        name.strip_prefix(self.prefix.as_str()).unwrap_or(name)
    }

    /// Checks `command` (name first; strings, numbers or booleans) against the
    /// table and prefixes its keys.
    pub fn prepare(&self, command: Vec<Value>) -> Result<Prepared, Refused> {
        let mut parts = command.into_iter();
        let name = match parts.next() {
            Some(Value::String(s)) if !s.is_empty() => s.to_ascii_uppercase(),
            _ => return Err(Refused("a Redis command must start with its name".into())),
        };
        let Some(spec) = lookup(&name) else {
            return Err(Refused(format!(
                "Redis command '{name}' is not allowed: {}",
                refusal_reason(&name)
            )));
        };
        let mut args = Vec::new();
        for (i, arg) in parts.enumerate() {
            args.push(match arg {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => u8::from(b).to_string(),
                other => {
                    return Err(Refused(format!(
                        "argument {} of {name} must be a string or number, got {other}",
                        i + 1
                    )));
                }
            });
        }
        self.prepare_args(spec, args)
    }

    fn prepare_args(
        &self,
        spec: &'static Spec,
        mut args: Vec<String>,
    ) -> Result<Prepared, Refused> {
        let name = spec.name;
        if args.len() < spec.min_args {
            return Err(Refused(format!(
                "Redis command '{name}' needs at least {} argument{}, got {}",
                spec.min_args,
                if spec.min_args == 1 { "" } else { "s" },
                args.len()
            )));
        }
        let positions = key_positions(spec, &args)?;
        for &i in &positions {
            args[i] = self.key(&args[i])?;
        }
        if spec.keys == Keys::Scan {
            self.confine_scan(&mut args);
            if let Some(i) = (1..args.len()).find(|&i| args[i].eq_ignore_ascii_case("MATCH")) {
                args[i + 1] = self.pattern(&args[i + 1])?;
            }
        }
        let options = options(spec, &args, &positions);
        if let Some(bad) = spec
            .refused
            .iter()
            .find(|r| options.iter().any(|o| o.eq_ignore_ascii_case(r)))
        {
            return Err(Refused(format!(
                "Redis command '{name}' is not allowed with {bad}: it reaches other databases"
            )));
        }
        let has = |word: &str| options.iter().any(|o| o.eq_ignore_ascii_case(word));
        let retry_safe = match spec.retry {
            Retry::Safe => true,
            Retry::Never => false,
            Retry::SafeUnless(words) => !words.iter().any(|w| has(w)),
        };
        let reply = match (spec.reply, name) {
            (Reply::SetOk, _) if has("GET") => Reply::Raw,
            (Reply::Scores, _) if !has("WITHSCORES") => Reply::Raw,
            (Reply::Rank, _) if !has("WITHSCORE") => Reply::Raw,
            (Reply::Raw, "ZADD") if has("INCR") => Reply::Float,
            (reply, _) => reply,
        };
        Ok(Prepared {
            spec,
            args,
            retry_safe,
            reply,
            prefix: self.prefix.clone(),
        })
    }

    /// A SCAN without MATCH gets one for the whole prefix.
    fn confine_scan(&self, args: &mut Vec<String>) {
        if !args.iter().skip(1).any(|a| a.eq_ignore_ascii_case("MATCH")) {
            args.push("MATCH".into());
            args.push("*".into());
        }
    }
}

/// The positions of `args` that are keys.
fn key_positions(spec: &Spec, args: &[String]) -> Result<Vec<usize>, Refused> {
    let n = args.len();
    let name = spec.name;
    Ok(match spec.keys {
        Keys::None | Keys::Scan => {
            if spec.keys == Keys::Scan {
                check_scan(args)?;
            }
            Vec::new()
        }
        Keys::First => vec![0],
        Keys::FirstTwo => vec![0, 1],
        Keys::All => (0..n).collect(),
        Keys::AllButLast => (0..n - 1).collect(),
        Keys::EveryOther => {
            if !n.is_multiple_of(2) {
                return Err(Refused(format!("{name} needs keys and values in pairs")));
            }
            (0..n).step_by(2).collect()
        }
        Keys::EveryThird => {
            if !n.is_multiple_of(3) {
                return Err(Refused(format!("{name} needs key, path and value triples")));
            }
            (0..n).step_by(3).collect()
        }
        Keys::Numkeys { at } => {
            let count: usize = args[at].parse().map_err(|_| {
                Refused(format!(
                    "argument {} of {name} must be the number of keys, got '{}'",
                    at + 1,
                    args[at]
                ))
            })?;
            if count == 0 || at + count >= n {
                return Err(Refused(format!(
                    "{name} names {count} keys but {} follow",
                    n - at - 1
                )));
            }
            (0..at).chain(at + 1..=at + count).collect()
        }
        Keys::Streams => {
            let mut i = 0;
            loop {
                match args.get(i).map(|a| a.to_ascii_uppercase()).as_deref() {
                    Some("COUNT") => i += 2,
                    Some("STREAMS") => break,
                    Some("BLOCK") => {
                        return Err(Refused(format!(
                            "Redis command '{name}' is not allowed with BLOCK: {}",
                            refusal_reason("BLPOP")
                        )));
                    }
                    _ => {
                        return Err(Refused(format!(
                            "{name} needs STREAMS followed by keys and ids"
                        )));
                    }
                }
            }
            let rest = n - i - 1;
            if rest == 0 || !rest.is_multiple_of(2) {
                return Err(Refused(format!(
                    "{name} needs as many ids as streams after STREAMS"
                )));
            }
            (i + 1..=i + rest / 2).collect()
        }
        Keys::Sort => {
            let mut keys = vec![0];
            let mut i = 1;
            while i < n {
                match args[i].to_ascii_uppercase().as_str() {
                    "BY" | "GET" => {
                        return Err(Refused(format!(
                            "Redis command '{name}' is not allowed with {}: its patterns reach other keys",
                            args[i].to_ascii_uppercase()
                        )));
                    }
                    "LIMIT" => i += 3,
                    "STORE" if i + 1 < n => {
                        keys.push(i + 1);
                        i += 2;
                    }
                    _ => i += 1,
                }
            }
            keys
        }
    })
}

/// SCAN's options, checked: MATCH needs its pattern.
fn check_scan(args: &[String]) -> Result<(), Refused> {
    let mut i = 1;
    while i < args.len() {
        let word = args[i].to_ascii_uppercase();
        if matches!(word.as_str(), "MATCH" | "COUNT" | "TYPE") && i + 1 < args.len() {
            i += 2;
        } else {
            return Err(Refused(format!(
                "SCAN takes a cursor and MATCH, COUNT and TYPE options, got '{}'",
                args[i]
            )));
        }
    }
    Ok(())
}

/// The option words of `args` that may change a command's reply or retry.
fn options<'a>(spec: &Spec, args: &'a [String], keys: &[usize]) -> Vec<&'a str> {
    match spec.opts {
        Opts::None if spec.refused.is_empty() => Vec::new(),
        Opts::None => (0..args.len())
            .filter(|i| !keys.contains(i))
            .map(|i| args[i].as_str())
            .collect(),
        Opts::From(from) => (from..args.len())
            .filter(|i| !keys.contains(i))
            .map(|i| args[i].as_str())
            .collect(),
        Opts::Leading(from) => args
            .iter()
            .skip(from)
            .take_while(|a| {
                ["NX", "XX", "GT", "LT", "CH", "INCR"]
                    .iter()
                    .any(|w| a.eq_ignore_ascii_case(w))
            })
            .map(String::as_str)
            .collect(),
    }
}

impl Prepared {
    /// The command to send.
    pub fn cmd(&self) -> redis::Cmd {
        let mut cmd = redis::cmd(self.spec.name);
        for a in &self.args {
            cmd.arg(a);
        }
        cmd
    }

    /// The reply as JSON, in the command's shape.
    pub fn reply(&self, value: redis::Value) -> Value {
        let strip = |v: Value| match v {
            Value::String(s) => Value::String(
                s.strip_prefix(self.prefix.as_str())
                    .map_or_else(|| s.clone(), str::to_owned),
            ),
            other => other,
        };
        match self.reply {
            Reply::Raw => to_json(value),
            Reply::Bool => match value {
                redis::Value::Int(i) => Value::Bool(i != 0),
                redis::Value::Okay => Value::Bool(true),
                redis::Value::SimpleString(s) => Value::Bool(s == "OK" || s == "PONG"),
                redis::Value::Boolean(b) => Value::Bool(b),
                redis::Value::Nil => Value::Bool(false),
                other => to_json(other),
            },
            Reply::SetOk => match value {
                redis::Value::Nil => Value::Null,
                redis::Value::Okay => Value::Bool(true),
                redis::Value::SimpleString(s) if s == "OK" => Value::Bool(true),
                other => to_json(other),
            },
            Reply::Float => float(value),
            Reply::Floats => list(value).into_iter().map(float).collect(),
            Reply::Map => Value::Object(map(value)),
            Reply::Scores | Reply::ScorePairs => Value::Array(score_pairs(value)),
            Reply::Rank => match value {
                redis::Value::Array(items) if items.len() == 2 => {
                    let mut items = items.into_iter();
                    let rank = items.next().map(to_json).unwrap_or_default();
                    json!([rank, items.next().map(float).unwrap_or_default()])
                }
                other => to_json(other),
            },
            Reply::Entries => entries(value),
            Reply::XRead => Value::Array(
                list(value)
                    .into_iter()
                    .map(|stream| {
                        let mut parts = list(stream).into_iter();
                        let name = parts.next().map(to_json).map(strip).unwrap_or_default();
                        json!([name, parts.next().map(entries).unwrap_or_else(|| json!([]))])
                    })
                    .collect(),
            ),
            Reply::Scan | Reply::HScan | Reply::SScan | Reply::ZScan => {
                let mut parts = list(value).into_iter();
                let cursor = parts.next().map(to_json).unwrap_or_default();
                let cursor = match cursor {
                    Value::String(s) => s.parse::<u64>().map_or(Value::String(s), Value::from),
                    other => other,
                };
                let items = parts.next().unwrap_or(redis::Value::Nil);
                let items = match self.reply {
                    Reply::HScan => Value::Object(map(items)),
                    Reply::ZScan => Value::Array(score_pairs(items)),
                    Reply::Scan => {
                        Value::Array(list(items).into_iter().map(to_json).map(strip).collect())
                    }
                    _ => Value::Array(list(items).into_iter().map(to_json).collect()),
                };
                json!([cursor, items])
            }
            Reply::Json => json_text(value),
            Reply::JsonEach => match value {
                redis::Value::Array(items) => {
                    Value::Array(items.into_iter().map(json_text).collect())
                }
                other => json_text(other),
            },
            Reply::Search => search_results(value, &self.prefix),
        }
    }
}

/// The elements of an array reply (nothing for nil).
fn list(value: redis::Value) -> Vec<redis::Value> {
    match value {
        redis::Value::Array(items) | redis::Value::Set(items) => items,
        redis::Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    }
}

/// Flat field/value pairs as an object.
fn map(value: redis::Value) -> Map<String, Value> {
    let mut obj = Map::new();
    let mut items = list(value).into_iter();
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        let key = match to_json(k) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        obj.insert(key, to_json(v));
    }
    obj
}

/// A score sent as text, as a JSON number (or "inf", "-inf", "nan").
fn float(value: redis::Value) -> Value {
    let text = match value {
        redis::Value::Nil => return Value::Null,
        redis::Value::Double(d) => return f64_json(d),
        redis::Value::Int(i) => return Value::from(i as f64),
        other => match to_json(other) {
            Value::String(s) => s,
            other => return other,
        },
    };
    match text.parse::<f64>() {
        Ok(d) => f64_json(d),
        Err(_) => Value::String(text),
    }
}

fn f64_json(d: f64) -> Value {
    serde_json::Number::from_f64(d).map_or_else(
        || {
            Value::String(
                if d.is_nan() {
                    "nan"
                } else if d > 0.0 {
                    "inf"
                } else {
                    "-inf"
                }
                .into(),
            )
        },
        Value::Number,
    )
}

/// `member, score, member, score` (or RESP3 pairs) as `[[member, score], ...]`.
fn score_pairs(value: redis::Value) -> Vec<Value> {
    let items = list(value);
    if items
        .iter()
        .all(|i| matches!(i, redis::Value::Array(p) if p.len() == 2))
        && !items.is_empty()
    {
        return items
            .into_iter()
            .map(|pair| {
                let mut p = list(pair).into_iter();
                json!([
                    p.next().map(to_json).unwrap_or_default(),
                    p.next().map(float).unwrap_or_default()
                ])
            })
            .collect();
    }
    let mut out = Vec::new();
    let mut items = items.into_iter();
    while let (Some(m), Some(s)) = (items.next(), items.next()) {
        out.push(json!([to_json(m), float(s)]));
    }
    out
}

/// Stream entries `[[id, [field, value, ...]], ...]` as `[[id, {field: value}], ...]`.
fn entries(value: redis::Value) -> Value {
    Value::Array(
        list(value)
            .into_iter()
            .map(|entry| {
                let mut parts = list(entry).into_iter();
                let id = parts.next().map(to_json).unwrap_or_default();
                json!([id, Value::Object(parts.next().map(map).unwrap_or_default())])
            })
            .collect(),
    )
}

/// A JSON text reply parsed (text that does not parse stays text).
fn json_text(value: redis::Value) -> Value {
    match to_json(value) {
        Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        other => other,
    }
}

/// A Redis reply as JSON: bulk strings as (lossy UTF-8) text, maps as objects.
pub fn to_json(v: redis::Value) -> Value {
    match v {
        redis::Value::Nil => Value::Null,
        redis::Value::Int(i) => Value::from(i),
        redis::Value::BulkString(b) => Value::String(String::from_utf8_lossy(&b).into_owned()),
        redis::Value::SimpleString(s) => Value::String(s),
        redis::Value::Okay => Value::String("OK".into()),
        redis::Value::Double(d) => f64_json(d),
        redis::Value::Boolean(b) => Value::Bool(b),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            Value::Array(items.into_iter().map(to_json).collect())
        }
        redis::Value::Map(pairs) => {
            let mut obj = Map::new();
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

/// An FT.SEARCH reply as `{"total", "results": [{"key", "fields"}]}`, keys without `prefix`.
pub fn search_results(reply: redis::Value, prefix: &str) -> Value {
    let strip = |k: Value| match k {
        Value::String(s) => Value::String(
            s.strip_prefix(prefix)
                .map_or_else(|| s.clone(), str::to_owned),
        ),
        other => other,
    };
    match reply {
        // RESP2: [total, key, [field, value, ...], key, [...], ...]
        redis::Value::Array(items) if matches!(items.first(), Some(redis::Value::Int(_))) => {
            let mut items = items.into_iter();
            let total = items.next().map(to_json).unwrap_or(Value::Null);
            let mut results = Vec::new();
            while let Some(key) = items.next() {
                let fields = items.next().map(map).unwrap_or_default();
                results.push(json!({"key": strip(to_json(key)), "fields": fields}));
            }
            json!({"total": total, "results": results})
        }
        // RESP3: {"total_results", "results": [{"id", "extra_attributes"}]}
        other => {
            let mut value = to_json(other);
            let total = value.get("total_results").cloned().unwrap_or(Value::Null);
            match value.get_mut("results").map(Value::take) {
                Some(Value::Array(rs)) => {
                    let results: Vec<Value> = rs
                        .into_iter()
                        .map(|mut r| {
                            let key = strip(r.get_mut("id").map(Value::take).unwrap_or_default());
                            let fields = r
                                .get_mut("extra_attributes")
                                .map(Value::take)
                                .unwrap_or_else(|| json!({}));
                            json!({"key": key, "fields": fields})
                        })
                        .collect();
                    json!({"total": total, "results": results})
                }
                _ => value,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope::new("eol:shop:".into())
    }

    fn args(p: &Prepared) -> Vec<&str> {
        p.args.iter().map(String::as_str).collect()
    }

    fn prepare(parts: &[Value]) -> Result<Prepared, Refused> {
        scope().prepare(parts.to_vec())
    }

    #[test]
    fn every_name_is_listed_once_in_upper_case() {
        let mut seen = std::collections::HashSet::new();
        for s in COMMANDS {
            assert_eq!(s.name, s.name.to_ascii_uppercase());
            assert!(seen.insert(s.name), "{} twice", s.name);
            assert!(!s.read_only || s.retry == Retry::Safe, "{}", s.name);
        }
    }

    #[test]
    fn keys_are_prefixed_where_the_table_says() {
        let p = prepare(&[json!("get"), json!("cart:1")]).unwrap();
        assert_eq!(args(&p), ["eol:shop:cart:1"]);
        let p = prepare(&[json!("MSET"), json!("a"), json!("1"), json!("b"), json!(2)]).unwrap();
        assert_eq!(args(&p), ["eol:shop:a", "1", "eol:shop:b", "2"]);
        let p = prepare(&[json!("JSON.MGET"), json!("a"), json!("b"), json!("$")]).unwrap();
        assert_eq!(args(&p), ["eol:shop:a", "eol:shop:b", "$"]);
        let p = prepare(&[json!("JSON.MSET"), json!("a"), json!("$"), json!("1")]).unwrap();
        assert_eq!(args(&p), ["eol:shop:a", "$", "1"]);
        let p = prepare(&[
            json!("ZUNIONSTORE"),
            json!("d"),
            json!(2),
            json!("x"),
            json!("y"),
            json!("WEIGHTS"),
            json!(1),
            json!(2),
        ])
        .unwrap();
        assert_eq!(
            args(&p),
            [
                "eol:shop:d",
                "2",
                "eol:shop:x",
                "eol:shop:y",
                "WEIGHTS",
                "1",
                "2"
            ]
        );
        let p = prepare(&[
            json!("ZUNION"),
            json!(1),
            json!("withscores"),
            json!("WITHSCORES"),
        ])
        .unwrap();
        assert_eq!(args(&p), ["1", "eol:shop:withscores", "WITHSCORES"]);
        assert_eq!(p.reply, Reply::Scores);
        let p = prepare(&[
            json!("XREAD"),
            json!("COUNT"),
            json!(2),
            json!("STREAMS"),
            json!("a"),
            json!("b"),
            json!("0"),
            json!("$"),
        ])
        .unwrap();
        assert_eq!(
            args(&p),
            [
                "COUNT",
                "2",
                "STREAMS",
                "eol:shop:a",
                "eol:shop:b",
                "0",
                "$"
            ]
        );
        let p = prepare(&[
            json!("SORT"),
            json!("l"),
            json!("LIMIT"),
            json!(0),
            json!(5),
            json!("STORE"),
            json!("out"),
        ])
        .unwrap();
        assert_eq!(
            args(&p),
            ["eol:shop:l", "LIMIT", "0", "5", "STORE", "eol:shop:out"]
        );
        let p = prepare(&[
            json!("LMOVE"),
            json!("a"),
            json!("b"),
            json!("LEFT"),
            json!("RIGHT"),
        ])
        .unwrap();
        assert_eq!(args(&p), ["eol:shop:a", "eol:shop:b", "LEFT", "RIGHT"]);
    }

    #[test]
    fn own_keys_are_kept_and_other_features_keys_refused() {
        let p = prepare(&[json!("GET"), json!("eol:shop:cart")]).unwrap();
        assert_eq!(args(&p), ["eol:shop:cart"]);
        let e = prepare(&[json!("DEL"), json!("a"), json!("eol:billing:x")]).unwrap_err();
        assert!(
            e.0.contains("'eol:billing:x'") && e.0.contains("'eol:shop:'"),
            "{e}"
        );
        let e = prepare(&[json!("GET"), json!("")]).unwrap_err();
        assert!(e.0.contains("must not be empty"), "{e}");
    }

    #[test]
    fn scan_stays_inside_the_prefix() {
        let p = prepare(&[json!("SCAN"), json!(0)]).unwrap();
        assert_eq!(args(&p), ["0", "MATCH", "eol:shop:*"]);
        let p = prepare(&[
            json!("SCAN"),
            json!(0),
            json!("match"),
            json!("visits:*"),
            json!("COUNT"),
            json!(10),
        ])
        .unwrap();
        assert_eq!(args(&p), ["0", "match", "eol:shop:visits:*", "COUNT", "10"]);
        let p = prepare(&[
            json!("SCAN"),
            json!(0),
            json!("MATCH"),
            json!("eol:shop:v*"),
        ])
        .unwrap();
        assert_eq!(args(&p), ["0", "MATCH", "eol:shop:v*"]);
        let e = prepare(&[json!("SCAN"), json!(0), json!("MATCH"), json!("eol:*")]).unwrap_err();
        assert!(e.0.contains("outside"), "{e}");
        let e = prepare(&[json!("SCAN"), json!(0), json!("MATCH")]).unwrap_err();
        assert!(e.0.contains("MATCH, COUNT and TYPE"), "{e}");
        // Glob characters of a prefix are matched literally.
        let odd = Scope::new("eol:a*b:".into());
        let p = odd.prepare(vec![json!("SCAN"), json!(0)]).unwrap();
        assert_eq!(args(&p), ["0", "MATCH", "eol:a\\*b:*"]);
    }

    #[test]
    fn admin_blocking_and_pattern_commands_are_refused_with_a_reason() {
        for (cmd, why) in [
            (vec![json!("KEYS"), json!("*")], "SCAN"),
            (vec![json!("flushall")], "every feature's data"),
            (
                vec![json!("CONFIG"), json!("GET"), json!("*")],
                "administers",
            ),
            (vec![json!("EVAL"), json!("return 1"), json!(0)], "scripts"),
            (vec![json!("SELECT"), json!(1)], "other databases"),
            (vec![json!("MOVE"), json!("k"), json!(1)], "other databases"),
            (vec![json!("BLPOP"), json!("q"), json!(0)], "blocking"),
            (vec![json!("MULTI")], "pipeline"),
            (
                vec![json!("OBJECT"), json!("ENCODING"), json!("k")],
                "administers",
            ),
            (
                vec![json!("SORT"), json!("l"), json!("BY"), json!("w_*")],
                "patterns",
            ),
            (
                vec![json!("SORT"), json!("l"), json!("get"), json!("#")],
                "patterns",
            ),
            (
                vec![
                    json!("XREAD"),
                    json!("BLOCK"),
                    json!(0),
                    json!("STREAMS"),
                    json!("s"),
                    json!("$"),
                ],
                "blocking",
            ),
            (
                vec![json!("COPY"), json!("a"), json!("b"), json!("DB"), json!(1)],
                "other databases",
            ),
            (vec![json!("NOSUCH")], "not in the command table"),
        ] {
            let e = scope().prepare(cmd.clone()).unwrap_err();
            assert!(
                e.0.contains("not allowed") && e.0.contains(why),
                "{cmd:?}: {e}"
            );
        }
        let e = prepare(&[json!("GET")]).unwrap_err();
        assert!(e.0.contains("needs at least 1 argument"), "{e}");
        let e = prepare(&[json!("MSET"), json!("a")]).unwrap_err();
        assert!(e.0.contains("at least 2"), "{e}");
        let e = prepare(&[json!("ZUNION"), json!(3), json!("a")]).unwrap_err();
        assert!(e.0.contains("names 3 keys"), "{e}");
        let e = prepare(&[json!("SET"), json!("a"), json!({"x": 1})]).unwrap_err();
        assert!(e.0.contains("argument 2 of SET"), "{e}");
    }

    #[test]
    fn options_decide_retry_and_reply_shape() {
        let p = prepare(&[json!("SET"), json!("a"), json!(1)]).unwrap();
        assert!(p.retry_safe);
        let p = prepare(&[json!("SET"), json!("a"), json!(1), json!("nx")]).unwrap();
        assert!(!p.retry_safe);
        let p = prepare(&[json!("SET"), json!("a"), json!(1), json!("GET")]).unwrap();
        assert_eq!(p.reply, Reply::Raw);
        assert!(!prepare(&[json!("INCR"), json!("a")]).unwrap().retry_safe);
        let p = prepare(&[
            json!("ZADD"),
            json!("z"),
            json!("INCR"),
            json!(1),
            json!("m"),
        ])
        .unwrap();
        assert_eq!((p.reply, p.retry_safe), (Reply::Float, false));
        // A member named like an option is a member.
        let p = prepare(&[json!("ZADD"), json!("z"), json!(1), json!("incr")]).unwrap();
        assert_eq!((p.reply, p.retry_safe), (Reply::Raw, true));
        let p = prepare(&[json!("ZRANGE"), json!("z"), json!(0), json!(-1)]).unwrap();
        assert_eq!(p.reply, Reply::Raw);
        let p = prepare(&[json!("ZRANK"), json!("z"), json!("WITHSCORE")]).unwrap();
        assert_eq!(p.reply, Reply::Raw);
        let p = prepare(&[json!("ZRANK"), json!("z"), json!("m"), json!("WITHSCORE")]).unwrap();
        assert_eq!(p.reply, Reply::Rank);
    }

    fn bulk(s: &str) -> redis::Value {
        redis::Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn replies_take_redis_py_shapes() {
        let p = prepare(&[
            json!("ZREVRANGE"),
            json!("z"),
            json!(0),
            json!(1),
            json!("WITHSCORES"),
        ])
        .unwrap();
        let reply = redis::Value::Array(vec![bulk("a"), bulk("15"), bulk("b"), bulk("inf")]);
        assert_eq!(p.reply(reply), json!([["a", 15.0], ["b", "inf"]]));
        let p = prepare(&[json!("HGETALL"), json!("h")]).unwrap();
        let reply = redis::Value::Array(vec![bulk("f"), bulk("v")]);
        assert_eq!(p.reply(reply), json!({"f": "v"}));
        let p = prepare(&[json!("SCAN"), json!(0)]).unwrap();
        let reply = redis::Value::Array(vec![
            bulk("17"),
            redis::Value::Array(vec![bulk("eol:shop:a"), bulk("eol:shop:b")]),
        ]);
        assert_eq!(p.reply(reply), json!([17, ["a", "b"]]));
        let p = prepare(&[json!("XRANGE"), json!("s"), json!("-"), json!("+")]).unwrap();
        let reply = redis::Value::Array(vec![redis::Value::Array(vec![
            bulk("1-0"),
            redis::Value::Array(vec![bulk("k"), bulk("v")]),
        ])]);
        assert_eq!(p.reply(reply), json!([["1-0", {"k": "v"}]]));
        let p = prepare(&[json!("SET"), json!("a"), json!(1), json!("NX")]).unwrap();
        assert_eq!(p.reply(redis::Value::Nil), Value::Null);
        assert_eq!(p.reply(redis::Value::Okay), json!(true));
        let p = prepare(&[json!("EXPIRE"), json!("a"), json!(1)]).unwrap();
        assert_eq!(p.reply(redis::Value::Int(0)), json!(false));
        let p = prepare(&[json!("JSON.GET"), json!("d")]).unwrap();
        assert_eq!(p.reply(bulk("{\"a\":[1]}")), json!({"a": [1]}));
        assert_eq!(p.reply(redis::Value::Nil), Value::Null);
    }

    /// The Python proxy names only commands of this table, and offers every one.
    #[test]
    fn the_python_proxy_and_the_table_name_the_same_commands() {
        let worker = include_str!("../sandbox/worker.py");
        let start = worker
            .find("def _commands(x):")
            .expect("the proxy's commands");
        let end = worker[start..]
            .find("\nclass Pipeline")
            .expect("end of the proxy")
            + start;
        let proxy = &worker[start..end];
        let mut named = std::collections::BTreeSet::new();
        for piece in proxy.split('"').skip(1).step_by(2) {
            if piece.len() > 1
                && piece
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '.' || c == '_')
            {
                named.insert(piece.to_owned());
            }
        }
        // Words that are options, and commands sent only for the host's refusal.
        let not_commands = [
            "NX",
            "XX",
            "GT",
            "LT",
            "EX",
            "PX",
            "EXAT",
            "PXAT",
            "KEEPTTL",
            "GET",
            "PERSIST",
            "MATCH",
            "COUNT",
            "TYPE",
            "BY",
            "LIMIT",
            "DESC",
            "ALPHA",
            "STORE",
            "LEFT",
            "RIGHT",
            "RANK",
            "MAXLEN",
            "MINID",
            "NOMKSTREAM",
            "BLOCK",
            "STREAMS",
            "WITHSCORES",
            "WITHSCORE",
            "BYSCORE",
            "BYLEX",
            "REV",
            "CH",
            "INCR",
            "WEIGHTS",
            "AGGREGATE",
            "SUM",
            "MIN",
            "MAX",
            "DB",
            "REPLACE",
            "PARAMS",
            "DIALECT",
            "KEYS",
            "FLUSHDB",
            "FLUSHALL",
        ];
        for name in &named {
            assert!(
                lookup(name).is_some() || not_commands.contains(&name.as_str()),
                "worker.py sends {name}, which the table does not have"
            );
        }
        // redis-py's incr() and decr() send INCRBY and DECRBY.
        for spec in COMMANDS
            .iter()
            .filter(|s| !["INCR", "DECR"].contains(&s.name))
        {
            assert!(
                named.contains(spec.name),
                "worker.py has no method sending {}",
                spec.name
            );
        }
    }
}
