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
//! a ceiling) at which the verdicts at distances ≤ `t` (of its last two
//! generations, see below) prove the share of disagreements under
//! `max_error_rate` ([`proves_rate_below`]). It
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
//! # Generations
//!
//! A scope's verdicts are counted in generations of [`generation_len`]
//! verdicts (100 / `max_error_rate`: 500 at 20%), and a proof rests on the
//! last two only: the first verdict of a new generation lapses the one
//! before the last, in Redis and in every pod. Counted since the first
//! verdict, a proof made on a long good history would outlast traffic that
//! gets worse for about as many verdicts as that history holds (4,000 after
//! 10,000 verdicts at half the bound, see the tests); in generations it
//! lapses within two generations (39 to 234 verdicts in the same tests),
//! and the unproven candidates measure the traffic again. A generation holds
//! four times the verdicts that prove a rate at half the bound, so such a
//! scope stays proven across lapses. Each generation starts a new test: at a
//! true rate equal to the bound, over ten generations, a distance was proven
//! in 8% of the histories (5.5% counted since the first) and at 0.09% of
//! the looks.
//!
//! A generation also ends when its scope has **grown**: a verdict recorded
//! when the scope holds at least twice its entries at the generation's start
//! plus [`CROWDING_GROWTH`](store::CROWDING_GROWTH) begins a new one, and
//! every older verdict lapses.
//! A fuller cache brings nearer wrong neighbours, so verdicts given against
//! fewer entries overstate how often reuse is right: the replay measured a
//! scope's disagreements rise from 10% in the first 30% of a cold cache's
//! fill to 23% in the rest, and a proof made early stayed over its bound. A
//! scope that shrinks (entries expire) keeps its verdicts: fewer neighbours
//! only make reuse safer.
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

mod store;

pub use store::verdicts_key;
pub(super) use store::{Calibration, Verdict};

/// The width of a verdict bucket, in cosine distance.
pub const BUCKET: f64 = 0.005;
/// Distances up to this are the same input (float rounding): always reused,
/// never checked.
pub const EXACT_DISTANCE: f32 = 1e-4;

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

/// Verdicts counted per bucket of distance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Counts {
    agree: Vec<u64>,
    disagree: Vec<u64>,
}

impl Counts {
    fn add(&mut self, bucket: usize, agree: bool, n: u64) {
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

    /// (agreements, disagreements) in `bucket`.
    fn at(&self, bucket: usize) -> (u64, u64) {
        (
            self.agree.get(bucket).copied().unwrap_or(0),
            self.disagree.get(bucket).copied().unwrap_or(0),
        )
    }

    fn len(&self) -> usize {
        self.agree.len().max(self.disagree.len())
    }
}

/// How many verdicts make a generation, per unit of `max_error_rate`: a
/// generation holds 100 / `max_error_rate` verdicts (500 at 20%, 10,000 at
/// 1%), four times the 25 / `max_error_rate` that prove a rate at half the
/// bound, so a scope well under its bound stays proven when its older
/// generation lapses.
pub const GENERATION_PER_BOUND: f64 = 100.0;

/// The verdicts in a generation for `max_error_rate`
/// ([`GENERATION_PER_BOUND`]).
pub fn generation_len(max_error_rate: f64) -> u64 {
    (GENERATION_PER_BOUND / max_error_rate.max(1e-6)).ceil() as u64
}

/// The verdicts of one scope, per bucket of distance, in its last two
/// generations: a proof rests on recent verdicts only, so traffic that gets
/// worse after a long good history undoes it within about a generation
/// (counted since the first verdict, every proof would rest on the whole
/// history, and the worse traffic would need as many verdicts as the
/// history to outweigh it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdicts {
    /// Verdicts in a generation (`u64::MAX`: one generation, nothing lapses).
    generation_len: u64,
    /// Verdicts counted since the first, lapsed ones included.
    counted: u64,
    /// Verdicts counted in the current generation.
    in_current: u64,
    previous: Counts,
    current: Counts,
}

impl Default for Verdicts {
    /// No verdicts, and none ever lapses.
    fn default() -> Self {
        Self::lapsing(u64::MAX)
    }
}

/// Why a verdict opened a new generation (the answer of the script that
/// records it, in `store.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lapse {
    /// It did not: same generation.
    None,
    /// The generation was full: the one before it lapses.
    Full,
    /// The scope has grown past [`CROWDING_GROWTH`](store::CROWDING_GROWTH):
    /// every older verdict lapses.
    Crowded,
}

