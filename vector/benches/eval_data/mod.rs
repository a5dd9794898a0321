//! What the semantic cache benches share: the labelled pairs of
//! `vector/eval/` (with the frozen splits' hashes checked), their embeddings
//! computed once, an embedder that only looks them up, and the bench's own
//! Redis.

#![allow(dead_code)] // Each bench uses a different part.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use eol_vector::embed::local::MiniLm;
use eol_vector::results::canonical_json;
use eol_vector::{EmbedError, Embedder};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One labelled pair, ready for both caches.
pub struct Pair {
    pub id: String,
    pub set: &'static str,
    /// `tuning` (the pairs the guard was tuned on) or `heldout`.
    pub split: &'static str,
    pub kind: String,
    pub same: bool,
    pub operation: String,
    pub eol_a: Value,
    pub eol_b: Value,
    pub rvl_a: String,
    pub rvl_b: String,
    /// Text of `a` and `b` for the dump (the raw text, or the canonical JSON input).
    pub text_a: String,
    pub text_b: String,
    /// Cosine distance between the embeddings of `a` and `b` (set once embedded).
    pub distance: f32,
}

/// An [`Embedder`] that only returns the vectors computed up front.
pub struct Precomputed {
    pub model_id: String,
    pub dims: usize,
    pub vectors: HashMap<String, Vec<f32>>,
}

impl Embedder for Precomputed {
    fn model_id(&self) -> &str {
        &self.model_id
    }
    fn dimension(&self) -> usize {
        self.dims
    }
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            texts
                .iter()
                .map(|t| {
                    self.vectors
                        .get(t)
                        .cloned()
                        .ok_or_else(|| EmbedError::Failed {
                            model: self.model_id.clone(),
                            message: format!("no precomputed vector for {t}"),
                        })
                })
                .collect()
        })
    }
}

/// The splits `EOL_EVAL_SETS` lists (comma-separated), else `default`.
pub fn splits_from_env(default: &str) -> Vec<&'static str> {
    env_or("EOL_EVAL_SETS", default)
        .split(',')
        .map(|s| match s.trim() {
            "tuning" => "tuning",
            "heldout" => "heldout",
            "fresh" => "fresh",
            "blind" => "blind",
            "multilingual" => "multilingual",
            other => panic!(
                "EOL_EVAL_SETS lists tuning, heldout, fresh, blind and multilingual, not {other}"
            ),
        })
        .collect()
}

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The splits never tuned on, with the SHA-256 of their two files (text, then
/// structured, concatenated) when they were frozen. A split whose files have
/// changed since is refused: edited after the guard was written, it no longer
/// measures a guard that never saw it (issue 20). A new split gets new files.
pub const FROZEN: [(&str, &str); 3] = [
    (
        "fresh",
        "f812d2428b74ebd5bf0a2fe7dcb86c6db309c2c6575342f195173cdeb7ea6516",
    ),
    (
        "multilingual",
        "b2901a087c2c7d263a6f3edc34c49e34a61a9c19d6e9994f692ca5e7036bd338",
    ),
    (
        "blind",
        "aec773dfd033b5e2cf20704030ba5038034c2bb3fb6b8dd4b339d38973f45622",
    ),
];

/// The text and structured files of `split` (the multilingual split has
/// text pairs only).
pub fn split_files(split: &str) -> (&'static str, Option<&'static str>) {
    match split {
        "tuning" => ("paraphrases.jsonl", Some("structured.jsonl")),
        "heldout" => (
            "heldout-paraphrases.jsonl",
            Some("heldout-structured.jsonl"),
        ),
        "fresh" => ("fresh-paraphrases.jsonl", Some("fresh-structured.jsonl")),
        "multilingual" => ("multilingual.jsonl", None),
        _ => ("blind-paraphrases.jsonl", Some("blind-structured.jsonl")),
    }
}

/// The SHA-256 of `split`'s two files; panics when a frozen split changed.
pub fn split_hash(eval: &Path, split: &str) -> String {
    let (text_file, structured_file) = split_files(split);
    let mut hash = Sha256::new();
    for file in std::iter::once(text_file).chain(structured_file) {
        let path = eval.join(file);
        hash.update(
            std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())),
        );
    }
    let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if let Some((_, frozen)) = FROZEN.iter().find(|(s, _)| *s == split) {
        assert!(
            hex == *frozen,
            "the {split} split ({text_file}, {structured_file:?}) changed after it was frozen \
             (sha256 {hex}, frozen {frozen}): it is no longer blind to the guard; \
             restore it (git checkout vector/eval/) or write a new split"
        );
    }
    hex
}

