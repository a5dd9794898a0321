//! Redis from the sandbox, through the host: keys under the feature's prefix,
//! commands outside the allow-list refused, Redis going away failing the call
//! clearly, and code written against redis-py running unchanged for every family
//! (`../redis_families.py` against `../redis_families.expected.json`).

use crate::{FEATURE, common};
use eol_core::parse_feature;
use eol_runner::engine::Runtime;
use eol_runner::sandbox::RedisBridge;
use eol_runner::store::{LocalRedis, RedisStore};
use serde_json::{Value, json};
use std::sync::Arc;

#[tokio::test]
async fn redis_is_reached_through_the_host_under_the_feature_prefix() {
    let redis = common::local_redis();
    let store = common::store(&redis);
    let feature = parse_feature("counter.eol", FEATURE).unwrap();
    let runtime = Runtime::load("counter.eol", feature, common::pool(2).await, store.clone())
        .await
        .unwrap();
    let out = runtime
        .execute("bump", &json!({"name": "a", "by": 5}), None)
        .await
        .unwrap();
    assert_eq!(out.output, json!({"value": 5}));
    let out = runtime
        .execute("bump", &json!({"name": "a", "by": 2}), None)
        .await
        .unwrap();
    assert_eq!(out.output, json!({"value": 7}));
    // The key lives under the feature's prefix, and nowhere else.
    let keys = common::all_keys(&store).await;
    assert_eq!(keys, ["eol:counter:counter:a"]);
    let seen = runtime
        .execute("keys_seen", &json!({"name": "a"}), None)
        .await
        .unwrap();
    assert_eq!(seen.output, json!({"exists": 1, "raw": "7"}));
}

