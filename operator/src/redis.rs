//! The managed Redis Stack: one per namespace that has Features, unless an
//! external Redis is configured. A StatefulSet with a persistent volume and AOF
//! persistence, a Service, and a generated password in a Secret that runner pods
//! read (never a plain environment value).
//!
//! It is shared by every Feature of the namespace, so each Feature adds itself
//! as a (non-controller) owner: the garbage collector removes the Redis when the
//! last Feature is gone. The volume claim stays, so data survives.

use crate::config::OperatorConfig;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::pod::{self, FIELD_MANAGER};
use eol_core::crd::KeyRef;
use k8s_openapi::api::apps::v1::StatefulSetPersistentVolumeClaimRetentionPolicy;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe, Secret, Service, ServicePort,
    ServiceSpec, TCPSocketAction, Volume, VolumeMount, VolumeResourceRequirements,
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
/// A second field manager, for owner references only: Server-Side Apply by
/// [`FIELD_MANAGER`] would otherwise drop the references of the other Features.
const OWNERS_MANAGER: &str = "eol-operator-owners";

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
        resources: Some(pod::resources(("50m", "64Mi"), ("1", "512Mi"))),
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

/// Makes sure the namespace's managed Redis exists and that `owner` is one of
/// its owners; returns the StatefulSet as the API server has it (just read or
/// written), so the caller can see its readiness without reading it again.
pub async fn ensure(
    client: &Client,
    namespace: &str,
    owner: &OwnerReference,
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
    add_owner(&secrets, secret, owner, &object).await?;

    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let svc = apply_if_changed(&services, service(namespace), &object).await?;
    add_owner(&services, svc, owner, &object).await?;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let sts = apply_if_changed(&sets, stateful_set(namespace, config), &object).await?;
    add_owner(&sets, sts, owner, &object).await
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
    let hash =
        crate::hash::hex(
            &serde_json::to_vec(&desired).map_err(|source| Error::Serialize {
                what: format!("the managed Redis of {object}"),
                source,
            })?,
        )[..16]
            .to_owned();
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

/// Adds `owner` to the object's owner references, unless it is there already.
async fn add_owner<K>(api: &Api<K>, obj: K, owner: &OwnerReference, object: &str) -> Result<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if obj.owner_references().iter().any(|r| r.uid == owner.uid) {
        return Ok(obj);
    }
    // A strategic merge patch merges owner references by uid, keeping the others'.
    let patch = serde_json::json!({ "metadata": { "ownerReferences": [owner] } });
    api.patch(
        &obj.name_any(),
        &PatchParams {
            field_manager: Some(OWNERS_MANAGER.to_owned()),
            ..PatchParams::default()
        },
        &Patch::Strategic(patch),
    )
    .await
    .map_err(Error::kube(
        "add a Feature as owner of the managed Redis",
        object,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let s = secret("team-a", "pw");
        let data = s.string_data.expect("data");
        assert_eq!(data["url"], "redis://:pw@eol-redis.team-a.svc:6379");
        assert_ne!(generate_password(), generate_password());
    }
}
