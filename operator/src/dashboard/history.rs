//! The dashboard's charts: per Feature, a bounded series of samples of its
//! serving pods' counters, turned into per-interval calls, mean latency, model
//! cost and cache hit rate.

use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};

/// The runner counters the charts are drawn from, summed over one pod's
/// metric families (every operation, phase, model and cache type).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    /// Operation calls (`eol_execution_duration_seconds_count`).
    pub calls: f64,
    /// Seconds spent in them (`eol_execution_duration_seconds_sum`).
    pub seconds: f64,
    /// Model cost in USD (`eol_llm_cost_total`).
    pub cost: f64,
    /// Cache lookups that hit (`eol_cache_hits_total{hit="true"}`).
    pub hits: f64,
    /// Cache lookups that missed (`eol_cache_hits_total{hit="false"}`).
    pub misses: f64,
}

impl Counters {
    /// Sums the families above in a runner's `/metrics` text. Only the
    /// runner's own exposition is read (prometheus-client's OpenMetrics text:
    /// `name{labels} value`), so a line is split rather than fully parsed;
    /// anything else, comments and `# EOF` included, is skipped.
    pub fn parse(text: &str) -> Self {
        let mut counters = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, labels, rest) = match line.find('{') {
                Some(open) => match line[open..].find('}') {
                    Some(close) => (
                        &line[..open],
                        &line[open + 1..open + close],
                        &line[open + close + 1..],
                    ),
                    None => continue,
                },
                None => match line.split_once(' ') {
                    Some((name, rest)) => (name, "", rest),
                    None => continue,
                },
            };
            let Some(value) = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite())
            else {
                continue;
            };
            match name {
                "eol_execution_duration_seconds_count" => counters.calls += value,
                "eol_execution_duration_seconds_sum" => counters.seconds += value,
                "eol_llm_cost_total" => counters.cost += value,
                "eol_cache_hits_total" if labels.contains("hit=\"true\"") => counters.hits += value,
                "eol_cache_hits_total" if labels.contains("hit=\"false\"") => {
                    counters.misses += value
                }
                _ => {}
            }
        }
        counters
    }

    /// Only the cost: what a shadow candidate adds, whose calls are copies.
    pub fn cost_only(self) -> Self {
        Self {
            cost: self.cost,
            ..Self::default()
        }
    }

    /// What was added since `before`. A counter below its last value means
    /// the pod restarted, so all of it is new.
    fn since(&self, before: &Self) -> Self {
        let delta = |now: f64, then: f64| if now >= then { now - then } else { now };
        Self {
            calls: delta(self.calls, before.calls),
            seconds: delta(self.seconds, before.seconds),
            cost: delta(self.cost, before.cost),
            hits: delta(self.hits, before.hits),
            misses: delta(self.misses, before.misses),
        }
    }

    fn add(&mut self, other: &Self) {
        self.calls += other.calls;
        self.seconds += other.seconds;
        self.cost += other.cost;
        self.hits += other.hits;
        self.misses += other.misses;
    }
}

/// One interval of a Feature's chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    /// End of the interval, in Unix milliseconds.
    pub at: i64,
    /// Operation calls answered in the interval.
    pub calls: u64,
    /// Their mean latency in milliseconds; none without calls.
    pub latency_ms: Option<f64>,
    /// Model cost in USD spent in the interval.
    pub cost_usd: f64,
    /// Cache hits among cache lookups in the interval; none without lookups.
    pub cache_hit_rate: Option<f64>,
}

impl Point {
    fn of(at: i64, delta: &Counters) -> Self {
        let lookups = delta.hits + delta.misses;
        Self {
            at,
            calls: delta.calls.round() as u64,
            latency_ms: (delta.calls > 0.0).then(|| delta.seconds / delta.calls * 1000.0),
            cost_usd: delta.cost,
            cache_hit_rate: (lookups > 0.0).then(|| delta.hits / lookups),
        }
    }
}

/// The last samples of every Feature, keyed `namespace/name`.
#[derive(Debug)]
pub struct History {
    capacity: usize,
    features: HashMap<String, Series>,
}

#[derive(Debug, Default)]
struct Series {
    points: VecDeque<Point>,
    /// Each pod's counters at the last sample, by pod UID.
    pods: HashMap<String, Counters>,
}

