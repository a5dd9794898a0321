//! The error bound of the semantic cache (`cache.semantic.max_error_rate`),
//! after vCache (arXiv 2502.03771): the distance up to which a cached answer
//! is reused is learnt from verdicts, so that the share of reused answers the
//! model would have answered otherwise stays under a bound the user sets.
//!
//! # Verdicts
//!
//! A verdict says whether a cached answer agreed with the model's answer for
//! a new input at some distance from the entry's input (the runner compares
//! the two with the rules of `eol compare`). Verdicts come from two places:
//!
//! - **Unproven candidates.** An entry that passed the guard but lies beyond
//!   the distance proven so far is not reused: the model answers, as on any
//!   miss, and its answer is compared with the entry's. These verdicts cost
//!   no extra model call.
//! - **Checked hits.** A sampled share of reused answers (`check_rate`) is
//!   also answered by the model off the response path and compared. While
//!   the scope's proof rests on few verdicts the share is larger
//!   ([`Proof::check_share`]): once a distance is proven, checks are the only
//!   verdicts that come from within it, and traffic can get worse after the
//!   proof (a cache filling up brings nearer wrong neighbours).
//!
//! # Thresholds
//!
//! Verdicts are counted per scope (feature, operation, model, embedder and
//! source: what makes a candidate) in buckets of [`BUCKET`] of distance, in
//! Redis, so every pod of a feature learns from all of them. The scope's
//! threshold is the largest bucket edge `t` up to `distance_threshold` (now
//! a ceiling) at which the verdicts at distances ≤ `t` prove the share of
//! disagreements under `max_error_rate` ([`proves_rate_below`]). It
//! **relaxes** as agreements accumulate and **tightens** as disagreements
//! do. Until enough verdicts prove a distance (3.8 / `max_error_rate`
//! agreements without a disagreement: 380 at 1%), only an input identical to
//! the entry's (distance ≤ [`EXACT_DISTANCE`]) is reused.
//!
//! The proof is read after every verdict, so it must hold however often it
//! is read: a fixed-sample bound (Wilson's) read that way relaxes too early
//! (a scope whose true rate is the bound crosses it in about a third of its
//! histories, see the tests). The proof is a mixture likelihood ratio
//! (Robbins' mixture martingale, as in confidence sequences): valid at every
//! look by Ville's inequality, and it needs only the two counts, which is
//! all Redis keeps.
//!
//! Each entry also **tightens on its own**: a disagreement at distance `d`
//! sets the entry's `limit` field to `d` (the smallest such distance), and
//! the entry is never reused at `d` or farther again. An entry's threshold is
//! therefore the smaller of its scope's and its own limit.
//!
//! Each bucket's proof holds at [`ALPHA`] on its own; the threshold is the
//! farthest proven one, so a scope with many buckets near the bound may err
//! more often than α (the replay of `vector/benches/semantic_bound.rs`
//! measures it). The verdicts are pooled without weights: buckets below the
//! threshold are checked at `check_rate`, those above it at every candidate,
//! so the farther (more error-prone) buckets weigh more than their share of
//! hits, which errs toward a tighter threshold.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

/// The width of a verdict bucket, in cosine distance.
pub const BUCKET: f64 = 0.005;
/// Distances up to this are the same input (float rounding): always reused,
/// never checked.
pub const EXACT_DISTANCE: f32 = 1e-4;
/// How long a pod uses the verdict counts it read before reading them again.
const REFRESH: Duration = Duration::from_secs(1);

/// The one-sided 95% upper confidence bound (Wilson score, z = 1.645) of a
/// rate of `k` in `n`; 1 when `n` is 0. With 0 of 268 it is 1.0%, with 13
/// of 1,325 1.5%.
pub fn wilson_upper(k: u64, n: u64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let (z, n, p) = (1.645_f64, n as f64, k as f64 / n as f64);
    let z2 = z * z;
    (p + z2 / (2.0 * n) + z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt()) / (1.0 + z2 / n)
}

/// The largest chance that a bucket whose true disagreement rate is at the
/// bound (or above) is ever proven under it, however many verdicts it gets
/// and however often it is asked.
pub const ALPHA: f64 = 0.05;
/// The mixture's alternatives: rates evenly spread under the bound.
const MIXTURE_RATES: usize = 16;
/// The mixture's weight on a rate of 0 (no disagreement at all, as in most
/// structured operations): it proves those with the fewest verdicts.
const WEIGHT_AT_ZERO: f64 = 0.25;

