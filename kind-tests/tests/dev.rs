//! `eol dev --watch --cluster`: each good save is server-side applied to the
//! Feature's source ConfigMap, and the operator, which watches the
//! ConfigMaps Features name, rolls it out at once. Read back from the cluster:
//! the ConfigMap's data and field manager, and the Feature's new configuration.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

use eol_core::crd::Feature;
use eol_kind_tests::fixtures::{INVENTORY, INVENTORY_TESTS, agreeing_inventory, feature};
use eol_kind_tests::{binary, condition, feature_ready, in_namespace, kubeconfig, wait_for};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// The operator's periodic reconcile of a steady Feature is 5 minutes away: a
/// rollout within this proves the ConfigMap's edit triggered it.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(90);

/// Saves `text` to `path` as editors do: a new file renamed over the old.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("eol.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Reads `lines` until one contains `needle`; panics after 60 s with what was read.
async fn until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    needle: &str,
    seen: &mut Vec<String>,
) {
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let hit = line.contains(needle);
            seen.push(line);
            if hit {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "eol dev did not print {needle:?}:\n{}",
        seen.join("\n")
    );
}

#[tokio::test]
async fn eol_dev_pushes_each_good_save_to_the_source_config_map_and_the_operator_rolls_it_out() {
    in_namespace("dev", |env| async move {
        let ns = env.namespace.clone();
        let source: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "inventory-source"},
            "data": {"inventory.eol": INVENTORY}
        }))
        .unwrap();
        env.api::<ConfigMap>()
            .create(&PostParams::default(), &source)
            .await
            .unwrap();
        env.create(&feature(
            "inventory",
            serde_json::json!({
                "source": {"configMapKeyRef": {"name": "inventory-source", "key": "inventory.eol"}},
                "tests": INVENTORY_TESTS
            }),
        ))
        .await;
        env.create(&feature(
            "inline",
            serde_json::json!({"source": {"inline": INVENTORY}}),
        ))
        .await;
        let features = env.api::<Feature>();
        let first = wait_for(&features, "inventory", READY_TIMEOUT, feature_ready).await;
        let first_config = first.status.unwrap().config.unwrap();

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("inventory.eol");
        std::fs::write(&file, INVENTORY).unwrap();
        std::fs::write(dir.path().join("inventory.test.eol"), INVENTORY_TESTS).unwrap();

        // A Feature with an inline source has no ConfigMap to push to: refused at start.
        let refused = tokio::process::Command::new(binary("eol"))
            .args(["dev", file.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(["--cluster", "inline", "--namespace", &ns])
            .env("KUBECONFIG", kubeconfig())
            .env_remove("REDIS_URL")
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success());
        assert!(
            err.contains(&format!(
                "Feature 'inline' in namespace '{ns}' has an inline source"
            )),
            "{err}"
        );

        let mut dev = tokio::process::Command::new(binary("eol"))
            .args([
                "dev",
                file.to_str().unwrap(),
                "--watch",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(["--cluster", "inventory", "--namespace", &ns])
            .env("KUBECONFIG", kubeconfig())
            .env_remove("REDIS_URL")
            .env_remove("EOL_LLM_BASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(dev.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        let applied = format!("applied to ConfigMap {ns}/inventory-source (key inventory.eol)");
        until(&mut lines, &applied, &mut seen).await;

        // A save that changes the code: pushed, then rolled out by the operator.
        let changed = agreeing_inventory();
        let saved = Instant::now();
        save(&file, &changed);
        until(&mut lines, "(v2)", &mut seen).await;
        until(&mut lines, &applied, &mut seen).await;
        let cm = env
            .api::<ConfigMap>()
            .get("inventory-source")
            .await
            .unwrap();
        assert_eq!(cm.data.unwrap()["inventory.eol"], changed);
        let managers: Vec<(String, String)> = cm
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                (
                    m.manager.unwrap_or_default(),
                    m.operation.unwrap_or_default(),
                )
            })
            .collect();
        assert!(
            managers.contains(&("eol-dev".to_owned(), "Apply".to_owned())),
            "server-side applied as eol-dev: {managers:?}"
        );
        let rolled = wait_for(&features, "inventory", ROLLOUT_TIMEOUT, |f| {
            let s = f.status.as_ref();
            s.and_then(|s| s.config.as_deref())
                .is_some_and(|c| c != first_config)
                && s.and_then(|s| condition(&s.conditions, "PhaseSwitch"))
                    .is_some_and(|c| c.1 == "Complete")
        })
        .await;
        eprintln!("saved to rolled out: {:?}", saved.elapsed());
        let config = rolled.status.unwrap().config.unwrap();
        let served = env
            .api::<ConfigMap>()
            .get(&format!("inventory-{config}"))
            .await
            .unwrap();
        let served_source = served
            .data
            .unwrap()
            .into_values()
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            served_source.contains("level = int(value) if value is not None else 0"),
            "the new configuration carries the saved code"
        );

        // A broken save is not pushed: the ConfigMap keeps the last good source.
        save(&file, "---\nname: [broken\n---\n");
        until(&mut lines, "still serving v2", &mut seen).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cm = env
            .api::<ConfigMap>()
            .get("inventory-source")
            .await
            .unwrap();
        assert_eq!(cm.data.unwrap()["inventory.eol"], changed);
        // Stopped as Ctrl-C stops it, so it stops the local Redis it started too
        // (a SIGKILL would leave that Redis running).
        let pid = dev.id().unwrap() as i32;
        // SAFETY: kill(2) on our own child's pid, with a valid signal.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = tokio::time::timeout(Duration::from_secs(20), dev.wait())
            .await
            .expect("eol dev stops within 20 s of SIGTERM")
            .unwrap();
        assert!(status.success(), "eol dev exits 0 on SIGTERM: {status}");
    })
    .await;
}