impl History {
    /// Keeps at most `capacity` points per Feature.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            features: HashMap::new(),
        }
    }

    /// Records a sample of Feature `key` at `at` (Unix ms): each pod's UID and
    /// its counters, or `None` for a pod that did not answer this time (its
    /// last counters are kept, so its calls show at the next answer instead
    /// of as a spike). The first sample of a Feature only sets the baseline:
    /// what its pods counted before the operator looked has no interval.
    pub fn record(&mut self, key: &str, at: i64, pods: Vec<(String, Option<Counters>)>) {
        let first = !self.features.contains_key(key);
        let series = self.features.entry(key.to_owned()).or_default();
        let mut delta = Counters::default();
        let mut seen = HashMap::with_capacity(pods.len());
        for (uid, now) in pods {
            let before = series.pods.get(&uid).copied();
            match (now, before) {
                (Some(now), Some(before)) => {
                    delta.add(&now.since(&before));
                    seen.insert(uid, now);
                }
                // A pod that started since the last sample: all it counted is new.
                (Some(now), None) => {
                    if !first {
                        delta.add(&now);
                    }
                    seen.insert(uid, now);
                }
                (None, Some(before)) => {
                    seen.insert(uid, before);
                }
                (None, None) => {}
            }
        }
        series.pods = seen;
        if !first {
            series.points.push_back(Point::of(at, &delta));
            while series.points.len() > self.capacity {
                series.points.pop_front();
            }
        }
    }

    /// Forgets the Features not in `keys` (deleted ones).
    pub fn retain(&mut self, keys: &HashSet<String>) {
        self.features.retain(|key, _| keys.contains(key));
    }

    /// Feature `key`'s points, oldest first.
    pub fn points(&self, key: &str) -> Vec<Point> {
        self.features
            .get(key)
            .map(|s| s.points.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNNER: &str = "\
# HELP eol_execution_duration_seconds Time to execute an operation.
# TYPE eol_execution_duration_seconds histogram
eol_execution_duration_seconds_sum{operation=\"count\",phase=\"implementation\"} 0.5
eol_execution_duration_seconds_count{operation=\"count\",phase=\"implementation\"} 4
eol_execution_duration_seconds_bucket{le=\"0.0001\",operation=\"count\",phase=\"implementation\"} 0
eol_execution_duration_seconds_sum{operation=\"greet\",phase=\"prototyping\"} 1.5
eol_execution_duration_seconds_count{operation=\"greet\",phase=\"prototyping\"} 1
# TYPE eol_llm_cost counter
eol_llm_cost_total{direction=\"in\",model=\"smollm2\"} 0.25
eol_llm_cost_total{direction=\"out\",model=\"smollm2\"} 0.5
# TYPE eol_cache_hits counter
eol_cache_hits_total{type=\"result\",hit=\"true\"} 3
eol_cache_hits_total{type=\"result\",hit=\"false\"} 1
eol_cache_hits_total{type=\"semantic\",hit=\"false\"} 2
eol_errors_total{operation=\"count\",kind=\"input\"} 7
not a sample
eol_llm_cost_total{direction=\"in\",model=\"x\"} NaN
# EOF
";

    #[test]
    fn the_runner_families_are_summed_over_their_labels() {
        assert_eq!(
            Counters::parse(RUNNER),
            Counters {
                calls: 5.0,
                seconds: 2.0,
                cost: 0.75,
                hits: 3.0,
                misses: 3.0
            }
        );
    }

    fn counters(calls: f64, seconds: f64, hits: f64, misses: f64) -> Option<Counters> {
        Some(Counters {
            calls,
            seconds,
            cost: calls * 0.01,
            hits,
            misses,
        })
    }

    #[test]
    fn a_candidate_adds_its_cost_and_nothing_else() {
        let only = Counters::parse(RUNNER).cost_only();
        assert_eq!(
            only,
            Counters {
                cost: 0.75,
                ..Counters::default()
            }
        );
    }

    #[test]
    fn points_are_per_interval_and_survive_restarts_and_missed_scrapes() {
        let mut history = History::new(3);
        // The baseline: what the pod counted before is not an interval.
        history.record(
            "ns/f",
            1_000,
            vec![("a".into(), counters(10.0, 1.0, 5.0, 5.0))],
        );
        assert!(history.points("ns/f").is_empty());
        history.record(
            "ns/f",
            2_000,
            vec![("a".into(), counters(14.0, 1.4, 8.0, 6.0))],
        );
        let p = &history.points("ns/f")[0];
        assert_eq!((p.at, p.calls), (2_000, 4));
        assert!((p.latency_ms.unwrap() - 100.0).abs() < 1e-9, "{p:?}");
        assert!((p.cost_usd - 0.04).abs() < 1e-9, "{p:?}");
        assert!((p.cache_hit_rate.unwrap() - 0.75).abs() < 1e-9, "{p:?}");
        // Pod a restarted (counters reset), pod b is new, pod c did not answer.
        history.record(
            "ns/f",
            3_000,
            vec![
                ("a".into(), counters(2.0, 0.2, 0.0, 0.0)),
                ("b".into(), counters(1.0, 0.3, 0.0, 0.0)),
                ("c".into(), None),
            ],
        );
        let p = &history.points("ns/f")[1];
        assert_eq!(p.calls, 3);
        assert!((p.latency_ms.unwrap() - 500.0 / 3.0).abs() < 1e-9, "{p:?}");
        assert_eq!(p.cache_hit_rate, None, "no lookups, no rate");
        // No calls: a point with no latency, so the chart shows the quiet interval.
        history.record(
            "ns/f",
            4_000,
            vec![("a".into(), counters(2.0, 0.2, 0.0, 0.0))],
        );
        history.record("ns/f", 5_000, vec![]);
        let points = history.points("ns/f");
        assert_eq!(points.len(), 3, "bounded: {points:?}");
        assert_eq!(points[0].at, 3_000);
        assert_eq!((points[2].calls, points[2].latency_ms), (0, None));
        history.retain(&HashSet::new());
        assert!(history.points("ns/f").is_empty());
    }
}
