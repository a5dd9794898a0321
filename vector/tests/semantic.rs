//! The semantic cache against a real Redis with the search module
//! (`EOL_TEST_REDIS_URL`, set by scripts/test.sh, or `REDIS_URL` from `eval "$(scripts/redis.sh start)"`), with a deterministic
//! bag-of-words embedder: close wording gives close vectors, as with a real
//! model, which is exactly when the guard must tell meanings apart.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use eol_vector::semantic::{CallContext, Lookup, MissReason, SemanticCache, SemanticSettings};
use eol_vector::{EmbedError, Embedder};
use futures::future::BoxFuture;

mod common;
use common::{DIMS, bag_of_words, conn, seeded_random, unique};
use serde_json::{Value, json};

/// A deterministic embedder ([`bag_of_words`] or [`seeded_random`] of
/// `common`) that counts the texts it embeds.
struct TestEmbedder {
    id: &'static str,
    vector: fn(&str) -> Vec<f32>,
    texts: AtomicUsize,
}

impl TestEmbedder {
    /// Words hashed (FNV-1a) into 64 buckets, counted, L2-normalised: close
    /// wording gives close vectors.
    fn bag_of_words() -> Self {
        Self {
            id: "test-bag-of-words-64",
            vector: bag_of_words,
            texts: AtomicUsize::new(0),
        }
    }

    /// A random vector per distinct text: a crowded scope holds many
    /// entries none of which stands in for another.
    fn seeded_random() -> Self {
        Self {
            id: "test-seeded-random-64",
            vector: seeded_random,
            texts: AtomicUsize::new(0),
        }
    }
}

impl Embedder for TestEmbedder {
    fn model_id(&self) -> &str {
        self.id
    }
    fn dimension(&self) -> usize {
        DIMS
    }
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        self.texts.fetch_add(texts.len(), Ordering::SeqCst);
        Box::pin(async move { Ok(texts.iter().map(|t| (self.vector)(t)).collect()) })
    }
}

/// A cache on its own index, dropped (with its entries) when the guard goes.
struct TestCache {
    cache: SemanticCache,
}

impl std::ops::Deref for TestCache {
    type Target = SemanticCache;
    fn deref(&self) -> &SemanticCache {
        &self.cache
    }
}

impl TestCache {
    async fn drop_all(self) {
        self.cache
            .drop_indexes(true)
            .await
            .expect("indexes dropped");
    }
}

async fn cache_with(threshold: f64, ttl: u64) -> TestCache {
    cache_embedding_with(Arc::new(TestEmbedder::bag_of_words()), threshold, ttl).await
}

async fn cache_embedding_with(embedder: Arc<dyn Embedder>, threshold: f64, ttl: u64) -> TestCache {
    let settings =
        SemanticSettings::from_frontmatter(true, Some(threshold), Some(ttl)).expect("settings");
    let cache = SemanticCache::with_index_name(conn().await, embedder, settings, &unique("sem"))
        .await
        .expect("the cache opens");
    TestCache { cache }
}

fn ctx(feature: &str) -> CallContext {
    CallContext::new(feature, "triage", "prototyping", "gpt-4o-mini", "src-1")
}

fn text(s: &str) -> Value {
    json!({"text": s})
}

fn cosine_distance(a: &Value, b: &Value) -> f32 {
    let (x, y) = (
        bag_of_words(&eol_vector::results::canonical_json(a)),
        bag_of_words(&eol_vector::results::canonical_json(b)),
    );
    1.0 - x.iter().zip(&y).map(|(p, q)| p * q).sum::<f32>()
}

fn is_guard_miss(l: &Lookup) -> bool {
    matches!(l, Lookup::Miss(MissReason::Guard { .. }))
}

