//! Shadow switches on the real local cluster (`spec.rollout.strategy:
//! Shadow`): the candidate runs beside the serving pods, which copy every
//! call to it (samplePercent 100). A candidate that differs on a fifth of the
//! inputs is held with those inputs in the status; one that agrees promotes
//! itself and rolls out; a request loop runs through both with no failure;
//! and an operator killed mid-shadow resumes the count from Redis, neither
//! losing nor counting a sample twice.
#![allow(clippy::unwrap_used)]

use eol_core::crd::Feature;
use eol_kind_tests::cli::{get_row, kubectl_eol, text};
use eol_kind_tests::fixtures::{
    INVENTORY, INVENTORY_TESTS, agreeing_inventory, call, events_about, feature, first_answer,
    inventory_returning, namespace_redis, serving_hash, set_source,
};
use eol_kind_tests::{TestEnv, condition, feature_ready, in_namespace, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Pods pull no image and start in seconds here, but the tests gate readiness.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// One more unit for SKUs ending in 0 or 5: a fifth of `AB-1`..`AB-N`.
/// The tests (an unknown SKU ending in 2 has stock 0) still pass.
fn disagreeing_inventory() -> String {
    inventory_returning(
        "    level = int(value) if value is not None else 0\n    if sku.endswith(\"0\") or sku.endswith(\"5\"):\n        level = level + 1\n    return {\"sku\": sku, \"level\": level}",
    )
}

fn shadowed(source: &str, min_samples: i64) -> serde_json::Value {
    serde_json::json!({
        "source": {"inline": source},
        "tests": INVENTORY_TESTS,
        "replicas": 2,
        "rollout": {
            "strategy": "Shadow",
            "shadow": {"samplePercent": 100.0, "minAgreement": 95.0, "minSamples": min_samples, "window": "10m", "previewBytes": 64}
        }
    })
}

/// A bounded loop of `stock_level` calls through the Feature's Service,
/// over SKUs `AB-1`, `AB-2`, ...; counts successes and keeps every failure.
struct Loop {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Loop {
    fn start(env: &TestEnv) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let task = {
            let (env, stop, ok) = (env.clone(), stop.clone(), ok.clone());
            tokio::spawn(async move {
                let mut errors = Vec::new();
                for i in 1..=20_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let input = serde_json::json!({"sku": format!("AB-{i}")});
                    match call(&env, "inventory", "stock_level", input).await {
                        Ok(r) if r.status() == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        other => errors.push(format!(
                            "{} AB-{i}: {other:?}",
                            k8s_openapi::jiff::Timestamp::now()
                        )),
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                errors
            })
        };
        Self { stop, ok, task }
    }

    /// Stops the loop; the successful calls and the failures.
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let errors = self.task.await.unwrap();
        (self.ok.load(Ordering::Relaxed), errors)
    }
}

fn shadow_state(f: &Feature) -> Option<String> {
    f.status.as_ref()?.shadow.as_ref().map(|s| s.state.clone())
}

fn samples(f: &Feature) -> i64 {
    f.status
        .as_ref()
        .and_then(|s| s.shadow.as_ref())
        .map(|s| s.operations.iter().map(|o| o.samples).sum())
        .unwrap_or(0)
}

/// `eol_shadow_comparisons_total` summed over the serving pods, by verdict.
async fn comparisons_on_serving_pods(env: &TestEnv) -> BTreeMap<String, f64> {
    let pods = env
        .api::<Pod>()
        .list(
            &ListParams::default()
                .labels("app.kubernetes.io/name=eol-feature,app.kubernetes.io/instance=inventory"),
        )
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for pod in pods.items {
        let Some(ip) = pod.status.and_then(|s| s.pod_ip) else {
            continue;
        };
        let text = reqwest::get(format!("http://{ip}:8080/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("eol_shadow_comparisons_total{") else {
                continue;
            };
            let (labels, value) = rest.rsplit_once("} ").unwrap();
            let verdict = labels
                .split(',')
                .find_map(|kv| kv.strip_prefix("verdict=\""))
                .unwrap()
                .trim_end_matches('"')
                .to_owned();
            *out.entry(verdict).or_insert(0.0) += value.trim().parse::<f64>().unwrap();
        }
    }
    out
}

/// The verdict counts of shadow `id` in the namespace's Redis, by verdict.
async fn counts_in_redis(env: &TestEnv, id: &str) -> BTreeMap<String, i64> {
    let mut conn = namespace_redis(env).await;
    let key = eol_core::shadow::counts_key("inventory", id);
    let fields: BTreeMap<String, i64> = redis::cmd("HGETALL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for (field, n) in fields {
        let verdict = field.rsplit(':').next().unwrap().to_owned();
        *out.entry(verdict).or_insert(0) += n;
    }
    out
}

#[tokio::test]
async fn a_disagreeing_candidate_is_held_and_an_agreeing_one_promotes_itself_with_zero_failed_requests()
 {
    in_namespace("shadow", |env| async move {
        env.create(&feature("inventory", shadowed(INVENTORY, 20)))
            .await;
        let features = env.api::<Feature>();
        wait_for(&features, "inventory", READY_TIMEOUT, |f| {
            feature_ready(f) && f.status.as_ref().is_some_and(|s| s.ready_replicas == 2)
        })
        .await;
        let first = serving_hash(&env, "inventory").await;
        first_answer(
            &env,
            "inventory",
            "stock_level",
            serde_json::json!({"sku": "AB-0"}),
        )
        .await;
        let looping = Loop::start(&env);

        // 1. A fifth of the answers differ: held, the old pods keep serving.
        set_source(&env, "inventory", &disagreeing_inventory()).await;
        let held = wait_for(&features, "inventory", READY_TIMEOUT, |f| {
            f.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "PhaseSwitch"))
                .is_some_and(|c| c.0 == "False")
        })
        .await;
        let status = held.status.clone().unwrap();
        let switch = condition(&status.conditions, "PhaseSwitch").unwrap();
        assert_eq!(switch.1, "Disagreement", "{switch:?}");
        let shadow = status.shadow.clone().unwrap();
        assert_eq!(shadow.state, "Held");
        assert_eq!(
            status.failed_config.as_deref(),
            Some(shadow.candidate.as_str())
        );
        let op = shadow
            .operations
            .iter()
            .find(|o| o.name == "stock_level")
            .unwrap();
        assert!(op.samples >= 20, "decided at minSamples: {op:?}");
        assert!(op.disagree > 0 && op.agree > 0, "{op:?}");
        assert_eq!(op.errors, 0, "the candidate answered every sample: {op:?}");
        eprintln!("held: {op:?}");
        // Exactly the SKUs ending in 0 or 5 disagree, and the status shows them.
        assert!(!shadow.disagreements.is_empty());
        assert!(
            shadow.disagreements.len() <= 5,
            "bounded: {:?}",
            shadow.disagreements
        );
        for d in &shadow.disagreements {
            let input = d.input.as_deref().unwrap();
            assert!(
                input.ends_with("0\"}") || input.ends_with("5\"}"),
                "only SKUs ending in 0 or 5 differ: {d:?}"
            );
            assert!(d.reason.contains("level"), "the field that differs: {d:?}");
        }
        assert!(
            switch.2.contains("AB-"),
            "the message names a disagreeing input: {}",
            switch.2
        );
        // `kubectl eol compare` and the tree show the held comparison.
        let config = std::path::Path::new(&eol_kind_tests::kubeconfig()).to_owned();
        let out = kubectl_eol(&config, &["compare", "inventory", "-n", &env.namespace]);
        let compared = text(&out.stdout);
        assert!(out.status.success(), "{compared}{}", text(&out.stderr));
        eprintln!("kubectl eol compare:\n{compared}");
        assert!(
            compared.starts_with(&format!(
                "candidate {} ({}), Held",
                shadow.candidate, shadow.id
            )),
            "{compared}"
        );
        let row: Vec<i64> = compared
            .lines()
            .find(|l| l.starts_with("stock_level "))
            .unwrap_or_else(|| panic!("no stock_level row:\n{compared}"))
            .split_whitespace()
            .skip(1)
            .take(4)
            .map(|n| n.parse().unwrap())
            .collect();
        assert!(
            row[0] >= op.samples && row[2] > 0 && row[0] == row[1] + row[2] + row[3],
            "{row:?}"
        );
        assert!(compared.contains("stock_level disagree at "), "{compared}");
        assert!(
            compared.contains("  serving    {"),
            "the outputs side by side:\n{compared}"
        );
        let out = kubectl_eol(
            &config,
            &["get", "feature", "inventory", "-n", &env.namespace],
        );
        let tree = text(&out.stdout);
        assert!(
            tree.contains(&format!("Shadow:      candidate {} Held", shadow.candidate)),
            "{tree}"
        );
        assert!(
            tree.contains("inventory-candidate"),
            "the candidate's Deployment:\n{tree}"
        );
        // The settings reached the candidate's pods (read back from the cluster).
        let candidate = env
            .api::<Deployment>()
            .get("inventory-candidate")
            .await
            .unwrap();
        let vars: BTreeMap<String, String> =
            candidate.spec.unwrap().template.spec.unwrap().containers[0]
                .env
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|e| Some((e.name, e.value?)))
                .collect();
        assert_eq!(
            vars.get("EOL_SHADOW_SAMPLE_PERCENT").map(String::as_str),
            Some("100"),
            "{vars:?}"
        );
        assert_eq!(
            vars.get("EOL_SHADOW_PREVIEW_BYTES").map(String::as_str),
            Some("64"),
            "{vars:?}"
        );
        assert_eq!(vars.get("EOL_SHADOW_ID"), Some(&shadow.id), "{vars:?}");
        for d in &shadow.disagreements {
            // previewBytes 64: at most 64 bytes of JSON, and "…" when cut.
            assert!(
                d.input.as_deref().unwrap().len() <= 64 + '…'.len_utf8(),
                "{d:?}"
            );
        }
        // The samples stay in the feature's Redis, with a TTL.
        let mut conn = namespace_redis(&env).await;
        let key = eol_core::shadow::samples_key("inventory", &shadow.id);
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let kept: i64 = redis::cmd("LLEN")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            ttl > 0 && kept >= op.samples,
            "{key}: TTL {ttl}, {kept} samples"
        );
        let events = events_about(&env, "Feature", "inventory").await;
        assert!(
            events
                .iter()
                .any(|(reason, note)| reason == "Disagreement" && note.contains("AB-")),
            "{events:#?}"
        );
        assert_eq!(
            serving_hash(&env, "inventory").await,
            first,
            "the old configuration keeps serving"
        );
        let row = get_row("features", &env.namespace, "inventory", false);
        assert_eq!(
            row.get("AGREEMENT").map(String::as_str),
            shadow.agreement.as_deref(),
            "kubectl get features shows the agreement: {row:?}"
        );
        // Held until the spec changes: the candidate is stopped and nothing is retried.
        wait_for(
            &env.api::<Deployment>(),
            "inventory-candidate",
            Duration::from_secs(30),
            |d| d.spec.as_ref().and_then(|s| s.replicas) == Some(0),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let still = features.get("inventory").await.unwrap();
        assert_eq!(shadow_state(&still).as_deref(), Some("Held"));
        assert_eq!(serving_hash(&env, "inventory").await, first);

        // 2. Answers that agree: promoted, then rolled out as usual.
        set_source(&env, "inventory", &agreeing_inventory()).await;
        let done = wait_for(&features, "inventory", READY_TIMEOUT, |f| {
            let s = f.status.as_ref();
            shadow_state(f).as_deref() == Some("Promoted")
                && s.and_then(|s| condition(&s.conditions, "PhaseSwitch"))
                    .is_some_and(|c| c.1 == "Complete")
                && s.is_some_and(|s| s.ready_replicas == 2)
        })
        .await;
        let status = done.status.unwrap();
        let shadow = status.shadow.unwrap();
        let op = shadow
            .operations
            .iter()
            .find(|o| o.name == "stock_level")
            .unwrap();
        assert!(
            op.samples >= 20 && op.agree == op.samples,
            "{op:?}; disagreements: {:#?}",
            shadow.disagreements
        );
        eprintln!("promoted: {op:?}");
        assert!(
            shadow.disagreements.is_empty(),
            "{:?}",
            shadow.disagreements
        );
        assert_eq!(status.config.as_deref(), Some(shadow.candidate.as_str()));
        assert_eq!(
            serving_hash(&env, "inventory").await,
            shadow.candidate,
            "the candidate serves"
        );
        let events = events_about(&env, "Feature", "inventory").await;
        assert!(
            events.iter().any(|(r, _)| r == "ShadowPromoted"),
            "{events:#?}"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (ok, errors) = looping.finish().await;
        eprintln!(
            "requests through both shadows: {ok} ok, {} failed",
            errors.len()
        );
        assert!(ok > 50, "the loop ran through both shadows ({ok} requests)");
        assert!(errors.is_empty(), "failed requests: {errors:#?}");
    })
    .await;
}

