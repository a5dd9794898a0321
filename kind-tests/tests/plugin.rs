//! `kubectl eol`, run as a user runs it: through the cluster's own kubectl,
//! which finds `kubectl-eol` on the PATH, against a real Feature. What it
//! prints is checked against the objects read back from the API.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

use eol_core::crd::{Feature, FeatureRun};
use eol_kind_tests::cli::{kubectl, kubectl_eol, kubectl_eol_complete, must, text, tools};
use eol_kind_tests::fixtures::{INVENTORY, INVENTORY_TESTS, feature};
use eol_kind_tests::{binary, feature_ready, in_namespace, kubeconfig, wait_for};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::ResourceExt;
use kube::api::{ListParams, PostParams};
use kube::config::Kubeconfig;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// Stderr of a run that must fail with exit code `code`.
fn refused(out: Output, code: i32, what: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}; stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// The FeatureRun `kubectl eol run` says it created.
fn created(out: &str) -> String {
    out.lines()
        .find_map(|l| {
            l.strip_prefix("featurerun.eol.dev/")?
                .strip_suffix(" created")
        })
        .unwrap_or_else(|| panic!("no run name in:\n{out}"))
        .to_owned()
}

/// The tree row of `name`: the line whose name column (after the tree's lines) is `name`.
fn row<'a>(tree: &'a str, name: &str) -> &'a str {
    tree.lines()
        .find(|l| {
            l.trim_start_matches(['├', '└', '│', '─', ' '])
                .split_whitespace()
                .next()
                == Some(name)
        })
        .unwrap_or_else(|| panic!("no row {name} in the tree:\n{tree}"))
}

