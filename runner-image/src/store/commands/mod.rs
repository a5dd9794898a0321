//! The one Redis command table: which commands a feature's code (sandboxed
//! Python) and its model (the MCP Redis tools) may run, where their keys are,
//! whether they may be sent twice, and what shape their replies take.
//!
//! Both the sandbox bridge ([`crate::store::FeatureRedis`]) and the MCP Redis
//! tools ([`crate::mcp::RedisToolServer`]) check and prefix every command
//! through [`Scope::prepare`], and shape its reply with [`Prepared::reply`].
//! The Python proxy in `sandbox/redis_proxy.py` and `sandbox/redis_commands.py`
//! offers redis-py's methods on top of these commands (a unit test checks that
//! it names no command missing here).
//!
//! Keys: a key that starts with the feature's prefix (`eol:<feature>:`) is used
//! as is; any other key starting with `eol:` belongs to another feature and is
//! refused; every other key gets the prefix. `SCAN` patterns are confined the
//! same way (and a `SCAN` without `MATCH` gets one), and keys in replies
//! (`SCAN`, `XREAD`, `FT.SEARCH`) come back without the prefix.
//!
//! This module holds the table's types and its lookups; the parts:
//! - `table.rs`: the table itself, [`COMMANDS`];
//! - `scope.rs`: a feature's [`Scope`], which checks a command's arguments and
//!   prefixes its keys into a [`Prepared`] command;
//! - `reply.rs`: the reply of a [`Prepared`] command as JSON in its shape.

mod reply;
mod scope;
mod table;

pub use reply::{search_results, to_json};
pub use scope::{Prepared, Scope};
pub use table::COMMANDS;

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

/// A read: never changes data, always safe to send again.
const fn read(name: &'static str, family: Family, keys: Keys, min: usize, reply: Reply) -> Spec {
    spec(name, family, keys, min, true, Retry::Safe, reply)
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
