//! The operator's read-only web dashboard (`webDashboard.enabled=true` in the
//! chart), as a user opens it: in headless Chromium (Debian's
//! `chromium-headless-shell`) through `kubectl port-forward`, and through the
//! API server's service proxy with the viewer's own token. A Feature with an
//! implemented, result-cached operation and a prototyped one (answered by the
//! local model, priced) is called, run and switched; the page shows it, its
//! charts fill, and a `kubectl patch` shows up without a reload. Screenshots
//! are kept in `~/.cache/eol/artifacts/dashboard/` (or `$EOL_ARTIFACTS`).
//!
//! Needs the cluster and the project images, helm, the local model on
//! `0.0.0.0` (`EOL_LLM_BASE_URL`, as `scripts/test.sh` starts it) and Chromium
//! (`scripts/test.sh` installs it).

use eol_core::crd::{Feature, FeatureRun};
use eol_kind_tests::browser::{Browser, artifacts_dir};
use eol_kind_tests::cli::{kubectl, must, tools};
use eol_kind_tests::release::{RELEASE, with_release};
use eol_kind_tests::{assert_succeeded, client, feature_ready, run_finished, wait_for};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A cold runner pod, the managed Redis and a model answer on a busy node.
const TIMEOUT: Duration = Duration::from_secs(240);

/// `count` is implemented and its results cached (repeated inputs hit);
/// `mood` is prototyped: the model answers it, at the chart's price.
const WORDS: &str = "---\nname: words\nphase: hybrid\ncache:\n  results: [count]\n---\n# Words\n\n## Operations\n\n### count\nPhase: implementation\n\nCounts the words of a text.\n\nInput:\n```yaml\ntype: object\nproperties:\n  text: {type: string}\nrequired: [text]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  words: {type: integer}\nrequired: [words]\n```\n\n```python\ndef count(text):\n    return {\"words\": len(text.split())}\n```\n\n### mood\nPhase: prototyping\n\nSays whether the text sounds happy or sad.\n\nInput:\n```yaml\ntype: object\nproperties:\n  text: {type: string}\nrequired: [text]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  mood: {type: string, enum: [happy, sad]}\nrequired: [mood]\n```\n";

/// The model values of the README's "A model on this machine", with a price.
async fn model_values(client: &Client) -> Vec<String> {
    let url = std::env::var("EOL_LLM_BASE_URL").expect(
        "EOL_LLM_BASE_URL is not set: scripts/test.sh starts the local model \
         (EOL_LLM_HOST=0.0.0.0 scripts/llm.sh start) for this test",
    );
    let host = eol_kind_tests::chaos::node_ip(client).await;
    let port_and_path = url.rsplit(':').next().expect("a port in EOL_LLM_BASE_URL");
    vec![
        format!("model.baseUrl=http://{host}:{port_and_path}"),
        "model.name=smollm2".to_owned(),
        "model.responseFormat=json_object".to_owned(),
        "model.prices.smollm2.input=1".to_owned(),
        "model.prices.smollm2.output=2".to_owned(),
    ]
}

/// POSTs `input` to `op` of the Feature's Service (anonymous: the Feature
/// allows it) until it answers 200.
async fn call(client: &Client, ns: &str, op: &str, input: Value) -> Value {
    let svc = Api::<Service>::namespaced(client.clone(), ns)
        .get("words")
        .await
        .expect("the Feature's Service");
    let ip = svc.spec.and_then(|s| s.cluster_ip).expect("a ClusterIP");
    let start = Instant::now();
    loop {
        let answer = reqwest::Client::new()
            .post(format!("http://{ip}/v1/operations/{op}"))
            .timeout(Duration::from_secs(120))
            .json(&input)
            .send()
            .await;
        let last = match answer {
            Ok(r) if r.status() == 200 => return r.json().await.expect("a JSON answer"),
            Ok(r) => format!(
                "HTTP {}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ),
            Err(e) => e.to_string(),
        };
        // Until kube-proxy programs a new Service, calls are refused; and the
        // small local model now and then gives no answer matching the schema
        // in its attempts (502): asked again, it does.
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "{op} did not answer within 180 s: {last}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `kubectl port-forward` to the operator's metrics Service; its local port.
async fn port_forward(ns: &str) -> (tokio::process::Child, u16) {
    let service = format!("svc/{RELEASE}-metrics");
    let mut child = tokio::process::Command::new(&tools().kubectl)
        .args(["port-forward", "-n", ns, &service, ":8080"])
        .env("KUBECONFIG", eol_kind_tests::kubeconfig())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl port-forward");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // `Forwarding from 127.0.0.1:PORT -> 8080`
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                return rest.split_whitespace().next().and_then(|p| p.parse().ok());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("kubectl port-forward printed its local port");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, port)
}

/// A client of the API server authenticated as ServiceAccount `name` (a
/// TokenRequest for the API server's own audience), nothing else.
async fn client_as_service_account(client: &Client, ns: &str, name: &str) -> Client {
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), ns);
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("a ServiceAccount");
    accounts
        .create(&PostParams::default(), &account)
        .await
        .unwrap_or_else(|e| panic!("creating ServiceAccount {name}: {e}"));
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))
            .expect("a TokenRequest");
    let token = accounts
        .create_subresource::<TokenRequest, TokenRequest>(
            "token",
            name,
            &PostParams::default(),
            &request,
        )
        .await
        .unwrap_or_else(|e| panic!("a token of {name}: {e}"))
        .status
        .expect("an issued token")
        .token;
    // The test cluster's address and CA, with none of its admin credentials.
    let path = eol_kind_tests::kubeconfig();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("the test kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("a usable kubeconfig");
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    Client::try_from(config).expect("a client")
}

