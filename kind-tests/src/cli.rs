//! Running the command-line tools a user runs (helm, kubectl) against the test
//! cluster, with the versions the cluster scripts pin.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("kind-tests sits in the repository root")
        .to_owned()
}

/// helm and kubectl, where `kind-tests/lib/common.sh` puts them.
pub struct Tools {
    /// helm, built from its Go module by `cluster.sh build`.
    pub helm: PathBuf,
    /// kubectl of the cluster's version.
    pub kubectl: PathBuf,
}

/// Finds the tools once; panics saying how to build a missing one.
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        // The versions and cache paths live in one place: the cluster scripts.
        let common = repo_root().join("kind-tests/lib/common.sh");
        let out = Command::new("bash")
            .arg("-c")
            .arg(r#"source "$1" && printf '%s\n%s\n%s\n' "$HELM_BIN" "$HELM_VERSION" "$K8S_BIN""#)
            .arg("bash")
            .arg(&common)
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "sourcing {} failed: {}",
            common.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let (helm_bin, helm_version, k8s_bin) = (
            lines.next().unwrap_or_default().to_owned(),
            lines.next().unwrap_or_default().to_owned(),
            lines.next().unwrap_or_default().to_owned(),
        );
        let helm = Path::new(&helm_bin).join("helm");
        assert!(
            helm.is_file(),
            "helm {helm_version} is missing at {}: build it with `kind-tests/cluster.sh build` \
             (it builds helm.sh/helm/v4/cmd/helm into that cache)",
            helm.display()
        );
        // The cluster's own kubectl (v1.34) when the local cluster was built here;
        // otherwise (kind) the one on the PATH.
        let cached = Path::new(&k8s_bin).join("kubectl");
        let kubectl = if cached.is_file() {
            cached
        } else {
            PathBuf::from("kubectl")
        };
        Tools { helm, kubectl }
    })
}

/// Runs `program args`, feeding `stdin`.
pub fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .env("KUBECONFIG", crate::kubeconfig())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start {}: {e}", program.display()));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    child.wait_with_output().expect("wait for the child")
}

/// Runs helm.
pub fn helm(args: &[&str]) -> Output {
    run(&tools().helm, args, None)
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs kubectl.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    run(&tools().kubectl, args, stdin)
}
