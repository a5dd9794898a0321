//! Canaries with real processes on one real Redis: the operator's weight on
//! the candidate (`PUT /v1/shadow/canary`), a serving pod forwarding that
//! share of its live calls to the candidate, and the counts of routed and
//! failed calls in the tally, the metrics and Redis.

use super::*;
use eol_core::shadow::{CANARY_HEADER, CANARY_PATH, Offer, OperationTally, counts_key};

/// Answers as the serving version for the test gate's input (1) only: an odd
/// value tells the candidate answered.
const ODD: &str = "    return {\"value\": 2 * n + (0 if n == 1 else 1)}";
/// [`ODD`], but raises on every fifth input (a 500 from `eol serve`).
const FLAKY: &str = "    if n % 5 == 0:\n        raise ValueError(\"no fives\")\n    return {\"value\": 2 * n + (0 if n == 1 else 1)}";

/// What [`ODD`] answers for `n`.
fn odd(n: i64) -> i64 {
    2 * n + i64::from(n != 1)
}

/// `PUT`s `body` to the candidate's weight endpoint: its status and JSON.
async fn put_weight(server: &Server, body: String) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .put(format!("{}{CANARY_PATH}", server.url))
        .header("content-type", "application/json");
    // The operator's token, when the pod is a candidate.
    if server.shadow_id.is_some() {
        request = request.header(eol_core::shadow::TOKEN_HEADER, server.token().await);
    }
    let r = request.body(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Sets candidate `id`'s share to `percent` (must succeed), then waits for
/// the serving pods' next look at the offer (every 2 s).
async fn set_canary(candidate: &Server, id: &str, percent: f64) {
    let (status, body) =
        put_weight(candidate, json!({"id": id, "percent": percent}).to_string()).await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(3000)).await;
}

