//! The managed Redis Stack: one per namespace that has Features, unless an
//! external Redis is configured. A StatefulSet with a persistent volume and AOF
//! persistence, a Service, and a generated password in a Secret that runner pods
//! read (never a plain environment value).
//!
//! It is shared by every Feature of the namespace and owned by none of them:
//! once it exists, a new Feature only reads it (one owner reference per
//! Feature made every new Feature rewrite all three objects, each carrying as
//! many references as the namespace had Features). [`sweep`] deletes it when
//! the namespace's last Feature is gone. The volume claim stays, so data
//! survives.

pub mod sweep;

use crate::config::OperatorConfig;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::pod::{self, FIELD_MANAGER};
use eol_core::crd::{Feature, KeyRef};
use k8s_openapi::api::apps::v1::StatefulSetPersistentVolumeClaimRetentionPolicy;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Secret,
    Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::BTreeMap;

/// Name of the managed Redis StatefulSet, Service and Secret.
pub const NAME: &str = "eol-redis";
/// The Redis port.
pub const PORT: i32 = 6379;

/// The Secret key runner pods read the Redis URL from.
pub fn url_secret(config: &OperatorConfig) -> KeyRef {
    KeyRef {
        name: config
            .external_redis_secret
            .clone()
            .unwrap_or_else(|| NAME.to_owned()),
        key: "url".to_owned(),
    }
}

