//! The caches and the vector context of a running feature (issue 7): the
//! semantic cache of prototyped calls on the real local model and the real
//! all-MiniLM-L6-v2, the result cache of implementation calls, the context the
//! vector index picks for a call, and what happens when the index is dropped
//! underneath or Redis goes away.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

mod common;

use common::scripted_llm::{Scripted, ScriptedServer};
use eol_core::parse_feature;
use eol_runner::caches::{CacheMetrics, EmbedderFactory, EmbedderSource};
use eol_runner::engine::Runtime;
use eol_runner::llm::{ChatClient, LlmSettings};
use eol_runner::prototype::Prototyper;
use eol_runner::store::LocalRedis;
use eol_vector::context::{Chunker, ContextDoc, ContextIndex};
use eol_vector::embed::local::MiniLm;
use eol_vector::{EmbedError, Embedder};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const TRIAGE: &str = r#"---
name: triage
phase: prototyping
cache:
  distance_threshold: 0.1
  ttl: 600
---
# Triage

Tickets come from customers of a mobile app.

## Operations

### classify
Pick one label for the ticket: bug for crashes and errors, billing for charges, question otherwise.

Input:
```yaml
type: object
properties:
  text: {type: string}
required: [text]
```

Output:
```yaml
type: object
properties:
  label: {type: string, enum: [bug, billing, question]}
required: [label]
```
"#;

/// The local all-MiniLM-L6-v2 (scripts/embedding-model.sh install; scripts/test.sh installs it).
fn minilm() -> Arc<dyn Embedder> {
    Arc::new(
        MiniLm::from_env()
            .unwrap_or_else(|e| panic!("these tests need the local embedding model: {e}")),
    )
}

/// The real local model (llama.cpp + SmolLM2) that scripts/test.sh starts.
fn local_model() -> Arc<Prototyper> {
    let Some(settings) = LlmSettings::from_env(None).unwrap() else {
        panic!(
            "EOL_LLM_BASE_URL is not set: scripts/test.sh starts the local model (scripts/llm.sh start) for this test"
        );
    };
    Arc::new(Prototyper::new(ChatClient::new(settings).unwrap()))
}

/// `src`, read from `file`, loaded on `redis` with one sandbox worker.
async fn load(file: &str, src: &str, redis: &LocalRedis) -> Runtime {
    let feature = parse_feature(file, src).unwrap();
    Runtime::load(file, feature, common::pool(1).await, common::store(redis))
        .await
        .unwrap()
}

async fn runtime(
    src: &str,
    redis: &LocalRedis,
    model: Arc<Prototyper>,
    embedder: Option<Arc<dyn Embedder>>,
) -> Runtime {
    load("triage.eol", src, redis)
        .await
        .with_model(Some(model))
        .with_caches(embedder)
}

async fn connection(redis: &LocalRedis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// How many semantic cache entries of `feature` the index holds.
async fn semantic_entries(redis: &LocalRedis, feature: &str) -> usize {
    let mut conn = connection(redis).await;
    let reply: redis::Value = redis::cmd("FT.SEARCH")
        .arg("eol-semantic-384")
        .arg(format!("@feature:{{{feature}}}"))
        .arg("NOCONTENT")
        .arg("DIALECT")
        .arg(2)
        .query_async(&mut conn)
        .await
        .unwrap();
    match reply {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n as usize,
            other => panic!("unexpected FT.SEARCH count: {other:?}"),
        },
        other => panic!("unexpected FT.SEARCH reply: {other:?}"),
    }
}

