//! The verdicts in Redis: a scope's hash (generations, buckets), the script
//! that counts a verdict and lapses generations, and each process's copy of
//! the counts it read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use super::{Lapse, Verdicts, generation_len};
use crate::semantic::settings::ErrorBound;

/// How long a pod uses the verdict counts it read before reading them again.
const REFRESH: Duration = Duration::from_secs(1);

/// The Redis key of a scope's verdict counts.
pub fn verdicts_key(scope: &str) -> String {
    format!("eol:semantic-verdicts:{scope}")
}

/// A scope whose entries grew past twice their count when its generation
/// began, plus this many, starts a new generation without the older ones:
/// those verdicts were given against fewer neighbours, and a fuller cache
/// brings nearer wrong ones (the replay measured a scope's disagreements
/// rise from 10% to 23% as the cache filled).
pub const CROWDING_GROWTH: u64 = 16;

/// Counts a verdict (`ARGV[1]`: `a` or `d`, `ARGV[6]`: its bucket) in the
/// scope's current generation (`g`, with `c` verdicts, begun when the scope
/// held `s` entries; `n` counts every verdict). A new generation begins
/// when the current one holds `ARGV[5]` verdicts (the one before it lapses)
/// or when the scope now holds `ARGV[7]` ≥ 2 `s` + `ARGV[8]` entries (every
/// older one lapses; `ARGV[7]` is -1 when not counted); lapsed fields, and
/// those of the older layout without a generation, are deleted. For a
/// disagreement, lowers the entry's `limit` (only while the entry exists:
/// an expired entry is not written again). Returns 0, or 1 or 2 for a new
/// generation begun because the last was full or the scope had grown.
const RECORD: &str = r"
local len = tonumber(ARGV[5])
local size = tonumber(ARGV[7])
local state = redis.call('HMGET', KEYS[1], 'g', 'c', 's')
local g = tonumber(state[1]) or 0
local c = tonumber(state[2]) or 0
local s = tonumber(state[3])
local lapse = 0
if size >= 0 and s and size >= 2 * s + tonumber(ARGV[8]) then
  lapse = 2
elseif c >= len then
  lapse = 1
end
if lapse > 0 then
  g = g + 1
  c = 0
  local keep = g - 1
  if lapse == 2 then keep = g end
  for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
    local rest = string.match(field, '^[ad]:(.*)$')
    if rest then
      local fg = tonumber(string.match(rest, '^(%d+):%d+$'))
      if (not fg) or fg < keep or fg > g then
        redis.call('HDEL', KEYS[1], field)
      end
    end
  end
end
if size >= 0 and (lapse > 0 or not s) then
  s = size
end
redis.call('HINCRBY', KEYS[1], ARGV[1] .. ':' .. g .. ':' .. ARGV[6], 1)
redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 'g', g, 'c', c + 1)
if s then
  redis.call('HSET', KEYS[1], 's', s)
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if ARGV[4] == '0' and redis.call('EXISTS', KEYS[2]) == 1 then
  local limit = redis.call('HGET', KEYS[2], 'limit')
  if (not limit) or tonumber(limit) > tonumber(ARGV[3]) then
    redis.call('HSET', KEYS[2], 'limit', ARGV[3])
  end
end
return lapse
";

/// One verdict to record: whether the answer of the entry `entry` agreed
/// with the model's for an input at `distance` from it.
#[derive(Debug, Clone, Copy)]
pub(in crate::semantic) struct Verdict<'a> {
    pub(in crate::semantic) entry: &'a str,
    pub(in crate::semantic) distance: f32,
    pub(in crate::semantic) agree: bool,
}

/// The verdict counts of the scopes this process looked up, each read from
/// Redis at most every [`REFRESH`] and counted at once when recorded here.
#[derive(Debug)]
pub(in crate::semantic) struct Calibration {
    /// Verdicts in a generation of the cache's error bound ([`generation_len`]).
    generation_len: u64,
    scopes: Mutex<HashMap<String, (Instant, Verdicts)>>,
}

impl Calibration {
    /// The verdict counts of a cache with `bound` (without one, verdicts
    /// never lapse).
    pub(in crate::semantic) fn new(bound: Option<ErrorBound>) -> Self {
        Self {
            generation_len: bound.map_or(u64::MAX, |b| generation_len(b.max_error_rate)),
            scopes: Mutex::default(),
        }
    }

    /// Verdicts in a generation.
    pub(in crate::semantic) fn generation_len(&self) -> u64 {
        self.generation_len
    }

    /// The verdicts of `scope`: the counts read within [`REFRESH`], else
    /// read again. When Redis fails, the last counts read (none at first:
    /// then only identical inputs are reused).
    pub(in crate::semantic) async fn verdicts(
        &self,
        conn: &mut ConnectionManager,
        scope: &str,
    ) -> Verdicts {
        if let Some((read, verdicts)) = self.cached(scope)
            && read.elapsed() < REFRESH
        {
            return verdicts;
        }
        let key = verdicts_key(scope);
        let fields: Result<HashMap<String, u64>, _> =
            redis::cmd("HGETALL").arg(&key).query_async(conn).await;
        match fields {
            Ok(fields) => {
                let verdicts = Verdicts::from_redis(&fields, self.generation_len);
                if let Ok(mut scopes) = self.scopes.lock() {
                    scopes.insert(scope.to_owned(), (Instant::now(), verdicts.clone()));
                }
                verdicts
            }
            Err(error) => {
                tracing::warn!(%error, key, "failed to read the semantic cache's verdicts; using the last read");
                self.cached(scope)
                    .map(|(_, v)| v)
                    .unwrap_or_else(|| Verdicts::lapsing(self.generation_len))
            }
        }
    }

    fn cached(&self, scope: &str) -> Option<(Instant, Verdicts)> {
        self.scopes.lock().ok()?.get(scope).cloned()
    }

    /// Counts `verdict` in Redis, in its scope's generation (a new one when
    /// the last is full, or when the scope, holding `scope_entries` now, has
    /// grown past [`CROWDING_GROWTH`]; the counts live as long as `ttl` after
    /// the last verdict), and in this process.
    pub(in crate::semantic) async fn record(
        &self,
        conn: &mut ConnectionManager,
        scope: &str,
        verdict: Verdict<'_>,
        ttl: Duration,
        scope_entries: Option<u64>,
    ) -> Result<(), redis::RedisError> {
        let Verdict {
            entry,
            distance,
            agree,
        } = verdict;
        let lapse: i64 = redis::Script::new(RECORD)
            .key(verdicts_key(scope))
            .key(entry)
            .arg(if agree { "a" } else { "d" })
            .arg(ttl.as_secs().max(1))
            .arg(distance)
            .arg(if agree { "1" } else { "0" })
            .arg(self.generation_len)
            .arg(Verdicts::bucket(distance))
            .arg(scope_entries.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)))
            .arg(CROWDING_GROWTH)
            .invoke_async(conn)
            .await?;
        let lapse = match lapse {
            1 => Lapse::Full,
            2 => Lapse::Crowded,
            _ => Lapse::None,
        };
        if let Ok(mut scopes) = self.scopes.lock()
            && let Some((_, verdicts)) = scopes.get_mut(scope)
        {
            verdicts.add_after(lapse, distance, agree);
        }
        Ok(())
    }
}
