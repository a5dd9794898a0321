//! What one cache did at one threshold: hits and wrong hits per group and
//! kind of pair, answers from another entry, and look-up latencies.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::eval_data::Pair;

/// Outcomes of one cache at one threshold.
#[derive(Default)]
pub(crate) struct Tally {
    /// (group, kind, same) -> (pairs, hits); a pair counts in the groups `all`,
    /// its set (`text`, `structured`) and its split (`tuning`, `heldout`).
    counts: BTreeMap<(String, String, bool), (u32, u32)>,
    /// group -> look-up latencies
    pub(crate) latency: BTreeMap<String, Vec<Duration>>,
    /// (group, same) -> look-ups answered from another entry (crowded runs).
    pub(crate) foreign: BTreeMap<(String, bool), u32>,
}

impl Tally {
    pub(crate) fn record(&mut self, p: &Pair, hit: bool, foreign: bool, took: Duration) {
        for group in ["all", p.set, p.split] {
            *self.foreign.entry((group.to_owned(), p.same)).or_default() += u32::from(foreign);
            let e = self
                .counts
                .entry((group.to_owned(), p.kind.clone(), p.same))
                .or_default();
            e.0 += 1;
            // A near-miss answered from any entry is a wrong hit; a
            // paraphrase is a correct hit only from its own pair's entry.
            e.1 += u32::from(hit || (foreign && !p.same));
            self.latency.entry(group.to_owned()).or_default().push(took);
        }
    }

    /// (hit rate, wrong-hit rate) over `group` (`all`, `text`, `structured`, `tuning`, `heldout`).
    pub(crate) fn rates(&self, group: &str) -> (f64, f64) {
        let (mut pos, mut pos_hit, mut diff, mut diff_hit) = (0, 0, 0, 0);
        for ((g, _, same), (n, h)) in &self.counts {
            if g != group {
                continue;
            }
            if *same {
                (pos, pos_hit) = (pos + n, pos_hit + h);
            } else {
                (diff, diff_hit) = (diff + n, diff_hit + h);
            }
        }
        (ratio(pos_hit, pos), ratio(diff_hit, diff))
    }

    /// (near-misses, near-misses served an answer: their own pair's entry
    /// or, in a crowded run, another) in `group`.
    pub(crate) fn near_misses(&self, group: &str) -> (u32, u32) {
        let (n, own) = self
            .counts
            .iter()
            .filter(|((g, _, same), _)| g == group && !same)
            .fold((0, 0), |(n, h), (_, (a, b))| (n + a, h + b));
        (n, own)
    }

    /// Look-ups of `same` pairs in `group` answered from another entry.
    pub(crate) fn foreign_hits(&self, group: &str, same: bool) -> u32 {
        self.foreign
            .get(&(group.to_owned(), same))
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn kind_rate(&self, group: &str, kind: &str) -> f64 {
        let (n, h) = self
            .counts
            .iter()
            .filter(|((g, k, _), _)| g == group && k == kind)
            .fold((0, 0), |(n, h), (_, (a, b))| (n + a, h + b));
        ratio(h, n)
    }

    pub(crate) fn percentile(&self, group: &str, p: f64) -> Duration {
        let mut v = self.latency.get(group).cloned().unwrap_or_default();
        if v.is_empty() {
            return Duration::ZERO;
        }
        v.sort();
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    }
}

pub(crate) fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        0.0
    } else {
        f64::from(a) / f64::from(b)
    }
}