#[tokio::test]
async fn kubectl_eol_shows_the_tree_runs_an_operation_reads_its_log_and_follows_a_switch() {
    in_namespace("plugin", |env| async move {
        let ns = env.namespace.clone();
        env.create(&feature(
            "inventory",
            serde_json::json!({"source": {"inline": INVENTORY}, "tests": INVENTORY_TESTS}),
        ))
        .await;
        let features = env.api::<Feature>();
        let ready = wait_for(&features, "inventory", READY_TIMEOUT, |f| {
            feature_ready(f) && f.status.as_ref().is_some_and(|s| s.ready_replicas == 1)
        })
        .await;
        let config = Path::new(&kubeconfig()).to_owned();

        // The tree, against what the API holds.
        let tree = must(
            kubectl_eol(&config, &["get", "feature", "inventory", "-n", &ns]),
            "get feature",
        );
        eprintln!("{tree}");
        let status = ready.status.clone().unwrap();
        assert!(
            tree.contains("Phase:       implementation (desired implementation)\n"),
            "{tree}"
        );
        for (op, phase) in &status.operation_phases {
            assert!(tree.contains(&format!("{op}={phase}")), "{op} in:\n{tree}");
        }
        let serving = format!("inventory-{}", status.config.clone().unwrap());
        assert!(row(&tree, &serving).contains("serving"), "{tree}");
        assert!(row(&tree, "inventory").contains("Feature"), "{tree}");
        let pods = env
            .api::<Pod>()
            .list(&ListParams::default().labels("app.kubernetes.io/instance=inventory"))
            .await
            .unwrap();
        assert_eq!(pods.items.len(), 1);
        for pod in &pods.items {
            let line = row(&tree, &pod.name_any());
            assert!(line.contains("Running") && line.contains("ready"), "{line}");
            // Hung under its ReplicaSet, under the Deployment.
            assert!(
                line.starts_with("│     └──") || line.starts_with("      └──"),
                "{tree}"
            );
        }

        // A run, waited for; its output is the FeatureRun's.
        let out = must(
            kubectl_eol(
                &config,
                &[
                    "run",
                    "inventory",
                    "add_stock",
                    "--input",
                    r#"{"sku": "PL-1", "quantity": 3}"#,
                    "--wait",
                    "-n",
                    &ns,
                ],
            ),
            "run --wait",
        );
        let run_name = created(&out);
        assert!(run_name.starts_with("inventory-add-stock-"), "{run_name}");
        let run = env.api::<FeatureRun>().get(&run_name).await.unwrap();
        let output = run
            .status
            .as_ref()
            .unwrap()
            .summary
            .as_ref()
            .unwrap()
            .output
            .clone()
            .unwrap();
        assert_eq!(output, serde_json::json!({"sku": "PL-1", "level": 3}));
        assert!(
            out.contains(&serde_json::to_string_pretty(&output).unwrap()),
            "{out}"
        );

        // Its log is its pod's.
        let pod = run.status.as_ref().unwrap().pod_name.clone().unwrap();
        let log = must(
            kubectl_eol(&config, &["logs", &run_name, "-n", &ns]),
            "logs",
        );
        let direct = must(kubectl(&["logs", &pod, "-n", &ns], None), "kubectl logs");
        assert_eq!(log, direct);
        assert!(!log.trim().is_empty(), "the runner logs its run");

        // kubectl's own completion of `kubectl eol`, through the plugin's
        // `kubectl_complete-eol`: commands, then names from the cluster.
        let complete = |words: &[&str]| -> Vec<String> {
            let out = must(
                kubectl_eol_complete(&config, words),
                "kubectl __complete eol",
            );
            let mut lines: Vec<String> = out
                .lines()
                .map(|l| l.split('\t').next().unwrap_or_default().to_owned())
                .collect();
            assert_eq!(
                lines.pop().as_deref(),
                Some(":4"),
                "Cobra's no-file directive last: {out}"
            );
            lines
        };
        let commands = complete(&[""]);
        for command in ["get", "switch", "run", "logs", "compare"] {
            assert!(
                commands.contains(&command.to_owned()),
                "{command} in {commands:?}"
            );
        }
        assert_eq!(complete(&["switch", "-n", &ns, "inv"]), ["inventory"]);
        let operations = complete(&["run", "inventory", "-n", &ns, ""]);
        assert_eq!(
            operations,
            ["add_stock", "reserve", "stock_level"],
            "the Feature's operations"
        );
        assert_eq!(complete(&["logs", "-n", &ns, ""]), vec![run_name.clone()]);
        assert_eq!(complete(&["switch", "inventory", "--to", "h"]), ["hybrid"]);

        // The tree lists the run.
        let tree = must(
            kubectl_eol(&config, &["get", "feature", "inventory", "-n", &ns]),
            "get",
        );
        let line = row(&tree, &run_name);
        assert!(
            line.contains("FeatureRun") && line.contains("Succeeded") && line.contains("add_stock"),
            "{line}"
        );

        // A switch, followed live until the operator completes it.
        let started = Instant::now();
        let out = must(
            kubectl_eol(
                &config,
                &[
                    "switch",
                    "inventory",
                    "--to",
                    "hybrid",
                    "--watch",
                    "-n",
                    &ns,
                ],
            ),
            "switch --watch",
        );
        eprintln!("switch --watch took {:?}:\n{out}", started.elapsed());
        assert!(
            out.starts_with("switching Feature inventory to hybrid (generation "),
            "{out}"
        );
        assert!(out.contains("switch ended: Complete"), "{out}");
        let redraws = out.lines().filter(|l| l.starts_with("--- ")).count();
        assert!(
            redraws >= 2,
            "the tree was redrawn as the switch went on:\n{out}"
        );
        assert!(
            out.contains("Switch:      "),
            "the switch's condition is shown:\n{out}"
        );
        let f = features.get("inventory").await.unwrap();
        let status = f.status.unwrap();
        assert_eq!(status.phase, Some(eol_core::Phase::Hybrid));
        // The last tree drawn shows the new serving configuration.
        let last = out.rsplit("--- ").next().unwrap();
        let serving = format!("inventory-{}", status.config.unwrap());
        assert!(row(last, &serving).contains("serving"), "{last}");

        // One operation: the source is rewritten, the feature made hybrid.
        must(
            kubectl_eol(
                &config,
                &[
                    "switch",
                    "inventory",
                    "--to",
                    "prototyping",
                    "--operation",
                    "reserve",
                    "-n",
                    &ns,
                ],
            ),
            "switch --operation",
        );
        let f = features.get("inventory").await.unwrap();
        assert_eq!(f.spec.phase, Some(eol_core::Phase::Hybrid));
        let source =
            eol_core::parse_feature("inline", f.spec.source.inline.as_deref().unwrap()).unwrap();
        for op in &source.operations {
            let want = if op.name == "reserve" {
                "prototyping"
            } else {
                "implementation"
            };
            assert_eq!(op.phase.to_string(), want, "{}", op.name);
        }

        // Errors name the object and the namespace.
        let err = refused(
            kubectl_eol(&config, &["get", "feature", "nothing", "-n", &ns]),
            2,
            "missing",
        );
        assert_eq!(
            err.trim(),
            format!("error: Feature nothing not found in namespace {ns}")
        );
        let err = refused(
            kubectl_eol(&config, &["compare", "inventory", "-n", &ns]),
            2,
            "compare",
        );
        assert!(
            err.contains(&format!(
                "Feature inventory in namespace {ns} has no shadow comparison"
            )),
            "{err}"
        );
        let err = refused(
            kubectl_eol(
                &config,
                &["run", "inventory", "add_stock", "--input", "[1]", "-n", &ns],
            ),
            2,
            "bad input",
        );
        assert!(
            err.contains("--input: the input must be a JSON object"),
            "{err}"
        );
    })
    .await;
}

