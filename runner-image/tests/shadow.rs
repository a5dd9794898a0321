//! Shadow switches with real processes on one real Redis: a serving `eol serve`
//! copies its calls to a candidate `eol serve` (started with the
//! `EOL_SHADOW_*` settings the operator sets), which compares its outputs
//! with the serving ones; the verdicts are read from the candidate's tally,
//! the serving pod's metrics and Redis.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

mod common;
// The canary's tests, with the helpers below.
#[path = "shadow/canary.rs"]
mod canary;

use common::scripted_llm::{Scripted, ScriptedServer};
use eol_core::shadow::{TOKEN_HEADER, Tally, Verdict, env, offer_key, samples_key, token_key};
use eol_runner::store::LocalRedis;
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// One operation, `double`, whose Python is `body` (a function of `n`).
fn feature(body: &str) -> String {
    format!(
        "---\nname: parity\nphase: implementation\n---\n# Parity\n\n## Operations\n\n### double\nDoubles a number.\n\nInput:\n```yaml\ntype: object\nproperties:\n  n: {{type: integer}}\n  pad: {{type: string}}\nrequired: [n]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  value: {{type: integer}}\nrequired: [value]\n```\n\n```python\nimport time\n\ndef double(n, pad=None):\n{body}\n```\n"
    )
}

const SERVING: &str = "    return {\"value\": 2 * n}";
/// Differs from the serving version on every fifth input.
const CANDIDATE: &str = "    return {\"value\": 2 * n + (1 if n % 5 == 0 else 0)}";
/// Hangs on every fifth input, longer than the serving pod waits.
const HANGING: &str = "    if n % 5 == 0:\n        time.sleep(3)\n    return {\"value\": 2 * n}";

const TESTS: &str = "---\nfeature: parity\n---\n\n## one doubles to two\nOperation: double\nInput:\n```yaml\nn: 1\n```\nExpect:\n```yaml\nvalue: 2\n```\n";

/// A directory holding `parity.eol` with `body` and its tests.
fn feature_dir(body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("parity.eol"), feature(body)).unwrap();
    std::fs::write(dir.path().join("parity.test.eol"), TESTS).unwrap();
    dir
}

struct Server {
    child: tokio::process::Child,
    url: String,
    /// The Redis it uses.
    redis_url: String,
    /// Its shadow's id, when it is a candidate.
    shadow_id: Option<String>,
}

