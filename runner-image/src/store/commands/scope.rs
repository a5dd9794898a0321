//! A feature's view of Redis ([`Scope`]): a command checked against the table,
//! its keys found and prefixed, its options read for retry safety and reply
//! shape, ready to send ([`Prepared`]).

use super::{Keys, Opts, Refused, Reply, Retry, Spec, lookup, refusal_reason};
use serde_json::Value;

/// One feature's view of Redis: its key prefix, and for a shadow call the
/// feature's own keys to read through ([`Scope::reading_through`]).
#[derive(Debug, Clone)]
pub struct Scope {
    prefix: String,
    overlay: Option<std::sync::Arc<Overlay>>,
}

/// A scratch scope that reads the feature's keys: a key no command of this
/// scope has written yet is read from `base`; writes (and every key of a
/// command that writes) stay in the scratch prefix, and from then on that key
/// is read there too (so a deleted key stays deleted).
#[derive(Debug)]
struct Overlay {
    base: String,
    written: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Overlay {
    /// Where key `name` (unprefixed) goes for a command that only reads
    /// (`read_only`) or writes.
    fn route(&self, prefix: &str, name: &str, read_only: bool) -> String {
        let Ok(mut written) = self.written.lock() else {
            return format!("{prefix}{name}");
        };
        if read_only && !written.contains(name) {
            format!("{}{name}", self.base)
        } else {
            if !read_only {
                written.insert(name.to_owned());
            }
            format!("{prefix}{name}")
        }
    }
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
    /// The shape of its reply, after its options (see [`Prepared::reply`]).
    pub(super) reply: Reply,
    /// The feature's key prefix, stripped from keys in replies.
    pub(super) prefix: String,
}

impl Scope {
    /// The scope of keys under `prefix` (see [`crate::store::key_prefix`]).
    pub fn new(prefix: String) -> Self {
        Self {
            prefix,
            overlay: None,
        }
    }

    /// A scratch scope under `prefix` that reads through to `base` (the
    /// feature's prefix) until a key is written: a shadow call sees the
    /// feature's data and changes none of it.
    pub fn reading_through(prefix: String, base: String) -> Self {
        Self {
            prefix,
            overlay: Some(std::sync::Arc::new(Overlay {
                base,
                written: std::sync::Mutex::new(std::collections::HashSet::new()),
            })),
        }
    }

    /// The keys of feature `feature`: `eol:<feature>:`.
    pub fn of_feature(feature: &str) -> Self {
        Self::new(crate::store::key_prefix(feature))
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
            if let Some(overlay) = &self.overlay {
                let name = self.strip(&args[i]).to_owned();
                args[i] = overlay.route(&self.prefix, &name, spec.read_only);
            }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn a_scope_reading_through_reads_the_feature_until_it_writes() {
        let s = Scope::reading_through("eol:shop:test:1:".into(), "eol:shop:".into());
        let run = |parts: &[Value]| -> Vec<String> { s.prepare(parts.to_vec()).unwrap().args };
        assert_eq!(run(&[json!("GET"), json!("stock:A")]), ["eol:shop:stock:A"]);
        assert_eq!(
            run(&[json!("MGET"), json!("stock:A"), json!("stock:B")]),
            ["eol:shop:stock:A", "eol:shop:stock:B"]
        );
        // A write stays in the scratch keys, and so do later reads of that key.
        assert_eq!(
            run(&[json!("INCRBY"), json!("stock:A"), json!(2)]),
            ["eol:shop:test:1:stock:A", "2"]
        );
        assert_eq!(
            run(&[json!("GET"), json!("stock:A")]),
            ["eol:shop:test:1:stock:A"]
        );
        assert_eq!(
            run(&[json!("MGET"), json!("stock:A"), json!("stock:B")]),
            ["eol:shop:test:1:stock:A", "eol:shop:stock:B"]
        );
        // Deleted in the scratch keys: it stays deleted for this call.
        assert_eq!(
            run(&[json!("DEL"), json!("stock:B")]),
            ["eol:shop:test:1:stock:B"]
        );
        assert_eq!(
            run(&[json!("EXISTS"), json!("stock:B")]),
            ["eol:shop:test:1:stock:B"]
        );
        // Another feature's keys stay out of reach.
        assert!(s.prepare(vec![json!("GET"), json!("eol:other:x")]).is_err());
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
}
