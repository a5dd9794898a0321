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

/// A call's wall-clock limit in the serving pods (the runner's default; the
/// inventory fixture sets none).
pub const CALL_LIMIT: Duration = Duration::from_secs(10);

/// How many calls may time out waiting on a Redis that was `away` that long:
/// each of `callers` (calling one at a time) uses up [`CALL_LIMIT`] of the
/// absence per timeout, so none when Redis was back within the limit.
pub fn redis_timeouts_allowed(away: Duration, callers: usize) -> usize {
    callers * (away.as_secs_f64() / CALL_LIMIT.as_secs_f64()).floor() as usize
}

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

/// The ServiceAccount the tests call Features as: allowed to invoke every
/// Feature of its namespace.
pub const CALLER: &str = "eol-test-caller";

/// Tokens of [`CALLER`], by namespace.
static CALLER_TOKENS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// ServiceAccount `name` in the test's namespace; with `access`, a Role and
/// RoleBinding granting it verb `invoke` on `features/operations` named by
/// `access` (empty: every Feature of the namespace).
pub async fn service_account_with_access(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    access: Option<&[&str]>,
) {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let params = kube::api::PatchParams::apply("eol-kind-tests").force();
    let account: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .expect("an account");
    kube::Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .patch(name, &params, &kube::api::Patch::Apply(&account))
        .await
        .unwrap_or_else(|e| panic!("creating ServiceAccount {name}: {e}"));
    let Some(names) = access else {
        return;
    };
    let mut rule = serde_json::json!({"apiGroups": ["eol.dev"], "resources": ["features/operations"], "verbs": ["invoke"]});
    if !names.is_empty() {
        rule["resourceNames"] = serde_json::json!(names);
    }
    let role: Role = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": name}, "rules": [rule]
    }))
    .expect("a Role");
    kube::Api::<Role>::namespaced(client.clone(), namespace)
        .patch(name, &params, &kube::api::Patch::Apply(&role))
        .await
        .unwrap_or_else(|e| panic!("creating Role {name}: {e}"));
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    }))
    .expect("a RoleBinding");
    kube::Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .patch(name, &params, &kube::api::Patch::Apply(&binding))
        .await
        .unwrap_or_else(|e| panic!("creating RoleBinding {name}: {e}"));
}

/// A token of ServiceAccount `name` for `audience`, valid for an hour (TokenRequest).
pub async fn token(client: &kube::Client, namespace: &str, name: &str, audience: &str) -> String {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    let request: TokenRequest = serde_json::from_value(serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": [audience], "expirationSeconds": 3600}
    }))
    .expect("a TokenRequest");
    let issued: TokenRequest = kube::Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_subresource("token", name, &kube::api::PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("requesting a token of {name}: {e}"));
    issued.status.map(|s| s.token).unwrap_or_default()
}

/// A token of [`CALLER`] (created with its access on first use in a namespace).
pub async fn caller_token(env: &TestEnv) -> String {
    let cached = CALLER_TOKENS.lock().ok().and_then(|t| {
        t.iter()
            .find(|(ns, _)| *ns == env.namespace)
            .map(|(_, t)| t.clone())
    });
    if let Some(token) = cached {
        return token;
    }
    service_account_with_access(&env.client, &env.namespace, CALLER, Some(&[])).await;
    let token = token(
        &env.client,
        &env.namespace,
        CALLER,
        eol_core::runner_contract::DEFAULT_AUDIENCE,
    )
    .await;
    if let Ok(mut tokens) = CALLER_TOKENS.lock() {
        tokens.push((env.namespace.clone(), token.clone()));
    }
    token
}

/// POSTs `input` to operation `op` of the Feature's Service (its ClusterIP,
/// reachable from the node), as [`CALLER`].
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
    let token = caller_token(env).await;
    reqwest::Client::new()
        .post(format!("http://{ip}/v1/operations/{op}"))
        .bearer_auth(token)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_timeout_is_allowed_while_redis_is_back_within_a_call_s_limit() {
        let s = Duration::from_secs_f64;
        assert_eq!(redis_timeouts_allowed(s(2.1), 2), 0);
        assert_eq!(redis_timeouts_allowed(s(9.9), 2), 0);
        assert_eq!(redis_timeouts_allowed(s(14.7), 2), 2);
        assert_eq!(redis_timeouts_allowed(s(16.1), 1), 1);
        assert_eq!(redis_timeouts_allowed(s(21.0), 1), 2);
    }
}
