//! Least-privilege RBAC: the rendered rules checked rule by rule against the
//! operator's calls in both scopes (offline), then probed on the cluster with
//! SubjectAccessReviews as the chart's ServiceAccount.

use crate::{FULLNAME, find, in_namespaces, kind, name, namespace_of, objects, template};
use eol_kind_tests::cli::{run, text, tools};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// `(apiGroup, resource, verb)` with the resourceNames it is limited to (empty: any).
type Grants = BTreeMap<(String, String, String), Vec<String>>;

/// Every rule of `role`, refusing wildcards and non-resource URLs.
fn grants(role: &Value) -> Grants {
    let mut out = Grants::new();
    for rule in role["rules"].as_array().expect("rules") {
        assert!(
            rule.get("nonResourceURLs").is_none(),
            "{}: {rule}",
            name(role)
        );
        let list = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().expect("strings").to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        let (groups, resources, verbs, names) = (
            list("apiGroups"),
            list("resources"),
            list("verbs"),
            list("resourceNames"),
        );
        for item in groups.iter().chain(&resources).chain(&verbs).chain(&names) {
            assert!(!item.contains('*'), "a wildcard in {}: {rule}", name(role));
        }
        for g in &groups {
            for r in &resources {
                for v in &verbs {
                    let previous = out.insert((g.clone(), r.clone(), v.clone()), names.clone());
                    assert!(
                        previous.is_none(),
                        "{g}/{r} {v} granted twice in {}",
                        name(role)
                    );
                }
            }
        }
    }
    out
}

/// What the operator calls (operator/src), as `(group, resource, verbs)`.
/// Keep in step with the comment in charts/eol/templates/rbac.yaml.
fn expected_grants(managed_redis: bool) -> Grants {
    let mut expected = Grants::new();
    let mut add = |group: &str, resource: &str, verbs: &[&str], names: &[&str]| {
        for verb in verbs {
            expected.insert(
                (group.to_owned(), resource.to_owned(), (*verb).to_owned()),
                names.iter().map(|n| (*n).to_owned()).collect(),
            );
        }
    };
    // runtime.rs watchers; run/controller.rs reads the Feature.
    add("eol.dev", "features", &["get", "list", "watch"], &[]);
    add("eol.dev", "featureruns", &["list", "watch", "delete"], &[]);
    // write_status in both controllers.
    add("eol.dev", "features/status", &["patch"], &[]);
    add("eol.dev", "featureruns/status", &["patch"], &[]);
    // controller_owner_ref sets blockOwnerDeletion.
    add("eol.dev", "features/finalizers", &["update"], &[]);
    add("eol.dev", "featureruns/finalizers", &["update"], &[]);
    add(
        "",
        "configmaps",
        &["get", "list", "watch", "create", "patch", "delete"],
        &[],
    );
    add(
        "",
        "services",
        &["get", "list", "watch", "create", "patch"],
        &[],
    );
    add(
        "",
        "pods",
        &["get", "list", "watch", "create", "delete"],
        &[],
    );
    add("", "secrets", &["get"], &[]);
    add(
        "apps",
        "deployments",
        &["list", "watch", "create", "patch"],
        &[],
    );
    add("apps", "replicasets", &["list"], &[]);
    // feature/apply.rs: a Feature's HorizontalPodAutoscaler (spec.autoscaling).
    add(
        "autoscaling",
        "horizontalpodautoscalers",
        &["get", "create", "patch", "delete"],
        &[],
    );
    // feature/access.rs: the reviewer ServiceAccount, applied by name.
    add(
        "",
        "serviceaccounts",
        &["get", "create", "patch"],
        &["eol-runner"],
    );
    add("events.k8s.io", "events", &["create", "patch"], &[]);
    if managed_redis {
        add("", "secrets", &["create"], &[]);
        // redis.rs removes old Feature owner references; redis/sweep.rs
        // deletes the Redis once the namespace's last Feature is gone.
        add("", "secrets", &["patch", "delete"], &["eol-redis"]);
        add("", "services", &["delete"], &["eol-redis"]);
        add(
            "apps",
            "statefulsets",
            &["get", "create", "patch", "delete"],
            &["eol-redis"],
        );
        // runtime.rs: the Redis readiness cache.
        add("apps", "statefulsets", &["list", "watch"], &[]);
    }
    expected
}

/// The runner reviewer's: the two reviews, nothing else.
fn reviewer_grants() -> Grants {
    Grants::from([
        (
            (
                "authentication.k8s.io".into(),
                "tokenreviews".into(),
                "create".into(),
            ),
            vec![],
        ),
        (
            (
                "authorization.k8s.io".into(),
                "subjectaccessreviews".into(),
                "create".into(),
            ),
            vec![],
        ),
    ])
}