#[tokio::test]
async fn identical_input_hits() {
    let cache = cache_with(0.1, 600).await;
    let c = ctx("orders");
    let input = json!({"text": "where is my parcel", "customer": "c-17", "urgent": true});
    assert!(matches!(
        cache.lookup(&c, &input).await.expect("lookup"),
        Lookup::Miss(MissReason::Distance { nearest: None })
    ));
    cache
        .store(&c, &input, &json!({"category": "shipping"}))
        .await
        .expect("stored");
    // Same value, other key order: the same canonical input.
    let same: Value =
        serde_json::from_str(r#"{"urgent":true,"customer":"c-17","text":"where is my parcel"}"#)
            .expect("json");
    match cache.lookup(&c, &same).await.expect("lookup") {
        Lookup::Hit {
            answer, distance, ..
        } => {
            assert_eq!(answer, json!({"category": "shipping"}));
            assert!(distance < 1e-4, "{distance}");
        }
        other => panic!("expected a hit, got {other:?}"),
    }
    let stats = cache.stats();
    assert_eq!(
        (stats.hit, stats.miss_distance, stats.miss_guard),
        (1, 1, 0)
    );
    cache.drop_all().await;
}

#[tokio::test]
async fn a_close_paraphrase_within_the_threshold_hits() {
    let cache = cache_with(0.1, 600).await;
    let c = ctx("orders");
    let (stored, asked) = (
        text("the order did not arrive"),
        text("the order did not arrive yet"),
    );
    let d = cosine_distance(&stored, &asked);
    assert!(d > 0.0 && d <= 0.1, "the paraphrase is {d} away");
    cache
        .store(&c, &stored, &json!({"category": "missing"}))
        .await
        .expect("stored");
    let hit = cache.lookup(&c, &asked).await.expect("lookup");
    assert_eq!(
        hit.answer(),
        Some(&json!({"category": "missing"})),
        "{hit:?}"
    );
    // Farther than the threshold: a distance miss.
    let far = text("I would like to change the delivery address of the order please");
    assert!(matches!(
        cache.lookup(&c, &far).await.expect("lookup"),
        Lookup::Miss(MissReason::Distance { nearest: Some(_) })
    ));
    cache.drop_all().await;
}

#[tokio::test]
async fn negation_misses_by_the_guard() {
    let cache = cache_with(0.1, 600).await;
    let c = ctx("orders");
    let (stored, asked) = (
        text("the order did not arrive"),
        text("the order did arrive"),
    );
    assert!(
        cosine_distance(&stored, &asked) <= 0.1,
        "close in embedding space"
    );
    cache
        .store(&c, &stored, &json!({"category": "missing"}))
        .await
        .expect("stored");
    let l = cache.lookup(&c, &asked).await.expect("lookup");
    assert!(is_guard_miss(&l), "{l:?}");
    assert_eq!(cache.stats().miss_guard, 1);
    // `didn't` is the same negation as `did not`.
    let l = cache
        .lookup(&c, &text("the order didn't arrive"))
        .await
        .expect("lookup");
    assert!(!is_guard_miss(&l), "{l:?}");
    cache.drop_all().await;
}

#[tokio::test]
async fn different_numbers_miss() {
    // A wide threshold: only the guard keeps these apart.
    let cache = cache_with(0.5, 600).await;
    let c = ctx("shop");
    let stored = json!({"item": "apple", "quantity": 3});
    cache
        .store(&c, &stored, &json!({"total": 6}))
        .await
        .expect("stored");
    let l = cache
        .lookup(&c, &json!({"item": "apple", "quantity": 30}))
        .await
        .expect("lookup");
    match &l {
        Lookup::Miss(MissReason::Guard { why }) => assert_eq!(why.path, "quantity"),
        other => panic!("expected a guard miss, got {other:?}"),
    }
    let stored = text("please send 3 boxes to the warehouse");
    cache
        .store(&c, &stored, &json!({"ok": true}))
        .await
        .expect("stored");
    let l = cache
        .lookup(&c, &text("please send 30 boxes to the warehouse"))
        .await
        .expect("lookup");
    assert!(is_guard_miss(&l), "{l:?}");
    let l = cache
        .lookup(&c, &text("please send three boxes to the warehouse"))
        .await
        .expect("lookup");
    assert!(l.answer().is_some(), "three is 3: {l:?}");
    cache.drop_all().await;
}

#[tokio::test]
async fn swapped_entities_miss() {
    let cache = cache_with(0.1, 600).await;
    let c = ctx("ledger");
    let (stored, asked) = (
        text("Alice paid Bob 20 euros"),
        text("Bob paid Alice 20 euros"),
    );
    assert!(
        cosine_distance(&stored, &asked) < 1e-4,
        "the same bag of words"
    );
    cache
        .store(&c, &stored, &json!({"debtor": "Bob"}))
        .await
        .expect("stored");
    let l = cache.lookup(&c, &asked).await.expect("lookup");
    assert!(is_guard_miss(&l), "{l:?}");
    assert!(
        cache
            .lookup(&c, &stored)
            .await
            .expect("lookup")
            .answer()
            .is_some()
    );
    cache.drop_all().await;
}

#[tokio::test]
async fn a_changed_word_in_the_same_wording_misses_and_a_reordered_list_hits() {
    // Wide threshold: only the guard keeps these apart.
    let cache = cache_with(0.5, 600).await;
    let c = ctx("calendar");
    let stored = text("Move the standup with Priya and Omar to the large meeting room");
    cache
        .store(&c, &stored, &json!({"room": "large"}))
        .await
        .expect("stored");
    // One content word changed in otherwise identical wording: another request.
    let l = cache
        .lookup(
            &c,
            &text("Move the standup with Priya and Omar to the small meeting room"),
        )
        .await
        .expect("lookup");
    match &l {
        Lookup::Miss(MissReason::Guard { why }) => {
            assert!(why.reason.starts_with("wording"), "{why}")
        }
        other => panic!("expected a guard miss, got {other:?}"),
    }
    // The people of a list in the other order, other wording: the same request.
    let l = cache
        .lookup(
            &c,
            &text("Put the standup of Omar and Priya in the large meeting room instead"),
        )
        .await
        .expect("lookup");
    assert_eq!(l.answer(), Some(&json!({"room": "large"})), "{l:?}");
    cache.drop_all().await;
}

#[tokio::test]
async fn exchanged_roles_around_a_marker_miss() {
    let cache = cache_with(0.5, 600).await;
    let c = ctx("moves");
    let stored = text("transfer the stock of lamps from the Leeds depot to the York depot");
    cache
        .store(&c, &stored, &json!({"ok": true}))
        .await
        .expect("stored");
    let l = cache
        .lookup(
            &c,
            &text("transfer the stock of lamps from the York depot to the Leeds depot"),
        )
        .await
        .expect("lookup");
    match &l {
        Lookup::Miss(MissReason::Guard { why }) => {
            assert!(why.reason.starts_with("roles"), "{why}")
        }
        other => panic!("expected a guard miss, got {other:?}"),
    }
    cache.drop_all().await;
}

#[tokio::test]
async fn a_negative_word_balances_a_not_on_the_other_side() {
    // The bag-of-words embedding puts these two far apart: a threshold that
    // leaves the decision to the guard.
    let cache = cache_with(0.9, 600).await;
    let c = ctx("billing");
    cache
        .store(
            &c,
            &text("remind the customers whose invoices are unpaid"),
            &json!({"sent": true}),
        )
        .await
        .expect("stored");
    let l = cache
        .lookup(
            &c,
            &text("send a reminder to customers who have not paid their invoices"),
        )
        .await
        .expect("lookup");
    assert_eq!(l.answer(), Some(&json!({"sent": true})), "{l:?}");
    cache.drop_all().await;
}

#[tokio::test]
async fn other_feature_operation_phase_model_or_source_never_hit() {
    let cache = cache_with(0.1, 600).await;
    let c = ctx("orders");
    let input = text("where is my parcel");
    cache
        .store(&c, &input, &json!({"category": "shipping"}))
        .await
        .expect("stored");
    assert!(
        cache
            .lookup(&c, &input)
            .await
            .expect("lookup")
            .answer()
            .is_some()
    );
    let others = [
        CallContext {
            feature: "billing".into(),
            ..c.clone()
        },
        CallContext {
            operation: "summarise".into(),
            ..c.clone()
        },
        CallContext {
            phase: "hybrid".into(),
            ..c.clone()
        },
        CallContext {
            model: "gpt-4o".into(),
            ..c.clone()
        },
        CallContext {
            source_hash: "src-2".into(),
            ..c.clone()
        },
    ];
    for other in &others {
        let l = cache.lookup(other, &input).await.expect("lookup");
        assert!(
            matches!(l, Lookup::Miss(MissReason::Distance { nearest: None })),
            "{other:?}: {l:?}"
        );
    }
    cache.drop_all().await;
}

#[tokio::test]
async fn entries_expire_after_the_ttl() {
    let cache = cache_with(0.1, 120).await;
    let key = cache
        .store(
            &ctx("orders"),
            &text("where is my parcel"),
            &json!({"a": 1}),
        )
        .await
        .expect("stored")
        .expect("enabled");
    let mut c = conn().await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .expect("TTL");
    assert!((1..=120).contains(&ttl), "TTL {ttl}");
    cache.drop_all().await;
}

#[tokio::test]
async fn a_miss_then_its_store_embed_the_input_once() {
    let counting = Arc::new(TestEmbedder::bag_of_words());
    let cache = cache_embedding_with(counting.clone(), 0.1, 600).await;
    let c = ctx("orders");
    let asked = text("where is my parcel");

    let prepared = cache.prepare(&asked).await.expect("embedded");
    let first = cache.lookup_prepared(&c, &prepared).await.expect("lookup");
    assert!(
        matches!(first, Lookup::Miss(MissReason::Distance { .. })),
        "{first:?}"
    );
    cache
        .store_prepared(&c, &prepared, &json!("in Lyon"))
        .await
        .expect("stored");
    assert_eq!(
        counting.texts.load(Ordering::SeqCst),
        1,
        "one embedding for the lookup and the store"
    );

    // What was stored is what `store` would have stored: the same input hits.
    assert_eq!(
        cache.lookup(&c, &asked).await.expect("lookup").answer(),
        Some(&json!("in Lyon"))
    );
    assert_eq!(counting.texts.load(Ordering::SeqCst), 2);
    cache.drop_all().await;
}

#[tokio::test]
async fn invalidate_feature_removes_its_entries_only() {
    let cache = cache_with(0.1, 600).await;
    let (a, b) = (ctx("orders"), ctx("billing"));
    let q1 = text("where is my parcel");
    let q2 = text("my parcel is damaged");
    cache.store(&a, &q1, &json!(1)).await.expect("stored");
    cache.store(&a, &q2, &json!(2)).await.expect("stored");
    cache.store(&b, &q1, &json!(3)).await.expect("stored");
    assert_eq!(
        cache
            .invalidate_feature("orders")
            .await
            .expect("invalidated"),
        2
    );
    assert!(
        cache
            .lookup(&a, &q1)
            .await
            .expect("lookup")
            .answer()
            .is_none()
    );
    assert!(
        cache
            .lookup(&a, &q2)
            .await
            .expect("lookup")
            .answer()
            .is_none()
    );
    assert_eq!(
        cache.lookup(&b, &q1).await.expect("lookup").answer(),
        Some(&json!(3))
    );
    assert_eq!(
        cache
            .invalidate_feature("orders")
            .await
            .expect("invalidated"),
        0
    );
    cache.drop_all().await;
}

#[tokio::test]
async fn a_disabled_cache_neither_stores_nor_hits() {
    let settings = SemanticSettings::from_frontmatter(false, None, None).expect("settings");
    let cache = SemanticCache::with_index_name(
        conn().await,
        Arc::new(TestEmbedder::bag_of_words()),
        settings,
        &unique("off"),
    )
    .await
    .expect("opens");
    let input = text("where is my parcel");
    assert_eq!(
        cache
            .store(&ctx("orders"), &input, &json!(1))
            .await
            .expect("store"),
        None
    );
    assert!(matches!(
        cache.lookup(&ctx("orders"), &input).await.expect("lookup"),
        Lookup::Miss(MissReason::Disabled)
    ));
    cache.drop_indexes(true).await.expect("dropped");
}

#[tokio::test]
async fn reopening_the_cache_keeps_entries() {
    let base = unique("reopen");
    let settings = SemanticSettings::default();
    let first = SemanticCache::with_index_name(
        conn().await,
        Arc::new(TestEmbedder::bag_of_words()),
        settings.clone(),
        &base,
    )
    .await
    .expect("opens");
    let input = text("where is my parcel");
    first
        .store(&ctx("orders"), &input, &json!(1))
        .await
        .expect("stored");
    let second = SemanticCache::with_index_name(
        conn().await,
        Arc::new(TestEmbedder::bag_of_words()),
        settings,
        &base,
    )
    .await
    .expect("opens again");
    assert_eq!(
        second
            .lookup(&ctx("orders"), &input)
            .await
            .expect("lookup")
            .answer(),
        Some(&json!(1))
    );
    second.drop_indexes(true).await.expect("dropped");
}

async fn bounded_cache(max_error_rate: f64, check_rate: f64) -> TestCache {
    let settings = SemanticSettings::from_frontmatter(true, Some(0.3), Some(600))
        .and_then(|s| s.bounded(Some(max_error_rate), Some(check_rate)))
        .expect("settings");
    let cache = SemanticCache::with_index_name(
        conn().await,
        Arc::new(TestEmbedder::bag_of_words()),
        settings,
        &unique("sem"),
    )
    .await
    .expect("the cache opens");
    TestCache { cache }
}

/// One entry in a scope of its own, and a paraphrase of its input.
struct Seeded {
    c: CallContext,
    stored: Value,
    key: String,
    paraphrase: Value,
    /// The paraphrase's distance from the entry's input.
    d: f32,
}

async fn seeded(cache: &SemanticCache) -> Seeded {
    // A scope of its own: verdicts outlive the index (they expire with the TTL).
    let c = ctx(&unique("bound"));
    let stored = text("the order did not arrive");
    let key = cache
        .store(&c, &stored, &json!({"category": "shipping"}))
        .await
        .expect("stored")
        .expect("enabled");
    let paraphrase = text("the order did not arrive yet");
    let d = cosine_distance(&stored, &paraphrase);
    Seeded {
        c,
        stored,
        key,
        paraphrase,
        d,
    }
}

#[tokio::test]
async fn with_an_error_bound_a_paraphrase_is_reused_only_once_verdicts_prove_its_distance() {
    // 5%: 75 agreements without a disagreement prove a distance.
    let cache = bounded_cache(0.05, 0.0).await;
    let Seeded {
        c,
        stored,
        key,
        paraphrase,
        d,
    } = seeded(&cache).await;
    assert!(d > 0.01 && d < 0.3, "{d}");
    // The identical input is reused at once; the paraphrase is not proven yet.
    assert!(matches!(
        cache.lookup(&c, &stored).await.expect("lookup"),
        Lookup::Hit { check: false, .. }
    ));
    match cache.lookup(&c, &paraphrase).await.expect("lookup") {
        Lookup::Miss(MissReason::Unproven {
            candidate,
            threshold,
        }) => {
            assert_eq!(candidate.key, key);
            assert_eq!(candidate.answer, json!({"category": "shipping"}));
            assert!((candidate.distance - d).abs() < 1e-3);
            assert_eq!(threshold, 0.0);
        }
        other => panic!("expected an unproven candidate, got {other:?}"),
    }
    // The model agreed 80 times at that distance: proven, reused.
    for _ in 0..80 {
        cache
            .record_verdict(&c, &key, d, true)
            .await
            .expect("recorded");
    }
    let verdicts = cache.verdicts(&c).await.expect("read back from Redis");
    assert_eq!(verdicts.totals(), (80, 0));
    assert!(verdicts.threshold(0.3, 0.05) >= d);
    assert!(matches!(
        cache.lookup(&c, &paraphrase).await.expect("lookup"),
        Lookup::Hit { .. }
    ));
    // One disagreement at a distance limits this entry there, whatever its scope proved.
    cache
        .record_verdict(&c, &key, d, false)
        .await
        .expect("recorded");
    match cache.lookup(&c, &paraphrase).await.expect("lookup") {
        Lookup::Miss(MissReason::Refuted { distance, limit }) => {
            assert!(
                (limit - d).abs() < 1e-6 && distance >= limit,
                "{distance} {limit}"
            );
        }
        other => panic!("expected a refuted entry, got {other:?}"),
    }
    // ... and not its identical input.
    assert!(matches!(
        cache.lookup(&c, &stored).await.expect("lookup"),
        Lookup::Hit { .. }
    ));
    let stats = cache.stats();
    assert_eq!((stats.hit, stats.miss_bound), (3, 2));
    cache.drop_all().await;
}

#[tokio::test]
async fn with_an_error_bound_verdicts_lapse_by_generation_and_when_the_scope_grows() {
    // 50%: generations of 100 / 0.5 = 200 verdicts; a proof rests on the
    // last two. Disagreements are recorded on an entry that no longer
    // exists: they count for the scope without limiting the live entry.
    let cache = bounded_cache(0.5, 0.0).await;
    let Seeded {
        c,
        key,
        paraphrase,
        d,
        ..
    } = seeded(&cache).await;
    let record = |entry: String, agree: bool, n: usize| {
        let (cache, c) = (&cache, &c);
        async move {
            for _ in 0..n {
                cache
                    .record_verdict(c, &entry, d, agree)
                    .await
                    .expect("recorded");
            }
        }
    };
    let gone = format!("{key}-expired");
    // Generation 0: 200 agreements prove the distance.
    record(key.clone(), true, 200).await;
    assert!(matches!(
        cache.lookup(&c, &paraphrase).await.expect("lookup"),
        Lookup::Hit { .. }
    ));
    // Generation 1: the traffic turns, 200 disagreements: 50%, unproven.
    record(gone.clone(), false, 200).await;
    let v = cache.verdicts(&c).await.expect("read");
    assert_eq!((v.totals(), v.counted()), ((200, 200), 400));
    assert!(matches!(
        cache.lookup(&c, &paraphrase).await.expect("lookup"),
        Lookup::Miss(MissReason::Unproven { .. })
    ));
    // The 401st verdict opens generation 2: generation 0 lapses, in Redis too.
    record(key.clone(), true, 1).await;
    let v = cache.verdicts(&c).await.expect("read");
    assert_eq!((v.totals(), v.counted()), ((1, 200), 401));
    let fields: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
        .arg(cache.verdicts_key(&c))
        .query_async(&mut conn().await)
        .await
        .expect("HGETALL");
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names.len(), 6, "{fields:?}");
    // Generation 2 holds 1 verdict, 401 in all, begun with 1 entry in the scope.
    assert_eq!(
        (fields["g"], fields["c"], fields["n"], fields["s"]),
        (2, 1, 401, 1)
    );
    let buckets: Vec<&str> = names.into_iter().filter(|n| n.contains(':')).collect();
    assert!(
        buckets.len() == 2 && buckets[0].starts_with("a:2:") && buckets[1].starts_with("d:1:"),
        "{buckets:?}"
    );
    // Generation 2 fills with agreements; the 601st verdict lapses the
    // disagreements of generation 1, and the distance is proven again.
    record(key.clone(), true, 199).await;
    assert!(matches!(
        cache.lookup(&c, &paraphrase).await.expect("lookup"),
        Lookup::Miss(MissReason::Unproven { .. })
    ));
    record(key.clone(), true, 1).await;
    let v = cache.verdicts(&c).await.expect("read");
    assert_eq!((v.totals(), v.counted()), ((201, 0), 601));
    assert!(matches!(
        cache.lookup(&c, &paraphrase).await.expect("lookup"),
        Lookup::Hit { .. }
    ));
    // The scope fills: 17 more entries make 18 = 2 × 1 + 16, the verdicts
    // were given against fewer neighbours, and the next one lapses them all.
    for i in 0..17 {
        cache
            .store(
                &c,
                &text(&format!("an unrelated request number {i}")),
                &json!({"n": i}),
            )
            .await
            .expect("stored")
            .expect("enabled");
    }
    record(key.clone(), true, 1).await;
    let v = cache.verdicts(&c).await.expect("read");
    assert_eq!((v.totals(), v.counted()), ((1, 0), 602));
    assert!(matches!(
        cache.lookup(&c, &paraphrase).await.expect("lookup"),
        Lookup::Miss(MissReason::Unproven { .. })
    ));
    let fields: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
        .arg(cache.verdicts_key(&c))
        .query_async(&mut conn().await)
        .await
        .expect("HGETALL");
    assert_eq!(
        (fields["g"], fields["c"], fields["s"]),
        (4, 1, 18),
        "{fields:?}"
    );
    cache.drop_all().await;
}

