//! A chart release per test: `helm install` into a fresh namespace that it
//! alone watches, the body, then `helm uninstall` and the namespace's removal.

use crate::cli::{helm, repo_root, text};
use crate::{
    client, create_namespace, delete_namespace, dump, install_crds, keep_namespaces, rethrow,
};
use kube::Client;
use std::future::Future;

/// The release name in every test namespace (releases are namespaced).
pub const RELEASE: &str = "eol";

/// A path in the repository, as a string argument.
pub fn repo_path(rel: &str) -> String {
    repo_root().join(rel).to_string_lossy().into_owned()
}

/// Runs `body` in a fresh namespace (restricted PodSecurity) with the chart
/// installed into it; dumps the namespace when the body fails, then removes it.
pub async fn with_release<F, Fut>(test: &str, values: Vec<String>, body: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let client = client().await;
    install_crds(&client).await;
    let ns = format!("eol-e2e-{test}-{}", rand::random::<u32>() % 100_000);
    let labels = serde_json::json!({
        "eol.dev/test": "e2e",
        "pod-security.kubernetes.io/enforce": "restricted",
    });
    create_namespace(&client, &ns, labels).await;
    let chart = repo_path("charts/eol");
    let watch = format!("watchNamespace={ns}");
    let mut args = vec![
        "install",
        RELEASE,
        &chart,
        "--namespace",
        &ns,
        "--set",
        &watch,
        "--wait",
        "--timeout",
        "180s",
    ];
    for v in &values {
        args.extend(["--set", v.as_str()]);
    }
    let install = helm(&args);
    let outcome = if install.status.success() {
        tokio::spawn(body(client.clone(), ns.clone())).await
    } else {
        let message = format!(
            "helm install failed: {}\n(the images must be loaded: kind-tests/cluster.sh load-image project)",
            text(&install.stderr)
        );
        tokio::spawn(async move { panic!("{message}") }).await
    };
    if outcome.is_err() {
        dump(&client, &ns, std::path::Path::new("/nonexistent")).await;
    }
    if keep_namespaces() {
        eprintln!("kept namespace {ns} (EOL_KEEP_NAMESPACES=1)");
    } else {
        let _ = helm(&["uninstall", RELEASE, "--namespace", &ns]);
        delete_namespace(&client, &ns).await;
    }
    rethrow(outcome);
}