/// The admin kubeconfig with one more context, made current, whose cluster
/// nothing listens on; written to a file of the test's. Returns it and the
/// name of the admin's own context.
fn kubeconfig_elsewhere(dir: &Path) -> (std::path::PathBuf, String) {
    let mut config = Kubeconfig::read_from(kubeconfig()).unwrap();
    let real = config.current_context.clone().unwrap();
    let mut context = config
        .contexts
        .iter()
        .find(|c| c.name == real)
        .unwrap()
        .clone();
    let mut cluster = config.clusters[0].clone();
    cluster.name = "nowhere".into();
    cluster.cluster.as_mut().unwrap().server = Some("https://127.0.0.1:9".into());
    context.name = "elsewhere".into();
    context.context.as_mut().unwrap().cluster = "nowhere".into();
    config.clusters.push(cluster);
    config.contexts.push(context);
    config.current_context = Some("elsewhere".into());
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    (path, real)
}

#[tokio::test]
async fn kubectl_eol_runs_the_tests_in_a_phase_gives_up_waiting_follows_a_log_and_takes_a_context()
{
    in_namespace("plugin-run", |env| async move {
        let ns = env.namespace.clone();
        env.create(&feature(
            "inventory",
            serde_json::json!({"source": {"inline": INVENTORY}, "tests": INVENTORY_TESTS}),
        ))
        .await;
        wait_for(
            &env.api::<Feature>(),
            "inventory",
            READY_TIMEOUT,
            feature_ready,
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (config, real) = kubeconfig_elsewhere(dir.path());
        let eol = |args: &[&str]| {
            let mut all = vec!["--context", real.as_str()];
            all.extend_from_slice(args);
            all.extend_from_slice(&["-n", ns.as_str()]);
            kubectl_eol(&config, &all)
        };

        // --context: the kubeconfig's current context reaches nothing; the
        // named one is used, and one that does not exist is named.
        let err = refused(
            kubectl_eol(&config, &["get", "feature", "inventory", "-n", &ns]),
            2,
            "the current context",
        );
        assert!(
            err.contains("cannot reach the API server https://127.0.0.1:9")
                && err.contains("(context elsewhere) to get Feature inventory")
                && err.contains("Connection refused"),
            "names the server, the context and the cause: {err}"
        );
        let tree = must(eol(&["get", "feature", "inventory"]), "get --context");
        assert!(row(&tree, "inventory").contains("Feature"), "{tree}");
        let err = refused(
            kubectl_eol(
                &config,
                &[
                    "--context",
                    "no-such-context",
                    "get",
                    "feature",
                    "inventory",
                ],
            ),
            2,
            "a missing context",
        );
        assert!(err.contains("no-such-context"), "{err}");

        // --tests in another phase than the Feature's, waited for.
        let out = must(
            eol(&[
                "run",
                "inventory",
                "--tests",
                "--phase",
                "hybrid",
                "--wait",
                "--timeout",
                "600",
            ]),
            "run --tests --phase hybrid --wait",
        );
        assert!(out.contains("tests: 3 passed, 0 failed"), "{out}");
        let name = created(&out);
        assert!(name.starts_with("inventory-tests-"), "{name}");
        let run = env.api::<FeatureRun>().get(&name).await.unwrap();
        assert_eq!(
            (
                run.spec.tests,
                run.spec.operation.as_deref(),
                run.spec.phase
            ),
            (Some(true), None, Some(eol_core::Phase::Hybrid))
        );
        let status = run.status.unwrap();
        assert_eq!(
            status.phase,
            Some(eol_core::Phase::Hybrid),
            "the phase it ran in"
        );
        let summary = status.summary.unwrap();
        assert_eq!(
            (summary.tests_passed, summary.tests_failed),
            (Some(3), Some(0))
        );
        // The pod the operator made for it runs the tests in that phase, and
        // knows its own UID (a restarted container reports its first result).
        let pod = env
            .api::<Pod>()
            .get(&status.pod_name.unwrap())
            .await
            .unwrap();
        let container = &pod.spec.unwrap().containers[0];
        let args = container.args.clone().unwrap_or_default();
        assert!(
            args.windows(2)
                .any(|w| w[0] == "--phase" && w[1] == "hybrid"),
            "{args:?}"
        );
        let uid = container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "EOL_POD_UID")
            .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
            .map(|f| f.field_path.clone());
        assert_eq!(uid.as_deref(), Some("metadata.uid"));

        // --timeout: it stops waiting at once, names the run, and the run goes on.
        let out = eol(&[
            "run",
            "inventory",
            "add_stock",
            "--input",
            r#"{"sku": "FOLLOW-1", "quantity": 2}"#,
            "--wait",
            "--timeout",
            "0",
        ]);
        let name = created(&text(&out.stdout));
        let err = refused(out, 1, "run --timeout 0");
        assert!(
            err.contains(&format!(
                "FeatureRun {name} did not end within 0 s (it goes on"
            )),
            "{err}"
        );

        // logs --follow at once: it waits for the pod to start, then prints
        // until the pod ends, the same log as the pod's.
        let follow = {
            let (config, real, ns, name) = (config.clone(), real.clone(), ns.clone(), name.clone());
            tokio::task::spawn_blocking(move || {
                kubectl_eol(
                    &config,
                    &["--context", &real, "logs", &name, "--follow", "-n", &ns],
                )
            })
        };
        let followed = tokio::time::timeout(Duration::from_secs(300), follow)
            .await
            .expect("logs --follow ends when the pod ends")
            .unwrap();
        let followed = must(followed, "logs --follow");
        let run = env.api::<FeatureRun>().get(&name).await.unwrap();
        let pod_name = run.status.as_ref().unwrap().pod_name.clone().unwrap();
        // The stream ends with the container; the pod's phase follows it.
        wait_for(&env.api::<Pod>(), &pod_name, Duration::from_secs(60), |p| {
            p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|phase| phase == "Succeeded")
        })
        .await;
        // What it printed is the whole log, to its end.
        let direct = must(
            kubectl(&["logs", &pod_name, "-n", &ns], None),
            "kubectl logs",
        );
        assert!(!followed.trim().is_empty(), "the runner logs its run");
        assert_eq!(followed, direct);
        let run = wait_for(&env.api::<FeatureRun>(), &name, READY_TIMEOUT, |r| {
            r.status.as_ref().and_then(|s| s.summary.as_ref()).is_some()
        })
        .await;
        assert_eq!(
            run.status.unwrap().summary.unwrap().output,
            Some(serde_json::json!({"sku": "FOLLOW-1", "level": 2}))
        );
    })
    .await;
}

