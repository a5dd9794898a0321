//! The semantic cache's error bound (`cache.semantic.max_error_rate`, issue
//! 20) over a replay of the labelled pairs: how the observed share of wrong
//! reused answers tracks the bound, and what the bound costs in correct ones.
//!
//! # The replay
//!
//! Every pair of the chosen splits, in one seeded random order, is two
//! requests, `a` then `b`, through one cache that keeps everything it
//! stored (so entries of other pairs crowd every lookup, as in production).
//! The "model" answers a text with its meaning: the texts joined by a
//! `same: true` pair (transitively) share one answer, all others differ.
//! For each request:
//!
//! - a **hit** is correct when the entry's answer is the request's, else
//!   wrong; when the cache drew it for a check, the verdict is recorded;
//! - an **unproven** candidate (it passed the guard beyond the proven
//!   distance) gets its verdict recorded, as the runner does with the
//!   model's answer, and the request's answer is stored;
//! - any other miss stores the request's answer.
//!
//! The replay runs `EOL_BOUND_PASSES` times (5): between passes the
//! entries expire (deleted) and the verdicts stay, as for a feature whose
//! traffic recurs over longer than the entries' TTL; the first pass shows
//! how the bound starts with no verdicts, the later ones how it holds once
//! it has some.
//!
//! The same order runs through the cache without a bound at the ceiling
//! (today's fixed threshold), each arm on an index of its own in the same
//! Redis. Figures: hits, wrong hits, the wrong share of hits (and of
//! non-identical hits) with its Wilson 95% upper bound, correct hits as a
//! share of the fixed threshold's, the running wrong share at tenths of
//! the replay (with a bound, also the running share of disagreeing verdicts,
//! and the non-identical hits per operation).
//!
//! Knobs: `EOL_EVAL_SETS` (default `blind`: never tuned on), `EOL_BOUND_RATES`
//! (`0.01,0.05,0.1,0.2`), `EOL_BOUND_CEILINGS` (`0.1,0.2`), `EOL_BOUND_CHECK_RATE`
//! (0.05), `EOL_BOUND_PASSES` (5), `EOL_BOUND_SEED` (20), `EOL_EVAL_PAIRS`
//! (limit per file).
//!
//! ```console
//! scripts/embedding-model.sh install && scripts/redis.sh install
//! cargo bench -p eol-vector --bench semantic_bound
//! ```

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "eval_data/mod.rs"]
mod eval_data;

use std::collections::HashMap;
use std::sync::Arc;

use eol_vector::Embedder;
use eol_vector::embed::local::MiniLm;
use eol_vector::results::canonical_json;
use eol_vector::semantic::{
    CallContext, EXACT_DISTANCE, Lookup, MissReason, SemanticCache, SemanticSettings, wilson_upper,
};
use eval_data::{Pair, embed_pairs, env_or, load_pairs, redis_server, splits_from_env};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use redis::aio::ConnectionManager;
use serde_json::{Value, json};

/// One request of the replay: an input and the answer the model gives it.
struct Request<'a> {
    pair: &'a Pair,
    input: &'a Value,
    answer: Value,
}

/// The texts joined by `same: true` pairs share an answer: union-find over
/// the canonical inputs, per operation.
struct Meanings {
    parent: HashMap<String, String>,
}

impl Meanings {
    fn new(pairs: &[Pair]) -> Self {
        let mut m = Self {
            parent: HashMap::new(),
        };
        for p in pairs {
            let (a, b) = (Self::key(p, &p.eol_a), Self::key(p, &p.eol_b));
            m.find(&a);
            m.find(&b);
            if p.same {
                let (ra, rb) = (m.find(&a), m.find(&b));
                if ra != rb {
                    m.parent.insert(ra, rb);
                }
            }
        }
        m
    }

    fn key(p: &Pair, input: &Value) -> String {
        format!("{}\u{1}{}", p.operation, canonical_json(input))
    }