impl Verdicts {
    /// No verdicts yet, in generations of `generation_len` (see [`generation_len`]).
    pub fn lapsing(generation_len: u64) -> Self {
        Self {
            generation_len: generation_len.max(1),
            counted: 0,
            in_current: 0,
            previous: Counts::default(),
            current: Counts::default(),
        }
    }

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

    /// Counts one verdict at `distance`, in a new generation when the
    /// current one is full (the one before it lapses).
    pub fn add(&mut self, distance: f32, agree: bool) {
        let lapse = if self.in_current >= self.generation_len {
            Lapse::Full
        } else {
            Lapse::None
        };
        self.add_after(lapse, distance, agree);
    }

    /// Counts one verdict at `distance` after `lapse`, as Redis counted it.
    pub(super) fn add_after(&mut self, lapse: Lapse, distance: f32, agree: bool) {
        match lapse {
            Lapse::None => {}
            Lapse::Full => {
                self.previous = std::mem::take(&mut self.current);
                self.in_current = 0;
            }
            Lapse::Crowded => {
                self.previous = Counts::default();
                self.current = Counts::default();
                self.in_current = 0;
            }
        }
        self.counted += 1;
        self.in_current += 1;
        self.current.add(Self::bucket(distance), agree, 1);
    }

    /// (agreements, disagreements) in `bucket`, over both generations.
    fn at(&self, bucket: usize) -> (u64, u64) {
        let ((a1, d1), (a2, d2)) = (self.previous.at(bucket), self.current.at(bucket));
        (a1 + a2, d1 + d2)
    }

    /// Each bucket that holds verdicts: (its upper edge, agreements, disagreements).
    pub fn buckets(&self) -> Vec<(f32, u64, u64)> {
        (0..self.previous.len().max(self.current.len()))
            .map(|i| {
                let (a, d) = self.at(i);
                (Self::edge(i), a, d)
            })
            .filter(|(_, a, d)| a + d > 0)
            .collect()
    }

    /// Agreements and disagreements counted in the last two generations.
    pub fn totals(&self) -> (u64, u64) {
        let sum = |v: &[u64]| v.iter().sum::<u64>();
        (
            sum(&self.previous.agree) + sum(&self.current.agree),
            sum(&self.previous.disagree) + sum(&self.current.disagree),
        )
    }