/// The one-sided 95% upper confidence bound (Wilson score, z = 1.645) of a
/// rate of `hits` in `n`: with 0 of 1,325 it is 0.2%, with 13 of 1,325 1.5%.
pub fn wilson_upper(hits: u32, n: u32) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let (z, n, p) = (1.645_f64, f64::from(n), f64::from(hits) / f64::from(n));
    let z2 = z * z;
    (p + z2 / (2.0 * n) + z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt()) / (1.0 + z2 / n)
}

pub fn load_pairs(raw_text: bool, limit: usize, splits: &[&'static str]) -> Vec<Pair> {
    let eval = repo().join("vector/eval");
    let mut pairs = Vec::new();
    for &split in splits {
        let (text_file, structured_file) = split_files(split);
        let frozen = if FROZEN.iter().any(|(s, _)| *s == split) {
            ", frozen"
        } else {
            ""
        };
        println!(
            "split {split}: {text_file} + {structured_file:?}, sha256 {}{frozen}",
            split_hash(&eval, split)
        );
        for r in read_jsonl(&eval.join(text_file)).into_iter().take(limit) {
            let (a, b) = (r["a"].as_str().expect("a"), r["b"].as_str().expect("b"));
            let (eol_a, eol_b) = (json!({"query": a}), json!({"query": b}));
            let (rvl_a, rvl_b) = if raw_text {
                (a.to_owned(), b.to_owned())
            } else {
                (canonical_json(&eol_a), canonical_json(&eol_b))
            };
            pairs.push(Pair {
                id: r["id"].as_str().expect("id").to_owned(),
                set: "text",
                split,
                kind: r["kind"].as_str().expect("kind").to_owned(),
                same: r["same"].as_bool().expect("same"),
                operation: "query".into(),
                eol_a,
                eol_b,
                rvl_a,
                rvl_b,
                text_a: a.to_owned(),
                text_b: b.to_owned(),
                distance: f32::NAN,
            });
        }
        let structured = structured_file
            .map(|f| read_jsonl(&eval.join(f)))
            .unwrap_or_default();
        for r in structured.into_iter().take(limit) {
            pairs.push(Pair {
                id: r["id"].as_str().expect("id").to_owned(),
                set: "structured",
                split,
                kind: r["kind"].as_str().expect("kind").to_owned(),
                same: r["same"].as_bool().expect("same"),
                operation: r["operation"].as_str().expect("operation").to_owned(),
                rvl_a: canonical_json(&r["a"]),
                rvl_b: canonical_json(&r["b"]),
                text_a: canonical_json(&r["a"]),
                text_b: canonical_json(&r["b"]),
                distance: f32::NAN,
                eol_a: r["a"].clone(),
                eol_b: r["b"].clone(),
            });
        }
    }
    pairs
}

/// `EOL_EVAL_REDIS_URL`, else a `redis-server` of the bench's own with the
/// search and JSON modules, killed on drop.
pub fn redis_server() -> (String, Option<crate::common::OwnRedis>) {
    if let Ok(url) = std::env::var("EOL_EVAL_REDIS_URL") {
        return (url, None);
    }
    let own = crate::common::own_redis(true, |server| {
        format!(
            "{} is missing: run scripts/redis.sh install",
            server.display()
        )
    });
    (own.url.clone(), Some(own))
}

pub fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    1.0 - dot / (norm(a) * norm(b))
}