    fn find(&mut self, x: &str) -> String {
        let mut root = x.to_owned();
        loop {
            match self.parent.get(&root) {
                Some(up) if *up != root => root = up.clone(),
                Some(_) => break,
                None => {
                    self.parent.insert(root.clone(), root.clone());
                    break;
                }
            }
        }
        // Path compression keeps later finds short.
        let mut node = x.to_owned();
        while node != root {
            let up = self.parent[&node].clone();
            self.parent.insert(node, root.clone());
            node = up;
        }
        root
    }

    /// The model's answer to `input` (of `p`'s operation): its meaning's id.
    fn answer(&mut self, p: &Pair, input: &Value) -> Value {
        let root = self.find(&Self::key(p, input));
        json!(eol_vector::results::sha256_hex(&root)[..16].to_owned())
    }
}

/// An operation's proven threshold, its agreements and disagreements, and
/// its verdicts per bucket: (edge, agreements, disagreements).
type Proven = (String, f32, u64, u64, Vec<(f32, u64, u64)>);

/// What one arm saw over the replay.
#[derive(Default)]
struct Outcome {
    requests: u32,
    hits: u32,
    wrong: u32,
    /// Hits of a non-identical input (distance above `EXACT_DISTANCE`).
    near_hits: u32,
    near_wrong: u32,
    /// Non-identical hits and how many were wrong, per operation.
    near_by_op: std::collections::BTreeMap<String, (u32, u32)>,
    verdicts: u32,
    unproven: u32,
    /// (requests so far, hits so far, wrong so far) at each tenth.
    running: Vec<(u32, u32, u32)>,
    /// Disagreements among the verdicts, so far.
    disagreements: u32,
    /// (verdicts so far, disagreements so far) at each tenth: whether the
    /// candidates' error changes as the cache fills.
    running_verdicts: Vec<(u32, u32)>,
    /// Thresholds proven at the end, per operation, and its verdicts per
    /// bucket: (edge, agreements, disagreements).
    thresholds: Vec<Proven>,
    /// The first wrong hits: (distance, the request's input, the entry's input).
    wrong_examples: Vec<(f32, String, String)>,
}

