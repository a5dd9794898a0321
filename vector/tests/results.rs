//! The result cache of deterministic calls, against a real Redis
//! (`EOL_TEST_REDIS_URL`, set by scripts/test.sh, or `REDIS_URL` from `eval "$(scripts/redis.sh start)"`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eol_vector::results::{ResultCache, ResultStats, result_key};

mod common;
use serde_json::json;

async fn conn() -> redis::aio::ConnectionManager {
    common::connect(&common::test_redis_url("Redis")).await
}

fn feature(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("t-{name}-{}-{nanos}", std::process::id())
}

const CODE: &str = "def shorten(url):\n    return {'code': url[:7]}\n";

#[tokio::test]
async fn hit_after_put_with_the_ttl() {
    let cache = ResultCache::new(conn().await, Some(Duration::from_secs(90)));
    let f = feature("hit");
    let input = json!({"url": "https://example.com", "opts": {"b": 1, "a": 2}});
    assert_eq!(cache.get(&f, CODE, &input).await.expect("get"), None);
    cache
        .put(&f, CODE, &input, &json!({"code": "https:/"}))
        .await
        .expect("put");
    // Key order of the input does not matter.
    let same = json!({"opts": {"a": 2, "b": 1}, "url": "https://example.com"});
    assert_eq!(
        cache.get(&f, CODE, &same).await.expect("get"),
        Some(json!({"code": "https:/"}))
    );
    assert_eq!(cache.stats(), ResultStats { hits: 1, misses: 1 });
    let key = result_key(&f, CODE, &input);
    assert!(key.starts_with(&format!("eol:{f}:results:")));
    let mut c = conn().await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .expect("TTL");
    assert!((1..=90).contains(&ttl), "TTL {ttl}");
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .expect("DEL");
}

#[tokio::test]
async fn a_different_code_hash_or_input_misses() {
    let cache = ResultCache::new(conn().await, None);
    let f = feature("miss");
    let input = json!({"url": "https://example.com"});
    cache
        .put(&f, CODE, &input, &json!({"code": "abc"}))
        .await
        .expect("put");
    let changed = CODE.replace("[:7]", "[:8]");
    assert_eq!(cache.get(&f, &changed, &input).await.expect("get"), None);
    assert_eq!(
        cache
            .get(&f, CODE, &json!({"url": "https://example.org"}))
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        cache.get("other-feature", CODE, &input).await.expect("get"),
        None
    );
    assert_eq!(cache.stats(), ResultStats { hits: 0, misses: 3 });
    let mut c = conn().await;
    let key = result_key(&f, CODE, &input);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .expect("TTL");
    assert_eq!(ttl, -1, "no TTL configured: kept");
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .expect("DEL");
}

#[tokio::test]
async fn an_unreadable_entry_is_a_miss() {
    let cache = ResultCache::new(conn().await, None);
    let f = feature("bad");
    let input = json!({"url": "x"});
    let key = result_key(&f, CODE, &input);
    let mut c = conn().await;
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("{not json")
        .query_async(&mut c)
        .await
        .expect("SET");
    assert_eq!(cache.get(&f, CODE, &input).await.expect("get"), None);
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut c)
        .await
        .expect("DEL");
}