/// Embeds every prompt of `pairs` (and `extra`: EOL input, RedisVL prompt) once with `model`, sets each
/// pair's distance, and gives the vectors by prompt and an embedder for EOL's
/// cache that looks them up by the canonical JSON of an input (with
/// `text_prompt` `raw`, a text pair's input maps to its raw text's vector,
/// as RedisVL embeds it).
pub fn embed_pairs(
    model: &MiniLm,
    pairs: &mut [Pair],
    extra: &[(Value, String)],
    text_prompt: &str,
) -> (HashMap<String, Vec<f32>>, Arc<Precomputed>) {
    // Embed every prompt once. `eol_key` is what EOL's cache asks its embedder for
    // (the canonical JSON of the input); the vector is that of RedisVL's prompt.
    let mut by_prompt: HashMap<String, Vec<f32>> = HashMap::new();
    let mut eol_keys: Vec<(String, String)> = Vec::new();
    for p in pairs.iter() {
        for (input, prompt) in [(&p.eol_a, &p.rvl_a), (&p.eol_b, &p.rvl_b)] {
            by_prompt.entry(prompt.clone()).or_default();
            eol_keys.push((canonical_json(input), prompt.clone()));
        }
    }
    for (input, prompt) in extra {
        by_prompt.entry(prompt.clone()).or_default();
        eol_keys.push((canonical_json(input), prompt.clone()));
    }
    let texts: Vec<String> = by_prompt.keys().cloned().collect();
    let start = Instant::now();
    for chunk in texts.chunks(32) {
        for (t, v) in chunk
            .iter()
            .zip(model.embed_blocking(chunk).expect("embed"))
        {
            by_prompt.insert(t.clone(), v);
        }
    }
    println!(
        "{} pairs ({} text, {} structured); {} prompts embedded with {} in {:.1?} (text prompts: {text_prompt})",
        pairs.len(),
        pairs.iter().filter(|p| p.set == "text").count(),
        pairs.iter().filter(|p| p.set == "structured").count(),
        texts.len(),
        model.model_id(),
        start.elapsed()
    );
    for p in pairs.iter_mut() {
        p.distance = cosine_distance(&by_prompt[&p.rvl_a], &by_prompt[&p.rvl_b]);
    }
    let dims = model.dimension();
    let embedder = Arc::new(Precomputed {
        model_id: model.model_id().to_owned(),
        dims,
        vectors: eol_keys
            .iter()
            .map(|(k, prompt)| (k.clone(), by_prompt[prompt].clone()))
            .collect(),
    });
    (by_prompt, embedder)
}

/// Content words a crowding variant exchanges (either way): each changes
/// what a request asks for. Not `before` / `after`: they name one order from
/// either end, so `X after Y` asks what `Y before X` asks, and the variant of
/// a swap pair's stored text was a paraphrase of its request (5 of the 7
/// near-misses answered from another entry on the tuning, held-out and fresh
/// splits with 10,000 entries at 0.1 were such variants).
const EXCHANGES: [(&str, &str); 23] = [
    ("today", "tomorrow"),
    ("morning", "evening"),
    ("cancel", "change"),
    ("refund", "replacement"),
    ("add", "remove"),
    ("open", "close"),
    ("buy", "sell"),
    ("first", "last"),
    ("small", "large"),
    ("cheap", "expensive"),
    ("north", "south"),
    ("red", "blue"),
    ("increase", "decrease"),
    ("start", "stop"),
    ("always", "never"),
    ("Monday", "Thursday"),
    ("Tuesday", "Saturday"),
    ("Wednesday", "Sunday"),
    ("Friday", "Monday"),
    ("January", "October"),
    ("March", "July"),
    ("week", "month"),
    ("hotel", "flight"),
];

/// Names a crowding variant puts in place of a capitalised word.
const NAMES: [&str; 8] = [
    "Lisbon", "Maria", "Oslo", "Chen", "Kenya", "Acme", "Dublin", "Priya",
];

/// The words of `text` that a rewrite with other punctuation, case or
/// articles keeps, in order (a swap is another request): `List the posts
/// that don't have a featured image.` and `list posts that don't have a
/// featured image` give the same.
fn same_words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(str::to_lowercase)
        .filter(|w| !w.is_empty() && !["the", "a", "an"].contains(&w.as_str()))
        .collect()
}