/// The admin kubeconfig acting as `user` (kubeconfig `as:`), written to a file of the test's.
fn kubeconfig_as(user: &str, dir: &Path) -> std::path::PathBuf {
    let mut config = Kubeconfig::read_from(kubeconfig()).unwrap();
    for named in &mut config.auth_infos {
        if let Some(info) = named.auth_info.as_mut() {
            info.impersonate = Some(user.to_owned());
        }
    }
    let path = dir.join("kubeconfig");
    // JSON is YAML: kubectl and the plugin read it alike.
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    path
}

#[tokio::test]
async fn kubectl_eol_acts_with_the_users_own_rbac_and_names_what_it_may_not_do() {
    in_namespace("plugin-rbac", |env| async move {
        let ns = env.namespace.clone();
        env.create(&feature("inventory", serde_json::json!({"source": {"inline": INVENTORY}})))
            .await;
        let dir = tempfile::tempdir().unwrap();
        let user = "eol-plugin-viewer";
        let config = kubeconfig_as(user, dir.path());

        // No access at all.
        let err = refused(kubectl_eol(&config, &["get", "feature", "inventory", "-n", &ns]), 2, "no access");
        assert!(
            err.contains(&format!("no access: you may not get features.eol.dev in namespace {ns}")),
            "{err}"
        );
        assert!(err.contains(user), "the API server's message names the user: {err}");

        // Read access to Features and FeatureRuns only: the tree, without what it may not list.
        let role: Role = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "feature-viewer"},
            "rules": [{"apiGroups": ["eol.dev"], "resources": ["features", "featureruns"], "verbs": ["get", "list"]}]
        }))
        .unwrap();
        env.api::<Role>().create(&PostParams::default(), &role).await.unwrap();
        let binding: RoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "feature-viewer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "feature-viewer"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
        }))
        .unwrap();
        env.api::<RoleBinding>().create(&PostParams::default(), &binding).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let tree = loop {
            let out = kubectl_eol(&config, &["get", "feature", "inventory", "-n", &ns]);
            if out.status.success() {
                break text(&out.stdout);
            }
            assert!(Instant::now() < deadline, "the Role never applied: {}", text(&out.stderr));
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert!(row(&tree, "inventory").contains("Feature"), "{tree}");
        for resource in ["configmaps", "deployments.apps", "replicasets.apps", "pods"] {
            assert!(
                tree.contains(&format!("({resource}: not shown, you may not list them in namespace {ns})")),
                "{resource}:\n{tree}"
            );
        }

        // Writes it was not granted are refused, naming the verb and resource.
        let err = refused(kubectl_eol(&config, &["switch", "inventory", "--to", "hybrid", "-n", &ns]), 2, "switch");
        assert!(err.contains(&format!("no access: you may not patch features.eol.dev in namespace {ns}")), "{err}");
        let err = refused(
            kubectl_eol(&config, &["run", "inventory", "add_stock", "--input", "{}", "-n", &ns]),
            2,
            "run",
        );
        assert!(err.contains(&format!("no access: you may not create featureruns.eol.dev in namespace {ns}")), "{err}");
        // Nothing was changed by the refused writes.
        let f = env.api::<Feature>().get("inventory").await.unwrap();
        assert_eq!(f.spec.phase, None);
        assert!(env.api::<FeatureRun>().list(&ListParams::default()).await.unwrap().items.is_empty());
    })
    .await;
}

