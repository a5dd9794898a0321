//! The Feature API, secured with the cluster's own identities: callers present
//! a Kubernetes token, the serving pod checks it (TokenReview) and RBAC
//! (SubjectAccessReview on `features/operations`, verb `invoke`), and every
//! call leaves an audit record on the pod's stdout and in the Redis stream.
#![allow(clippy::unwrap_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use eol_core::crd::Feature;
use eol_kind_tests::cli::get_row;
use eol_kind_tests::fixtures::{
    INVENTORY, INVENTORY_TESTS, busybox_image, feature, namespace_redis,
    service_account_with_access, token,
};
use eol_kind_tests::{REVIEWER_ROLE, TestEnv, feature_ready, in_namespace, wait_for};
use k8s_openapi::api::core::v1::{Pod, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Api;
use kube::api::{ListParams, LogParams};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// The local cluster's service-account signing key (kind-tests/lib/pki.sh).
const SIGNING_KEY: &str = "/var/lib/eol-kind/pki/sa.key";

/// A ServiceAccount token signed with the cluster's own key, as the API server
/// signs them, valid from `from` to `until` (Unix seconds): the only way to
/// hold a token that has really expired (TokenRequest issues 10 minutes at least).
async fn signed_token(env: &TestEnv, account: &str, from: u64, until: u64) -> String {
    let issuer: Value = serde_json::from_str(
        &env.client
            .request_text(
                http::Request::get("/.well-known/openid-configuration")
                    .body(Vec::new())
                    .unwrap(),
            )
            .await
            .expect("the API server's OIDC discovery"),
    )
    .unwrap();
    let uid = Api::<ServiceAccount>::namespaced(env.client.clone(), &env.namespace)
        .get(account)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let claims = json!({
        "iss": issuer["issuer"], "aud": [eol_core::runner_contract::DEFAULT_AUDIENCE],
        "sub": format!("system:serviceaccount:{}:{account}", env.namespace),
        "iat": from, "nbf": from, "exp": until,
        "kubernetes.io": {"namespace": env.namespace, "serviceaccount": {"name": account, "uid": uid}},
    });
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let signed = format!("{}.{}", encode(&json!({"alg": "RS256"})), encode(&claims));
    assert!(
        std::path::Path::new(SIGNING_KEY).exists(),
        "{SIGNING_KEY} is missing: this test needs the local cluster (kind-tests/cluster.sh up)"
    );
    let mut openssl = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-sign", SIGNING_KEY])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    use std::io::Write;
    openssl
        .stdin
        .take()
        .unwrap()
        .write_all(signed.as_bytes())
        .unwrap();
    let out = openssl.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl failed to sign");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(out.stdout))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The audit records in `text` (the pod's stdout, or the stream's entries).
fn audit_records(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["record"] == "eol.audit")
        .collect()
}

#[tokio::test]
async fn callers_need_a_kubernetes_token_that_rbac_allows_and_every_call_is_audited() {
    in_namespace("auth", |env| async move {
        let ns = env.namespace.clone();
        env.create(&feature(
            "inventory",
            json!({"source": {"inline": INVENTORY}, "tests": INVENTORY_TESTS, "replicas": 1,
                   "audit": {"streamMaxLength": 1000}}),
        ))
        .await;
        let (client, ns_ref) = (&env.client, ns.as_str());
        service_account_with_access(client, ns_ref, "bound", Some(&["inventory"])).await;
        service_account_with_access(client, ns_ref, "one-op", Some(&["inventory/stock_level"]))
            .await;
        service_account_with_access(client, ns_ref, "unbound", None).await;
        wait_for(&env.api::<Feature>(), "inventory", READY_TIMEOUT, feature_ready).await;

        // What the operator made of it, read back: the serving pod runs as the
        // namespace's reviewer account with its token, which the binding ties
        // to the reviewer role, owned by the Namespace.
        let pods = env.api::<Pod>();
        let serving = pods
            .list(&ListParams::default().labels("app.kubernetes.io/instance=inventory"))
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|p| p.metadata.deletion_timestamp.is_none())
            .expect("a serving pod");
        let spec = serving.spec.clone().unwrap();
        assert_eq!(spec.service_account_name.as_deref(), Some("eol-runner"));
        assert_eq!(spec.automount_service_account_token, Some(true));
        let binding = Api::<ClusterRoleBinding>::all(env.client.clone())
            .get(&format!("{REVIEWER_ROLE}:{ns}"))
            .await
            .expect("the reviewer binding");
        assert_eq!(binding.role_ref.name, REVIEWER_ROLE);
        let subjects = binding.subjects.unwrap();
        assert_eq!((subjects[0].name.as_str(), subjects[0].namespace.as_deref()), ("eol-runner", Some(ns_ref)));
        assert_eq!(binding.metadata.owner_references.unwrap()[0].kind, "Namespace");

        let audience = eol_core::runner_contract::DEFAULT_AUDIENCE;
        let tokens = BTreeMap::from([
            ("ONE_OP", token(client, ns_ref, "one-op", audience).await),
            ("UNBOUND", token(client, ns_ref, "unbound", audience).await),
            ("OTHER_AUDIENCE", token(client, ns_ref, "bound", "someone-else").await),
            ("EXPIRED", signed_token(&env, "bound", now() - 1200, now() - 600).await),
            // The same kind of token, not expired: accepted, so the expiry is what refuses the other.
            ("SIGNED", signed_token(&env, "bound", now() - 60, now() + 600).await),
            ("FORGED", {
                let real = token(client, ns_ref, "bound", audience).await;
                let (rest, _signature) = real.rsplit_once('.').unwrap();
                format!("{rest}.{}", URL_SAFE_NO_PAD.encode(b"not the signature"))
            }),
        ]);

        // A pod running as `bound`, with a projected token for the audience,
        // calls the Feature by its Service name with each token.
        let script = r#"
call() { # name token operation
  out=$(timeout 10 wget -qO- --header "Authorization: Bearer $2" --header 'Content-Type: application/json' \
        --post-data '{"sku": "AUTH-1", "quantity": 1}' "http://inventory/v1/operations/$3" 2>&1)
  echo "$1 $3 rc=$? $out"
}
for i in $(seq 30); do timeout 10 wget -qO- --header "Authorization: Bearer $(cat /var/run/secrets/eol/token)" \
  --post-data '{"sku": "AUTH-1"}' http://inventory/v1/operations/stock_level >/dev/null 2>&1 && break; sleep 1; done
MINE=$(cat /var/run/secrets/eol/token)
call bound "$MINE" add_stock
call bound "$MINE" stock_level
call one-op "$ONE_OP" stock_level
call one-op "$ONE_OP" add_stock
call unbound "$UNBOUND" stock_level
call other-audience "$OTHER_AUDIENCE" stock_level
call expired "$EXPIRED" stock_level
call signed "$SIGNED" stock_level
call forged "$FORGED" stock_level
out=$(timeout 10 wget -qO- --post-data '{"sku": "AUTH-1"}' http://inventory/v1/operations/stock_level 2>&1)
echo "none stock_level rc=$? $out"
"#;
        let env_vars: Vec<Value> = tokens
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect();
        let client_pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "caller"},
            "spec": {"restartPolicy": "Never", "serviceAccountName": "bound",
                "automountServiceAccountToken": false,
                "containers": [{
                    "name": "caller", "image": busybox_image(), "imagePullPolicy": "Never",
                    "command": ["sh", "-c", script], "env": env_vars,
                    "volumeMounts": [{"name": "token", "mountPath": "/var/run/secrets/eol", "readOnly": true}]
                }],
                "volumes": [{"name": "token", "projected": {"sources": [{"serviceAccountToken": {
                    "audience": audience, "expirationSeconds": 3600, "path": "token"}}]}}]
            }
        }))
        .unwrap();
        env.create(&client_pod).await;
        wait_for(&pods, "caller", Duration::from_secs(120), |p| {
            p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
        })
        .await;
        let log = pods.logs("caller", &LogParams::default()).await.unwrap();
        let answer = |who: &str, op: &str| -> String {
            log.lines()
                .find(|l| l.starts_with(&format!("{who} {op} ")))
                .unwrap_or_else(|| panic!("no call by {who} to {op} in the pod's log:\n{log}"))
                .to_owned()
        };
        let ok = |line: String| {
            assert!(line.contains("rc=0") && line.contains(r#""sku":"AUTH-1""#), "{line}\n{log}")
        };
        let refused = |line: String, status: &str| {
            assert!(line.contains(&format!("HTTP/1.1 {status}")), "expected {status}: {line}\n{log}")
        };
        ok(answer("bound", "add_stock"));
        ok(answer("bound", "stock_level"));
        ok(answer("one-op", "stock_level"));
        refused(answer("one-op", "add_stock"), "403");
        refused(answer("unbound", "stock_level"), "403");
        refused(answer("other-audience", "stock_level"), "401");
        refused(answer("expired", "stock_level"), "401");
        ok(answer("signed", "stock_level"));
        refused(answer("forged", "stock_level"), "401");
        refused(answer("none", "stock_level"), "401");

        // The refusals' bodies: JSON with stable kinds (read from the node).
        let ip = env
            .api::<Service>()
            .get("inventory")
            .await
            .unwrap()
            .spec
            .and_then(|s| s.cluster_ip)
            .unwrap();
        let http = reqwest::Client::new();
        let post = |token: Option<&str>, op: &str| {
            let mut request = http
                .post(format!("http://{ip}/v1/operations/{op}"))
                .json(&json!({"sku": "AUTH-2"}));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send()
        };
        let unauthenticated = post(Some(&tokens["EXPIRED"]), "stock_level").await.unwrap();
        assert_eq!(unauthenticated.status(), 401);
        let body: Value = unauthenticated.json().await.unwrap();
        assert_eq!(body["error"]["kind"], "unauthenticated", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");
        let forbidden = post(Some(&tokens["UNBOUND"]), "stock_level").await.unwrap();
        assert_eq!(forbidden.status(), 403);
        let body: Value = forbidden.json().await.unwrap();
        assert_eq!(body["error"]["kind"], "forbidden", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("system:serviceaccount:{ns}:unbound")) && message.contains("invoke"), "{body}");

        // Each call left a record: on the pod's stdout and in the stream.
        let stdout = pods
            .logs(&serving.metadata.name.clone().unwrap(), &LogParams::default())
            .await
            .unwrap();
        let records = audit_records(&stdout);
        let calls_from_the_pod = log.lines().filter(|l| l.contains(" rc=")).count();
        assert!(
            records.len() >= calls_from_the_pod + 2,
            "{} audit records for {} calls from the pod and 2 from the node:\n{stdout}",
            records.len(),
            calls_from_the_pod
        );
        let by = |user: &str, outcome: &str| {
            records
                .iter()
                .find(|r| r["user"] == user && r["outcome"] == outcome)
                .unwrap_or_else(|| panic!("no {outcome} record of {user} in:\n{stdout}"))
                .clone()
        };
        let bound = by(&format!("system:serviceaccount:{ns}:bound"), "ok");
        assert_eq!(bound["feature"], "inventory");
        assert_eq!(bound["phase"], "implementation");
        assert_eq!(bound["status"], 200);
        assert!(bound["groups"].as_array().unwrap().iter().any(|g| g == "system:serviceaccounts"), "{bound}");
        assert!(bound["duration_ms"].as_f64().unwrap() > 0.0);
        // The bodies the pod sent: the record holds the hash of one of them.
        let hashes: Vec<String> = [r#"{"sku": "AUTH-1", "quantity": 1}"#, r#"{"sku": "AUTH-1"}"#]
            .iter()
            .map(|b| Sha256::digest(b.as_bytes()).iter().map(|x| format!("{x:02x}")).collect())
            .collect();
        assert!(hashes.iter().any(|h| bound["input_sha256"] == h.as_str()), "{bound}");
        let denied = by(&format!("system:serviceaccount:{ns}:unbound"), "forbidden");
        assert_eq!(denied["status"], 403);
        let anonymous = by("system:anonymous", "unauthenticated");
        assert_eq!(anonymous["status"], 401);
        assert!(
            records.iter().all(|r| r.get("input").is_none()),
            "no record holds the input unless the Feature asks"
        );
        // The stream is written in the background: give it a moment.
        let mut redis = namespace_redis(&env).await;
        let mut streamed = 0;
        for _ in 0..20 {
            let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg("eol-audit:inventory")
                .arg("-")
                .arg("+")
                .query_async(&mut redis)
                .await
                .unwrap();
            for (_, fields) in &entries {
                for (field, value) in fields {
                    assert_eq!(field, "record");
                    let record: Value = serde_json::from_str(value).unwrap();
                    assert_eq!(record["record"], "eol.audit", "{record}");
                }
            }
            streamed = entries.len();
            if streamed >= records.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(streamed, records.len(), "the stream holds the records stdout has");

        // Opting out: `anonymous: true` is shown by `kubectl get features -o wide`,
        // and once the pods roll, a call without a token is answered.
        let unset = get_row("features", &ns, "inventory", true)["ANONYMOUS"].clone();
        assert!(matches!(unset.as_str(), "" | "<none>"), "{unset}");
        env.api::<Feature>()
            .patch(
                "inventory",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"access": {"anonymous": true}}})),
            )
            .await
            .unwrap();
        let started = std::time::Instant::now();
        loop {
            let answer = post(None, "stock_level").await.unwrap();
            if answer.status() == 200 {
                break;
            }
            assert_eq!(answer.status(), 401, "until the new pod serves");
            assert!(started.elapsed() < READY_TIMEOUT, "still refused after {READY_TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(get_row("features", &ns, "inventory", true)["ANONYMOUS"], "true");
    })
    .await;
}