#[tokio::test]
async fn with_an_error_bound_a_young_proof_checks_more_hits_than_the_check_rate() {
    // 50%, checks at 1%: 10 agreements prove the paraphrase's distance, and
    // a proof on 10 verdicts checks min(1, 20 / 10) of its hits: every one.
    let cache = bounded_cache(0.5, 0.01).await;
    let Seeded {
        c,
        key,
        paraphrase,
        d,
        ..
    } = seeded(&cache).await;
    for _ in 0..10 {
        cache
            .record_verdict(&c, &key, d, true)
            .await
            .expect("recorded");
    }
    let proof = cache.verdicts(&c).await.expect("read").proof(0.3, 0.5);
    assert_eq!(proof.verdicts, 10, "{proof:?}");
    for _ in 0..5 {
        assert!(matches!(
            cache.lookup(&c, &paraphrase).await.expect("lookup"),
            Lookup::Hit { check: true, .. }
        ));
    }
    cache.drop_all().await;

    // check_rate 0 turns checks off, young proof or not.
    let off = bounded_cache(0.5, 0.0).await;
    let Seeded {
        c,
        key,
        paraphrase,
        d,
        ..
    } = seeded(&off).await;
    for _ in 0..10 {
        off.record_verdict(&c, &key, d, true)
            .await
            .expect("recorded");
    }
    assert!(matches!(
        off.lookup(&c, &paraphrase).await.expect("lookup"),
        Lookup::Hit { check: false, .. }
    ));
    off.drop_all().await;
}