/// One call of `double` on `n`: status, value, and the canary header.
async fn call(serving: &Server, n: i64) -> (u16, i64, Option<String>) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/operations/double", serving.url))
        .json(&json!({"n": n}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let canary = r
        .headers()
        .get(CANARY_HEADER)
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(r.headers().get("content-type").unwrap(), "application/json");
    let body: Value = r.json().await.unwrap();
    (status, body["value"].as_i64().unwrap_or(-1), canary)
}

/// The `double` counts of the tally once `done` holds for them (bounded wait).
async fn double_tally(
    candidate: &Server,
    done: impl Fn(&OperationTally) -> bool,
) -> OperationTally {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = tally(candidate).await;
        let op = t
            .operations
            .iter()
            .find(|o| o.operation == "double")
            .cloned()
            .unwrap_or_default();
        if done(&op) {
            return op;
        }
        assert!(
            Instant::now() < deadline,
            "the tally never got there: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_canary_weight_is_checked_and_the_offer_republished_at_once() {
    let redis = common::local_redis();
    let (serving_dir, candidate_dir) = (feature_dir(SERVING), feature_dir(ODD));
    let serving = start(serving_dir.path(), &redis, &[]).await;
    let candidate = start(
        candidate_dir.path(),
        &redis,
        &candidate_settings("weight-1", &[]),
    )
    .await;
    wait_for_offer(&redis).await;

    // Not a candidate: like the other shadow endpoints.
    let (status, body) = put_weight(
        &serving,
        json!({"id": "weight-1", "percent": 5}).to_string(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (404, Some("not_a_shadow_candidate"))
    );

    let (status, body) = put_weight(
        &candidate,
        json!({"id": "other-9", "percent": 5}).to_string(),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("weight-1") && message.contains("other-9"),
        "{message}"
    );

    for bad in [
        json!({"id": "weight-1", "percent": 101}).to_string(),
        json!({"id": "weight-1", "percent": -1}).to_string(),
        r#"{"id": "weight-1", "percent": 1e999}"#.to_owned(),
        json!({"id": "weight-1"}).to_string(),
        "not json".to_owned(),
    ] {
        let (status, body) = put_weight(&candidate, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    let (_, body) = put_weight(
        &candidate,
        json!({"id": "weight-1", "percent": 101}).to_string(),
    )
    .await;
    assert_eq!(body["error"]["kind"], "invalid_percent", "{body}");

    // The offer in Redis still has no canary: refused weights change nothing.
    let mut conn = redis_conn(&redis).await;
    let published = |conn: &mut redis::aio::ConnectionManager| {
        let mut conn = conn.clone();
        async move {
            let raw: String = redis::cmd("GET")
                .arg(offer_key("parity"))
                .query_async(&mut conn)
                .await
                .unwrap();
            serde_json::from_str::<Offer>(&raw).unwrap()
        }
    };
    assert_eq!(published(&mut conn).await.canary_percent, 0.0);

    let (status, body) = put_weight(
        &candidate,
        json!({"id": "weight-1", "percent": 12.5}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let answered: Offer = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(
        (answered.id.as_str(), answered.canary_percent),
        ("weight-1", 12.5)
    );
    assert_eq!(body["canaryPercent"], 12.5);
    // Published at once (not at the next refresh), with the offer's expiry.
    let now = published(&mut conn).await;
    assert_eq!(now, answered);
    let ttl: i64 = redis::cmd("TTL")
        .arg(offer_key("parity"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 15, "{ttl}");
    // The periodic refresh keeps it.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(published(&mut conn).await.canary_percent, 12.5);

    // POST to the same path is still the copied call of an operation named
    // `canary` (this feature has none).
    let r = reqwest::Client::new()
        .post(format!("{}{CANARY_PATH}", candidate.url))
        .header(eol_core::shadow::TOKEN_HEADER, candidate.token().await)
        .json(&json!({"input": {"n": 1}, "output": {"value": 2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "unknown_operation", "{body}");
}

#[tokio::test]
async fn with_a_canary_of_100_the_candidate_answers_every_call() {
    let redis = common::local_redis();
    let (serving_dir, candidate_dir) = (feature_dir(SERVING), feature_dir(ODD));
    let serving = start(serving_dir.path(), &redis, &[]).await;
    let candidate = start(
        candidate_dir.path(),
        &redis,
        &candidate_settings("all-1", &[]),
    )
    .await;
    wait_for_offer(&redis).await;
    set_canary(&candidate, "all-1", 100.0).await;

    for n in 2..12 {
        assert_eq!(
            call(&serving, n).await,
            (200, odd(n), Some("all-1".to_owned()))
        );
    }
    // A 4xx of the candidate is the caller's, as is.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/operations/double", serving.url))
        .json(&json!({"n": "two"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers().get(CANARY_HEADER).unwrap(), "all-1");

    // A forwarded call meant for another shadow (this pod would be the
    // stopping one behind the same Service) is refused, not answered; one
    // for this shadow, or with no shadow named, is answered.
    let direct = |id: Option<&str>| {
        let mut r = reqwest::Client::new()
            .post(format!("{}/v1/operations/double", candidate.url))
            .json(&json!({"n": 3}));
        if let Some(id) = id {
            r = r.header(eol_core::shadow::SHADOW_ID_HEADER, id);
        }
        r.send()
    };
    let r = direct(Some("old-0")).await.unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "wrong_candidate", "{body}");
    for id in [Some("all-1"), None] {
        let r = direct(id).await.unwrap();
        assert_eq!(r.status(), 200, "{id:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["value"], odd(3), "{id:?}: {body}");
    }

    let op = double_tally(&candidate, |o| o.canary_routed >= 11).await;
    assert_eq!((op.canary_routed, op.canary_failed), (11, 0), "{op:?}");
    // Calls the candidate answered are not compared with themselves.
    assert_eq!(op.samples(), 0, "{op:?}");
    let m = metrics(&serving).await;
    assert!(
        m.contains(r#"eol_canary_requests_total{operation="double",outcome="routed"} 11"#),
        "{m}"
    );
    assert!(!m.contains(r#"outcome="failed""#), "{m}");
    assert!(!m.contains("eol_shadow_comparisons_total{"), "{m}");
}

#[tokio::test]
async fn a_failing_canary_candidate_is_never_seen_and_counts_as_failed() {
    let redis = common::local_redis();
    let (serving_dir, candidate_dir) = (feature_dir(SERVING), feature_dir(FLAKY));
    let serving = start(serving_dir.path(), &redis, &[]).await;
    let candidate = start(
        candidate_dir.path(),
        &redis,
        &candidate_settings("flaky-1", &[(env::TTL_SECONDS, "600")]),
    )
    .await;
    wait_for_offer(&redis).await;
    set_canary(&candidate, "flaky-1", 100.0).await;

    // The fives fail on the candidate (500): the serving pod answers them.
    for n in 0..10 {
        let expected = if n % 5 == 0 {
            (200, 2 * n, None)
        } else {
            (200, odd(n), Some("flaky-1".to_owned()))
        };
        assert_eq!(call(&serving, n).await, expected, "n = {n}");
    }
    // Those two were answered by the serving pod: they are copied and
    // compared as usual (the candidate fails them again: errors).
    let op = double_tally(&candidate, |o| o.canary_routed >= 10 && o.samples() >= 2).await;
    assert_eq!(
        (op.canary_routed, op.canary_failed, op.error, op.samples()),
        (10, 2, 2, 2),
        "{op:?}"
    );
    // The calls counted failed are the errors the candidate itself counts
    // (`eol_errors_total`), the gate the operator reads through the tally.
    let errors: f64 = metrics(&candidate)
        .await
        .lines()
        .filter(|l| l.starts_with("eol_errors_total{") && l.contains(r#"operation="double""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        errors, op.canary_failed as f64,
        "eol_errors_total of the candidate"
    );

    // A candidate that is gone (its offer not yet expired): every call is
    // the serving pod's, at once, and counted as failed.
    drop(candidate);
    for n in 10..15 {
        let started = Instant::now();
        assert_eq!(call(&serving, n).await, (200, 2 * n, None));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    let mut conn = redis_conn(&redis).await;
    let key = counts_key("parity", "flaky-1");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let counts: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let count = |f: &str| counts.get(f).copied().unwrap_or(0);
        if count("double:canary_routed") == 15 && count("double:canary_failed") == 7 {
            break;
        }
        assert!(Instant::now() < deadline, "{counts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 600, "{ttl}");
    let m = metrics(&serving).await;
    for line in [
        r#"eol_canary_requests_total{operation="double",outcome="routed"} 15"#,
        r#"eol_canary_requests_total{operation="double",outcome="failed"} 7"#,
    ] {
        assert!(m.contains(line), "{line:?} missing:\n{m}");
    }
}

#[tokio::test]
async fn at_a_canary_of_0_nothing_is_forwarded() {
    let redis = common::local_redis();
    let (serving_dir, candidate_dir) = (feature_dir(SERVING), feature_dir(ODD));
    let serving = start(serving_dir.path(), &redis, &[]).await;
    let candidate = start(
        candidate_dir.path(),
        &redis,
        &candidate_settings("zero-1", &[(env::SAMPLE_PERCENT, "0")]),
    )
    .await;
    wait_for_offer(&redis).await;
    // Up, then back down to 0: the serving pod follows.
    set_canary(&candidate, "zero-1", 50.0).await;
    set_canary(&candidate, "zero-1", 0.0).await;
    for n in 0..20 {
        assert_eq!(call(&serving, n).await, (200, 2 * n, None));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t = tally(&candidate).await;
    assert!(t.operations.is_empty(), "{t:?}");
    let m = metrics(&serving).await;
    assert!(!m.contains("eol_canary_requests_total{"), "{m}");
}

#[tokio::test]
async fn every_pod_of_a_candidate_offers_the_share_set_on_one_of_them() {
    let redis = common::local_redis();
    let (one_dir, two_dir) = (feature_dir(ODD), feature_dir(ODD));
    let one = start(one_dir.path(), &redis, &candidate_settings("pair-1", &[])).await;
    let two = start(two_dir.path(), &redis, &candidate_settings("pair-1", &[])).await;
    wait_for_offer(&redis).await;
    let (status, body) =
        put_weight(&one, json!({"id": "pair-1", "percent": 40.0}).to_string()).await;
    assert_eq!(status, 200, "{body}");
    let mut conn = redis_conn(&redis).await;
    let kept: Option<String> = redis::cmd("GET")
        .arg(eol_core::shadow::canary_key("parity", "pair-1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("40"));
    // With the first pod gone (its offer withdrawn), the second one's next
    // publish (every 5 s) offers the share it was never told directly.
    drop(one);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let offer: Option<String> = redis::cmd("GET")
            .arg(offer_key("parity"))
            .query_async(&mut conn)
            .await
            .unwrap();
        if let Some(offer) = offer {
            let offer: Offer = serde_json::from_str(&offer).unwrap();
            assert_eq!(offer.canary_percent, 40.0, "{offer:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second pod published no offer"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(two);
}