/// The generated password Secret (created once, never rewritten).
pub fn secret(namespace: &str, password: &str) -> Secret {
    let url = format!("redis://:{password}@{NAME}.{namespace}.svc:{PORT}");
    Secret {
        metadata: ObjectMeta {
            name: Some(NAME.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(pod::labels(NAME, NAME)),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([
            ("password".to_owned(), password.to_owned()),
            ("url".to_owned(), url),
        ])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

/// The Redis Service.
pub fn service(namespace: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(NAME.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(pod::labels(NAME, NAME)),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(pod::labels(NAME, NAME)),
            ports: Some(vec![ServicePort {
                name: Some("redis".to_owned()),
                port: PORT,
                target_port: Some(IntOrString::String("redis".to_owned())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The Redis StatefulSet: one replica, AOF on a persistent volume.
pub fn stateful_set(namespace: &str, config: &OperatorConfig) -> StatefulSet {
    let labels = pod::labels(NAME, NAME);
    let container = Container {
        name: "redis".to_owned(),
        image: Some(config.redis_image.clone()),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        // The image's entrypoint loads the search and JSON modules; the kubelet
        // expands $(REDIS_PASSWORD) from the Secret-backed variable.
        args: Some(
            [
                "--port",
                "6379",
                "--requirepass",
                "$(REDIS_PASSWORD)",
                "--appendonly",
                "yes",
                "--dir",
                "/data",
            ]
            .map(str::to_owned)
            .to_vec(),
        ),
        env: Some(vec![pod::env_from_secret(
            "REDIS_PASSWORD",
            &KeyRef {
                name: NAME.to_owned(),
                key: "password".to_owned(),
            },
        )]),
        ports: Some(vec![ContainerPort {
            name: Some("redis".to_owned()),
            container_port: PORT,
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("redis".to_owned()),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".to_owned(),
                mount_path: "/data".to_owned(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".to_owned(),
                mount_path: "/tmp".to_owned(),
                ..VolumeMount::default()
            },
        ]),
        resources: Some(redis_resources()),
        security_context: Some(pod::container_security()),
        ..Container::default()
    };
    StatefulSet {
        metadata: ObjectMeta {
            name: Some(NAME.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(StatefulSetSpec {
            service_name: Some(NAME.to_owned()),
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".to_owned()),
                    when_scaled: Some("Retain".to_owned()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    security_context: Some(pod::pod_security()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    volumes: Some(vec![Volume {
                        name: "tmp".to_owned(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".to_owned()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                    storage_class_name: config.redis_storage_class.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_owned(),
                            Quantity(config.redis_storage.clone()),
                        )])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            }]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// The Redis pod asks for all the memory it may use (request = limit) and
/// for the local storage it uses (its logs and an unused `/tmp`; the data is
/// on the volume claim). Why: under node pressure the kubelet evicts first
/// the pods using more than they asked for, ranked by stale usage figures, and
/// with 64Mi and no storage asked for, the Redis pod holding every Feature's
/// data was evicted before the runner pod that took the node over
/// (`kind-tests/tests/pressure.rs`, both for memory and for disk).
fn redis_resources() -> ResourceRequirements {
    let mut resources = pod::resources(("50m", "512Mi"), ("1", "512Mi"));
    resources
        .requests
        .get_or_insert_with(BTreeMap::new)
        .insert("ephemeral-storage".to_owned(), Quantity("256Mi".to_owned()));
    resources
}

/// A fresh password: 32 random alphanumerics.
fn generate_password() -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// Makes sure the namespace's managed Redis exists; returns the StatefulSet
/// as the API server has it (just read or written), so the caller can see its
/// readiness without reading it again. Once the Redis exists and was applied
/// from the same spec, this only reads: a new Feature writes nothing to it.
pub async fn ensure(
    client: &Client,
    namespace: &str,
    config: &OperatorConfig,
) -> Result<StatefulSet> {
    let object = format!("{namespace}/{NAME}");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match secrets
        .get_opt(NAME)
        .await
        .map_err(Error::kube("read the Redis password Secret", &object))?
    {
        Some(s) => s,
        None => match secrets
            .create(
                &PostParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..PostParams::default()
                },
                &self::secret(namespace, &generate_password()),
            )
            .await
        {
            Ok(s) => s,
            // Another reconcile created it first: use that one.
            Err(kube::Error::Api(e)) if e.code == 409 => secrets
                .get(NAME)
                .await
                .map_err(Error::kube("read the Redis password Secret", &object))?,
            Err(e) => return Err(Error::kube("create the Redis password Secret", &object)(e)),
        },
    };
    drop_feature_owners(&secrets, secret, &object).await?;

    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let svc = apply_if_changed(&services, service(namespace), &object).await?;
    drop_feature_owners(&services, svc, &object).await?;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let sts = apply_if_changed(&sets, stateful_set(namespace, config), &object).await?;
    drop_feature_owners(&sets, sts, &object).await
}

/// Annotation holding the hash of what the operator last applied.
const APPLIED_HASH: &str = "eol.dev/applied-hash";

/// Applies `desired` unless the stored object was applied from the same spec:
/// every Feature of the namespace reconciles the shared Redis, and a no-op
/// apply is still a write.
async fn apply_if_changed<K>(api: &Api<K>, mut desired: K, object: &str) -> Result<K>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let hash = applied_hash(&desired, object)?;
    let name = desired.meta().name.clone().unwrap_or_default();
    let current = api
        .get_opt(&name)
        .await
        .map_err(Error::kube("read the managed Redis", object))?;
    if let Some(current) = current
        && current.annotations().get(APPLIED_HASH) == Some(&hash)
    {
        return Ok(current);
    }
    desired
        .annotations_mut()
        .insert(APPLIED_HASH.to_owned(), hash);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&desired),
    )
    .await
    .map_err(Error::kube("apply the managed Redis", object))
}

/// The value of [`APPLIED_HASH`] for `desired`.
fn applied_hash<K: serde::Serialize>(desired: &K, object: &str) -> Result<String> {
    let json = serde_json::to_vec(desired).map_err(|source| Error::Serialize {
        what: format!("the managed Redis of {object}"),
        source,
    })?;
    Ok(crate::hash::hex(&json)[..16].to_owned())
}

/// The label selector of managed Redis StatefulSets (what the cache watches).
pub fn selector() -> String {
    pod::selector_string(&pod::labels(NAME, NAME))
}

/// True when the StatefulSet reports a ready pod.
pub fn has_ready_pod(sts: &StatefulSet) -> bool {
    sts.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
        > 0
}

/// True when the namespace's managed Redis has a ready pod. A ready cached
/// StatefulSet answers at once; otherwise the API server is asked, since the
/// cache may not have seen it become ready yet.
pub async fn is_ready(ctx: &Context, namespace: &str) -> Result<bool> {
    if ctx
        .caches
        .redis(namespace, NAME)
        .is_some_and(|s| has_ready_pod(&s))
    {
        return Ok(true);
    }
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), namespace);
    let sts = sets.get_opt(NAME).await.map_err(Error::kube(
        "read the Redis StatefulSet",
        format!("{namespace}/{NAME}"),
    ))?;
    Ok(sts.is_some_and(|s| has_ready_pod(&s)))
}

/// The owner references to keep when `refs` holds Feature references, or
/// `None` when there is nothing to remove.
fn without_feature_owners(refs: &[OwnerReference]) -> Option<Vec<OwnerReference>> {
    let group = Feature::group(&());
    let is_feature = |r: &OwnerReference| {
        r.kind == Feature::kind(&()) && r.api_version.split('/').next() == Some(group.as_ref())
    };
    refs.iter()
        .any(is_feature)
        .then(|| refs.iter().filter(|r| !is_feature(r)).cloned().collect())
}

/// Removes the Feature owner references an older operator added (one per
/// Feature). Left in place, they would have the garbage collector delete the
/// Redis once those Features are gone, even while Features created since,
/// which no longer add themselves, still use it. One write per object on the
/// first reconcile after an upgrade; none afterwards.
async fn drop_feature_owners<K>(api: &Api<K>, obj: K, object: &str) -> Result<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(kept) = without_feature_owners(obj.owner_references()) else {
        return Ok(obj);
    };
    // A merge patch replaces the whole list; the resourceVersion makes it
    // fail (and the reconcile retry) should the list have changed meanwhile.
    let patch = serde_json::json!({ "metadata": {
        "resourceVersion": obj.resource_version(),
        "ownerReferences": if kept.is_empty() { None } else { Some(kept) },
    }});
    api.patch(
        &obj.name_any(),
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        },
        &Patch::Merge(patch),
    )
    .await
    .map_err(Error::kube(
        "remove the Feature owner references of the managed Redis",
        object,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::fixtures::{Expect, context, not_found};
    use serde_json::{Value, json};

    const SECRET: &str = "/api/v1/namespaces/shop/secrets/eol-redis";
    const SERVICE: &str = "/api/v1/namespaces/shop/services/eol-redis";
    const STATEFULSET: &str = "/apis/apps/v1/namespaces/shop/statefulsets/eol-redis";

    /// An owner reference to the Feature `name`.
    fn feature_owner(name: &str) -> Value {
        json!({"apiVersion": "eol.dev/v1alpha1", "kind": "Feature", "name": name, "uid": format!("uid-{name}")})
    }

    /// `object` as stored: applied from today's spec, with `owners` (also
    /// the Feature scenarios' answers).
    pub(crate) fn stored(mut object: Value, owners: Vec<Value>) -> (u16, Value) {
        let hash = applied_hash(&object, "test").expect("hash");
        object["metadata"]["annotations"] = json!({ APPLIED_HASH: hash });
        object["metadata"]["resourceVersion"] = json!("7");
        if !owners.is_empty() {
            object["metadata"]["ownerReferences"] = json!(owners);
        }
        (200, object)
    }

    /// `k` as JSON.
    pub(crate) fn json_of<K: serde::Serialize>(k: &K) -> Value {
        serde_json::to_value(k).expect("json")
    }

    #[test]
    fn only_feature_owner_references_are_removed() {
        let refs: Vec<OwnerReference> = serde_json::from_value(json!([
            feature_owner("a"),
            {"apiVersion": "example.com/v1", "kind": "Feature", "name": "theirs", "uid": "x"},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "keeper", "uid": "y"},
            feature_owner("b"),
        ]))
        .expect("refs");
        let kept = without_feature_owners(&refs).expect("something to remove");
        let names: Vec<&str> = kept.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["theirs", "keeper"]);
        assert_eq!(
            without_feature_owners(&kept),
            None,
            "nothing left to remove"
        );
        assert_eq!(without_feature_owners(&[]), None);
    }

    #[tokio::test]
    async fn a_missing_redis_is_created_owned_by_no_feature() {
        let (ctx, server) = context(OperatorConfig::default());
        let no_owners = |o: &Value| assert!(o["metadata"]["ownerReferences"].is_null(), "{o}");
        let verify = server.run(vec![
            Expect::new("GET", SECRET, not_found("secrets \"eol-redis\"")),
            Expect::new(
                "POST",
                "/api/v1/namespaces/shop/secrets",
                stored(json_of(&secret("shop", "pw")), vec![]),
            )
            .checking(move |s| no_owners(&s)),
            Expect::new("GET", SERVICE, not_found("services \"eol-redis\"")),
            Expect::new("PATCH", SERVICE, stored(json_of(&service("shop")), vec![]))
                .checking(move |s| no_owners(&s)),
            Expect::new(
                "GET",
                STATEFULSET,
                not_found("statefulsets.apps \"eol-redis\""),
            ),
            Expect::new(
                "PATCH",
                STATEFULSET,
                stored(
                    json_of(&stateful_set("shop", &OperatorConfig::default())),
                    vec![],
                ),
            )
            .checking(move |s| no_owners(&s)),
        ]);
        ensure(&ctx.client, "shop", &ctx.config)
            .await
            .expect("ensured");
        verify.await.expect("the API calls were as expected");
    }

    #[tokio::test]
    async fn an_existing_redis_is_only_read() {
        let (ctx, server) = context(OperatorConfig::default());
        let verify = server.run(vec![
            Expect::new(
                "GET",
                SECRET,
                stored(json_of(&secret("shop", "pw")), vec![]),
            ),
            Expect::new("GET", SERVICE, stored(json_of(&service("shop")), vec![])),
            Expect::new(
                "GET",
                STATEFULSET,
                stored(
                    json_of(&stateful_set("shop", &OperatorConfig::default())),
                    vec![],
                ),
            ),
        ]);
        ensure(&ctx.client, "shop", &ctx.config)
            .await
            .expect("ensured");
        verify
            .await
            .expect("no write: a new Feature costs the Redis nothing");
    }

    #[tokio::test]
    async fn feature_owner_references_of_an_older_operator_are_removed_once() {
        let (ctx, server) = context(OperatorConfig::default());
        let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "keeper", "uid": "y"});
        let legacy = vec![feature_owner("a"), feature_owner("b")];
        let mut with_other = legacy.clone();
        with_other.push(other.clone());
        let kept = other.clone();
        let verify = server.run(vec![
            Expect::new(
                "GET",
                SECRET,
                stored(json_of(&secret("shop", "pw")), with_other),
            ),
            Expect::new(
                "PATCH",
                SECRET,
                stored(json_of(&secret("shop", "pw")), vec![other]),
            )
            .checking(move |patch| {
                assert_eq!(patch["metadata"]["ownerReferences"], json!([kept]));
                assert_eq!(patch["metadata"]["resourceVersion"], "7", "optimistic");
            }),
            Expect::new(
                "GET",
                SERVICE,
                stored(json_of(&service("shop")), legacy.clone()),
            ),
            Expect::new("PATCH", SERVICE, stored(json_of(&service("shop")), vec![])).checking(
                |patch| {
                    let refs = &patch["metadata"]["ownerReferences"];
                    assert!(
                        refs.is_null() && patch["metadata"].get("ownerReferences").is_some(),
                        "{patch}"
                    );
                },
            ),
            Expect::new(
                "GET",
                STATEFULSET,
                stored(
                    json_of(&stateful_set("shop", &OperatorConfig::default())),
                    legacy,
                ),
            ),
            Expect::new(
                "PATCH",
                STATEFULSET,
                stored(
                    json_of(&stateful_set("shop", &OperatorConfig::default())),
                    vec![],
                ),
            ),
        ]);
        ensure(&ctx.client, "shop", &ctx.config)
            .await
            .expect("ensured");
        verify.await.expect("the API calls were as expected");
    }

    #[test]
    fn redis_is_persistent_confined_and_reads_its_password_from_the_secret() {
        let sts =
            serde_json::to_value(stateful_set("team-a", &OperatorConfig::default())).expect("json");
        let spec = &sts["spec"];
        assert_eq!(
            spec["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
            "1Gi"
        );
        let c = &spec["template"]["spec"]["containers"][0];
        let args: Vec<&str> = c["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        assert!(args.windows(2).any(|w| w == ["--appendonly", "yes"]));
        assert_eq!(c["env"][0]["valueFrom"]["secretKeyRef"]["name"], NAME);
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
        assert_eq!(
            spec["template"]["spec"]["securityContext"]["runAsNonRoot"],
            true
        );
        assert_eq!(
            spec["template"]["spec"]["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert!(c["resources"]["limits"]["memory"].is_string());
        assert_eq!(c["resources"]["requests"]["ephemeral-storage"], "256Mi");
        assert_eq!(
            c["resources"]["requests"]["memory"],
            c["resources"]["limits"]["memory"]
        );
        let s = secret("team-a", "pw");
        let data = s.string_data.expect("data");
        assert_eq!(data["url"], "redis://:pw@eol-redis.team-a.svc:6379");
        assert_ne!(generate_password(), generate_password());
    }
}