/// The variants of `text` that ask for something else: each number moved
/// by 7, one exchanged content word, one capitalised word (not the first)
/// renamed. Similar neighbours meant to ask for something else.
fn variants(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Numbers.
    let mut moved = String::new();
    let mut digits = String::new();
    let flush = |digits: &mut String, moved: &mut String| {
        if !digits.is_empty() {
            let n: u64 = digits.parse().unwrap_or(0);
            moved.push_str(&(n.saturating_add(7)).to_string());
            digits.clear();
        }
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut moved);
            moved.push(c);
        }
    }
    flush(&mut digits, &mut moved);
    if moved != text {
        out.push(moved);
    }
    let words: Vec<&str> = text.split(' ').collect();
    // One exchanged content word (the first that has a counterpart).
    'exchange: for (i, w) in words.iter().enumerate() {
        let bare = w.trim_matches(|c: char| !c.is_alphanumeric());
        for (a, b) in EXCHANGES {
            let other = if bare == a {
                b
            } else if bare == b {
                a
            } else {
                continue;
            };
            let mut changed = words.clone();
            let replaced = w.replacen(bare, other, 1);
            changed[i] = &replaced;
            out.push(changed.join(" "));
            break 'exchange;
        }
    }
    // One renamed capitalised word.
    if let Some((i, w)) = words
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, w)| w.chars().next().is_some_and(char::is_uppercase) && w.len() > 2)
    {
        let bare = w.trim_matches(|c: char| !c.is_alphanumeric());
        let name = NAMES[bare.len() % NAMES.len()];
        if bare != name && !bare.is_empty() {
            let mut changed = words.clone();
            let replaced = w.replacen(bare, name, 1);
            changed[i] = &replaced;
            out.push(changed.join(" "));
        }
    }
    out
}

/// `n` entries to crowd the caches with, none of them an input of `pairs`:
/// the texts of every `vector/eval/` file (all splits) and their variants
/// ([`variants`]: numbers, content words and names changed), and the
/// structured inputs of every file under their operation; shuffled with
/// `seed`, structured ones first. Each is (operation, EOL input, RedisVL prompt).
pub fn crowd(pairs: &[Pair], n: usize, seed: u64) -> Vec<(String, Value, String)> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let eval = repo().join("vector/eval");
    let taken: std::collections::HashSet<String> = pairs
        .iter()
        .flat_map(|p| [canonical_json(&p.eol_a), canonical_json(&p.eol_b)])
        .collect();
    let mut texts: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut structured: std::collections::BTreeMap<String, (String, Value)> =
        std::collections::BTreeMap::new();
    for split in ["tuning", "heldout", "fresh", "blind", "multilingual"] {
        let (text_file, structured_file) = split_files(split);
        for r in read_jsonl(&eval.join(text_file)) {
            for side in ["a", "b"] {
                let text = r[side].as_str().expect("text").to_owned();
                for v in variants(&text) {
                    texts.insert(v);
                }
                texts.insert(text);
            }
        }
        for r in structured_file
            .map(|f| read_jsonl(&eval.join(f)))
            .unwrap_or_default()
        {
            let op = r["operation"].as_str().expect("operation").to_owned();
            for side in ["a", "b"] {
                structured.insert(canonical_json(&r[side]), (op.clone(), r[side].clone()));
            }
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut structured: Vec<(String, Value, String)> = structured
        .into_iter()
        .filter(|(key, _)| !taken.contains(key))
        .map(|(key, (op, input))| (op, input, key))
        .collect();
    structured.shuffle(&mut rng);
    // A text of another split may be a loaded one written again (the blind
    // set's `Merge ticket #715 into ticket #702.` is the tuning set's with
    // `#`): as a neighbour it would answer its request rightly, yet count as
    // a wrong answer. Such texts are not crowding entries.
    let rewritten: std::collections::HashSet<Vec<String>> = pairs
        .iter()
        .filter(|p| p.set == "text")
        .flat_map(|p| [same_words(&p.text_a), same_words(&p.text_b)])
        .collect();
    let mut text: Vec<(String, Value, String)> = texts
        .into_iter()
        .filter(|t| !rewritten.contains(&same_words(t)))
        .map(|t| ("query".to_owned(), json!({"query": t}), t))
        .filter(|(_, input, _)| !taken.contains(&canonical_json(input)))
        .collect();
    text.shuffle(&mut rng);
    structured.extend(text);
    assert!(
        structured.len() >= n,
        "only {} crowding entries can be made, not {n}",
        structured.len()
    );
    structured.truncate(n);
    structured
}
