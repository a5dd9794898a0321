//! Runner pods as in-cluster clients and the namespace's Redis see them: a
//! pod calls a Feature by its Service name. Each test runs in its own
//! namespace with its own operator.
#![allow(clippy::unwrap_used)]

use eol_core::crd::Feature;
use eol_kind_tests::fixtures::{INVENTORY, INVENTORY_TESTS, busybox_image, feature};
use eol_kind_tests::{feature_ready, in_namespace, wait_for};
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use std::time::Duration;

/// Pods pull no image and start in seconds here, but the tests gate readiness.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test]
async fn a_pod_in_the_cluster_calls_a_feature_by_its_service_name() {
    in_namespace("client", |env| async move {
        env.create(&feature(
            "inventory",
            serde_json::json!({"source": {"inline": INVENTORY}, "tests": INVENTORY_TESTS, "replicas": 1}),
        ))
        .await;
        wait_for(&env.api::<Feature>(), "inventory", READY_TIMEOUT, feature_ready).await;
        // busybox wget -T segfaults (kind-tests/README.md): `timeout` bounds each try.
        let script = "for i in $(seq 30); do \
            timeout 5 wget -qO- --header 'Content-Type: application/json' \
              --post-data '{\"sku\": \"AB-1\", \"quantity\": 2}' http://inventory/v1/operations/add_stock && exit 0; \
            sleep 1; done; exit 1";
        let client: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "client"},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "client", "image": busybox_image(), "imagePullPolicy": "Never",
                "command": ["sh", "-c", script]
            }]}
        }))
        .unwrap();
        env.create(&client).await;
        let pods = env.api::<Pod>();
        let done = wait_for(&pods, "client", Duration::from_secs(90), |p| {
            p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
        })
        .await;
        let log = pods.logs("client", &LogParams::default()).await.unwrap();
        let phase = done.status.unwrap().phase.unwrap();
        assert_eq!(phase, "Succeeded", "the client pod's log: {log}");
        let body: serde_json::Value = serde_json::from_str(log.trim()).unwrap_or_else(|e| panic!("{e}: {log}"));
        assert_eq!(body, serde_json::json!({"sku": "AB-1", "level": 2}));
    })
    .await;
}
