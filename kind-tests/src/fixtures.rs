//! What the cluster tests build and call: Features and FeatureRuns from JSON
//! specs, the example inventory feature, calls to a Feature's Service, the
//! events the operator published about an object, and the phase-switch
//! conditions a Feature goes through.

use crate::TestEnv;
use eol_core::crd::{Feature, FeatureRun};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use std::time::{Duration, Instant};

/// The example inventory feature (implementation phase, Redis-backed).
pub const INVENTORY: &str = include_str!("../../features/examples/inventory.eol");
/// Its tests.
pub const INVENTORY_TESTS: &str = include_str!("../../features/examples/inventory.test.eol");

/// The last line of the example's `stock_level`, which the variants of the
/// switch tests rewrite.
pub const INVENTORY_LEVEL_LINE: &str =
    r#"    return {"sku": sku, "level": int(value) if value is not None else 0}"#;

/// The example with `stock_level`'s last line replaced by `lines`.
pub fn inventory_returning(lines: &str) -> String {
    let source = INVENTORY.replace(INVENTORY_LEVEL_LINE, lines);
    assert_ne!(source, INVENTORY, "the fixture changed");
    source
}

/// The same answers, written differently: a new configuration that agrees.
pub fn agreeing_inventory() -> String {
    inventory_returning(
        "    level = int(value) if value is not None else 0\n    return {\"sku\": sku, \"level\": level}",
    )
}

/// Sets the inline source of Feature `name` (a merge patch).
pub async fn set_source(env: &TestEnv, name: &str, source: &str) {
    env.api::<Feature>()
        .patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"source": {"inline": source}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("patching the source of Feature {name}: {e}"));
}

/// The config hash the pod template of Deployment `name` carries.
pub async fn serving_hash(env: &TestEnv, name: &str) -> String {
    let d = env
        .api::<k8s_openapi::api::apps::v1::Deployment>()
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("no Deployment {name}: {e}"));
    d.spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .and_then(|a| a.get("eol.dev/config-hash").cloned())
        .unwrap_or_else(|| panic!("Deployment {name} has no config hash"))
}

/// A Feature named `name` with `spec` (JSON).
pub fn feature(name: &str, spec: serde_json::Value) -> Feature {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap_or_else(|e| panic!("not a Feature spec ({e})"))
}

/// A FeatureRun named `name` with `spec` (JSON).
pub fn feature_run(name: &str, spec: serde_json::Value) -> FeatureRun {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "eol.dev/v1alpha1", "kind": "FeatureRun",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap_or_else(|e| panic!("not a FeatureRun spec ({e})"))
}

/// POSTs `input` to operation `op` of the Feature's Service (its ClusterIP,
/// reachable from the node).
pub async fn call(
    env: &TestEnv,
    service: &str,
    op: &str,
    input: serde_json::Value,
) -> reqwest::Result<reqwest::Response> {
    let svc = env
        .api::<Service>()
        .get(service)
        .await
        .unwrap_or_else(|e| panic!("no Service {service}: {e}"));
    let ip = svc
        .spec
        .and_then(|s| s.cluster_ip)
        .unwrap_or_else(|| panic!("Service {service} has no ClusterIP"));
    reqwest::Client::new()
        .post(format!("http://{ip}/v1/operations/{op}"))
        // A call may wait out a restart of the namespace's Redis (up to 15 s).
        .timeout(Duration::from_secs(30))
        .json(&input)
        .send()
        .await
}

/// The Service's first successful answer. Until kube-proxy has programmed a
/// new Service, its address is not routed to the pods at all: connections
/// are refused, or leave through the default route (where this machine's
/// egress proxy answered 404). So: retry, for a while, anything but a 200.
pub async fn first_answer(
    env: &TestEnv,
    service: &str,
    op: &str,
    input: serde_json::Value,
) -> reqwest::Response {
    let start = Instant::now();
    loop {
        let last = match call(env, service, op, input.clone()).await {
            Ok(resp) if resp.status() == 200 => return resp,
            Ok(resp) => format!("HTTP {}", resp.status()),
            Err(e) => e.to_string(),
        };
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the Service did not answer within 20 s: {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The events published about the `kind` object `name`, oldest first, as
/// `(reason, note)`.
pub async fn events_about(env: &TestEnv, kind: &str, name: &str) -> Vec<(String, String)> {
    let list = env
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("failed to list events: {e}"));
    let mut events: Vec<Event> = list
        .items
        .into_iter()
        .filter(|e| {
            e.regarding
                .as_ref()
                .is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
        })
        .collect();
    events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    events
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// Polls the Feature until `done` holds for its status, recording every
/// distinct `PhaseSwitch` condition seen on the way as `(status, reason,
/// message)`. Panics after `timeout` with what was seen.
pub async fn switch_conditions_until(
    env: &TestEnv,
    name: &str,
    timeout: Duration,
    done: impl Fn(&Feature) -> bool,
) -> (Feature, Vec<(String, String, String)>) {
    let features = env.api::<Feature>();
    let start = Instant::now();
    let mut seen: Vec<(String, String, String)> = Vec::new();
    loop {
        if let Some(f) = features
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("failed to read Feature {name}: {e}"))
        {
            if let Some(c) = f
                .status
                .as_ref()
                .and_then(|s| crate::condition(&s.conditions, "PhaseSwitch"))
                && seen.last() != Some(&c)
            {
                seen.push(c);
            }
            if done(&f) {
                return (f, seen);
            }
        }
        assert!(
            start.elapsed() < timeout,
            "Feature {name}: not done within {timeout:?}; PhaseSwitch conditions seen: {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The tests' in-cluster client image (Debian's busybox-static: sh, wget),
/// loaded by `kind-tests/cluster.sh project-images`.
pub fn busybox_image() -> String {
    std::env::var("BUSYBOX_IMAGE").unwrap_or_else(|_| "localhost/eol/busybox:1.35".to_owned())
}

/// A connection to the namespace's managed Redis, through its Service's
/// ClusterIP (the node routes to it) and the password in its Secret.
pub async fn namespace_redis(env: &TestEnv) -> redis::aio::MultiplexedConnection {
    let secret = env
        .api::<k8s_openapi::api::core::v1::Secret>()
        .get("eol-redis")
        .await
        .unwrap_or_else(|e| panic!("no eol-redis Secret: {e}"));
    let password = secret
        .data
        .and_then(|d| d.get("password").cloned())
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .expect("the Redis password");
    let ip = env
        .api::<Service>()
        .get("eol-redis")
        .await
        .ok()
        .and_then(|s| s.spec?.cluster_ip)
        .expect("the eol-redis Service's ClusterIP");
    let client = redis::Client::open(format!("redis://:{password}@{ip}:6379"))
        .unwrap_or_else(|e| panic!("a Redis URL: {e}"));
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("failed to connect to the namespace's Redis at {ip}: {e}"))
}

/// The keys matching `pattern`, sorted.
pub async fn redis_keys(
    conn: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap_or_else(|e| panic!("SCAN {pattern} failed: {e}"));
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys
}