/// Whether `k` disagreements in `n` verdicts prove the disagreement rate
/// under `bound` with confidence 1 − [`ALPHA`], valid however often it is
/// asked as verdicts accumulate (the mixture's evidence ≥ ln(1 / α)). With no
/// disagreement it takes 3.8 / `bound` verdicts (380 at 1%, 17 at 20%); with
/// disagreements at half the bound, about 25 / `bound`.
pub fn proves_rate_below(k: u64, n: u64, bound: f64) -> bool {
    Mixture::new(bound).proves(k, n)
}

/// A scope's proven distance of reuse and the verdicts it rests on.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Proof {
    /// The distance up to which answers are reused (0: none proven yet).
    pub distance: f32,
    /// The verdicts at distances up to it, agreements and disagreements.
    pub verdicts: u64,
}

/// While a proof rests on few verdicts, at least this many over their count
/// of the hits it allows are checked (with checks on): a proof on 90
/// verdicts checks 22% of its hits, one on 400 the usual 5%.
pub const YOUNG_CHECKS: f64 = 20.0;

impl Proof {
    /// The share of the hits this proof allows to check: `check_rate`, or
    /// more while the proof is young ([`YOUNG_CHECKS`]), so that traffic
    /// that gets worse after a distance was proven (a cache filling up
    /// brings nearer wrong neighbours) is measured again soon; 0 when
    /// `check_rate` is 0 (checks off).
    pub fn check_share(&self, check_rate: f64) -> f64 {
        if check_rate <= 0.0 {
            return 0.0;
        }
        check_rate.max((YOUNG_CHECKS / self.verdicts.max(1) as f64).min(1.0))
    }
}

/// The evidence that `k` disagreements in `n` verdicts come from a rate
/// under a bound: the likelihood ratio of a mixture of rates under the bound
/// (a quarter at 0, the rest at [`MIXTURE_RATES`] evenly spaced ones) against
/// the rate of the bound. Under any rate at or above the bound it is a
/// nonnegative supermartingale with mean ≤ 1, so it ever reaches `1 / α`
/// with chance ≤ α (Ville's inequality), whenever it is read. Its logarithms
/// are computed once per bound (a threshold asks it for every bucket of a
/// look-up).
struct Mixture {
    bound: f64,
    /// For each alternative rate `q`: ln of its weight, ln(q / bound) and
    /// ln((1 − q) / (1 − bound)).
    rates: [(f64, f64, f64); MIXTURE_RATES],
    /// ln(1 / (1 − bound)): what each agreement adds for the rate 0.
    zero: f64,
}

impl Mixture {
    fn new(bound: f64) -> Self {
        let weight = ((1.0 - WEIGHT_AT_ZERO) / MIXTURE_RATES as f64).ln();
        let zero = -(1.0 - bound).ln();
        let rates = std::array::from_fn(|j| {
            let q = bound * (j as f64 + 0.5) / MIXTURE_RATES as f64;
            (weight, (q / bound).ln(), (1.0 - q).ln() + zero)
        });
        Self { bound, rates, zero }
    }

    fn terms(&self, k: u64, n: u64) -> impl Iterator<Item = f64> + '_ {
        let (kf, rest) = (k as f64, n.saturating_sub(k) as f64);
        let alternatives =
            self.rates
                .iter()
                .map(move |(weight, per_disagreement, per_agreement)| {
                    weight + kf * per_disagreement + rest * per_agreement
                });
        // A rate of 0 explains no disagreement.
        let at_zero = (k == 0).then(|| WEIGHT_AT_ZERO.ln() + rest * self.zero);
        alternatives.chain(at_zero)
    }

    /// The natural log of the evidence of `k` disagreements in `n` verdicts.
    fn log_evidence(&self, k: u64, n: u64) -> f64 {
        let max = self.terms(k, n).fold(f64::NEG_INFINITY, f64::max);
        max + self.terms(k, n).map(|t| (t - max).exp()).sum::<f64>().ln()
    }

    fn proves(&self, k: u64, n: u64) -> bool {
        // A rate observed at the bound or over it is likelier at the bound
        // than at any rate under it: no evidence.
        if n == 0 || k as f64 >= self.bound * n as f64 {
            return false;
        }
        let needed = (1.0 / ALPHA).ln();
        // The sum lies between its largest term and that times the count of
        // terms: most buckets are decided without an exponential.
        let max = self.terms(k, n).fold(f64::NEG_INFINITY, f64::max);
        if max >= needed {
            return true;
        }
        if max + ((MIXTURE_RATES + 1) as f64).ln() < needed {
            return false;
        }
        self.log_evidence(k, n) >= needed
    }
}