/// What feature/access.rs needs cluster-wide: bind the reviewer role only,
/// apply the namespaces' bindings and read the Namespace (its uid, the
/// binding's owner); by name when one namespace is watched.
fn runner_access_grants(release_ns: &str, watched: Option<&str>) -> Grants {
    let reviewer = format!("{FULLNAME}-{release_ns}-runner-reviewer");
    let only = |name: String| watched.map(|_| vec![name]).unwrap_or_default();
    let mut g = Grants::new();
    let rbac = "rbac.authorization.k8s.io".to_owned();
    g.insert(
        (rbac.clone(), "clusterroles".into(), "bind".into()),
        vec![reviewer.clone()],
    );
    for verb in ["get", "create", "patch"] {
        g.insert(
            (rbac.clone(), "clusterrolebindings".into(), verb.into()),
            only(format!("{reviewer}:{}", watched.unwrap_or_default())),
        );
    }
    g.insert(
        (String::new(), "namespaces".into(), "get".into()),
        only(watched.unwrap_or_default().to_owned()),
    );
    g
}

fn lease_grants() -> Grants {
    let mut g = Grants::new();
    let lease = |verb: &str| {
        (
            "coordination.k8s.io".to_owned(),
            "leases".to_owned(),
            verb.to_owned(),
        )
    };
    g.insert(lease("create"), vec![]);
    g.insert(lease("get"), vec!["eol-operator".to_owned()]);
    g.insert(lease("patch"), vec!["eol-operator".to_owned()]);
    g
}

#[test]
fn rbac_is_least_privilege_in_both_scopes() {
    let release_ns = "eol-system";
    for (sets, managed_redis) in [
        (vec![], true),
        (vec!["--set", "watchNamespace=team-a"], true),
        (vec!["--set", "redis.existingSecret=redis-url"], false),
        (
            vec![
                "--set",
                "watchNamespace=team-a",
                "--set",
                "redis.existingSecret=redis-url",
            ],
            false,
        ),
    ] {
        let objects = objects(&template(release_ns, &sets));
        let scoped = sets.iter().any(|s| s.starts_with("watchNamespace"));
        let (main_kind, main_ns) = if scoped {
            ("Role", "team-a")
        } else {
            ("ClusterRole", "")
        };
        // Cluster-wide, whatever is watched: the runner reviewer's role, and
        // the operator's right to bind it (by name when one namespace is watched).
        let reviewer = format!("{FULLNAME}-{release_ns}-runner-reviewer");
        let runner_access = format!("{FULLNAME}-{release_ns}-runner-access");
        let cluster_roles: Vec<&Value> = objects
            .iter()
            .filter(|o| kind(o) == "ClusterRole" && name(o) != FULLNAME)
            .collect();
        assert_eq!(
            cluster_roles.len(),
            2,
            "{sets:?}: the reviewer and runner-access roles"
        );
        for role in cluster_roles {
            let expected = if name(role) == reviewer {
                reviewer_grants()
            } else {
                assert_eq!(name(role), runner_access);
                runner_access_grants(release_ns, scoped.then_some("team-a"))
            };
            assert_eq!(grants(role), expected, "{sets:?}: {}", name(role));
        }
        if scoped {
            let bindings = find(&objects, "ClusterRoleBinding");
            assert!(
                bindings.len() == 1 && name(bindings[0]) == runner_access,
                "{sets:?}: watching one namespace binds nothing else cluster-wide"
            );
        }
        let roles: Vec<&Value> = objects
            .iter()
            .filter(|o| matches!(kind(o), "Role" | "ClusterRole"))
            .collect();
        assert_eq!(
            roles.len(),
            4,
            "{sets:?}: the operator's role, the Lease role, the runner reviewer and runner access roles"
        );
        let main = roles
            .iter()
            .find(|r| kind(r) == main_kind && name(r) == FULLNAME)
            .unwrap_or_else(|| panic!("{sets:?}: no {main_kind} {FULLNAME}"));
        assert_eq!(namespace_of(main), main_ns);
        let lease_role = roles
            .iter()
            .find(|r| name(r) == format!("{FULLNAME}-leader-election"))
            .expect("the leader-election Role");
        assert_eq!(kind(lease_role), "Role");
        assert_eq!(
            namespace_of(lease_role),
            release_ns,
            "the Lease permission only in the release namespace"
        );

        let granted = grants(main);
        for ((group, resource, verb), names) in &granted {
            if resource == "secrets" {
                assert!(
                    verb == "get"
                        || (managed_redis && verb == "create")
                        || (managed_redis
                            && matches!(verb.as_str(), "patch" | "delete")
                            && *names == ["eol-redis"]),
                    "{sets:?}: secrets {verb} {names:?} is more than the operator needs"
                );
            }
            assert!(
                group != "coordination.k8s.io",
                "{sets:?}: Leases only in the release namespace"
            );
        }
        assert_eq!(
            granted,
            expected_grants(managed_redis),
            "{sets:?}: the rules differ from the operator's calls"
        );
        assert_eq!(grants(lease_role), lease_grants());

        // Each binding ties its role to the chart's ServiceAccount.
        for binding in objects
            .iter()
            .filter(|o| matches!(kind(o), "RoleBinding" | "ClusterRoleBinding"))
        {
            assert_eq!(
                binding["subjects"],
                json!([{"kind": "ServiceAccount", "name": FULLNAME, "namespace": release_ns}])
            );
            assert!(
                roles.iter().any(|r| kind(r) == binding["roleRef"]["kind"]
                    && name(r) == binding["roleRef"]["name"]
                    && namespace_of(r) == namespace_of(binding)),
                "{sets:?}: {} refers to no role of the chart",
                name(binding)
            );
        }
    }
    // Leader election off: no Lease permission at all.
    let objects = objects(&template(
        release_ns,
        &["--set", "leaderElection.enabled=false"],
    ));
    assert!(
        !objects.iter().any(|o| name(o).ends_with("leader-election")),
        "no Lease role without leader election"
    );
}