/// `eol_cache_hits_total` as `eol serve` exposes it.
fn exposition(runtime: &Runtime) -> String {
    let mut registry = prometheus_client::registry::Registry::with_prefix("eol");
    registry.register_collector(Box::new(CacheMetrics(runtime.caches().clone())));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

#[tokio::test]
async fn prototyped_answers_are_reused_for_the_same_meaning_only() {
    let redis = common::local_redis();
    let model = local_model();
    let embedder = minilm();
    let rt = runtime(TRIAGE, &redis, model.clone(), Some(embedder.clone())).await;

    let asked = json!({"text": "The app crashes every time I open the settings page."});
    let first = rt.execute("classify", &asked, None).await.unwrap();
    assert!(first.cache.is_none() && first.trace.is_some(), "{first:?}");

    // The same question again, and worded a little differently: the stored answer, no model call.
    for same in [
        asked.clone(),
        json!({"text": "The app crashes each time I open the settings page."}),
    ] {
        let again = rt.execute("classify", &same, None).await.unwrap();
        let hit = again.cache.as_ref().unwrap_or_else(|| {
            panic!("{same} should be answered from the semantic cache: {again:?}")
        });
        assert_eq!(hit.kind, "semantic");
        assert!(hit.distance.unwrap() <= 0.1, "{hit:?}");
        assert!(again.trace.is_none(), "the model was called: {again:?}");
        assert_eq!(again.output, first.output);
    }

    // Close in embedding space, different in meaning: the model answers again.
    let negated = json!({"text": "The app never crashes when I open the settings page."});
    let near_miss = rt.execute("classify", &negated, None).await.unwrap();
    assert!(
        near_miss.cache.is_none() && near_miss.trace.is_some(),
        "{near_miss:?}"
    );

    let counts = rt.caches().counts();
    assert!(counts.contains(&("semantic", 2, 2)), "{counts:?}");
    let text = exposition(&rt);
    assert!(
        text.contains("eol_cache_hits_total{type=\"semantic\",hit=\"true\"} 2")
            && text.contains("eol_cache_hits_total{type=\"semantic\",hit=\"false\"} 2"),
        "{text}"
    );
    // Each input is embedded once: the stores after the two misses reuse their lookups'
    // vectors, so the only embeddings-cache hit is the lookup of `asked` repeated (on
    // this test's own Redis, which starts empty).
    let embedding = counts.iter().find(|c| c.0 == "embedding").unwrap();
    assert_eq!(embedding.1, 1, "{counts:?}");
    assert_eq!(semantic_entries(&redis, "triage").await, 2);

    // The feature's source changes: old answers are deleted and never served.
    let changed = TRIAGE.replace(
        "Tickets come from customers of a mobile app.",
        "Tickets come from customers of a mobile app. Crashes on start are bugs.",
    );
    let rt = runtime(&changed, &redis, model, Some(embedder)).await;
    let after = rt.execute("classify", &asked, None).await.unwrap();
    assert!(after.cache.is_none() && after.trace.is_some(), "{after:?}");
    assert_eq!(semantic_entries(&redis, "triage").await, 1);
}

/// `eol_semantic_verdicts_total{source,verdict}` as `eol serve` exposes it.
fn verdicts(runtime: &Runtime) -> Vec<(&'static str, &'static str, u64)> {
    runtime.caches().verdict_counts()
}

fn count(verdicts: &[(&str, &str, u64)], source: &str, verdict: &str) -> u64 {
    verdicts
        .iter()
        .find(|v| v.0 == source && v.1 == verdict)
        .map_or(0, |v| v.2)
}

#[tokio::test]
async fn with_an_error_bound_unproven_candidates_and_sampled_hits_are_compared_with_the_model() {
    let redis = common::local_redis();
    let model = local_model();
    // 50%: six agreements without a disagreement prove a distance; every
    // reused answer is checked (check_rate 1).
    let bounded = TRIAGE.replace(
        "  ttl: 600\n",
        "  ttl: 600\n  semantic: {maxErrorRate: 0.5, checkRate: 1}\n",
    );
    let rt = Arc::new(runtime(&bounded, &redis, model, Some(minilm())).await);
    let asked = json!({"text": "The app crashes every time I open the settings page."});
    let first = rt.execute("classify", &asked, None).await.unwrap();
    assert!(
        first.semantic_check.is_none(),
        "nothing to compare: {first:?}"
    );

    // A paraphrase: the entry passes the guard but no distance is proven, so
    // the model answers the call, and its answer is compared with the entry's.
    let paraphrase = json!({"text": "The app crashes each time I open the settings page."});
    let mut second = rt.execute("classify", &paraphrase, None).await.unwrap();
    assert!(
        second.cache.is_none() && second.trace.is_some(),
        "the model answered: {second:?}"
    );
    let check = second.semantic_check.take().expect("an unproven candidate");
    assert_eq!(check.source, eol_runner::caches::CheckSource::Unproven);
    assert_eq!(check.candidate.answer, first.output);
    assert_eq!(check.fresh.as_ref(), Some(&second.output));
    assert!(check.candidate.distance > 0.0 && check.candidate.distance <= 0.1);
    rt.settle_semantic_check(check.clone()).await;
    // The labels are an enum: they agree when equal (the Compare rules).
    let agreed = second.output == first.output;
    let v = verdicts(&rt);
    assert_eq!(
        (
            count(&v, "unproven", "agree"),
            count(&v, "unproven", "disagree")
        ),
        if agreed { (1, 0) } else { (0, 1) },
        "{v:?}; first {}, second {}",
        first.output,
        second.output
    );

    // Twenty more agreements at the ceiling's bucket (as other pods would have
    // recorded them): the scope's distance is proven up to 0.1, so the
    // paraphrase's twin is reused, and checked against the model.
    let mut proving = check.clone();
    proving.candidate.key = "eol:no-such-entry".into();
    proving.candidate.distance = 0.099;
    for _ in 0..20 {
        rt.caches().semantic_verdict(&proving, true).await;
    }
    let requests_before = rt.model_spend()[0].1.requests;
    let twin = json!({"text": "The app crashes every time I open the settings page!"});
    let mut third = rt.execute("classify", &twin, None).await.unwrap();
    let hit = third
        .cache
        .clone()
        .unwrap_or_else(|| panic!("reused: {third:?}"));
    assert!(
        hit.distance.unwrap() > 1e-4,
        "not the identical input: {hit:?}"
    );
    let check = third
        .semantic_check
        .take()
        .expect("a check drawn (check_rate 1)");
    assert_eq!(check.source, eol_runner::caches::CheckSource::Sampled);
    assert!(
        check.fresh.is_none(),
        "the model is asked off the response path"
    );
    assert_eq!(check.candidate.answer, third.output);
    rt.settle_semantic_check(check).await;
    assert!(
        rt.model_spend()[0].1.requests > requests_before,
        "the check asked the model"
    );
    let v = verdicts(&rt);
    assert_eq!(
        count(&v, "sampled", "agree") + count(&v, "sampled", "disagree"),
        1,
        "{v:?}"
    );
    let text = exposition(&rt);
    assert!(
        text.contains("eol_semantic_verdicts_total{source=\"sampled\",verdict=")
            && text.contains("eol_semantic_verdicts_total{source=\"unproven\",verdict="),
        "{text}"
    );
    // The counts are in Redis, for every pod of the feature: 1 + 20 + 1, all
    // in the first generation.
    let mut conn = connection(&redis).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("eol:semantic-verdicts:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let fields: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    // `n` counts them all; `a|d:<generation>:<bucket>` by kind and distance.
    assert_eq!(fields.get("n"), Some(&22), "{fields:?}");
    let buckets: u64 = fields
        .iter()
        .filter(|(field, _)| field.starts_with("a:0:") || field.starts_with("d:0:"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(buckets, 22, "{fields:?}");
}

#[tokio::test]
async fn an_index_dropped_underneath_a_running_runner_is_recreated() {
    let redis = common::local_redis();
    let rt = runtime(TRIAGE, &redis, local_model(), Some(minilm())).await;
    let input = json!({"text": "I was charged twice for my subscription this month."});
    let first = rt.execute("classify", &input, None).await.unwrap();
    assert!(first.trace.is_some());
    assert!(
        rt.caches().status().vector_context,
        "{:?}",
        rt.caches().status()
    );

    // Someone drops both indexes (keeping the documents) while the runner runs.
    let mut conn = connection(&redis).await;
    for index in ["eol-semantic-384", "eol-context-384"] {
        let _: () = redis::cmd("FT.DROPINDEX")
            .arg(index)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // The next lookup recreates the index, which finds the stored answer again.
    let again = rt.execute("classify", &input, None).await.unwrap();
    assert_eq!(
        again.cache.as_ref().map(|c| c.kind),
        Some("semantic"),
        "{again:?}"
    );
    assert_eq!(again.output, first.output);
    // A new input goes to the model with context from the recreated context index.
    let other = json!({"text": "How do I change the language of the app?"});
    let exec = rt.execute("classify", &other, None).await.unwrap();
    assert!(exec.trace.is_some());
    for index in ["eol-semantic-384", "eol-context-384"] {
        let info: redis::Value = redis::cmd("FT.INFO")
            .arg(index)
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{index} was not recreated: {e}"));
        assert!(matches!(
            info,
            redis::Value::Array(_) | redis::Value::Map(_)
        ));
    }
    let status = rt.caches().status();
    assert!(status.semantic && status.vector_context, "{status:?}");
}

/// The members of the versions set of the `triage` feature's context.
async fn context_versions(redis: &LocalRedis, index: &ContextIndex) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(index.versions_key("triage"))
        .arg(0)
        .arg(-1)
        .query_async(&mut connection(redis).await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_runner_whose_context_version_was_collected_syncs_it_again() {
    let redis = common::local_redis();
    let embedder = minilm();
    let rt = runtime(TRIAGE, &redis, local_model(), Some(embedder.clone())).await;
    let first = json!({"text": "The app crashes when I rotate the phone."});
    assert!(
        rt.execute("classify", &first, None)
            .await
            .unwrap()
            .trace
            .is_some()
    );

    // Another version of the feature's documents (a rollout) finds this one idle.
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let index = ContextIndex::new(conn, embedder, Chunker::default())
        .await
        .unwrap();
    let ours = context_versions(&redis, &index).await;
    assert_eq!(ours.len(), 1, "{ours:?}");
    let other = [ContextDoc::new(
        "prose",
        "# Triage\n\nTickets come from a web shop.",
    )];
    let collected = index
        .sync_version("triage", &other, Duration::ZERO)
        .await
        .unwrap();
    assert!(collected.collected > 0, "{collected:?}");
    assert_eq!(
        context_versions(&redis, &index).await,
        std::slice::from_ref(&collected.scope)
    );

    // The runner's next call finds its version empty and indexes it again.
    let second = json!({"text": "I was billed for a plan I cancelled."});
    assert!(
        rt.execute("classify", &second, None)
            .await
            .unwrap()
            .trace
            .is_some()
    );
    let versions = context_versions(&redis, &index).await;
    assert!(
        versions.contains(&ours[0]) && versions.len() == 2,
        "{versions:?}"
    );
    let chunks: usize = redis::cmd("SCARD")
        .arg(index.hashes_key(&ours[0]))
        .query_async(&mut connection(&redis).await)
        .await
        .unwrap();
    assert!(chunks > 0);
}

fn scripted_settings(url: &str, context_window: usize) -> LlmSettings {
    LlmSettings {
        price: None,
        prices: Default::default(),
        context_window,
        ..common::scripted_llm::scripted_settings(url)
    }
}

/// What the prompt holds (a protocol check: the scripted server records the requests).
#[tokio::test]
async fn a_prototyped_call_gets_the_most_relevant_chunks_and_a_summary_of_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut guide = String::from("# Support guide\n\n");
    for topic in [
        "gardening tools and the best season for planting tulips",
        "holiday travel plans, train tickets and hotel bookings",
        "the weather forecast, rain showers and sunny afternoons",
        "cooking pasta, tomato sauce and fresh basil",
        "football results, league tables and transfer news",
    ] {
        guide.push_str(&format!(
            "## About {topic}\n\n{}\n\n",
            format!("These notes are about {topic}. ").repeat(12)
        ));
    }
    guide.push_str("## Crashes\n\nA ticket about the app crashing or freezing on start is labelled bug and escalated to the mobile team within one hour.\n\n");
    std::fs::write(dir.path().join("guide.md"), &guide).unwrap();
    let src = TRIAGE
        .replace("cache:\n  distance_threshold: 0.1\n  ttl: 600\n", "")
        .replace(
            "Tickets come from customers of a mobile app.",
            "Tickets come from customers of a mobile app. See @guide.md.",
        );
    let file = dir.path().join("triage.eol");
    std::fs::write(&file, &src).unwrap();
    let server = ScriptedServer::start(vec![
        Scripted::answer("Other notes cover gardening, travel, weather, cooking and football."),
        Scripted::answer("{\"label\": \"bug\"}"),
    ])
    .await;
    let redis = common::local_redis();
    let model = Arc::new(Prototyper::new(
        ChatClient::new(scripted_settings(&server.url, 900)).unwrap(),
    ));
    let rt = load(file.to_str().unwrap(), &src, &redis)
        .await
        .with_model(Some(model))
        .with_caches(Some(minilm()));
    let exec = rt
        .execute(
            "classify",
            &json!({"text": "The app freezes on start and then crashes"}),
            None,
        )
        .await
        .unwrap();
    assert_eq!(exec.output, json!({"label": "bug"}));
    assert_eq!(server.request_count(), 2, "a summary, then the call");
    let summary_request = server.request(0)["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        summary_request.starts_with("Summarise"),
        "{summary_request}"
    );
    let system = server.request(1)["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        system.contains("escalated to the mobile team within one hour"),
        "the relevant chunk is missing:\n{system}"
    );
    assert!(
        system.contains("Other notes cover gardening"),
        "the summary of the rest is missing:\n{system}"
    );
    assert!(
        !system.contains(&"These notes are about football results".repeat(2)),
        "an irrelevant chunk went in whole:\n{system}"
    );
    let note = exec.trace.unwrap().context_note.unwrap();
    assert!(note.contains("summarised"), "{note}");
}

const TEXT: &str = r#"---
name: text
phase: implementation
cache:
  enabled: false
  results: [slugify]
---
# Text

## Operations

### slugify
Lower-cases the title and joins its words with dashes.

Input:
```yaml
type: object
properties:
  title: {type: string}
required: [title]
```

Output:
```yaml
type: object
properties:
  slug: {type: string}
required: [slug]
```

```python
def slugify(title):
    print("computed")
    return {"slug": "-".join(title.lower().split())}
```

### shout
Upper-cases the title.

Input:
```yaml
type: object
properties:
  title: {type: string}
required: [title]
```

Output:
```yaml
type: object
properties:
  loud: {type: string}
required: [loud]
```

```python
def shout(title):
    return {"loud": title.upper()}
```
"#;

#[tokio::test]
async fn listed_implementation_calls_are_served_from_the_result_cache() {
    let redis = common::local_redis();
    let rt = load("text.eol", TEXT, &redis).await;
    let input = json!({"title": "Hello Big World"});
    let first = rt.execute("slugify", &input, None).await.unwrap();
    assert_eq!(first.output, json!({"slug": "hello-big-world"}));
    assert!(first.cache.is_none() && first.stdout.contains("computed"));
    let second = rt.execute("slugify", &input, None).await.unwrap();
    assert_eq!(second.output, first.output);
    assert_eq!(second.cache.as_ref().map(|c| c.kind), Some("result"));
    assert!(second.stdout.is_empty(), "the code ran again: {second:?}");
    // Another input is computed.
    let other = rt
        .execute("slugify", &json!({"title": "Hello World"}), None)
        .await
        .unwrap();
    assert!(other.cache.is_none());
    // An operation not listed in cache.results always runs.
    for _ in 0..2 {
        let loud = rt.execute("shout", &input, None).await.unwrap();
        assert!(loud.cache.is_none());
    }
    assert_eq!(rt.caches().counts(), [("result", 1, 2)]);
    assert!(
        exposition(&rt).contains("eol_cache_hits_total{type=\"result\",hit=\"true\"} 1"),
        "{}",
        exposition(&rt)
    );

    // Changed code is a different key: its output is computed, not the old one served.
    let changed = TEXT.replace(
        "\"-\".join(title.lower().split())",
        "\"_\".join(title.lower().split())",
    );
    let rt2 = load("text.eol", &changed, &redis).await;
    let exec = rt2.execute("slugify", &input, None).await.unwrap();
    assert_eq!(exec.output, json!({"slug": "hello_big_world"}));
    assert!(exec.cache.is_none());

    // Redis goes away: calls go on uncached and nothing is lost.
    drop(redis);
    let exec = rt.execute("slugify", &input, None).await.unwrap();
    assert_eq!(exec.output, json!({"slug": "hello-big-world"}));
    assert!(exec.cache.is_none() && exec.stdout.contains("computed"));
}

#[tokio::test]
async fn without_the_search_module_calls_go_on_uncached_and_say_why() {
    let redis = LocalRedis::start_without_modules().unwrap_or_else(|e| {
        panic!("this test needs the local Redis: {e}. Run scripts/redis.sh install.")
    });
    let server = ScriptedServer::start(vec![
        Scripted::answer("{\"label\": \"question\"}"),
        Scripted::answer("{\"label\": \"question\"}"),
    ])
    .await;
    let model = Arc::new(Prototyper::new(
        ChatClient::new(scripted_settings(&server.url, 2048)).unwrap(),
    ));
    let feature = parse_feature("triage.eol", TRIAGE).unwrap();
    let store = Arc::new(eol_runner::store::RedisStore::new(Some(redis.url.clone())));
    let rt = Runtime::load("triage.eol", feature, common::pool(1).await, store)
        .await
        .unwrap()
        .with_model(Some(model))
        .with_caches(Some(minilm()));
    let input = json!({"text": "How do I change my password?"});
    for _ in 0..2 {
        let exec = rt.execute("classify", &input, None).await.unwrap();
        assert_eq!(exec.output, json!({"label": "question"}));
        assert!(exec.cache.is_none(), "{exec:?}");
    }
    assert_eq!(server.request_count(), 2, "both calls reached the model");
    let status = rt.caches().status();
    let why = status.vector_error.clone().unwrap_or_default();
    assert!(
        why.contains("no search module (RediSearch)") && !status.semantic,
        "{status:?}"
    );
    // The context falls back to the prose ranked by shared words.
    let system = server.request(1)["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(system.contains("customers of a mobile app"), "{system}");
}

#[tokio::test]
async fn an_embedder_that_fails_at_start_is_made_again_later() {
    // An embeddings API that is not up yet when the runner starts (the first
    // attempt fails), then is: the caches start on a later call.
    let redis = common::local_redis();
    let server = ScriptedServer::start(vec![
        Scripted::answer("{\"label\": \"bug\"}"),
        Scripted::answer("{\"label\": \"bug\"}"),
    ])
    .await;
    let model = Arc::new(Prototyper::new(
        ChatClient::new(scripted_settings(&server.url, 4096)).unwrap(),
    ));
    let attempts = Arc::new(AtomicUsize::new(0));
    let factory: EmbedderFactory = {
        let attempts = attempts.clone();
        Arc::new(move || {
            let attempt = attempts.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if attempt == 0 {
                    Err(EmbedError::Failed {
                        model: "embeddings-api".into(),
                        message: "connection refused".into(),
                    })
                } else {
                    Ok(Some(minilm()))
                }
            })
        })
    };
    let rt = load("triage.eol", TRIAGE, &redis)
        .await
        .with_model(Some(model))
        .with_caches_retrying(EmbedderSource::Retry(factory), Duration::from_millis(300));
    let input = json!({"text": "The app crashes as soon as I open it."});

    let first = rt.execute("classify", &input, None).await.unwrap();
    assert!(first.cache.is_none() && first.trace.is_some(), "{first:?}");
    let status = rt.caches().status();
    assert!(!status.semantic, "{status:?}");
    assert!(
        status
            .vector_error
            .as_deref()
            .is_some_and(|e| e.contains("no embedding model") && e.contains("connection refused")),
        "{status:?}"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 1);

    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = rt.execute("classify", &input, None).await.unwrap();
    assert!(second.trace.is_some(), "nothing was stored yet: {second:?}");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "made again after the interval"
    );
    let status = rt.caches().status();
    assert!(
        status.semantic && status.vector_error.is_none(),
        "{status:?}"
    );

    let third = rt.execute("classify", &input, None).await.unwrap();
    assert_eq!(
        third.cache.as_ref().map(|c| c.kind),
        Some("semantic"),
        "{third:?}"
    );
    assert_eq!(
        server.request_count(),
        2,
        "the third call made no model call"
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 2, "made once, then kept");
}