/// The verdicts of one scope, per bucket of distance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdicts {
    agree: Vec<u64>,
    disagree: Vec<u64>,
}

impl Verdicts {
    /// The bucket of `distance`: bucket `i` holds `[i, i + 1) × BUCKET`.
    pub fn bucket(distance: f32) -> usize {
        // In f64 with a hair of slack: 0.02 (an f32 a hair below) is in
        // bucket 4, whose edge 0.025 covers it.
        (f64::from(distance.max(0.0)) / BUCKET + 1e-6).floor() as usize
    }

    /// The upper edge of `bucket`.
    fn edge(bucket: usize) -> f32 {
        ((bucket + 1) as f64 * BUCKET) as f32
    }

    /// Counts one verdict at `distance`.
    pub fn add(&mut self, distance: f32, agree: bool) {
        self.add_n(Self::bucket(distance), agree, 1);
    }

    fn add_n(&mut self, bucket: usize, agree: bool, n: u64) {
        let counts = if agree {
            &mut self.agree
        } else {
            &mut self.disagree
        };
        if counts.len() <= bucket {
            counts.resize(bucket + 1, 0);
        }
        counts[bucket] += n;
    }

    /// Each bucket that holds verdicts: (its upper edge, agreements, disagreements).
    pub fn buckets(&self) -> Vec<(f32, u64, u64)> {
        (0..self.agree.len().max(self.disagree.len()))
            .map(|i| {
                (
                    Self::edge(i),
                    self.agree.get(i).copied().unwrap_or(0),
                    self.disagree.get(i).copied().unwrap_or(0),
                )
            })
            .filter(|(_, a, d)| a + d > 0)
            .collect()
    }

    /// Agreements and disagreements counted, in all buckets.
    pub fn totals(&self) -> (u64, u64) {
        (self.agree.iter().sum(), self.disagree.iter().sum())
    }

    /// The largest distance up to `ceiling` at which the verdicts at or below
    /// it prove their disagreement rate under `max_error_rate`
    /// ([`proves_rate_below`]), at the upper edge of a bucket that holds
    /// verdicts; 0 when no distance is proven yet.
    pub fn threshold(&self, ceiling: f32, max_error_rate: f64) -> f32 {
        self.proof(ceiling, max_error_rate).distance
    }

    /// The [`threshold`](Self::threshold) and the verdicts that prove it.
    pub fn proof(&self, ceiling: f32, max_error_rate: f64) -> Proof {
        let mixture = Mixture::new(max_error_rate);
        let last = Self::bucket(ceiling);
        let (mut agree, mut disagree) = (0, 0);
        let mut proof = Proof::default();
        for i in 0..=last {
            let (a, d) = (
                self.agree.get(i).copied().unwrap_or(0),
                self.disagree.get(i).copied().unwrap_or(0),
            );
            agree += a;
            disagree += d;
            // Only a bucket with verdicts of its own is proven: the count
            // below says nothing of distances no candidate came from.
            if a + d > 0 && mixture.proves(disagree, agree + disagree) {
                proof = Proof {
                    distance: Self::edge(i).min(ceiling),
                    verdicts: agree + disagree,
                };
            }
        }
        proof
    }

    /// The Redis hash field counting verdicts of `bucket`.
    fn field(bucket: usize, agree: bool) -> String {
        format!("{}:{bucket}", if agree { "a" } else { "d" })
    }

    /// Counts read from the fields of a scope's Redis hash ([`verdicts_key`]; unknown fields ignored).
    pub fn from_redis(fields: &HashMap<String, u64>) -> Self {
        let mut verdicts = Self::default();
        for (field, n) in fields {
            let parsed = field
                .split_once(':')
                .and_then(|(kind, b)| Some((kind, b.parse::<usize>().ok()?)));
            match parsed {
                // Far beyond any ceiling (2): a foreign field, not a bucket.
                Some((_, bucket)) if bucket > 4 * Self::bucket(2.0) => {}
                Some(("a", bucket)) => verdicts.add_n(bucket, true, *n),
                Some(("d", bucket)) => verdicts.add_n(bucket, false, *n),
                _ => {}
            }
        }
        verdicts
    }
}

/// The Redis key of a scope's verdict counts.
pub fn verdicts_key(scope: &str) -> String {
    format!("eol:semantic-verdicts:{scope}")
}