    /// Verdicts counted since the first, lapsed ones included.
    pub fn counted(&self) -> u64 {
        self.counted
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
            let (a, d) = self.at(i);
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

    /// Counts read from the fields of a scope's Redis hash ([`verdicts_key`]:
    /// `g`, the current generation, `c`, its verdicts, `n`, every verdict
    /// counted, `s`, the scope's entries when the generation began, and
    /// `a|d:<generation>:<bucket>`), in generations of `generation_len`: the
    /// current generation and the one before (fields of other generations
    /// and unknown ones are ignored).
    pub fn from_redis(fields: &HashMap<String, u64>, generation_len: u64) -> Self {
        let mut verdicts = Self::lapsing(generation_len);
        let current = fields.get("g").copied().unwrap_or(0);
        verdicts.in_current = fields.get("c").copied().unwrap_or(0);
        verdicts.counted = fields.get("n").copied().unwrap_or(0);
        for (field, n) in fields {
            let mut parts = field.split(':');
            let (Some(kind), Some(generation), Some(bucket), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Ok(generation), Ok(bucket)) = (generation.parse::<u64>(), bucket.parse::<usize>())
            else {
                continue;
            };
            let agree = match kind {
                "a" => true,
                "d" => false,
                _ => continue,
            };
            // Far beyond any ceiling (2): a foreign field, not a bucket.
            if bucket > 4 * Self::bucket(2.0) {
                continue;
            }
            if generation == current {
                verdicts.current.add(bucket, agree, *n);
            } else if generation + 1 == current {
                verdicts.previous.add(bucket, agree, *n);
            }
        }
        verdicts
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
            ("n".to_owned(), 25),
            ("g".to_owned(), 2),
            ("c".to_owned(), 5),
            ("s".to_owned(), 40),
            // Generation 2 (the current one, of 10 verdicts each) and 1.
            ("a:2:4".to_owned(), 3),
            ("d:2:0".to_owned(), 2),
            ("a:1:4".to_owned(), 10),
            // Lapsed, of the older layout, foreign or far beyond any ceiling.
            ("a:0:4".to_owned(), 10),
            ("a:4".to_owned(), 7),
            ("junk".to_owned(), 9),
            ("a:2:99999999".to_owned(), 1),
        ]);
        let v = Verdicts::from_redis(&fields, 10);
        assert_eq!(v.totals(), (13, 2));
        // Counted under a shorter generation (a bound since loosened), a
        // higher generation number is not the window's.
        let mut stale = fields.clone();
        stale.insert("a:7:4".to_owned(), 50);
        assert_eq!(Verdicts::from_redis(&stale, 10).totals(), (13, 2));
        // Without `g`, nothing is known to be recent but generation 0.
        let unnumbered = HashMap::from([("a:0:4".to_owned(), 3), ("a:1:4".to_owned(), 4)]);
        assert_eq!(Verdicts::from_redis(&unnumbered, 10).totals(), (3, 0));
        assert_eq!(v.counted(), 25);
        assert_eq!(v.buckets(), vec![(0.005, 0, 2), (0.025, 13, 0)]);
        // Counted here, the 11th verdict of generation 2 starts generation
        // 3: generation 1's 10 agreements lapse, generation 2 (now 8 and 2)
        // and 3 (1) stay.
        let mut v = v;
        for _ in 0..6 {
            v.add(0.001, true);
        }
        assert_eq!(v.totals(), (9, 2));
        // A scope that grew: every older verdict lapses.
        v.add_after(Lapse::Crowded, 0.001, false);
        assert_eq!((v.totals(), v.counted()), ((0, 1), 32));
    }

    /// Verdicts fed to `v` until its proof at `bound` lapses (at most
    /// `limit`): after a long good history, the traffic turns bad.
    fn verdicts_until_lapsed(mut v: Verdicts, seed: u64, bound: f64, limit: usize) -> usize {
        draws(seed, 2.0 * bound, limit)
            .iter()
            .position(|&disagree| {
                v.add(0.03, !disagree);
                v.threshold(0.1, bound) == 0.0
            })
            .unwrap_or(limit)
    }

    #[test]
    fn a_proof_lapses_soon_when_traffic_gets_worse_after_a_long_history() {
        // 10,000 verdicts or more at half the bound (20%) prove it, counted
        // since the first or in generations; then the rate doubles to 40%,
        // at a point that moves through a generation from seed to seed.
        let bound = 0.2;
        let history = |mut v: Verdicts, seed: u64| {
            for disagree in draws(seed, bound / 2.0, 10_000 + 25 * seed as usize) {
                v.add(0.03, !disagree);
            }
            assert_eq!(v.threshold(0.1, bound), 0.035);
            v
        };
        let len = generation_len(bound);
        assert_eq!(len, 500);
        for seed in 0..20 {
            let lapsing = verdicts_until_lapsed(
                history(Verdicts::lapsing(len), seed),
                1000 + seed,
                bound,
                20_000,
            );
            let cumulative = verdicts_until_lapsed(
                history(Verdicts::default(), seed),
                1000 + seed,
                bound,
                20_000,
            );
            // In generations, within the two generations the proof rests on;
            // counted since the first, after as many verdicts as the
            // history's margin takes to outweigh (about 4,000).
            assert!(
                lapsing <= 2 * len as usize,
                "seed {seed}: {lapsing} verdicts"
            );
            assert!(cumulative > 2_500, "seed {seed}: {cumulative} verdicts");
        }
    }

    #[test]
    fn a_scope_under_its_bound_stays_proven_when_a_generation_lapses() {
        // At half the bound, in generations of 500: after the first
        // generation, the proof holds after every verdict in most histories.
        let bound = 0.2;
        let mut held = 0;
        let mut asked = 0;
        for seed in 0..20 {
            let mut v = Verdicts::lapsing(generation_len(bound));
            for (i, disagree) in draws(seed, bound / 2.0, 5_000).into_iter().enumerate() {
                v.add(0.03, !disagree);
                if i >= 500 {
                    asked += 1;
                    held += usize::from(v.threshold(0.1, bound) > 0.0);
                }
            }
        }
        let share = held as f64 / asked as f64;
        assert!(share > 0.99, "proven after {share} of the verdicts");
    }
}