#[tokio::test]
async fn an_operator_killed_mid_shadow_resumes_the_count_without_losing_or_double_counting() {
    in_namespace("shadow-kill", |env| async move {
        // minSamples is out of reach: the shadow samples until the test ends.
        env.create(&feature("inventory", shadowed(INVENTORY, 100_000)))
            .await;
        let features = env.api::<Feature>();
        wait_for(&features, "inventory", READY_TIMEOUT, |f| {
            feature_ready(f) && f.status.as_ref().is_some_and(|s| s.ready_replicas == 2)
        })
        .await;
        first_answer(
            &env,
            "inventory",
            "stock_level",
            serde_json::json!({"sku": "AB-0"}),
        )
        .await;
        set_source(&env, "inventory", &agreeing_inventory()).await;
        wait_for(&features, "inventory", READY_TIMEOUT, |f| {
            shadow_state(f).as_deref() == Some("Sampling")
        })
        .await;
        // The serving pods poll for the candidate's offer every 2 s.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let looping = Loop::start(&env);
        wait_for(&features, "inventory", Duration::from_secs(60), |f| {
            samples(f) >= 10
        })
        .await;
        env.operator.lock().await.kill().await;
        // Samples go on being compared and counted while no operator runs.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (ok, errors) = looping.finish().await;
        assert!(errors.is_empty(), "failed requests: {errors:#?}");
        let id = features
            .get("inventory")
            .await
            .unwrap()
            .status
            .unwrap()
            .shadow
            .unwrap()
            .id;
        // The last sample's verdict is recorded off the response path.
        let start = Instant::now();
        let in_redis = loop {
            let counts = counts_in_redis(&env, &id).await;
            if counts.values().sum::<i64>() as usize >= ok
                || start.elapsed() > Duration::from_secs(30)
            {
                break counts;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        env.operator.lock().await.restart();
        let total = in_redis.values().sum::<i64>();
        let resumed = wait_for(&features, "inventory", Duration::from_secs(60), |f| {
            samples(f) == total
        })
        .await;
        let on_pods = comparisons_on_serving_pods(&env).await;
        eprintln!(
            "loop calls {ok}; Redis {in_redis:?}; serving pods {on_pods:?}; status {}",
            samples(&resumed)
        );
        assert_eq!(
            total as usize, ok,
            "every call of the loop was sampled once: Redis {in_redis:?}"
        );
        assert_eq!(
            on_pods.values().sum::<f64>() as i64,
            total,
            "serving pods {on_pods:?}"
        );
        assert_eq!(in_redis.get("agree").copied(), Some(total), "{in_redis:?}");
        let shadow = resumed.status.unwrap().shadow.unwrap();
        assert_eq!(shadow.id, id, "the same shadow resumed");
        assert_eq!(shadow.state, "Sampling");
        // Nothing is counted twice when the operator reads again later.
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert_eq!(samples(&features.get("inventory").await.unwrap()), total);
        the_candidate_answers_only_with_the_shadow_token(&env, &id).await;
    })
    .await;
}

/// On the candidate's real pod: its shadow endpoints refuse a request
/// without the shadow's token, or with another, and answer one with the
/// token the candidate made in the namespace's Redis (where the operator,
/// which counted the samples above through them, read it).
async fn the_candidate_answers_only_with_the_shadow_token(env: &TestEnv, id: &str) {
    use eol_core::shadow::{TOKEN_HEADER, token_key};
    let pods = env
        .api::<Pod>()
        .list(&ListParams::default().labels(
            "app.kubernetes.io/name=eol-feature-candidate,app.kubernetes.io/instance=inventory",
        ))
        .await
        .unwrap();
    let ip = pods
        .items
        .iter()
        .find_map(|p| p.status.as_ref()?.pod_ip.clone())
        .expect("a candidate pod with an IP");
    let base = format!("http://{ip}:8080");
    let mut conn = namespace_redis(env).await;
    let token: Option<String> = redis::cmd("GET")
        .arg(token_key("inventory", id))
        .query_async(&mut conn)
        .await
        .unwrap();
    let token = token.expect("the candidate made the shadow's token in Redis");
    assert!(token.len() >= 32, "a long random token");
    let client = reqwest::Client::new();
    for presented in [None, Some("guess")] {
        let with = |r: reqwest::RequestBuilder| match presented {
            Some(t) => r.header(TOKEN_HEADER, t),
            None => r,
        };
        for request in [
            with(client.get(format!("{base}/v1/shadow/tally"))),
            with(client.put(format!("{base}/v1/shadow/canary")))
                .json(&serde_json::json!({"id": id, "percent": 100})),
            with(client.post(format!("{base}/v1/shadow/stock_level"))).json(
                &serde_json::json!({"input": {"sku": "AB-1"}, "output": {"level": 0}, "id": id}),
            ),
        ] {
            let r = request.send().await.unwrap();
            let what = format!("{} {presented:?}", r.url());
            assert_eq!(r.status(), 401, "{what}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(
                body["error"]["kind"], "shadow_unauthorized",
                "{what}: {body}"
            );
        }
    }
    let r = client
        .get(format!("{base}/v1/shadow/tally"))
        .header(TOKEN_HEADER, &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the tally with the token");
    let tally: serde_json::Value = r.json().await.unwrap();
    assert_eq!(tally["id"], id, "{tally}");
}

#[tokio::test]
async fn a_compare_rule_naming_an_unknown_field_is_spec_invalid_with_its_location() {
    in_namespace("shadow-rule", |env| async move {
        let source = INVENTORY.replacen(
            "required: [sku, level]\n```\n",
            "required: [sku, level]\n```\n\nCompare:\n```yaml\nfields: [sku, levle]\n```\n",
            1,
        );
        assert_ne!(source, INVENTORY, "the fixture changed");
        env.create(&feature("inventory", shadowed(&source, 20)))
            .await;
        let f = wait_for(
            &env.api::<Feature>(),
            "inventory",
            Duration::from_secs(60),
            |f| {
                f.status
                    .as_ref()
                    .and_then(|s| condition(&s.conditions, "SpecValid"))
                    .is_some_and(|c| c.0 == "False")
            },
        )
        .await;
        let (_, reason, message) = condition(&f.status.unwrap().conditions, "SpecValid").unwrap();
        assert_eq!(reason, "ParseError");
        assert!(
            message.starts_with(&format!(
                "Feature {}/inventory spec.source.inline:",
                env.namespace
            )) && message.contains(
                "Compare 'fields' names 'levle', which is not a field of the Output schema"
            ),
            "{message}"
        );
        assert!(
            env.api::<Deployment>()
                .get_opt("inventory")
                .await
                .unwrap()
                .is_none(),
            "nothing is created from an invalid source"
        );
    })
    .await;
}
