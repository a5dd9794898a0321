//! Autoscaling on the cluster: a Feature's `/scale` subresource and the
//! HorizontalPodAutoscaler the operator keeps for `spec.autoscaling`, driven by
//! real CPU metrics (metrics-server, `kind-tests/cluster.sh metrics up`): load
//! scales the Feature from 1 to 3 serving pods, and quiet back to 1. Also
//! the KEDA ScaledObject example of `features/manifests/`, checked by a
//! server-side dry run against KEDA's own CRDs.
#![allow(clippy::unwrap_used)]

use eol_core::crd::Feature;
use eol_kind_tests::{feature_ready, fixtures::feature, in_namespace, wait_for};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// An operation that burns CPU in the sandbox.
const BURNER: &str = "---\nname: burner\nphase: implementation\n---\n# Burner\n\n## Operations\n\n### burn\nSums the squares below n.\n\nInput:\n```yaml\ntype: object\nproperties:\n  n: {type: integer, minimum: 1}\nrequired: [n]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  total: {type: integer}\nrequired: [total]\n```\n\n```python\ndef burn(n):\n    total = 0\n    for i in range(n):\n        total += i * i\n    return {\"total\": total}\n```\n";
const BURNER_TESTS: &str = "---\nfeature: burner\n---\n\n## small sums\nOperation: burn\nInput:\n```yaml\nn: 10\n```\nExpect:\n```yaml\ntotal: 285\n```\n";

/// The metrics API must be served: the HPA reads pods' CPU from it.
async fn require_metrics(client: &kube::Client) {
    let request = http::Request::get("/apis/metrics.k8s.io/v1beta1/pods")
        .body(Vec::new())
        .unwrap();
    if let Err(e) = client.request_text(request).await {
        panic!(
            "this test needs metrics-server (metrics.k8s.io): {e}. Run kind-tests/cluster.sh metrics up (scripts/test.sh does)"
        );
    }
}