#[tokio::test]
async fn with_an_error_bound_disagreements_tighten_the_scope_and_checks_are_drawn() {
    let cache = bounded_cache(0.05, 1.0).await;
    let Seeded {
        c,
        key,
        paraphrase,
        d,
        ..
    } = seeded(&cache).await;
    for _ in 0..80 {
        cache
            .record_verdict(&c, &key, d, true)
            .await
            .expect("recorded");
    }
    // check_rate 1: every reused answer is drawn for a check.
    assert!(matches!(
        cache.lookup(&c, &paraphrase).await.expect("lookup"),
        Lookup::Hit { check: true, .. }
    ));
    // Disagreements on another entry of the scope, at the same distance:
    // the rate there is now over 5%, so the scope's threshold drops below it.
    let other = cache
        .store(
            &c,
            &text("cancel my order for the blue lamp"),
            &json!({"category": "orders"}),
        )
        .await
        .expect("stored")
        .expect("enabled");
    for _ in 0..10 {
        cache
            .record_verdict(&c, &other, d, false)
            .await
            .expect("recorded");
    }
    assert!(cache.verdicts(&c).await.expect("read").threshold(0.3, 0.05) < d);
    assert!(matches!(
        cache.lookup(&c, &paraphrase).await.expect("lookup"),
        Lookup::Miss(MissReason::Unproven { .. })
    ));
    // Verdicts on an expired (or deleted) entry count for the scope but
    // never write the entry back.
    let gone = format!("{key}-gone");
    cache
        .record_verdict(&c, &gone, d, false)
        .await
        .expect("recorded");
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&gone)
        .query_async(&mut conn().await)
        .await
        .expect("EXISTS");
    assert_eq!(exists, 0);
    cache.drop_all().await;
}

