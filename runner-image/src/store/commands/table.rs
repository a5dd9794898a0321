//! The command table itself: every command features may run, with its
//! family, key positions, minimum arguments, retry safety and reply shape.

use super::{
    Family as F, Keys as K, Opts, Reply as R,
    Retry::{Never, Safe, SafeUnless},
    Spec, read, write,
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::commands::{Retry, lookup};

    #[test]
    fn every_name_is_listed_once_in_upper_case() {
        let mut seen = std::collections::HashSet::new();
        for s in COMMANDS {
            assert_eq!(s.name, s.name.to_ascii_uppercase());
            assert!(seen.insert(s.name), "{} twice", s.name);
            assert!(!s.read_only || s.retry == Retry::Safe, "{}", s.name);
        }
    }

    /// The Python proxy names only commands of this table, and offers every one.
    #[test]
    fn the_python_proxy_and_the_table_name_the_same_commands() {
        let methods = include_str!("../../sandbox/redis_commands.py");
        let start = methods
            .find("def _commands(x):")
            .expect("the proxy's commands");
        let proxy = &methods[start..];
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
                "redis_commands.py sends {name}, which the table does not have"
            );
        }
        // redis-py's incr() and decr() send INCRBY and DECRBY.
        for spec in COMMANDS
            .iter()
            .filter(|s| !["INCR", "DECR"].contains(&s.name))
        {
            assert!(
                named.contains(spec.name),
                "redis_commands.py has no method sending {}",
                spec.name
            );
        }
    }
}