impl Server {
    /// The candidate's shadow token, as the operator reads it: from Redis,
    /// where the candidate made it.
    async fn token(&self) -> String {
        let id = self.shadow_id.as_deref().expect("a candidate");
        let client = redis::Client::open(self.redis_url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let token: Option<String> = redis::cmd("GET")
                .arg(token_key("parity", id))
                .query_async(&mut conn)
                .await
                .unwrap();
            if let Some(token) = token {
                return token;
            }
            assert!(Instant::now() < deadline, "candidate {id} made no token");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The servers use the test's Redis, so there is no local Redis of theirs to stop.
        let _ = self.child.start_kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `eol serve` of `dir`'s feature on `redis`, with `shadow` settings (none: a serving pod).
async fn start(dir: &std::path::Path, redis: &LocalRedis, shadow: &[(&str, String)]) -> Server {
    start_with(dir, redis, shadow, &[], &[]).await
}

/// [`start`] with more `args` and `vars`.
async fn start_with(
    dir: &std::path::Path,
    redis: &LocalRedis,
    shadow: &[(&str, String)],
    args: &[&str],
    vars: &[(&str, &str)],
) -> Server {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_eol"));
    command
        .args([
            "serve",
            "parity.eol",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("REDIS_URL", &redis.url)
        .env("EOL_EMBEDDINGS", "off")
        .env_remove("EOL_LLM_BASE_URL")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .args(args)
        .envs(vars.iter().copied())
        .kill_on_drop(true);
    for name in [
        env::ID,
        env::URL,
        env::SAMPLE_PERCENT,
        env::OPERATIONS,
        env::PREVIEW_BYTES,
        env::MAX_DISAGREEMENTS,
        env::TTL_SECONDS,
        env::TIMEOUT_SECONDS,
    ] {
        command.env_remove(name);
    }
    for (name, value) in shadow {
        // The candidate's URL is its own: known only once the port is.
        let value = if *name == env::URL { &url } else { value };
        command.env(name, value);
    }
    let server = Server {
        child: command.spawn().unwrap(),
        url,
        redis_url: redis.url.clone(),
        shadow_id: shadow
            .iter()
            .find(|(name, _)| *name == env::ID)
            .map(|(_, id)| id.clone()),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/readyz", server.url)).await
            && r.status() == 200
        {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "eol serve at {} did not become ready",
            server.url
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The settings of candidate `id` (its URL is filled in by [`start`]).
fn candidate_settings(id: &str, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut settings = vec![(env::ID, id.to_owned()), (env::URL, String::new())];
    settings.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    settings
}

async fn redis_conn(redis: &LocalRedis) -> redis::aio::ConnectionManager {
    common::store(redis).connection().await.unwrap()
}

/// Waits for the candidate's offer in Redis, then for the serving pods to
/// read it (they look every 2 s).
async fn wait_for_offer(redis: &LocalRedis) {
    let mut conn = redis_conn(redis).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let offer: Option<String> = redis::cmd("GET")
            .arg(offer_key("parity"))
            .query_async(&mut conn)
            .await
            .unwrap();
        if offer.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the candidate published no offer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(3000)).await;
}

/// Calls `double` on the serving pod with each of `inputs`; every call must
/// succeed, right, and within `max_latency`.
async fn call_all(serving: &Server, inputs: &[Value], max_latency: Duration) {
    let client = reqwest::Client::new();
    for input in inputs {
        let started = Instant::now();
        let r = client
            .post(format!("{}/v1/operations/double", serving.url))
            .json(input)
            .send()
            .await
            .unwrap();
        let latency = started.elapsed();
        assert_eq!(r.status(), 200, "{input}");
        let n = input["n"].as_i64().unwrap();
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"value": 2 * n}));
        assert!(
            latency < max_latency,
            "the serving call on {input} took {latency:?}"
        );
    }
}

async fn tally(candidate: &Server) -> Tally {
    let r = reqwest::Client::new()
        .get(format!("{}/v1/shadow/tally", candidate.url))
        .header(TOKEN_HEADER, candidate.token().await)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The tally once it counts `samples` (bounded wait).
async fn tally_of(candidate: &Server, samples: u64) -> Tally {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = tally(candidate).await;
        let counted: u64 = t.operations.iter().map(|o| o.samples()).sum();
        if counted >= samples {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "the tally counted {counted} samples, not {samples}: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn metrics(server: &Server) -> String {
    reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Inputs 0..n, padded so that their JSON is longer than a small preview.
fn inputs(n: i64) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"n": i, "pad": "x".repeat(100)}))
        .collect()
}

#[tokio::test]
async fn a_candidate_counts_agreements_and_shows_bounded_truncated_disagreements() {
    let redis = common::local_redis();
    let (serving_dir, candidate_dir) = (feature_dir(SERVING), feature_dir(CANDIDATE));
    let serving = start(serving_dir.path(), &redis, &[]).await;
    let candidate = start(
        candidate_dir.path(),
        &redis,
        &candidate_settings(
            "cand-1",
            &[
                (env::PREVIEW_BYTES, "20"),
                (env::MAX_DISAGREEMENTS, "3"),
                (env::TTL_SECONDS, "600"),
            ],
        ),
    )
    .await;

    // A pod that is not a candidate says so.
    let r = reqwest::get(format!("{}/v1/shadow/tally", serving.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "not_a_shadow_candidate");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a shadow candidate"),
        "{body}"
    );

    // A copy meant for another shadow (a stopping candidate's pod behind the
    // same Service gets it) is refused, not compared.
    let client = reqwest::Client::new();
    let token = candidate.token().await;
    let r = client
        .post(format!("{}/v1/shadow/double", candidate.url))
        .header(TOKEN_HEADER, &token)
        .json(&serde_json::json!({"input": {"n": 1}, "output": {"value": 2}, "id": "cand-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "wrong_candidate", "{body}");
    // The shadow endpoints answer only with the shadow's token: without it,
    // or with another, nobody runs the operation past the Feature's auth,
    // reads the samples or moves the canary share.
    let copy = json!({"input": {"n": 1}, "output": {"value": 2}, "id": "cand-1"});
    for presented in [None, Some("not-the-token"), Some("")] {
        let with = |r: reqwest::RequestBuilder| match presented {
            Some(t) => r.header(TOKEN_HEADER, t),
            None => r,
        };
        let attempts = [
            with(client.post(format!("{}/v1/shadow/double", candidate.url))).json(&copy),
            with(client.get(format!("{}/v1/shadow/tally", candidate.url))),
            with(client.put(format!("{}/v1/shadow/canary", candidate.url)))
                .json(&json!({"id": "cand-1", "percent": 100})),
        ];
        for attempt in attempts {
            let r = attempt.send().await.unwrap();
            let what = format!("{} with token {presented:?}", r.url());
            assert_eq!(r.status(), 401, "{what}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(
                body["error"]["kind"], "shadow_unauthorized",
                "{what}: {body}"
            );
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(TOKEN_HEADER),
                "{body}"
            );
        }
    }
    let r = client
        .post(format!("{}/v1/shadow/double", candidate.url))
        .header(TOKEN_HEADER, &token)
        .json(&copy)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "its own shadow's copy is answered");

    wait_for_offer(&redis).await;
    call_all(&serving, &inputs(50), Duration::from_secs(2)).await;

    let t = tally_of(&candidate, 50).await;
    assert_eq!(t.id, "cand-1");
    assert_eq!(t.operations.len(), 1, "{t:?}");
    let op = &t.operations[0];
    assert_eq!(
        (op.operation.as_str(), op.agree, op.disagree, op.error),
        ("double", 40, 10, 0)
    );
    assert_eq!(t.disagreements.len(), 3, "bounded by MAX_DISAGREEMENTS");
    for d in &t.disagreements {
        assert_eq!(d.verdict, Verdict::Disagree);
        let input = d.input.as_deref().unwrap();
        assert!(
            input.starts_with(r#"{"n":"#) && input.ends_with('…') && input.len() <= 20 + 3,
            "{input}"
        );
        assert!(d.serving.is_some() && d.candidate.is_some(), "{d:?}");
        assert!(d.reason.starts_with("value: "), "{}", d.reason);
    }
    // Newest first.
    assert!(t.disagreements.windows(2).all(|w| w[0].at >= w[1].at));

    let m = metrics(&serving).await;
    for line in [
        r#"eol_shadow_comparisons_total{operation="double",verdict="agree"} 40"#,
        r#"eol_shadow_comparisons_total{operation="double",verdict="disagree"} 10"#,
        r#"eol_shadow_duration_seconds_count{operation="double"} 50"#,
    ] {
        assert!(m.contains(line), "{line:?} missing:\n{m}");
    }
    assert!(!m.contains("eol_shadow_dropped_total{"), "{m}");

    let mut conn = redis_conn(&redis).await;
    let key = samples_key("parity", "cand-1");
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 600, "TTL of {key}: {ttl}");
    let kept: i64 = redis::cmd("LLEN")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kept, 50);

    // The candidate's runs left nothing beside the feature's data: no
    // examples, no test keyspaces, only the shadow's own keys.
    let keys = common::all_keys(&common::store(&redis)).await;
    assert!(
        keys.iter().all(|k| k.starts_with("eol:parity:shadow:")),
        "{keys:?}"
    );

    // The same tally from a candidate that shows no inputs or outputs.
    drop(candidate);
    let redacted = start(
        candidate_dir.path(),
        &redis,
        &candidate_settings(
            "cand-1",
            &[(env::PREVIEW_BYTES, "0"), (env::MAX_DISAGREEMENTS, "3")],
        ),
    )
    .await;
    let t = tally(&redacted).await;
    assert_eq!(t.operations[0].samples(), 50);
    assert_eq!(t.disagreements.len(), 3);
    for d in &t.disagreements {
        assert_eq!((&d.input, &d.serving, &d.candidate), (&None, &None, &None));
        assert!(!d.reason.is_empty());
    }
    let raw = reqwest::Client::new()
        .get(format!("{}/v1/shadow/tally", redacted.url))
        .header(TOKEN_HEADER, redacted.token().await)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!raw.contains("\"input\"") && !raw.contains("xxxx"), "{raw}");
}

#[tokio::test]
async fn a_hanging_candidate_never_slows_the_serving_pod_and_counts_as_error() {
    let redis = common::local_redis();
    let (serving_dir, candidate_dir) = (feature_dir(SERVING), feature_dir(HANGING));
    let serving = start(serving_dir.path(), &redis, &[]).await;
    let candidate = start(
        candidate_dir.path(),
        &redis,
        &candidate_settings(
            "hang-1",
            &[
                (env::TIMEOUT_SECONDS, "1"),
                (env::MAX_DISAGREEMENTS, "50"),
                (env::PREVIEW_BYTES, "1000"),
            ],
        ),
    )
    .await;
    wait_for_offer(&redis).await;
    // The candidate's calls sleep 3 s; the serving calls stay fast.
    call_all(&serving, &inputs(20), Duration::from_millis(900)).await;

    let t = tally_of(&candidate, 20).await;
    let op = &t.operations[0];
    assert_eq!(op.samples(), 20, "{t:?}");
    assert_eq!(op.disagree, 0, "{t:?}");
    // The four hanging inputs time out; others may too, queued behind them
    // on the candidate's few sandbox workers.
    assert!(op.error >= 4, "{t:?}");
    let errors: Vec<i64> = t
        .disagreements
        .iter()
        .map(|d| {
            assert_eq!(d.verdict, Verdict::Error);
            assert!(
                d.reason.contains("did not answer within 1s"),
                "{}",
                d.reason
            );
            serde_json::from_str::<Value>(d.input.as_deref().unwrap()).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(errors.len() as u64, op.error);
    for n in [0, 5, 10, 15] {
        assert!(errors.contains(&n), "{n} not an error: {errors:?}");
    }
    let m = metrics(&serving).await;
    assert!(
        m.contains(&format!(
            r#"eol_shadow_comparisons_total{{operation="double",verdict="error"}} {}"#,
            op.error
        )),
        "{m}"
    );

    // A candidate that is gone: every copy is an error, the serving pod is unaffected.
    drop(candidate);
    call_all(&serving, &inputs(5), Duration::from_millis(900)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let expected = format!(
        r#"eol_shadow_comparisons_total{{operation="double",verdict="error"}} {}"#,
        op.error + 5
    );
    while !metrics(&serving).await.contains(&expected) {
        assert!(Instant::now() < deadline, "{expected:?} never appeared");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_sample_share_of_zero_copies_nothing() {
    let redis = common::local_redis();
    let (serving_dir, candidate_dir) = (feature_dir(SERVING), feature_dir(CANDIDATE));
    let serving = start(serving_dir.path(), &redis, &[]).await;
    let candidate = start(
        candidate_dir.path(),
        &redis,
        &candidate_settings("none-1", &[(env::SAMPLE_PERCENT, "0")]),
    )
    .await;
    wait_for_offer(&redis).await;
    call_all(&serving, &inputs(20), Duration::from_secs(2)).await;
    // Copies would be sent right after each response: give them time to land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = tally(&candidate).await;
    assert_eq!((t.operations.len(), t.disagreements.len()), (0, 0), "{t:?}");
    let m = metrics(&serving).await;
    assert!(!m.contains("eol_shadow_comparisons_total{"), "{m}");
    let mut keys = common::all_keys(&common::store(&redis)).await;
    keys.sort();
    assert_eq!(
        keys,
        vec![token_key("parity", "none-1"), offer_key("parity")]
    );
}

#[tokio::test]
async fn a_candidate_that_shuts_down_withdraws_its_offer_and_nothing_more_is_copied() {
    let redis = common::local_redis();
    let (serving_dir, candidate_dir) = (feature_dir(SERVING), feature_dir(CANDIDATE));
    let serving = start(serving_dir.path(), &redis, &[]).await;
    let mut candidate = start(
        candidate_dir.path(),
        &redis,
        &candidate_settings("leaving-1", &[]),
    )
    .await;
    wait_for_offer(&redis).await;
    let pid = candidate.child.id().unwrap();
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(10), candidate.child.wait())
        .await
        .expect("the candidate shuts down on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let mut conn = redis_conn(&redis).await;
    let offer: Option<String> = redis::cmd("GET")
        .arg(offer_key("parity"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(offer, None, "the offer is withdrawn, not left to expire");
    // The serving pod looks every 2 s; then it copies nothing (no `error` verdicts).
    tokio::time::sleep(Duration::from_secs(3)).await;
    call_all(&serving, &inputs(10), Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let m = metrics(&serving).await;
    assert!(!m.contains("eol_shadow_comparisons_total{"), "{m}");
}

#[tokio::test]
async fn an_offer_whose_candidate_does_not_answer_yet_is_not_used() {
    let redis = common::local_redis();
    let serving_dir = feature_dir(SERVING);
    let serving = start(serving_dir.path(), &redis, &[]).await;
    // An offer as a candidate would publish it, at an address nothing listens on
    // (as a Service before its endpoints are programmed).
    let offer = eol_core::shadow::Offer {
        id: "unreachable-1".into(),
        url: format!("http://127.0.0.1:{}", free_port()),
        sample_percent: 100.0,
        operations: Vec::new(),
        max_disagreements: 5,
        ttl_seconds: 60,
        timeout_seconds: 1.0,
        canary_percent: 0.0,
        token: Default::default(),
    };
    let mut conn = redis_conn(&redis).await;
    let _: () = redis::cmd("SET")
        .arg(offer_key("parity"))
        .arg(serde_json::to_string(&offer).unwrap())
        .arg("EX")
        .arg(60)
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    call_all(&serving, &inputs(10), Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let m = metrics(&serving).await;
    assert!(
        !m.contains("eol_shadow_comparisons_total{"),
        "no copy is sent (and no error counted) before the candidate answers: {m}"
    );
}

/// A counter: `add` changes the feature's data, `total` reads it.
const COUNTER: &str = "---\nname: parity\nphase: implementation\n---\n# Counter\n\n## Operations\n\n### add\nAdds n to the total.\n\nInput:\n```yaml\ntype: object\nproperties:\n  n: {type: integer}\nrequired: [n]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  total: {type: integer}\nrequired: [total]\n```\n\n```python\ndef add(n):\n    return {\"total\": redis.incrby(\"total\", n)}\n```\n\n### total\nThe total.\n\nInput:\n```yaml\ntype: object\nproperties: {}\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  total: {type: integer}\nrequired: [total]\n```\n\n```python\ndef total():\n    value = redis.get(\"total\")\n    return {\"total\": int(value) if value is not None else 0}\n```\n";

const COUNTER_TESTS: &str = "---\nfeature: parity\n---\n\n## the total is a count\nOperation: total\nInput:\n```yaml\n{}\n```\nExpect:\n```yaml\ntotal: {type: integer, min: 0}\n```\n";

#[tokio::test]
async fn a_candidate_reads_the_feature_s_data_and_never_changes_it() {
    let redis = common::local_redis();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for dir in &dirs {
        std::fs::write(dir.path().join("parity.eol"), COUNTER).unwrap();
        std::fs::write(dir.path().join("parity.test.eol"), COUNTER_TESTS).unwrap();
    }
    let serving = start(dirs[0].path(), &redis, &[]).await;
    let candidate = start(
        dirs[1].path(),
        &redis,
        &candidate_settings("counter-1", &[]),
    )
    .await;
    wait_for_offer(&redis).await;
    let client = reqwest::Client::new();
    let call = |op: &'static str, input: Value| {
        let (client, url) = (
            client.clone(),
            format!("{}/v1/operations/{op}", serving.url),
        );
        async move {
            let r = client.post(url).json(&input).send().await.unwrap();
            assert_eq!(r.status(), 200, "{op} {input}");
            r.json::<Value>().await.unwrap()
        }
    };
    let mut expected = 0;
    for n in 1..=5 {
        expected += n;
        // Each copy runs after the serving call: waiting for its verdict
        // keeps the next write from landing before the candidate reads (on
        // live traffic, that skew is a reason for minAgreement below 100).
        assert_eq!(
            call("add", json!({"n": n})).await,
            json!({"total": expected})
        );
        tally_of(&candidate, 2 * n as u64 - 1).await;
        assert_eq!(call("total", json!({})).await, json!({"total": expected}));
        tally_of(&candidate, 2 * n as u64).await;
    }
    let t = tally_of(&candidate, 10).await;
    let count = |op: &str| {
        t.operations
            .iter()
            .find(|o| o.operation == op)
            .cloned()
            .unwrap()
    };
    // Reads of the feature's data agree: the candidate read the same keys.
    let total = count("total");
    assert_eq!(
        (total.agree, total.disagree, total.error),
        (5, 0, 0),
        "{t:?}"
    );
    // A write runs after the serving pod's, in scratch keys: the first add
    // agrees (nothing there yet), later ones see only their own write.
    let add = count("add");
    assert_eq!((add.agree, add.disagree), (1, 4), "{t:?}");
    // The candidate's five writes changed none of the feature's data.
    assert_eq!(call("total", json!({})).await, json!({"total": 15}));
    let mut conn = redis_conn(&redis).await;
    let stored: Option<String> = redis::cmd("GET")
        .arg("eol:parity:total")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some("15"));
    let scratch = common::all_keys(&common::store(&redis)).await;
    assert!(
        !scratch.iter().any(|k| k.contains(":test:")),
        "the candidate's scratch keys are cleared: {scratch:?}"
    );
}

/// `double` in the prototyping phase: the model answers.
const PROTOTYPED: &str = "---\nname: parity\nphase: prototyping\n---\n# Parity\n\n## Operations\n\n### double\nDoubles a number.\n\nInput:\n```yaml\ntype: object\nproperties:\n  n: {type: integer}\n  pad: {type: string}\nrequired: [n]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  value: {type: integer}\nrequired: [value]\n```\n";

#[tokio::test]
async fn a_prototyped_candidate_records_no_examples_for_the_feature() {
    let redis = common::local_redis();
    let serving_dir = feature_dir(SERVING);
    let candidate_dir = tempfile::tempdir().unwrap();
    std::fs::write(candidate_dir.path().join("parity.eol"), PROTOTYPED).unwrap();
    // The model always answers 2: right for n = 1 only.
    let llm = ScriptedServer::start(vec![Scripted::answer(r#"{"value": 2}"#); 5]).await;
    let serving = start(serving_dir.path(), &redis, &[]).await;
    // No test gate: its prototyped cases would record examples of their own.
    let candidate = start_with(
        candidate_dir.path(),
        &redis,
        &candidate_settings("proto-1", &[]),
        &["--no-test-gate"],
        &[
            ("EOL_LLM_BASE_URL", &llm.url),
            ("EOL_LLM_MODEL", "scripted"),
        ],
    )
    .await;
    wait_for_offer(&redis).await;
    let few: Vec<Value> = (1..=5).map(|n| json!({"n": n})).collect();
    call_all(&serving, &few, Duration::from_secs(2)).await;
    let t = tally_of(&candidate, 5).await;
    let op = &t.operations[0];
    assert_eq!((op.agree, op.disagree, op.error), (1, 4, 0), "{t:?}");
    assert_eq!(llm.request_count(), 5);
    let keys = common::all_keys(&common::store(&redis)).await;
    // The candidate's model calls are real spend, so they count in the
    // feature's usage; nothing else (no examples, no results) is written.
    assert!(
        keys.iter().any(|k| k.starts_with("eol:parity:usage:")),
        "the candidate's model spend is counted: {keys:?}"
    );
    assert!(
        keys.iter()
            .all(|k| k.starts_with("eol:parity:shadow:") || k.starts_with("eol:parity:usage:")),
        "a shadow call left keys beside the shadow's and the usage counters: {keys:?}"
    );
}