#[tokio::test]
async fn a_crowded_scope_is_searched_in_batches_and_a_small_one_by_brute_force_and_both_find_their_entries()
 {
    let cache = cache_embedding_with(Arc::new(TestEmbedder::seeded_random()), 0.1, 600).await;
    let (crowded, small) = (ctx("crowded"), ctx("small"));
    let ticket = |i: usize| json!({"ticket": i, "text": format!("case {i}")});
    for i in 0..1_500 {
        cache
            .store(&crowded, &ticket(i), &json!({"answer": i}))
            .await
            .expect("stored");
    }
    for i in 0..30 {
        cache
            .store(&small, &ticket(i), &json!({"answer": 10_000 + i}))
            .await
            .expect("stored");
    }
    assert_eq!(
        cache.search_policy(&crowded).await,
        Some(eol_vector::index::HybridPolicy::Batches),
        "1,500 of 1,530 entries"
    );
    assert_eq!(
        cache.search_policy(&small).await,
        None,
        "30 of 1,530 entries"
    );
    // Every look-up finds its own entry, in either scope, never the other scope's.
    for i in (0..1_500).step_by(15).chain([1_499]) {
        match cache.lookup(&crowded, &ticket(i)).await.expect("lookup") {
            Lookup::Hit { answer, .. } => assert_eq!(answer, json!({"answer": i}), "ticket {i}"),
            other => panic!("ticket {i} in the crowded scope: expected a hit, got {other:?}"),
        }
    }
    for i in 0..30 {
        match cache.lookup(&small, &ticket(i)).await.expect("lookup") {
            Lookup::Hit { answer, .. } => {
                assert_eq!(answer, json!({"answer": 10_000 + i}), "ticket {i}")
            }
            other => panic!("ticket {i} in the small scope: expected a hit, got {other:?}"),
        }
    }
    // An input never stored is no one's: the nearest entries lie far.
    assert!(matches!(
        cache
            .lookup(&crowded, &ticket(5_000))
            .await
            .expect("lookup"),
        Lookup::Miss(MissReason::Distance { .. })
    ));
    cache.drop_all().await;
}
