//! `eol serve` as a Feature's pods run it: HTTP calls, readiness gated by the
//! tests, metrics, and a graceful shutdown on SIGTERM.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

mod common;

use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::server::{audit_records, metrics, post, start, start_with, wait_ready};

#[tokio::test]
async fn operations_are_served_once_the_tests_pass_and_counted_in_metrics() {
    let server = start(&common::examples(), "inventory.eol").await;
    assert_eq!(wait_ready(&server).await, (200, "ready".to_owned()));

    let (status, out) = post(&server, "add_stock", r#"{"sku": "SRV-1", "quantity": 2}"#).await;
    assert_eq!((status, out["sku"].clone()), (200, json!("SRV-1")));
    let (status, err) = post(&server, "add_stock", r#"{"sku": "SRV-1", "quantity": 0}"#).await;
    assert_eq!(status, 422);
    assert_eq!(err["error"]["kind"], "invalid_input");
    let (status, err) = post(&server, "nope", "{}").await;
    assert_eq!(
        (status, err["error"]["kind"].clone()),
        (404, json!("unknown_operation"))
    );
    let (status, err) = post(&server, "add_stock", "not json").await;
    assert_eq!(
        (status, err["error"]["kind"].clone()),
        (400, json!("invalid_json"))
    );

    let metrics = metrics(&server).await;
    assert!(metrics.contains(r#"eol_execution_duration_seconds_count{operation="add_stock",phase="implementation"} 1"#), "{metrics}");
    assert!(
        metrics.contains(r#"eol_errors_total{operation="add_stock",kind="invalid_input"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_bodies_get_json_errors_and_every_call_leaves_an_audit_record() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut server = start_with(
        &common::examples(),
        "inventory.eol",
        &[("EOL_AUDIT", "stdout")],
        Stdio::piped(),
    )
    .await;
    let stdout = server.child.stdout.take().unwrap();
    assert_eq!(wait_ready(&server).await, (200, "ready".to_owned()));

    let body = r#"{"sku": "AUD-1", "quantity": 2}"#;
    let (status, _) = post(&server, "add_stock", body).await;
    assert_eq!(status, 200);
    // Over the 2 MiB limit: 413, JSON.
    let huge = format!(
        r#"{{"sku": "{}", "quantity": 1}}"#,
        "A".repeat(3 * 1024 * 1024)
    );
    let (status, err) = post(&server, "add_stock", &huge).await;
    assert_eq!(
        (status, err["error"]["kind"].clone()),
        (413, json!("body_too_large"))
    );
    // A client that sends half its headers and stops: the connection is
    // closed once the header timeout passes (it was held open for good).
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut half = tokio::net::TcpStream::connect(&address).await.unwrap();
    half.write_all(
        format!("POST /v1/operations/add_stock HTTP/1.1\r\nhost: {address}\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let half_sent = Instant::now();
    // A client that promises a body and stops sending: 408 once the body timeout passes.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(
        format!("POST /v1/operations/add_stock HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"sku\"").as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("}}") {
        let n = tokio::time::timeout(Duration::from_secs(30), slow.read(&mut buf))
            .await
            .expect("the server answers a slow client")
            .unwrap();
        assert!(
            n > 0,
            "the server closed without answering: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""kind":"body_timeout""#), "{answer}");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), half.read_to_end(&mut rest))
        .await
        .expect("the server closes a connection whose headers never end");
    assert!(closed.is_ok() || rest.is_empty(), "{closed:?}");
    let waited = half_sent.elapsed();
    assert!(
        (Duration::from_secs(9)..Duration::from_secs(20)).contains(&waited),
        "closed after {waited:?}: {}",
        String::from_utf8_lossy(&rest)
    );
    // An operation the feature does not have is one label, whatever its name.
    for name in ["nope", "nada"] {
        assert_eq!(post(&server, name, "{}").await.0, 404);
    }
    let metrics = metrics(&server).await;
    assert!(
        metrics.contains(r#"eol_errors_total{operation="(unknown)",kind="unknown_operation"} 2"#),
        "{metrics}"
    );

    // Five calls, five records, in order, each a line of JSON on stdout.
    let records = audit_records(stdout, 5).await;
    let ok = &records[0];
    assert_eq!(ok["record"], "eol.audit");
    assert_eq!(
        (ok["user"].clone(), ok["groups"].clone()),
        (json!("system:anonymous"), json!(["system:unauthenticated"]))
    );
    assert_eq!(
        (ok["feature"].clone(), ok["operation"].clone()),
        (json!("inventory"), json!("add_stock"))
    );
    assert_eq!(
        (
            ok["phase"].clone(),
            ok["outcome"].clone(),
            ok["status"].clone()
        ),
        (json!("implementation"), json!("ok"), json!(200))
    );
    let sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(body.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(ok["input_sha256"], sha.as_str());
    assert!(ok["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(ok.get("input").is_none(), "no input unless asked: {ok}");
    let outcomes: Vec<(Value, Value)> = records
        .iter()
        .map(|r| (r["outcome"].clone(), r["status"].clone()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (json!("ok"), json!(200)),
            (json!("body_too_large"), json!(413)),
            (json!("body_timeout"), json!(408)),
            (json!("unknown_operation"), json!(404)),
            (json!("unknown_operation"), json!(404)),
        ]
    );
    assert!(
        records[1].get("input_sha256").is_none(),
        "a body never read has no hash"
    );
}

#[tokio::test]
async fn kubernetes_auth_without_a_cluster_fails_at_start_saying_why() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_eol"))
        .args(["serve", "inventory.eol", "--listen", "127.0.0.1:0"])
        .env("EOL_AUTH", "kubernetes")
        .env("EOL_AUTH_NAMESPACE", "shop")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .current_dir(common::examples())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no Kubernetes API to review callers' tokens with"),
        "{stderr}"
    );

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_eol"))
        .args(["serve", "inventory.eol", "--listen", "127.0.0.1:0"])
        .env("EOL_AUTH", "basic")
        .current_dir(common::examples())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("EOL_AUTH"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_api_server_that_cannot_be_reached_gives_503_and_nothing_is_cached() {
    // A kubeconfig naming an API server that is gone (a port just closed).
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = gone.local_addr().unwrap().port();
    drop(gone);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: gone, cluster: {{server: \"https://127.0.0.1:{port}\", insecure-skip-tls-verify: true}}}}]\nusers: [{{name: u, user: {{token: reviewer}}}}]\ncontexts: [{{name: c, context: {{cluster: gone, user: u}}}}]\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    let kubeconfig = kubeconfig.to_str().unwrap().to_owned();
    let mut server = start_with(
        &common::examples(),
        "inventory.eol",
        &[
            ("EOL_AUTH", "kubernetes"),
            ("EOL_AUTH_NAMESPACE", "shop"),
            ("KUBECONFIG", &kubeconfig),
            ("EOL_AUDIT", "stdout"),
        ],
        Stdio::piped(),
    )
    .await;
    let stdout = server.child.stdout.take().unwrap();
    assert_eq!(wait_ready(&server).await, (200, "ready".to_owned()));
    let call = |token: &'static str| {
        reqwest::Client::new()
            .post(format!("{}/v1/operations/stock_level", server.url))
            .bearer_auth(token)
            .json(&json!({"sku": "GONE-1"}))
            .send()
    };
    // Twice with one token: a failed review is not kept, the second asks again.
    for _ in 0..2 {
        let answer = call("some-token").await.unwrap();
        assert_eq!(answer.status(), 503);
        assert_eq!(answer.headers()["retry-after"], "1", "ask again soon");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["kind"], "auth_unavailable", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("TokenReview"),
            "{body}"
        );
    }
    // No token at all is the caller's fault, not the API server's: 401 without asking it.
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/operations/stock_level", server.url))
        .json(&json!({"sku": "GONE-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let outcomes: Vec<(Value, Value)> = audit_records(stdout, 3)
        .await
        .iter()
        .map(|r| (r["outcome"].clone(), r["status"].clone()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (json!("auth_unavailable"), json!(503)),
            (json!("auth_unavailable"), json!(503)),
            (json!("unauthenticated"), json!(401)),
        ]
    );
}

const SLEEPY: &str = "---\nname: sleepy\nphase: implementation\n---\n# Sleepy\n\n## Operations\n\n### slow\nTakes its time.\n\nInput:\n```yaml\ntype: object\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  done: {type: boolean}\nrequired: [done]\n```\n\n```python\nimport time\n\ndef slow():\n    time.sleep(1.5)\n    return {\"done\": True}\n```\n";
const SLEEPY_TESTS: &str = "---\nfeature: sleepy\n---\n\n## claims to be undone\nOperation: slow\nInput:\n```yaml\n{}\n```\nExpect:\n```yaml\ndone: false\n```\n";

#[tokio::test]
async fn failing_tests_keep_the_server_unready_and_sigterm_drains_in_flight_calls() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sleepy.eol"), SLEEPY).unwrap();
    std::fs::write(dir.path().join("sleepy.test.eol"), SLEEPY_TESTS).unwrap();
    let mut server = start(dir.path(), "sleepy.eol").await;
    let (status, body) = wait_ready(&server).await;
    assert_eq!(status, 503);
    assert!(
        body.contains("tests failed: 'claims to be undone': /done: expected false, got true"),
        "{body}"
    );

    // A call in flight when SIGTERM arrives still completes.
    let url = server.url.clone();
    let call = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{url}/v1/operations/slow"))
            .body("{}")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let pid = server.child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // For a moment after SIGTERM it still answers, telling callers to close
    // their connections, so none sends on a connection as it closes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let draining = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap();
    assert_eq!(draining.status(), 200);
    assert_eq!(draining.headers()["connection"], "close");
    assert_eq!(call.await.unwrap(), 200, "the in-flight call finished");
    let exit = tokio::time::timeout(Duration::from_secs(10), server.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

const WORDS: &str = "---\nname: words\nphase: implementation\ncache:\n  results: [count]\n---\n# Words\n\n## Operations\n\n### count\nCounts the words of a text.\n\nInput:\n```yaml\ntype: object\nproperties:\n  text: {type: string}\nrequired: [text]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  words: {type: integer}\nrequired: [words]\n```\n\n```python\ndef count(text):\n    return {\"words\": len(text.split())}\n```\n";

#[tokio::test]
async fn cached_results_are_marked_and_counted_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("words.eol"), WORDS).unwrap();
    let server = start(dir.path(), "words.eol").await;
    assert_eq!(wait_ready(&server).await, (200, "ready".to_owned()));
    let client = reqwest::Client::new();
    let mut served_by = Vec::new();
    for _ in 0..2 {
        let r = client
            .post(format!("{}/v1/operations/count", server.url))
            .body(r#"{"text": "one two three"}"#)
            .send()
            .await
            .unwrap();
        served_by.push(
            r.headers()
                .get("x-eol-cache")
                .map(|v| v.to_str().unwrap().to_owned()),
        );
        assert_eq!(r.json::<Value>().await.unwrap(), json!({"words": 3}));
    }
    assert_eq!(served_by, [None, Some("result".to_owned())]);
    let metrics = metrics(&server).await;
    for line in [
        "# TYPE eol_cache_hits counter",
        r#"eol_cache_hits_total{type="result",hit="true"} 1"#,
        r#"eol_cache_hits_total{type="result",hit="false"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line:?} missing:\n{metrics}");
    }
}

#[tokio::test]
async fn tests_spoiled_by_a_redis_outage_run_again_once_it_answers() {
    // Redis goes away for 6 s just as the server starts its tests.
    let mut redis = common::local_redis();
    let url = redis.url.clone();
    let outage = std::thread::spawn(move || {
        redis.restart(Duration::from_secs(6)).unwrap();
        redis
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let server = start_with(
        &common::examples(),
        "inventory.eol",
        // A call gives up on Redis after 2 s: the outage outlasts it.
        &[("REDIS_URL", url.as_str()), ("EOL_CALL_TIMEOUT", "2")],
        Stdio::null(),
    )
    .await;
    // The first run fails against the missing Redis; the gate waits for it
    // and runs the tests again: ready, not "tests failed".
    assert_eq!(wait_ready(&server).await, (200, "ready".to_owned()));
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "ready only after Redis came back ({:?})",
        started.elapsed()
    );
    let _redis = outage.join().unwrap();
    let (status, out) = post(&server, "add_stock", r#"{"sku": "BACK-1", "quantity": 1}"#).await;
    assert_eq!((status, out["level"].clone()), (200, json!(1)));
}
