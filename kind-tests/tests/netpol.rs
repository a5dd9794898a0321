//! NetworkPolicy enforced by a real policy engine (step 12):
//! kube-network-policies v0.8.0, built from its Go module and run by
//! `kind-tests/cluster.sh netpol up` for this test only (and stopped after it). The
//! chart's runner egress policy, rendered with `helm template` for the test's
//! namespace, lets a serving pod reach the namespace's Redis, the model and
//! the cluster DNS, and nothing else: its connection to another pod fails,
//! while a pod the policy does not select still reaches that pod.
#![allow(clippy::unwrap_used)]

use eol_kind_tests::cli::{helm, kubectl, must, repo_root, text};
use eol_kind_tests::fixtures::{INVENTORY, busybox_image, feature, first_answer};
use eol_kind_tests::netpol::PolicyEngine;
use eol_kind_tests::{feature_ready, in_namespace, wait_for};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Tries a TCP connection to each `host:port` (names resolved through the
/// pod's DNS) and prints `{target: "open" | why not}` as JSON.
const CONNECT: &str = r#"
import json, socket, sys
out = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), 3).close()
        out[target] = "open"
    except Exception as e:
        out[target] = type(e).__name__ + ": " + str(e)
print(json.dumps(out))
"#;

/// A busybox pod serving HTTP on 8080, labelled `app: <name>`, and its Service.
async fn http_server(env: &eol_kind_tests::TestEnv, name: &str) -> (String, String) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "httpd", "image": busybox_image(), "imagePullPolicy": "Never",
            "command": ["sh", "-c", "mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}
    }))
    .unwrap();
    env.create(&pod).await;
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 8080, "targetPort": 8080}]}
    }))
    .unwrap();
    env.create(&service).await;
    let ready = wait_for(&env.api::<Pod>(), name, Duration::from_secs(120), |p| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
    .await;
    let pod_ip = ready.status.unwrap().pod_ip.unwrap();
    let service_ip = env
        .api::<Service>()
        .get(name)
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    (pod_ip, service_ip)
}

/// What `CONNECT` found from the runner container of `pod`.
async fn reach(namespace: &str, pod: &str, targets: &[String]) -> BTreeMap<String, String> {
    let mut args: Vec<String> = [
        "exec", "-n", namespace, pod, "-c", "runner", "--", "python3", "-c", CONNECT,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(targets.iter().cloned());
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kubectl(&args, None)
    })
    .await
    .unwrap();
    let stdout = must(out, "kubectl exec python3 (connection attempts)");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test]
async fn runner_pods_reach_only_redis_the_model_and_dns_under_the_charts_network_policy() {
    let _engine = tokio::task::spawn_blocking(PolicyEngine::up).await.unwrap();
    in_namespace("netpol", |env| async move {
        let ns = env.namespace.clone();
        // The model the policy allows, and a bystander it does not.
        let (model_ip, _) = http_server(&env, "model").await;
        let (bystander_ip, bystander_service) = http_server(&env, "bystander").await;
        env.create(&feature("inventory", json!({"source": {"inline": INVENTORY}, "replicas": 1})))
            .await;
        wait_for(&env.api::<eol_core::crd::Feature>(), "inventory", Duration::from_secs(300), feature_ready).await;
        first_answer(&env, "inventory", "stock_level", json!({"sku": "AB-1"})).await;
        let serving = env
            .api::<Pod>()
            .list(&ListParams::default().labels("app.kubernetes.io/instance=inventory,app.kubernetes.io/name=eol-feature"))
            .await
            .unwrap();
        let runner = serving.items[0].metadata.name.clone().unwrap();
        let redis = "eol-redis:6379".to_owned();
        let model = format!("{model_ip}:8080");
        let bystander = format!("{bystander_ip}:8080");
        let bystander_svc = format!("{bystander_service}:8080");
        let all = [redis.clone(), model.clone(), bystander.clone(), bystander_svc.clone()];

        // Before any policy every path is open: what fails later fails by the policy.
        let before = reach(&ns, &runner, &all).await;
        assert!(before.values().all(|v| v == "open"), "before the policy: {before:?}");

        // The chart's policy, as `helm install` would create it for this namespace.
        let node = eol_kind_tests::chaos::node_ip(&env.client).await;
        let chart = repo_root().join("charts/eol");
        let rendered = must(
            helm(&[
                "template", "eol", chart.to_str().unwrap(), "--namespace", &ns,
                "--show-only", "templates/networkpolicy.yaml",
                "--set", "networkPolicy.enabled=true",
                "--set", &format!("networkPolicy.namespaces={{{ns}}}"),
                "--set-json", r#"networkPolicy.model.peers=[{"podSelector":{"matchLabels":{"app":"model"}}}]"#,
                "--set-json", r#"networkPolicy.model.ports=[{"port":8080,"protocol":"TCP"}]"#,
                "--set", &format!("networkPolicy.apiServer.cidrs={{{node}/32}}"),
            ]),
            "helm template (the NetworkPolicy)",
        );
        assert!(rendered.contains("kind: NetworkPolicy"), "{rendered}");
        must(kubectl(&["apply", "-n", &ns, "-f", "-"], Some(&rendered)), "kubectl apply the NetworkPolicy");

        // The engine learns of the policy through its watch: poll, bounded.
        let started = Instant::now();
        let after = loop {
            let found = reach(&ns, &runner, &all).await;
            if found[&bystander] != "open" || started.elapsed() > Duration::from_secs(60) {
                break found;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let enforced_after = started.elapsed();
        eprintln!("from runner pod {runner} under the chart's policy (enforced within {enforced_after:?}):");
        for (target, outcome) in &after {
            eprintln!("  {target:<24} {outcome}");
        }
        // Allowed: the namespace's Redis (by name: DNS too) and the model.
        assert_eq!(after[&redis], "open", "Redis, by its Service name through the cluster DNS");
        assert_eq!(after[&model], "open", "the model the policy names");
        // Refused: any other pod, directly or through its Service.
        assert_ne!(after[&bystander], "open", "another pod is out of reach");
        assert_ne!(after[&bystander_svc], "open", "another pod's Service is out of reach");

        // A pod the policy does not select still reaches the bystander
        // (`timeout`: busybox's `wget -T` segfaults, kind-tests/README.md).
        let control = tokio::task::spawn_blocking({
            let ns = ns.clone();
            move || kubectl(&["exec", "-n", &ns, "model", "--", "timeout", "5", "wget", "-qO-", &format!("http://{bystander}/")], None)
        })
        .await
        .unwrap();
        assert!(control.status.success(), "an unselected pod reaches the bystander: {}", text(&control.stderr));
        // And the Feature still serves and stays ready (its Redis is allowed).
        first_answer(&env, "inventory", "stock_level", json!({"sku": "AB-1"})).await;
    })
    .await;
}