/// Whether the chart's ServiceAccount may do `verb` on `resource`.
async fn allowed(
    client: &Client,
    user: &str,
    namespace: &str,
    (group, resource, verb, name): (&str, &str, &str, &str),
) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_owned())),
        None => (resource, None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                subresource,
                verb: Some(verb.to_owned()),
                namespace: Some(namespace.to_owned()),
                name: (!name.is_empty()).then(|| name.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    reviews
        .create(&PostParams::default(), &review)
        .await
        .expect("a SubjectAccessReview")
        .status
        .is_some_and(|s| s.allowed)
}

#[tokio::test]
async fn rbac_allows_the_operators_calls_and_refuses_the_rest() {
    in_namespaces("rbac", 2, |client, namespaces| async move {
        let (ns, watched) = (namespaces[0].clone(), namespaces[1].clone());
        let watch = format!("watchNamespace={watched}");
        // Only the namespaced RBAC objects are created for real (in the test's
        // namespaces); nothing cluster-scoped is left behind.
        let rbac = template(
            &ns,
            &[
                "--set",
                &watch,
                "--show-only",
                "templates/serviceaccount.yaml",
                "--show-only",
                "templates/rbac.yaml",
            ],
        );
        let out = run(
            &tools().kubectl,
            &[
                "apply",
                "--server-side",
                "--field-manager=eol-chart-test",
                "-f",
                "-",
            ],
            Some(&rbac),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let user = format!("system:serviceaccount:{ns}:{FULLNAME}");

        // Each call in operator/src, in the watched namespace.
        let calls = [
            ("eol.dev", "features", "list", ""),
            ("eol.dev", "features", "watch", ""),
            ("eol.dev", "features", "get", "inventory"),
            ("eol.dev", "featureruns", "list", ""),
            ("eol.dev", "featureruns", "watch", ""),
            ("eol.dev", "features/status", "patch", "inventory"),
            ("eol.dev", "featureruns/status", "patch", "run-1"),
            ("", "configmaps", "get", "inventory-source"),
            ("", "configmaps", "create", "run-1"),
            ("", "configmaps", "patch", "inventory-abc123"),
            ("", "configmaps", "delete", "inventory-abc123"),
            ("", "services", "patch", "inventory"),
            ("", "services", "create", "inventory"),
            ("", "services", "get", "eol-redis"),
            ("", "pods", "list", ""),
            ("", "secrets", "get", "llm-credentials"),
            ("", "secrets", "get", "eol-redis"),
            ("", "secrets", "create", ""),
            ("", "secrets", "patch", "eol-redis"),
            ("", "secrets", "delete", "eol-redis"),
            ("", "services", "delete", "eol-redis"),
            ("apps", "statefulsets", "delete", "eol-redis"),
            ("apps", "deployments", "patch", "inventory"),
            ("apps", "deployments", "create", "inventory"),
            ("apps", "replicasets", "list", ""),
            (
                "autoscaling",
                "horizontalpodautoscalers",
                "patch",
                "inventory",
            ),
            (
                "autoscaling",
                "horizontalpodautoscalers",
                "delete",
                "inventory",
            ),
            ("", "serviceaccounts", "get", "eol-runner"),
            ("", "serviceaccounts", "create", "eol-runner"),
            ("", "serviceaccounts", "patch", "eol-runner"),
            ("apps", "statefulsets", "get", "eol-redis"),
            ("apps", "statefulsets", "create", "eol-redis"),
            ("apps", "statefulsets", "patch", "eol-redis"),
            ("apps", "statefulsets", "list", ""),
            ("apps", "statefulsets", "watch", ""),
            ("", "pods", "get", "run-1-1"),
            ("", "pods", "create", ""),
            ("", "pods", "delete", "run-1-1"),
            ("", "pods", "watch", ""),
            ("eol.dev", "featureruns", "delete", "run-1"),
            ("events.k8s.io", "events", "create", ""),
            ("events.k8s.io", "events", "patch", "inventory.1"),
        ];
        for call in calls {
            assert!(
                allowed(&client, &user, &watched, call).await,
                "the operator needs {call:?} in {watched}"
            );
        }
        for call in [
            ("coordination.k8s.io", "leases", "create", ""),
            ("coordination.k8s.io", "leases", "get", "eol-operator"),
            ("coordination.k8s.io", "leases", "patch", "eol-operator"),
        ] {
            assert!(
                allowed(&client, &user, &ns, call).await,
                "the operator needs {call:?} in {ns}"
            );
        }

        // And nothing beyond them.
        let refused = [
            ("", "secrets", "list", ""),
            ("", "secrets", "watch", ""),
            ("", "secrets", "update", "eol-redis"),
            ("", "secrets", "delete", "llm-credentials"),
            ("", "secrets", "patch", "llm-credentials"),
            ("", "services", "delete", "inventory"),
            ("apps", "statefulsets", "create", "postgres"),
            ("apps", "statefulsets", "delete", "postgres"),
            ("apps", "deployments", "delete", "inventory"),
            // It never scales a Feature itself: the HPA does, through /scale.
            ("eol.dev", "features/scale", "update", "inventory"),
            ("autoscaling", "horizontalpodautoscalers", "list", ""),
            // Runner pods are created and deleted, never changed or entered.
            ("", "pods", "update", "inventory-1"),
            ("", "pods", "patch", "inventory-1"),
            ("", "pods", "deletecollection", ""),
            ("", "pods/exec", "create", "inventory-1"),
            ("", "pods/attach", "create", "inventory-1"),
            ("eol.dev", "featureruns", "update", "run-1"),
            ("eol.dev", "features", "update", "inventory"),
            ("eol.dev", "features", "delete", "inventory"),
            ("eol.dev", "featureruns", "create", ""),
            ("", "serviceaccounts", "create", ""),
            ("", "serviceaccounts", "patch", "default"),
            ("", "serviceaccounts/token", "create", "eol-runner"),
            ("rbac.authorization.k8s.io", "roles", "create", ""),
            ("coordination.k8s.io", "leases", "create", ""),
        ];
        for call in refused {
            assert!(
                !allowed(&client, &user, &watched, call).await,
                "{call:?} in {watched} is more than the operator needs"
            );
        }
        for call in [
            ("coordination.k8s.io", "leases", "patch", "someone-else"),
            ("", "configmaps", "list", ""),
            ("", "secrets", "get", "anything"),
        ] {
            assert!(
                !allowed(&client, &user, &ns, call).await,
                "{call:?} in the release namespace {ns} is more than the operator needs"
            );
        }
        // Nothing cluster-wide when one namespace is watched.
        for call in [
            ("eol.dev", "features", "list", ""),
            ("", "namespaces", "list", ""),
        ] {
            assert!(
                !allowed(&client, &user, "", call).await,
                "{call:?} cluster-wide with watchNamespace set"
            );
        }

        // The StatefulSet rule is limited by name: a Server-Side Apply that
        // creates is authorized as `create` of that name, so the operator's own
        // apply passes (dry-run, as the ServiceAccount) and another name does not.
        let statefulset = |sts: &str| {
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": sts, "namespace": watched},
                "spec": {"serviceName": sts, "selector": {"matchLabels": {"app": sts}},
                    "template": {"metadata": {"labels": {"app": sts}},
                        "spec": {"containers": [{"name": "redis", "image": "redis-stack"}]}}}})
            .to_string()
        };
        let as_operator = format!("--as={user}");
        let apply = |body: String| {
            run(
                &tools().kubectl,
                &[
                    "apply",
                    "--server-side",
                    "--dry-run=server",
                    "--field-manager=eol-operator",
                    &as_operator,
                    "-f",
                    "-",
                ],
                Some(&body),
            )
        };
        let ok = apply(statefulset("eol-redis"));
        assert!(ok.status.success(), "{}", text(&ok.stderr));
        let refused = apply(statefulset("postgres"));
        assert!(!refused.status.success());
        assert!(
            text(&refused.stderr).contains("forbidden"),
            "{}",
            text(&refused.stderr)
        );
    })
    .await;
}