#[tokio::test]
async fn the_hpa_scales_a_feature_from_one_to_three_pods_under_load_and_back() {
    in_namespace("autoscale", |env| async move {
        require_metrics(&env.client).await;
        env.create(&feature(
            "burner",
            json!({"source": {"inline": BURNER}, "tests": BURNER_TESTS, "replicas": 1,
                   "access": {"anonymous": true},
                   "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
                   "autoscaling": {"minReplicas": 1, "maxReplicas": 3, "cpuUtilization": 50,
                                   "scaleDownStabilizationSeconds": 0}}),
        ))
        .await;
        let features = env.api::<Feature>();
        wait_for(&features, "burner", Duration::from_secs(180), feature_ready).await;

        // The Feature's /scale, as an autoscaler reads it.
        let deadline = Instant::now() + Duration::from_secs(30);
        let scale = loop {
            let scale = features.get_scale("burner").await.unwrap();
            if scale.status.as_ref().is_some_and(|s| s.replicas == 1) {
                break scale;
            }
            assert!(Instant::now() < deadline, "/scale: {scale:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert_eq!(scale.spec.unwrap().replicas, Some(1));
        assert_eq!(
            scale.status.unwrap().selector.as_deref(),
            Some("app.kubernetes.io/instance=burner,app.kubernetes.io/name=eol-feature")
        );
        // The HPA the operator made targets it.
        let hpas = env.api::<HorizontalPodAutoscaler>();
        let hpa = wait_for(&hpas, "burner", Duration::from_secs(30), |_| true).await;
        let spec = hpa.spec.unwrap();
        assert_eq!(
            (spec.scale_target_ref.kind.as_str(), spec.scale_target_ref.name.as_str()),
            ("Feature", "burner")
        );
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(1), 3));
        let cpu = spec.metrics.iter().flatten().find_map(|m| m.resource.as_ref()).expect("a resource metric");
        assert_eq!((cpu.name.as_str(), cpu.target.type_.as_str(), cpu.target.average_utilization), ("cpu", "Utilization", Some(50)));
        let down = spec.behavior.and_then(|b| b.scale_down).expect("a scale-down behavior");
        assert_eq!(down.stabilization_window_seconds, Some(0), "scaleDownStabilizationSeconds");

        // Until kube-proxy has programmed the new Service, its address is not
        // routed to the pods (calls fail fast, by the thousand): wait for it.
        eol_kind_tests::fixtures::first_answer(&env, "burner", "burn", json!({"n": 10})).await;
        // Load: eight callers, each call some 20 ms of Python.
        let ip = env.api::<Service>().get("burner").await.unwrap().spec.unwrap().cluster_ip.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (calls, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let load: Vec<_> = (0..8)
            .map(|_| {
                let (client, stop, calls, failures) = (client.clone(), stop.clone(), calls.clone(), failures.clone());
                let url = format!("http://{ip}/v1/operations/burn");
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match client.post(&url).json(&json!({"n": 300_000})).send().await {
                            Ok(r) if r.status() == 200 => calls.fetch_add(1, Ordering::Relaxed),
                            _ => failures.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        let started = Instant::now();
        let scaled_up = wait_for(&features, "burner", Duration::from_secs(300), |f| {
            f.spec.replicas == 3 && f.status.as_ref().is_some_and(|s| s.ready_replicas == 3)
        })
        .await;
        let up = started.elapsed();
        let busy = hpas.get("burner").await.unwrap().status.and_then(|s| s.current_metrics).unwrap_or_default();
        let utilization = busy
            .first()
            .and_then(|m| m.resource.as_ref()?.current.average_utilization)
            .unwrap_or_default();
        assert!(utilization > 50, "the HPA saw {utilization}% of the CPU request");
        assert_eq!(scaled_up.status.unwrap().replicas, 3);

        // Quiet: back to one pod.
        stop.store(true, Ordering::Relaxed);
        for task in load {
            task.await.unwrap();
        }
        let quiet = Instant::now();
        wait_for(&features, "burner", Duration::from_secs(300), |f| {
            f.spec.replicas == 1 && f.status.as_ref().is_some_and(|s| s.replicas == 1)
        })
        .await;
        let down = quiet.elapsed();
        let (calls, failures) = (calls.load(Ordering::Relaxed), failures.load(Ordering::Relaxed));
        // New pods join the Service only once ready; a stray failure is allowed, not a pattern.
        assert!(failures * 100 <= calls, "{failures} of {} calls failed", calls + failures);
        eprintln!(
            "evidence: 1 -> 3 pods {:.0} s after the load began (HPA saw {utilization}% of the CPU request; {} calls, {} failed), 3 -> 1 {:.0} s after it stopped",
            up.as_secs_f64(),
            calls,
            failures,
            down.as_secs_f64()
        );
    })
    .await;
}

#[tokio::test]
async fn the_keda_example_passes_a_server_side_dry_run_against_kedas_crds() {
    use eol_core::runner_contract::queue;
    use eol_kind_tests::cli::{kubectl, must, text};
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    // KEDA's CRDs, from KEDA's Go module source (KEDA itself does not run).
    let installed = std::process::Command::new(format!("{root}/kind-tests/cluster.sh"))
        .arg("keda-crds")
        .output()
        .unwrap();
    assert!(
        installed.status.success(),
        "kind-tests/cluster.sh keda-crds failed: {}",
        text(&installed.stderr)
    );
    let example =
        std::fs::read_to_string(format!("{root}/features/manifests/keda/inventory.yaml")).unwrap();
    // The trigger watches the stream and group the serving pods use.
    assert!(example.contains(&format!("stream: {}", queue::stream("inventory"))));
    assert!(example.contains(&format!("consumerGroup: {}", queue::GROUP)));
    in_namespace("keda", |env| async move {
        let ns = env.namespace.clone();
        let example = example.replace("eol-redis.shop.svc", &format!("eol-redis.{ns}.svc"));
        let out = must(
            kubectl(&["apply", "--dry-run=server", "--validate=strict", "-n", &ns, "-f", "-"], Some(&example)),
            "the KEDA example's server-side dry run",
        );
        assert!(out.contains("scaledobject.keda.sh/inventory created (server dry run)"), "{out}");
        assert!(out.contains("triggerauthentication.keda.sh/inventory-redis created (server dry run)"), "{out}");
        // The dry run does check: a misspelled field is refused.
        let wrong = example.replace("maxReplicaCount", "maxReplicaCuont");
        let refused = kubectl(&["apply", "--dry-run=server", "--validate=strict", "-n", &ns, "-f", "-"], Some(&wrong));
        assert!(!refused.status.success());
        assert!(text(&refused.stderr).contains("unknown field \"spec.maxReplicaCuont\""), "{}", text(&refused.stderr));
        // Its target exposes /scale, which KEDA's HPA drives.
        env.create(&feature(
            "inventory",
            json!({"source": {"inline": eol_kind_tests::fixtures::INVENTORY}, "replicas": 1, "access": {"anonymous": true}}),
        ))
        .await;
        let scale = env.api::<Feature>().get_scale("inventory").await.unwrap();
        assert_eq!(scale.spec.unwrap().replicas, Some(1));
    })
    .await;
}
