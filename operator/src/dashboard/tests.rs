use super::*;
use axum::body::Body;
use axum::http::{Method, Request};
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use tower::ServiceExt;

fn options() -> DashboardOptions {
    DashboardOptions {
        enabled: true,
        sample_seconds: 15,
        samples: 4,
    }
}

async fn send(router: &Router, method: Method, path: &str) -> (StatusCode, Response) {
    let response = router
        .clone()
        .oneshot(
            Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    (response.status(), response)
}

async fn body(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn store<K>(objects: Vec<K>) -> Store<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&Event::Init);
    for object in objects {
        writer.apply_watcher_event(&Event::InitApply(object));
    }
    writer.apply_watcher_event(&Event::InitDone);
    store
}

#[tokio::test]
async fn pages_are_served_with_a_strict_policy_and_nothing_but_get() {
    let dashboard = Dashboard::new(options());
    let router = dashboard.router();
    let (status, response) = send(&router, Method::GET, "/dashboard").await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    // Relative: behind the API server's proxy the prefix must stay.
    assert_eq!(response.headers()[header::LOCATION], "dashboard/");
    let (status, response) = send(&router, Method::GET, "/dashboard/").await;
    assert_eq!(status, StatusCode::OK);
    let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let html = body(response).await;
    assert!(html.contains("<script src=\"app.js\"></script>"), "{html}");
    assert!(!html.contains("<form"), "a read-only page has no forms");
    for path in ["/dashboard/app.js", "/dashboard/app.css"] {
        assert_eq!(
            send(&router, Method::GET, path).await.0,
            StatusCode::OK,
            "{path}"
        );
    }
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        for path in ["/dashboard/", "/dashboard/api/state"] {
            let (status, _) = send(&router, method.clone(), path).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }
}

#[tokio::test]
async fn a_standby_replica_says_so_and_the_leader_serves_the_caches() {
    let dashboard = Dashboard::new(options());
    let router = dashboard.router();
    let (status, response) = send(&router, Method::GET, "/dashboard/api/state").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body(response).await.contains("standing by"));

    let mut feature: Feature = serde_json::from_value(serde_json::json!({
        "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
        "metadata": {"name": "inventory", "namespace": "shop", "uid": "u1"},
        "spec": {"source": {"inline": "x"}, "phase": "hybrid", "replicas": 2},
    }))
    .unwrap();
    feature.status = Some(
        serde_json::from_value(serde_json::json!({
            "phase": "implementation", "desiredPhase": "hybrid",
            "operationPhases": {"add_stock": "implementation", "stock_level": "prototyping"},
            "readyReplicas": 2, "replicas": 2,
        }))
        .unwrap(),
    );
    let runs: Vec<FeatureRun> = (0..(state::RUNS_SHOWN + 3))
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "eol.dev/v1alpha1", "kind": "FeatureRun",
                "metadata": {"name": format!("run-{i:03}"), "namespace": "shop", "uid": format!("r{i}"),
                             "creationTimestamp": format!("2026-12-05T07:{:02}:00Z", i % 60)},
                "spec": {"featureRef": "inventory", "operation": "add_stock", "input": {"sku": "A"}},
            }))
            .unwrap()
        })
        .collect();
    dashboard.attach(store(vec![feature]), store(runs));
    {
        let mut history = dashboard.inner.history.lock().unwrap();
        let counters = |calls| {
            Some(history::Counters {
                calls,
                seconds: calls / 10.0,
                ..Default::default()
            })
        };
        history.record("shop/inventory", 1, vec![("p".into(), counters(1.0))]);
        history.record("shop/inventory", 2, vec![("p".into(), counters(3.0))]);
    }
    let (status, response) = send(&router, Method::GET, "/dashboard/api/state").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let state: serde_json::Value = serde_json::from_str(&body(response).await).unwrap();
    let f = &state["features"][0];
    assert_eq!(
        (f["namespace"].as_str(), f["name"].as_str()),
        (Some("shop"), Some("inventory"))
    );
    assert_eq!(f["specPhase"], "hybrid");
    // The sampling the charts were drawn with, for the page's "last N" label.
    assert_eq!(
        (
            state["sampleSeconds"].as_u64(),
            state["samplesKept"].as_u64()
        ),
        (Some(15), Some(4))
    );
    assert_eq!(f["status"]["operationPhases"]["stock_level"], "prototyping");
    assert_eq!(f["history"][0]["calls"], 2);
    let latency = f["history"][0]["latencyMs"].as_f64().unwrap();
    assert!((latency - 100.0).abs() < 1e-9, "{latency}");
    assert_eq!(state["runsTotal"], state::RUNS_SHOWN + 3);
    let runs = state["runs"].as_array().unwrap();
    assert_eq!(runs.len(), state::RUNS_SHOWN);
    // Newest first: minute 52 is the latest creation time.
    assert_eq!(runs[0]["name"], "run-052");
    assert_eq!(runs[0]["operation"], "add_stock");
}