#[tokio::test]
async fn redis_going_away_fails_the_call_clearly_and_loses_nothing() {
    let redis = common::local_redis();
    let store = common::store(&redis);
    let feature = parse_feature("counter.eol", FEATURE).unwrap();
    let runtime = Runtime::load("counter.eol", feature, common::pool(1).await, store)
        .await
        .unwrap();
    runtime
        .execute("bump", &json!({"name": "kept", "by": 41}), None)
        .await
        .unwrap();

    // Freeze the server: it stops answering, as a Redis that went away does.
    let pid = redis.pid().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let err = runtime
        .execute("bump", &json!({"name": "kept", "by": 1}), None)
        .await;
    assert!(
        std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let err = err.expect_err("a call while Redis is unreachable must fail, never succeed");
    let msg = err.to_string();
    assert!(
        msg.starts_with("feature 'counter', operation 'bump' failed"),
        "{msg}"
    );
    assert!(msg.contains("TimeoutError"), "{msg}");

    // Back again: the next call succeeds and the earlier data is intact.
    let mut value = None;
    for _ in 0..20 {
        match runtime
            .execute("keys_seen", &json!({"name": "kept"}), None)
            .await
        {
            Ok(out) => {
                value = Some(out.output);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
    let raw = value.expect("Redis came back")["raw"]
        .as_str()
        .map(str::to_owned);
    assert!(
        raw.as_deref() == Some("41") || raw.as_deref() == Some("42"),
        "data intact: {raw:?}"
    );
}

#[tokio::test]
async fn redis_commands_outside_the_allow_list_are_refused() {
    let redis = common::local_redis();
    let store = common::store(&redis);
    let bridge = store.bridge("counter");
    let err = bridge.execute(vec![json!("FLUSHALL")]).await.unwrap_err();
    assert!(err.message.contains("'FLUSHALL' is not allowed"), "{err}");
    let err = bridge
        .execute(vec![json!("KEYS"), json!("*")])
        .await
        .unwrap_err();
    assert!(
        err.message.contains("not allowed") && err.message.contains("SCAN"),
        "{err}"
    );
    let err = bridge
        .execute(vec![json!("GET"), json!("eol:shop:cart")])
        .await
        .unwrap_err();
    assert!(
        err.message.contains("'eol:shop:cart'") && err.message.contains("'eol:counter:'"),
        "{err}"
    );
}

/// The code of every family: one function per family, written against redis-py.
const FAMILIES: &str = include_str!("../redis_families.py");

/// What real redis-py returns for them (written by redis_families_redis_py.py).
const FAMILIES_EXPECTED: &str = include_str!("../redis_families.expected.json");

const REFUSALS: &str = r#"
def refusals():
    out = {}
    attempts = {
        "keys": lambda: redis.keys("*"),
        "flushall": lambda: redis.flushall(),
        "config": lambda: redis.execute_command("CONFIG", "GET", "*"),
        "eval": lambda: redis.execute_command("EVAL", "return 1", 0),
        "other_feature": lambda: redis.get("eol:shop:cart"),
        "other_scan": lambda: list(redis.scan_iter("eol:shop:*")),
        "sort_by": lambda: redis.sort("nums", by="weight_*"),
        "blocking": lambda: redis.xread({"events": "0-0"}, block=10),
        "other_db": lambda: redis.copy("a", "b", destination_db=1),
        "watch": lambda: redis.pipeline().watch("a"),
    }
    for name, attempt in attempts.items():
        try:
            attempt()
            out[name] = "ran"
        except redis.RedisError as exc:
            out[name] = [isinstance(exc, redis.exceptions.NoPermissionError), str(exc)]
    try:
        redis.pipeline().set("ran", 1).get("eol:shop:secret").execute()
        out["pipeline"] = "ran"
    except redis.NoPermissionError as exc:
        out["pipeline"] = str(exc)
    out["nothing_ran"] = redis.exists("ran") == 0
    out["own_prefix"] = [redis.set("eol:families:full", "1"), redis.get("full")]
    try:
        redis.set("bad", None)
    except redis.DataError as exc:
        out["none"] = str(exc)
    return out


def search():
    redis.hset("doc:1", mapping={"title": "Redis streams explained"})
    redis.hset("doc:2", mapping={"title": "Sorted sets"})
    found = redis.ft("articles").search("@title:streams")
    return {"total": found.total, "docs": [[d.id, d.title] for d in found.docs]}
"#;

fn families_feature() -> String {
    let mut text = String::from("---\nname: families\nphase: implementation\n---\n## Operations\n");
    let ops: Vec<String> =
        serde_json::from_str::<serde_json::Map<String, Value>>(FAMILIES_EXPECTED)
            .unwrap()
            .keys()
            .cloned()
            .chain(["refusals".to_owned(), "search".to_owned()])
            .collect();
    for op in ops {
        text.push_str(&format!(
            "### {op}\nRuns the family.\n\nInput:\n```yaml\ntype: object\n```\n\nOutput:\n```yaml\ntype: object\n```\n\n```python\n{FAMILIES}\n{REFUSALS}\n```\n\n"
        ));
    }
    text
}

/// A Redis of its own, a store on it, and the families feature loaded.
async fn families_runtime() -> (LocalRedis, Arc<RedisStore>, Runtime) {
    let redis = common::local_redis();
    let store = common::store(&redis);
    let feature = parse_feature("families.eol", &families_feature()).unwrap();
    let runtime = Runtime::load(
        "families.eol",
        feature,
        common::pool(1).await,
        store.clone(),
    )
    .await
    .unwrap();
    (redis, store, runtime)
}

#[tokio::test]
async fn code_written_against_redis_py_runs_unchanged_for_every_family() {
    let (_redis, store, runtime) = families_runtime().await;
    let expected: serde_json::Map<String, Value> = serde_json::from_str(FAMILIES_EXPECTED).unwrap();
    let mut conn = store.connection().await.unwrap();
    for (family, want) in expected {
        let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await.unwrap();
        let out = runtime
            .execute(&family, &json!({}), None)
            .await
            .unwrap_or_else(|e| panic!("{family}: {e}"));
        for (name, text) in want.as_object().unwrap() {
            assert_eq!(out.output[name], *text, "{family}: {name}");
        }
        // Everything the family wrote is under the feature's prefix.
        let keys = common::all_keys(&store).await;
        assert!(
            keys.iter().all(|k| k.starts_with("eol:families:")),
            "{family}: {keys:?}"
        );
    }
}

#[tokio::test]
async fn search_results_come_back_as_redis_py_documents() {
    let (_redis, store, runtime) = families_runtime().await;
    // Indexes are made outside the sandbox (FT.CREATE is not in the table), under the prefix.
    common::create_title_index(&store, "eol:families:articles", "eol:families:doc:").await;
    let out = runtime.execute("search", &json!({}), None).await.unwrap();
    assert_eq!(
        out.output,
        json!({"total": 1, "docs": [["doc:1", "Redis streams explained"]]})
    );
}

#[tokio::test]
async fn admin_and_cross_feature_commands_are_refused_from_python() {
    let (_redis, _store, runtime) = families_runtime().await;
    let out = runtime
        .execute("refusals", &json!({}), None)
        .await
        .unwrap()
        .output;
    let refused = |name: &str, words: &[&str]| {
        let entry = &out[name];
        assert_eq!(entry[0], json!(true), "{name}: {entry}");
        let text = entry[1].as_str().unwrap_or_default();
        for w in words {
            assert!(text.contains(w), "{name}: {text}");
        }
    };
    refused("keys", &["'KEYS' is not allowed", "SCAN"]);
    refused("flushall", &["'FLUSHALL' is not allowed"]);
    refused("config", &["'CONFIG' is not allowed"]);
    refused("eval", &["'EVAL' is not allowed", "scripts"]);
    refused("other_feature", &["'eol:shop:cart'", "'eol:families:'"]);
    refused("other_scan", &["'eol:shop:*'"]);
    refused("sort_by", &["SORT", "BY"]);
    refused("blocking", &["BLOCK"]);
    refused("other_db", &["COPY", "DB"]);
    assert!(
        out["watch"][1]
            .as_str()
            .unwrap_or_default()
            .contains("WATCH is not available"),
        "{}",
        out["watch"]
    );
    let pipeline = out["pipeline"].as_str().unwrap_or_default();
    assert!(
        pipeline.contains("command #2") && pipeline.contains("'eol:shop:secret'"),
        "{pipeline}"
    );
    assert_eq!(
        out["nothing_ran"],
        json!(true),
        "a refused pipeline runs nothing"
    );
    assert_eq!(out["own_prefix"], json!([true, "1"]));
    assert!(
        out["none"]
            .as_str()
            .unwrap_or_default()
            .contains("Invalid input of type: 'NoneType'"),
        "{}",
        out["none"]
    );
}
