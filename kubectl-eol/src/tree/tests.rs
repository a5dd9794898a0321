#![allow(clippy::unwrap_used)] // Fixtures are literals.

use super::*;
use serde_json::json;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn created(seconds: i64) -> String {
    at(seconds).to_string()
}

fn snapshot() -> Snapshot {
    let feature = serde_json::from_value(json!({
        "apiVersion": "eol.dev/v1alpha1", "kind": "Feature",
        "metadata": {"name": "inventory", "namespace": "shop", "creationTimestamp": created(0)},
        "spec": {"source": {"inline": "x"}},
        "status": {
            "phase": "hybrid", "desiredPhase": "hybrid",
            "operationPhases": {"add_stock": "implementation", "classify": "prototyping"},
            "readyReplicas": 1, "replicas": 1, "config": "bbb", "lastGoodConfig": "aaa",
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Ready", "message": "1/1 ready", "lastTransitionTime": created(10)},
                {"type": "PhaseSwitch", "status": "False", "reason": "Progressing", "message": "rolling out bbb", "lastTransitionTime": created(10)}
            ],
            "shadow": {"candidate": "bbb", "id": "bbb-1", "state": "Comparing", "agreement": "96% (24/25)",
                       "operations": [{"name": "classify", "samples": 25, "agree": 24, "disagree": 1, "errors": 0}]}
        }
    }))
    .unwrap();
    let cm = |hash: &str, phase: &str, t: i64| {
        serde_json::from_value(json!({"metadata": {"name": format!("inventory-{hash}"),
            "labels": {"eol.dev/config-hash": hash}, "annotations": {"eol.dev/phase": phase},
            "creationTimestamp": created(t)}}))
        .unwrap()
    };
    let deployment = serde_json::from_value(json!({
        "metadata": {"name": "inventory", "uid": "d1", "creationTimestamp": created(0)},
        "spec": {"replicas": 1, "selector": {}, "template": {}},
        "status": {"readyReplicas": 1, "updatedReplicas": 0}
    }))
    .unwrap();
    let rs = |name: &str, uid: &str, hash: &str, rev: &str, ready: i32| {
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": uid, "creationTimestamp": created(0),
                "labels": {"eol.dev/config-hash": hash},
                "annotations": {"deployment.kubernetes.io/revision": rev},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "inventory", "uid": "d1"}]},
            "spec": {"replicas": ready, "selector": {}},
            "status": {"replicas": ready, "readyReplicas": ready}
        }))
        .unwrap()
    };
    let pod = serde_json::from_value(json!({
        "metadata": {"name": "inventory-aaa-x1", "creationTimestamp": created(5),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "inventory-aaa", "uid": "r1"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "runner", "image": "x", "imageID": "", "ready": true, "restartCount": 2}]}
    }))
    .unwrap();
    let run = serde_json::from_value(json!({
        "apiVersion": "eol.dev/v1alpha1", "kind": "FeatureRun",
        "metadata": {"name": "inventory-tests", "creationTimestamp": created(20)},
        "spec": {"featureRef": "inventory", "tests": true},
        "status": {"conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded", "message": "", "lastTransitionTime": created(30)}],
            "summary": {"testsPassed": 4, "testsFailed": 0, "duration": "1.2s"}}
    }))
    .unwrap();
    Snapshot {
        feature,
        config_maps: vec![cm("aaa", "implementation", 0), cm("bbb", "hybrid", 40)],
        deployments: vec![deployment],
        replica_sets: vec![
            rs("inventory-aaa", "r1", "aaa", "1", 1),
            rs("inventory-bbb", "r2", "bbb", "2", 0),
        ],
        pods: vec![pod],
        runs: vec![run],
        denied: vec![],
    }
}

#[test]
fn the_tree_hangs_each_object_under_its_owner_with_phases_switch_and_runs() {
    let text = render(&snapshot(), at(100));
    let expected = "\
Name:        inventory
Namespace:   shop
Phase:       hybrid (desired hybrid)
Operations:  add_stock=implementation  classify=prototyping
Replicas:    1/1 ready
Ready:       True Ready: 1/1 ready
Switch:      False Progressing: rolling out bbb
Shadow:      candidate bbb Comparing, agreement 96% (24/25)
               classify: 25 samples, 24 agree, 1 disagree, 0 errors

NAME                       KIND        STATUS          AGE   INFO
inventory                  Feature     hybrid          100s  Ready=True
├──inventory-aaa           ConfigMap   implementation  100s  last good
├──inventory-bbb           ConfigMap   hybrid          60s   serving
├──inventory               Deployment  1/1             100s  updated 0
│  ├──inventory-aaa        ReplicaSet  1/1             100s  rev 1, config aaa
│  │  └──inventory-aaa-x1  Pod         Running         95s   ready, 2 restarts
│  └──inventory-bbb        ReplicaSet  0/0             100s  rev 2, config bbb
└──runs                                                      last 1 of 1
   └──inventory-tests      FeatureRun  Succeeded       80s   tests, 4 passed, 0 failed, 1.2s
";
    assert_eq!(text, expected, "got:\n{text}");
}

#[test]
fn kinds_the_user_may_not_list_are_named_not_shown_empty() {
    let mut s = snapshot();
    s.pods.clear();
    s.denied.push("pods");
    let text = render(&s, at(100));
    assert!(
        text.ends_with("(pods: not shown, you may not list them in namespace shop)\n"),
        "{text}"
    );
}

#[test]
fn long_outputs_are_shortened_with_an_ellipsis() {
    assert_eq!(shorten("abcdef", 4), "abc…");
    assert_eq!(shorten("abc", 4), "abc");
}