/// Runs `requests` through `cache` as the feature `feature` (an arm's own:
/// its verdicts are counted per feature).
async fn replay(
    cache: &SemanticCache,
    feature: &str,
    requests: &[Request<'_>],
    bounded: bool,
) -> Outcome {
    let mut out = Outcome::default();
    let tenth = requests.len().div_ceil(10).max(1);
    for (i, r) in requests.iter().enumerate() {
        let ctx = CallContext::new(
            feature,
            &r.pair.operation,
            "prototyping",
            "eval",
            "eval-src",
        );
        let found = cache.lookup(&ctx, r.input).await.expect("lookup");
        out.requests += 1;
        match found {
            Lookup::Hit {
                answer,
                distance,
                key,
                check,
            } => {
                let right = answer == r.answer;
                out.hits += 1;
                out.wrong += u32::from(!right);
                if !right && out.wrong_examples.len() < 12 {
                    let stored: Option<String> = redis::cmd("HGET")
                        .arg(&key)
                        .arg("input")
                        .query_async(&mut cache.index().connection())
                        .await
                        .expect("HGET");
                    out.wrong_examples.push((
                        distance,
                        canonical_json(r.input),
                        stored.unwrap_or_default(),
                    ));
                }
                if distance > EXACT_DISTANCE {
                    out.near_hits += 1;
                    out.near_wrong += u32::from(!right);
                    let op = out.near_by_op.entry(r.pair.operation.clone()).or_default();
                    op.0 += 1;
                    op.1 += u32::from(!right);
                }
                if check {
                    cache
                        .record_verdict(&ctx, &key, distance, right)
                        .await
                        .expect("verdict");
                    out.verdicts += 1;
                    out.disagreements += u32::from(!right);
                }
            }
            Lookup::Miss(why) => {
                if let MissReason::Unproven { candidate, .. } = &why {
                    assert!(bounded, "an unproven candidate without a bound");
                    let right = candidate.answer == r.answer;
                    cache
                        .record_verdict(&ctx, &candidate.key, candidate.distance, right)
                        .await
                        .expect("verdict");
                    out.verdicts += 1;
                    out.disagreements += u32::from(!right);
                    out.unproven += 1;
                }
                cache.store(&ctx, r.input, &r.answer).await.expect("store");
            }
        }
        if (i + 1) % tenth == 0 || i + 1 == requests.len() {
            out.running.push((out.requests, out.hits, out.wrong));
            out.running_verdicts.push((out.verdicts, out.disagreements));
        }
    }
    if bounded {
        let bound = cache.settings().bound.expect("bounded");
        let mut ops: Vec<&str> = requests.iter().map(|r| r.pair.operation.as_str()).collect();
        ops.sort_unstable();
        ops.dedup();
        for op in ops {
            let ctx = CallContext::new(feature, op, "prototyping", "eval", "eval-src");
            let v = cache.verdicts(&ctx).await.expect("verdicts");
            let (agree, disagree) = v.totals();
            out.thresholds.push((
                op.to_owned(),
                v.threshold(cache.settings().distance_threshold, bound.max_error_rate),
                agree,
                disagree,
                v.buckets(),
            ));
        }
    }
    out
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

fn share(k: u32, n: u32) -> f64 {
    if n == 0 {
        0.0
    } else {
        f64::from(k) / f64::from(n)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    tokio::spawn(run()).await.expect("the replay task");
}

async fn run() {
    let parse = |name: &str, default: &str| -> Vec<f64> {
        env_or(name, default)
            .split(',')
            .map(|t| {
                t.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{name}: {t}: {e}"))
            })
            .collect()
    };
    let rates = parse("EOL_BOUND_RATES", "0.01,0.05,0.1,0.2");
    let ceilings = parse("EOL_BOUND_CEILINGS", "0.1,0.2");
    let check_rate: f64 = env_or("EOL_BOUND_CHECK_RATE", "0.05")
        .parse()
        .expect("EOL_BOUND_CHECK_RATE");
    let seed: u64 = env_or("EOL_BOUND_SEED", "20")
        .parse()
        .expect("EOL_BOUND_SEED");
    let passes: usize = env_or("EOL_BOUND_PASSES", "5")
        .parse()
        .expect("EOL_BOUND_PASSES");
    let limit: usize = env_or("EOL_EVAL_PAIRS", "100000")
        .parse()
        .expect("EOL_EVAL_PAIRS");
    let splits = splits_from_env("blind");
    let mut pairs = load_pairs(true, limit, &splits);
    let model = MiniLm::from_env()
        .unwrap_or_else(|e| panic!("{e}. Run scripts/embedding-model.sh install."));
    let (_, embedder) = embed_pairs(&model, &mut pairs, &[], "raw");
    let embedder: Arc<dyn Embedder> = embedder;

    let mut meanings = Meanings::new(&pairs);
    let mut order: Vec<&Pair> = pairs.iter().collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let requests: Vec<Request> = order
        .iter()
        .flat_map(|p| [(*p, &p.eol_a), (*p, &p.eol_b)])
        .map(|(pair, input)| Request {
            pair,
            input,
            answer: meanings.answer(pair, input),
        })
        .collect();
    let distinct: std::collections::HashSet<&Value> = requests.iter().map(|r| &r.answer).collect();
    println!(
        "replay: {} requests ({} pairs of {}), {} distinct answers, seed {seed}, check_rate {check_rate}",
        requests.len(),
        pairs.len(),
        splits.join("+"),
        distinct.len()
    );

    let (url, _own) = redis_server();
    let conn = ConnectionManager::new(redis::Client::open(url.as_str()).expect("url"))
        .await
        .expect("connect");
    let mut arm = 0;
    for &ceiling in &ceilings {
        let mut fixed: Option<Vec<Outcome>> = None;
        for rate in std::iter::once(None).chain(rates.iter().map(|r| Some(*r))) {
            arm += 1;
            let mut settings = SemanticSettings::from_frontmatter(true, Some(ceiling), Some(3600))
                .expect("settings");
            if let Some(rate) = rate {
                settings = settings
                    .bounded(Some(rate), Some(check_rate))
                    .expect("bound");
            }
            let name = format!("bound-{}-{arm}", std::process::id());
            let cache =
                SemanticCache::with_index_name(conn.clone(), embedder.clone(), settings, &name)
                    .await
                    .expect("cache");
            let label = match rate {
                None => format!("fixed threshold {ceiling}"),
                Some(r) => format!("max_error_rate {r}, ceiling {ceiling}"),
            };
            let mut outcomes = Vec::new();
            for pass in 1..=passes {
                let out = replay(&cache, &name, &requests, rate.is_some()).await;
                // The entries expire between passes; the verdicts stay.
                cache
                    .invalidate_feature(&name)
                    .await
                    .expect("expire entries");
                let correct = out.hits - out.wrong;
                let of_fixed = fixed
                    .as_ref()
                    .and_then(|f: &Vec<Outcome>| f.get(pass - 1))
                    .map(|f| share(correct, f.hits - f.wrong))
                    .map_or(String::new(), |s| {
                        format!(", {} of the fixed threshold's correct hits", pct(s))
                    });
                println!(
                    "{label}, pass {pass}: {} hits of {} requests, {} wrong = {} of hits (95% upper {}); non-identical: {} hits, {} wrong = {} (upper {}){of_fixed}; {} verdicts ({} unproven)",
                    out.hits,
                    out.requests,
                    out.wrong,
                    pct(share(out.wrong, out.hits)),
                    pct(wilson_upper(u64::from(out.wrong), u64::from(out.hits))),
                    out.near_hits,
                    out.near_wrong,
                    pct(share(out.near_wrong, out.near_hits)),
                    pct(wilson_upper(
                        u64::from(out.near_wrong),
                        u64::from(out.near_hits)
                    )),
                    out.verdicts,
                    out.unproven,
                );
                if pass == 1 && rate.is_none() {
                    for (d, asked, entry) in &out.wrong_examples {
                        println!("  wrong hit at {d:.3}: asked {asked} / answered by {entry}");
                    }
                }
                if rate.is_some() && (pass == 1 || pass == passes) && out.near_hits > 0 {
                    let by_op: Vec<String> = out
                        .near_by_op
                        .iter()
                        .map(|(op, (h, w))| format!("{op}:{w}/{h}"))
                        .collect();
                    println!(
                        "  non-identical hits by operation (wrong/hits): {}",
                        by_op.join(" ")
                    );
                }
                if pass == 1 {
                    let running: Vec<String> = out
                        .running
                        .iter()
                        .map(|(n, h, w)| format!("{n}:{w}/{h}"))
                        .collect();
                    println!("  running (requests:wrong/hits): {}", running.join(" "));
                    if rate.is_some() {
                        let verdicts: Vec<String> = out
                            .running_verdicts
                            .iter()
                            .map(|(v, d)| format!("{d}/{v}"))
                            .collect();
                        println!(
                            "  running verdicts (disagreements/verdicts) at the same tenths: {}",
                            verdicts.join(" ")
                        );
                    }
                }
                if pass == passes {
                    for (op, t, a, d, buckets) in &out.thresholds {
                        if a + d == 0 {
                            continue;
                        }
                        let cells: Vec<String> = buckets
                            .iter()
                            .map(|(edge, a, d)| format!("≤{edge:.3}:{a}/{d}"))
                            .collect();
                        println!(
                            "  {op}: proven to {t:.3} on {a} agreements, {d} disagreements; per bucket (agree/disagree) {}",
                            cells.join(" ")
                        );
                    }
                }
                outcomes.push(out);
            }
            cache.drop_indexes(true).await.expect("drop");
            if rate.is_none() {
                fixed = Some(outcomes);
            }
        }
    }
}