/// GET `path` of the API server as `client`: the body, or the HTTP status.
async fn get(client: &Client, path: &str) -> Result<String, u16> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .expect("a request");
    client.request_text(request).await.map_err(|e| match e {
        kube::Error::Api(status) => status.code,
        other => panic!("GET {path}: {other}"),
    })
}

/// The dashboard's `api/state`, as the page reads it.
async fn read_state(base: &str) -> Value {
    reqwest::get(format!("{base}api/state"))
        .await
        .and_then(|r| r.error_for_status())
        .expect("GET api/state")
        .json()
        .await
        .expect("the state as JSON")
}

/// The page's view of Feature `key` for failure messages.
fn explain(key: &str) -> String {
    format!(
        "(document.querySelector('[data-feature=\"{key}\"]') || document.body).innerText + ' | status: ' + document.getElementById('status').innerText"
    )
}

/// Whether the PNG at `path` looks like a drawn page (signature, and more
/// than a blank page's few kilobytes).
fn assert_png(path: &std::path::Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is a PNG",
        path.display()
    );
    assert!(
        bytes.len() > 20_000,
        "{}: only {} bytes",
        path.display(),
        bytes.len()
    );
}

#[tokio::test]
async fn the_dashboard_shows_features_runs_and_charts_and_follows_a_patch_live() {
    let client = client().await;
    let mut values = model_values(&client).await;
    values.extend([
        "webDashboard.enabled=true".to_owned(),
        // A chart point every 2 s, so the test sees several.
        "webDashboard.sampleSeconds=2".to_owned(),
        // 90 points of 2 s: more than the test lasts, so none is dropped.
        "webDashboard.samples=90".to_owned(),
    ]);
    with_release("dashboard", values, |client, ns| async move {
        let features = Api::<Feature>::namespaced(client.clone(), &ns);
        let feature: Feature = serde_json::from_value(json!({
            "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
            "metadata": {"name": "words"},
            "spec": {
                "source": {"inline": WORDS}, "replicas": 1, "access": {"anonymous": true},
                // A switch is first a shadow: its agreement is on the page.
                "rollout": {"strategy": "Shadow", "shadow": {
                    "samplePercent": 100.0, "minAgreement": 95.0, "minSamples": 3, "window": "10m"}},
            },
        }))
        .expect("a Feature");
        features
            .create(&PostParams::default(), &feature)
            .await
            .expect("creating the Feature");
        wait_for(&features, "words", TIMEOUT, feature_ready).await;

        // A FeatureRun with a result, and calls for the charts: a cache miss
        // then hits of `count`, and a model answer of `mood` (its cost).
        let runs = Api::<FeatureRun>::namespaced(client.clone(), &ns);
        let run: FeatureRun = serde_json::from_value(json!({
            "apiVersion": "eol.dev/v1alpha1", "kind": "FeatureRun",
            "metadata": {"name": "count-hello"},
            "spec": {"featureRef": "words", "operation": "count",
                     "input": {"text": "hello from the dashboard"}},
        }))
        .expect("a FeatureRun");
        runs.create(&PostParams::default(), &run).await.expect("creating the run");
        for _ in 0..3 {
            let answer = call(&client, &ns, "count", json!({"text": "one two three"})).await;
            assert_eq!(answer["words"], 3, "{answer}");
        }
        let mood = call(&client, &ns, "mood", json!({"text": "What a wonderful sunny day!"})).await;
        assert!(mood["mood"] == "happy" || mood["mood"] == "sad", "{mood}");
        let done = wait_for(&runs, "count-hello", TIMEOUT, run_finished).await;
        assert_succeeded(done, |m| format!("count-hello: {m}"));

        // The page, through `kubectl port-forward`, as the chart's NOTES say.
        let (_forward, port) = port_forward(&ns).await;
        let base = format!("http://127.0.0.1:{port}/dashboard/");
        let mut browser = Browser::start(1400, 1000).await;
        browser.navigate(&base).await;
        let key = format!("{ns}/words");
        let card = format!("document.querySelector('[data-feature=\"{key}\"]')");
        let field = |name: &str| format!("{card}?.querySelector('[data-field=\"{name}\"]')?.textContent");
        let explain = explain(&key);
        browser
            .wait_for("the Feature's card", &format!("{} === 'hybrid'", field("phase")), &explain, Duration::from_secs(30))
            .await;
        let operations = browser.eval(&field("operations")).await;
        assert_eq!(operations, "count: implementationmood: prototyping", "phase per operation");
        let replicas = browser.eval(&field("replicas")).await;
        assert_eq!(replicas, "1/1 ready");
        // What the charts span, from the chart's samples and sampleSeconds.
        let span = browser.eval("document.getElementById('chart-span').textContent").await;
        assert_eq!(span, "charts: the last 3 min, a point every 2 s");
        let row = format!("document.querySelector('[data-run=\"{ns}/count-hello\"]')");
        let state = browser
            .wait_for(
                "the FeatureRun's row",
                &format!("{row}?.querySelector('[data-field=\"state\"]')?.textContent"),
                "document.querySelector('#runs').innerText",
                Duration::from_secs(10),
            )
            .await;
        assert_eq!(state, "Succeeded");
        let result = browser.eval(&format!("{row}.querySelector('[data-field=\"result\"]').textContent")).await;
        assert!(result.as_str().is_some_and(|r| r.contains("{\"words\":4}")), "{result}");

        // The charts: latency of the calls, the model's cost, the cache's hits.
        let points = |chart: &str| format!("Number({card}?.querySelector('svg[data-chart=\"{chart}\"]')?.dataset.points || 0)");
        for chart in ["latency", "cost", "cache-hit-rate"] {
            browser
                .wait_for(&format!("points of the {chart} chart"), &format!("{} > 0", points(chart)), &explain, Duration::from_secs(30))
                .await;
        }
        // The same numbers from the state the page draws: the calls above are
        // in them once sampled (every 2 s).
        let totals = |history: &Value| {
            let points = history.as_array().cloned().unwrap_or_default();
            let sum = |field: &str| points.iter().filter_map(|p| p[field].as_f64()).sum::<f64>();
            let hits = points.iter().filter_map(|p| p["cacheHitRate"].as_f64()).any(|r| r > 0.0);
            (sum("calls"), sum("costUsd"), hits)
        };
        let start = Instant::now();
        loop {
            let state = read_state(&base).await;
            let history = state["features"]
                .as_array()
                .and_then(|f| f.iter().find(|f| f["name"] == "words"))
                .map(|f| f["history"].clone())
                .expect("the Feature in the state");
            let (calls, cost, hits) = totals(&history);
            // Three of `count` (a miss, then hits) and one of `mood`, priced.
            if calls >= 4.0 && cost > 0.0 && hits {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the charts lack the calls (want 4 calls, a cost and a cache hit): {history}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let shots = artifacts_dir("dashboard");
        browser.screenshot(&shots.join("1-loaded.png")).await;

        // Read-only: the state cannot be written.
        let post = reqwest::Client::new().post(format!("{base}api/state")).json(&json!({})).send().await.expect("POST");
        assert_eq!(post.status(), 405);

        // Live: a `kubectl patch` shows without reloading the page.
        browser.eval("window.eolMarker = 'before the patch'").await;
        must(
            kubectl(
                &["patch", "feature", "words", "-n", &ns, "--type", "merge", "-p", r#"{"spec":{"phase":"prototyping"}}"#],
                None,
            ),
            "kubectl patch",
        );
        browser
            .wait_for("the desired phase after the patch", &format!("{} === 'prototyping'", field("desired-phase")), &explain, Duration::from_secs(30))
            .await;
        // Calls the shadow copies to the prototyped candidate, until it has decided.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let calling = {
            let (client, ns, stop) = (client.clone(), ns.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let text = format!("shadow call number {n}");
                    let answer = call(&client, &ns, "count", json!({"text": text})).await;
                    assert_eq!(answer["words"], 4, "{answer}");
                    tokio::time::sleep(Duration::from_millis(700)).await;
                }
                n
            })
        };
        let shadow = browser
            .wait_for(
                "the shadow's agreement",
                &format!("(t => /agreement [0-9.]+% of [1-9]/.test(t || '') && t)({card}?.querySelector('[data-field=\"shadow\"]')?.textContent)"),
                &explain,
                TIMEOUT,
            )
            .await;
        eprintln!("shadow shown: {shadow}");
        browser.screenshot(&shots.join("2-shadow.png")).await;
        // Promoted (the model counted like the code) or held (it did not):
        // either way the switch ends, and the page says how.
        let ended = browser
            .wait_for(
                "the switch deciding",
                &format!("(t => (t.startsWith('Complete') || t.startsWith('Disagreement')) && t)({} || '')", field("switch")),
                &explain,
                TIMEOUT,
            )
            .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let calls = calling.await.expect("the calls");
        eprintln!("switch shown after {calls} calls: {ended}");
        if ended.as_str().is_some_and(|t| t.starts_with("Complete")) {
            let operations = browser.eval(&field("operations")).await;
            assert_eq!(operations, "count: prototypingmood: prototyping");
        }
        // The model usage the operator reads into the status every minute:
        // `mood`'s request, priced.
        let usage = browser
            .wait_for(
                "the usage of the model in the status",
                &format!("(t => t && /last hour \\$[0-9.]*[1-9]/.test(t) && !/ 0 requests/.test(t) && t)({})", field("usage")),
                &explain,
                Duration::from_secs(150),
            )
            .await;
        eprintln!("usage shown: {usage}");
        // The chart samples pods: what a short-lived shadow candidate spent
        // between its last sample and its exit is only in the status (the
        // Redis counters every pod adds to). Both are printed, not compared.
        let state = read_state(&base).await;
        // The chart's `webDashboard.sampleSeconds=2`, as the running operator uses it.
        assert_eq!(state["sampleSeconds"], 2, "the sample interval the chart set");
        // And its `webDashboard.samples=90`: the points kept per Feature.
        assert_eq!(state["samplesKept"], 90, "the points per Feature the chart set");
        let words = &state["features"][0];
        let charted: f64 = words["history"]
            .as_array()
            .expect("points")
            .iter()
            .filter_map(|p| p["costUsd"].as_f64())
            .sum();
        let counted = words["status"]["usage"]["lastHour"]["cost"]
            .as_f64()
            .expect("the last hour's cost");
        eprintln!("cost: charted {charted:.6} USD, in the status {counted:.6} USD");
        assert!(charted > 0.0 && counted > 0.0);
        let marker = browser.eval("window.eolMarker").await;
        assert_eq!(marker, "before the patch", "the page was not reloaded");
        browser.screenshot(&shots.join("3-switched.png")).await;
        for shot in ["1-loaded.png", "2-shadow.png", "3-switched.png"] {
            assert_png(&shots.join(shot));
        }
        eprintln!("screenshots: {}", shots.display());

        // Through the API server, with the viewer's own token: allowed by the
        // chart's viewer Role once bound, refused without it.
        let proxy = format!("/api/v1/namespaces/{ns}/services/{RELEASE}-metrics:metrics/proxy/dashboard/api/state");
        let stranger = client_as_service_account(&client, &ns, "stranger").await;
        assert_eq!(get(&stranger, &proxy).await.err(), Some(403), "no grant, no dashboard");
        let viewer = client_as_service_account(&client, &ns, "viewer").await;
        let role = Api::<Role>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .expect("Roles")
            .items
            .into_iter()
            .find(|r| r.metadata.name.as_deref().is_some_and(|n| n.ends_with("-dashboard-viewer")))
            .expect("the chart's dashboard-viewer Role");
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "viewer-dashboard"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
            "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": ns}],
        }))
        .expect("a RoleBinding");
        Api::<RoleBinding>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &binding)
            .await
            .expect("binding the viewer");
        let start = Instant::now();
        let body = loop {
            match get(&viewer, &proxy).await {
                Ok(body) => break body,
                // RBAC caches take a moment to see a new binding.
                Err(403) if start.elapsed() < Duration::from_secs(20) => {
                    tokio::time::sleep(Duration::from_millis(500)).await
                }
                Err(code) => panic!("the viewer got HTTP {code} from {proxy}"),
            }
        };
        let through_api: Value = serde_json::from_str(&body).expect("the state as JSON");
        assert_eq!(through_api["features"][0]["name"], "words", "{through_api}");
        let page = get(&viewer, &proxy.replace("api/state", "")).await.expect("the page");
        assert!(page.contains("<script src=\"app.js\"></script>"), "{page}");
        // The Role grants reading the proxy and nothing else.
        let viewer_features = Api::<Feature>::namespaced(viewer.clone(), &ns).list(&ListParams::default()).await;
        assert!(matches!(viewer_features, Err(kube::Error::Api(ref s)) if s.code == 403), "{viewer_features:?}");
    })
    .await;
}