#[tokio::test]
async fn krew_installs_kubectl_eol_from_the_package_and_kubectl_runs_it() {
    eol_kind_tests::install_crds(&eol_kind_tests::client().await).await;
    let dir = tempfile::tempdir().unwrap();
    let package = dir.path().join("package");
    let root = eol_kind_tests::cli::repo_root();
    let binary = binary("kubectl-eol");
    let out = Command::new(root.join("kubectl-eol/package.sh"))
        .args([
            "--binary",
            binary.to_str().unwrap(),
            package.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let listed = must(out, "package.sh");
    let (manifest, archive) = {
        let mut lines = listed.lines();
        (
            lines.next().unwrap().to_owned(),
            lines.next().unwrap().to_owned(),
        )
    };
    let text_of = std::fs::read_to_string(&manifest).unwrap();
    assert!(
        text_of.contains("kind: Plugin\nmetadata:\n  name: eol\n"),
        "{text_of}"
    );

    // krew checks the archive against the manifest's sha256 and links the binary into its bin/.
    let krew_root = dir.path().join("krew");
    let out = Command::new(&tools().krew)
        .args([
            "install",
            &format!("--manifest={manifest}"),
            &format!("--archive={archive}"),
        ])
        .env("KREW_ROOT", &krew_root)
        .output()
        .unwrap();
    let installed = text(&out.stderr);
    assert!(out.status.success(), "krew install failed: {installed}");
    assert!(installed.contains("Installed plugin: eol"), "{installed}");

    // kubectl finds it on the PATH krew asks for, and it reaches the API server.
    let path = std::env::join_paths(std::iter::once(krew_root.join("bin")).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(&tools().kubectl)
            .args(args)
            .env("PATH", &path)
            .env("KUBECONFIG", kubeconfig())
            .output()
            .unwrap()
    };
    let plugins = text(&run(&["plugin", "list"]).stdout);
    assert!(
        plugins.contains(&krew_root.join("bin/kubectl-eol").display().to_string()),
        "{plugins}"
    );
    let err = refused(
        run(&["eol", "get", "feature", "nothing", "-n", "default"]),
        2,
        "krew's kubectl eol",
    );
    assert_eq!(
        err.trim(),
        "error: Feature nothing not found in namespace default"
    );
    // The completion script comes along in krew's store; linked as the
    // README says, kubectl completes with it.
    let script = std::fs::read_dir(krew_root.join("store/eol"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("kubectl_complete-eol");
    assert!(script.is_file(), "{} in krew's store", script.display());
    std::os::unix::fs::symlink(&script, krew_root.join("bin/kubectl_complete-eol")).unwrap();
    let completed = text(&run(&["__complete", "eol", "com"]).stdout);
    assert!(
        completed.lines().any(|l| l.starts_with("compare\t"))
            && completed.lines().any(|l| l.starts_with("completions\t"))
            && completed.ends_with(":4\n"),
        "{completed}"
    );

    // A tampered archive is refused.
    std::fs::write(&archive, b"not the package").unwrap();
    let out = Command::new(&tools().krew)
        .args([
            "install",
            &format!("--manifest={manifest}"),
            &format!("--archive={archive}"),
        ])
        .env("KREW_ROOT", dir.path().join("krew2"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "krew installed a tampered archive");
    assert!(
        text(&out.stderr).contains("checksum does not match"),
        "{}",
        text(&out.stderr)
    );
}