/// Counts a verdict and, for a disagreement, lowers the entry's `limit`
/// (only while the entry exists: an expired entry is not written again).
const RECORD: &str = r"
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
if ARGV[4] == '0' and redis.call('EXISTS', KEYS[2]) == 1 then
  local limit = redis.call('HGET', KEYS[2], 'limit')
  if (not limit) or tonumber(limit) > tonumber(ARGV[3]) then
    redis.call('HSET', KEYS[2], 'limit', ARGV[3])
  end
end
return 1
";

/// The verdict counts of the scopes this process looked up, each read from
/// Redis at most every [`REFRESH`] and counted at once when recorded here.
#[derive(Debug, Default)]
pub(super) struct Calibration {
    scopes: Mutex<HashMap<String, (Instant, Verdicts)>>,
}

impl Calibration {
    /// The verdicts of `scope`: the counts read within [`REFRESH`], else
    /// read again. When Redis fails, the last counts read (none at first:
    /// then only identical inputs are reused).
    pub(super) async fn verdicts(&self, conn: &mut ConnectionManager, scope: &str) -> Verdicts {
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
                let verdicts = Verdicts::from_redis(&fields);
                if let Ok(mut scopes) = self.scopes.lock() {
                    scopes.insert(scope.to_owned(), (Instant::now(), verdicts.clone()));
                }
                verdicts
            }
            Err(error) => {
                tracing::warn!(%error, key, "failed to read the semantic cache's verdicts; using the last read");
                self.cached(scope).map(|(_, v)| v).unwrap_or_default()
            }
        }
    }

    fn cached(&self, scope: &str) -> Option<(Instant, Verdicts)> {
        self.scopes.lock().ok()?.get(scope).cloned()
    }

    /// Counts a verdict of `entry` at `distance` in Redis (the counts live
    /// as long as `ttl` after the last verdict) and in this process.
    pub(super) async fn record(
        &self,
        conn: &mut ConnectionManager,
        scope: &str,
        entry: &str,
        distance: f32,
        agree: bool,
        ttl: Duration,
    ) -> Result<(), redis::RedisError> {
        redis::Script::new(RECORD)
            .key(verdicts_key(scope))
            .key(entry)
            .arg(Verdicts::field(Verdicts::bucket(distance), agree))
            .arg(ttl.as_secs().max(1))
            .arg(distance)
            .arg(if agree { "1" } else { "0" })
            .invoke_async::<i64>(conn)
            .await?;
        if let Ok(mut scopes) = self.scopes.lock()
            && let Some((_, verdicts)) = scopes.get_mut(scope)
        {
            verdicts.add(distance, agree);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_bound_matches_known_values() {
        assert_eq!(wilson_upper(0, 0), 1.0);
        assert!((wilson_upper(0, 268) - 0.0100).abs() < 0.0002);
        assert!((wilson_upper(13, 1325) - 0.0149).abs() < 0.0005);
    }

    #[test]
    fn a_rate_is_proven_after_the_documented_counts() {
        // No disagreement: 380 verdicts at 1%, 17 at 20%.
        assert!(!proves_rate_below(0, 379, 0.01) && proves_rate_below(0, 380, 0.01));
        assert!(!proves_rate_below(0, 16, 0.2) && proves_rate_below(0, 17, 0.2));
        // Disagreements at half the bound: about 25 / bound verdicts.
        assert!(!proves_rate_below(5, 1000, 0.01) && proves_rate_below(15, 3000, 0.01));
        // The rate observed at the bound, or over it, never proves it.
        assert!(!proves_rate_below(100, 10_000, 0.01));
        assert!(!proves_rate_below(0, 0, 0.5));
        // Wilson's fixed-sample bound (for comparison) says 268 at 1%.
        assert!(wilson_upper(0, 268) <= 0.01);
    }

    /// Bernoulli draws at `rate` from a fixed seed.
    fn draws(seed: u64, rate: f64, n: usize) -> Vec<bool> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_bool(rate)).collect()
    }

    /// The share of `histories` verdict sequences at `rate` in which `proves`
    /// ever holds, asked after every verdict (as the cache does).
    fn ever_proven(
        rate: f64,
        histories: u64,
        len: usize,
        proves: impl Fn(u64, u64) -> bool,
    ) -> f64 {
        let crossed = (0..histories)
            .filter(|&seed| {
                let mut k = 0;
                draws(seed, rate, len)
                    .iter()
                    .enumerate()
                    .any(|(i, &disagree)| {
                        k += u64::from(disagree);
                        proves(k, i as u64 + 1)
                    })
            })
            .count();
        crossed as f64 / histories as f64
    }

    #[test]
    fn the_proof_holds_however_often_it_is_read() {
        // A scope whose true rate is the bound (20%), read after each of
        // 1,000 verdicts in 400 histories: proven in at most α of them (plus
        // sampling slack: one standard error is 1.1 points).
        let mixture = ever_proven(0.2, 400, 1000, |k, n| proves_rate_below(k, n, 0.2));
        assert!(
            mixture <= ALPHA + 0.03,
            "proven in {mixture} of the histories"
        );
        // Wilson's 95% bound, read the same way, is crossed far more often:
        // why the threshold does not use it.
        let wilson = ever_proven(0.2, 400, 1000, |k, n| wilson_upper(k, n) <= 0.2);
        assert!(wilson > 0.2, "Wilson crossed in {wilson} of the histories");
        // Under the bound (10%), the mixture proves it in most histories.
        let under = ever_proven(0.1, 100, 1000, |k, n| proves_rate_below(k, n, 0.2));
        assert!(under > 0.9, "proven in {under} of the histories");
    }

    #[test]
    fn nothing_is_proven_without_verdicts() {
        assert_eq!(Verdicts::default().threshold(0.1, 0.01), 0.0);
        assert_eq!(Verdicts::default().proof(0.1, 0.01), Proof::default());
    }

    #[test]
    fn a_young_proof_checks_more_of_its_hits() {
        let mut v = Verdicts::default();
        for _ in 0..40 {
            v.add(0.03, true);
        }
        // 17 verdicts prove 20%: these 40 do, and the proof checks half its hits.
        let proof = v.proof(0.1, 0.2);
        assert_eq!(
            proof,
            Proof {
                distance: 0.035,
                verdicts: 40
            }
        );
        assert_eq!(proof.check_share(0.05), 0.5);
        // A proof farther out rests on every verdict up to it.
        v.add(0.09, false);
        assert_eq!(
            v.proof(0.1, 0.2),
            Proof {
                distance: 0.095,
                verdicts: 41
            }
        );
        // Grown up: the configured rate.
        for _ in 0..400 {
            v.add(0.03, true);
        }
        assert_eq!(v.proof(0.1, 0.2).check_share(0.05), 0.05);
        // Checks off stay off; a larger configured rate is kept.
        assert_eq!(proof.check_share(0.0), 0.0);
        assert_eq!(proof.check_share(0.8), 0.8);
    }

    #[test]
    fn agreements_relax_the_threshold_and_disagreements_tighten_it() {
        let mut v = Verdicts::default();
        // 400 agreements at 0.02: proven to the edge of their bucket.
        for _ in 0..400 {
            v.add(0.02, true);
        }
        assert_eq!(v.threshold(0.1, 0.01), 0.025);
        // More agreements farther out relax it to their bucket's edge.
        for _ in 0..400 {
            v.add(0.092, true);
        }
        assert_eq!(v.threshold(0.1, 0.01), 0.095);
        // Disagreements at 0.06 take the rate over 1% from there on.
        for _ in 0..10 {
            v.add(0.06, false);
        }
        let t = v.threshold(0.1, 0.01);
        assert!((0.025..0.06).contains(&t), "{t}");
        // A looser bound keeps the farthest proven edge.
        assert_eq!(v.threshold(0.1, 0.05), 0.095);
    }

    #[test]
    fn the_ceiling_caps_the_threshold() {
        let mut v = Verdicts::default();
        for _ in 0..1000 {
            v.add(0.302, true);
            v.add(0.097, true);
        }
        // Bucket [0.095, 0.1) is cut at the ceiling 0.098; 0.3 lies beyond it.
        assert_eq!(v.threshold(0.098, 0.01), 0.098);
        assert_eq!(v.threshold(0.5, 0.01), 0.305);
    }

    #[test]
    fn counts_read_back_from_redis_fields() {
        let fields = HashMap::from([
            ("a:4".to_owned(), 7),
            ("d:0".to_owned(), 2),
            ("junk".to_owned(), 9),
            ("a:99999999".to_owned(), 1),
        ]);
        let v = Verdicts::from_redis(&fields);
        assert_eq!(v.totals(), (7, 2));
        assert_eq!(Verdicts::field(4, true), "a:4");
    }
}
