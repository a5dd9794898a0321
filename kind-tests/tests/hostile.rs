//! Hostile code inside a serving pod under the restricted Pod Security
//! profile (step 12): `eol sandbox-probe`, run in the pod with `kubectl
//! exec`, throws the sandbox's corpus (imports, dunder and frame walks, file
//! and network access, fork, CPU, memory and sleep bombs) at the pod's own
//! sandbox while callers call the Feature. Nothing escapes, the pod keeps
//! serving, and it is never restarted.
#![allow(clippy::unwrap_used)]

use eol_kind_tests::chaos::{Request, Traffic, cluster_ip};
use eol_kind_tests::cli::{kubectl, text};
use eol_kind_tests::fixtures::{INVENTORY, INVENTORY_TESTS, caller_token, feature, first_answer};
use eol_kind_tests::{feature_ready, in_namespace, wait_for};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn hostile_code_in_a_restricted_serving_pod_escapes_nowhere_and_the_pod_keeps_serving() {
    in_namespace("hostile", |env| async move {
        // The strictest built-in profile, enforced: a pod that asks for more is refused.
        Api::<Namespace>::all(env.client.clone())
            .patch(
                &env.namespace,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest"}}})),
            )
            .await
            .unwrap();
        // A memory limit on the pod: the sandbox's own limits must stop the
        // bombs before the kernel's OOM killer has to.
        env.create(&feature(
            "inventory",
            json!({"source": {"inline": INVENTORY}, "tests": INVENTORY_TESTS, "replicas": 1,
                   "access": {"reviewStaleSeconds": 120},
                   "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                 "limits": {"cpu": "1", "memory": "1Gi"}}}),
        ))
        .await;
        wait_for(
            &env.api::<eol_core::crd::Feature>(),
            "inventory",
            Duration::from_secs(300),
            feature_ready,
        )
        .await;
        first_answer(&env, "inventory", "stock_level", json!({"sku": "AB-1"})).await;
        let pods = env.api::<Pod>();
        let serving = pods
            .list(
                &ListParams::default().labels(
                    "app.kubernetes.io/instance=inventory,app.kubernetes.io/name=eol-feature",
                ),
            )
            .await
            .unwrap();
        assert_eq!(serving.items.len(), 1, "one serving pod");
        let pod = serving.items[0].clone();
        let name = pod.metadata.name.clone().unwrap();
        // The pod as the cluster runs it: non-root, read-only, no privilege, no capabilities.
        let spec = pod.spec.as_ref().unwrap();
        let container = &spec.containers[0];
        let sc = container
            .security_context
            .as_ref()
            .expect("a container securityContext");
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_owned()])
        );
        // How long reviews answer while the API server is away, as the pod got it.
        let stale = container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "EOL_AUTH_STALE_SECONDS");
        assert_eq!(
            stale.and_then(|e| e.value.as_deref()),
            Some("120"),
            "spec.access.reviewStaleSeconds"
        );
        let pod_sc = spec
            .security_context
            .as_ref()
            .expect("a pod securityContext");
        assert!(
            pod_sc.run_as_non_root == Some(true) || sc.run_as_non_root == Some(true),
            "non-root"
        );

        let ip = cluster_ip(&env, "inventory").await;
        let traffic = Traffic::start(
            Request {
                url: format!("http://{ip}/v1/operations/stock_level"),
                token: Some(caller_token(&env).await),
                body: Arc::new(|_| json!({"sku": "AB-1"})),
                timeout: Duration::from_secs(30),
            },
            1,
            Duration::from_millis(100),
            10_000,
            Duration::from_secs(300),
        );
        let (namespace, pod_name) = (env.namespace.clone(), name.clone());
        let out = tokio::task::spawn_blocking(move || {
            kubectl(
                &[
                    "exec",
                    "-n",
                    &namespace,
                    &pod_name,
                    "-c",
                    "runner",
                    "--",
                    "eol",
                    "--output",
                    "json",
                    "sandbox-probe",
                ],
                None,
            )
        })
        .await
        .unwrap();
        let outcomes = traffic.stop().await;
        let stdout = text(&out.stdout);
        let report: serde_json::Value =
            serde_json::from_str(stdout.lines().next().unwrap_or_default()).unwrap_or_else(|e| {
                panic!("the probe's report ({e}): {stdout}\n{}", text(&out.stderr))
            });
        let findings = report["findings"].as_array().expect("findings");
        eprintln!("sandbox probe in pod {name} (restricted profile):");
        for f in findings {
            eprintln!(
                "  {:<26} expected {:<13} got {:<13} {:>6} ms",
                f["case"].as_str().unwrap(),
                f["expected"].as_str().unwrap(),
                f["got"].as_str().unwrap(),
                f["millis"]
            );
        }
        let escaped: Vec<_> = findings.iter().filter(|f| f["held"] != true).collect();
        assert!(
            escaped.is_empty(),
            "cases not held in the pod: {escaped:#?}"
        );
        assert!(
            findings.len() >= 18,
            "the whole corpus ran: {}",
            findings.len()
        );
        assert_eq!(
            report["recovered"], true,
            "the probe's sandbox answers afterwards"
        );
        assert!(
            out.status.success(),
            "the probe exits 0 when everything held: {}",
            text(&out.stderr)
        );
        eprintln!(
            "  workers in a network namespace of their own: {}",
            report["network_isolated"]
        );

        // The pod served throughout and was never restarted.
        let failed: Vec<_> = outcomes.iter().filter(|o| !o.ok()).collect();
        eprintln!(
            "  calls meanwhile: {} sent, {} failed",
            outcomes.len(),
            failed.len()
        );
        assert!(
            outcomes.len() >= 20,
            "callers called during the probe ({})",
            outcomes.len()
        );
        assert!(
            failed.is_empty(),
            "calls failed during the probe: {failed:?}"
        );
        let after = pods.get(&name).await.unwrap();
        let status = after.status.unwrap();
        let restarts: i32 = status
            .container_statuses
            .iter()
            .flatten()
            .map(|c| c.restart_count)
            .sum();
        assert_eq!(restarts, 0, "the serving pod was not restarted");
        assert!(
            status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            "still Ready"
        );
        first_answer(&env, "inventory", "stock_level", json!({"sku": "AB-1"})).await;
    })
    .await;
}
