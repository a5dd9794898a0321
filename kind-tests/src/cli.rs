//! Running the command-line tools a user runs (helm, kubectl) against the test
//! cluster, with the versions the cluster scripts pin.

use std::collections::BTreeMap;
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

/// helm, kubectl and krew, where `kind-tests/lib/common.sh` puts them.
pub struct Tools {
    /// helm, built from its Go module by `cluster.sh build`.
    pub helm: PathBuf,
    /// krew (kubectl's plugin manager), built from its Go module by `cluster.sh build`.
    pub krew: PathBuf,
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
            .arg(r#"source "$1" && printf '%s\n%s\n%s\n%s\n' "$HELM_BIN" "$HELM_VERSION" "$K8S_BIN" "$KREW_BIN""#)
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
        let (helm_bin, helm_version, k8s_bin, krew_bin) = (
            lines.next().unwrap_or_default().to_owned(),
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
        let krew = Path::new(&krew_bin).join("krew");
        assert!(
            krew.is_file(),
            "krew is missing at {}: build it with `kind-tests/cluster.sh build` \
             (it builds sigs.k8s.io/krew/cmd/krew into that cache)",
            krew.display()
        );
        Tools {
            helm,
            krew,
            kubectl,
        }
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

/// `kubectl eol ARGS` as the user of `kubeconfig`, the way a shell with the
/// plugin on its PATH runs it (kubectl finds `kubectl-eol` there).
pub fn kubectl_eol(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(&tools().kubectl)
        .arg("eol")
        .args(args)
        .env("PATH", plugin_path())
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap_or_else(|e| panic!("failed to run kubectl eol: {e}"))
}

/// What kubectl's shell completion asks for `kubectl eol WORDS` (the last
/// word being typed): `kubectl __complete eol WORDS`, which runs the plugin's
/// `kubectl_complete-eol` from the PATH.
pub fn kubectl_eol_complete(kubeconfig: &Path, words: &[&str]) -> Output {
    Command::new(&tools().kubectl)
        .args(["__complete", "eol"])
        .args(words)
        .env("PATH", plugin_path())
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap_or_else(|e| panic!("failed to run kubectl __complete: {e}"))
}

/// The PATH with the plugin binary and its completion script first.
fn plugin_path() -> std::ffi::OsString {
    let plugin_dir = crate::binary("kubectl-eol")
        .parent()
        .expect("the binary's directory")
        .to_owned();
    let script_dir = repo_root().join("kubectl-eol");
    std::env::join_paths(
        [plugin_dir, script_dir]
            .into_iter()
            .chain(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            )),
    )
    .expect("a PATH")
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

/// The command's stdout; panics with its stderr when it failed.
pub fn must(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stderr),
        text(&out.stdout)
    );
    text(&out.stdout)
}

/// `kubectl get` as a table: one map per row, keyed by column header. Columns
/// are cut at the header's offsets, so an empty cell stays empty.
pub fn table(output: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or_default();
    let mut starts: Vec<usize> = Vec::new();
    let bytes = header.as_bytes();
    for i in 0..bytes.len() {
        if bytes[i] != b' ' && (i == 0 || bytes[i - 1] == b' ') {
            starts.push(i);
        }
    }
    let names: Vec<String> = starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let end = starts.get(k + 1).copied().unwrap_or(header.len());
            header[s..end].trim().to_owned()
        })
        .collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            names
                .iter()
                .enumerate()
                .map(|(k, name)| {
                    let s = starts[k].min(line.len());
                    let e = starts
                        .get(k + 1)
                        .copied()
                        .unwrap_or(line.len())
                        .min(line.len());
                    (name.clone(), line[s..e].trim().to_owned())
                })
                .collect()
        })
        .collect()
}

/// The row named `name` of `kubectl get KIND -n NS [-o wide]`.
pub fn get_row(kind: &str, ns: &str, name: &str, wide: bool) -> BTreeMap<String, String> {
    let mut args = vec!["get", kind, "-n", ns];
    if wide {
        args.extend(["-o", "wide"]);
    }
    let out = must(kubectl(&args, None), "kubectl get");
    table(&out)
        .into_iter()
        .find(|r| r.get("NAME").map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in `kubectl get {kind}`:\n{out}"))
}

/// The column headers of `kubectl get KIND -n NS`.
pub fn headers(kind: &str, ns: &str) -> Vec<String> {
    let out = must(kubectl(&["get", kind, "-n", ns], None), "kubectl get");
    out.lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Runs `kind-tests/cluster.sh args` with this process's output; its exit status.
pub fn cluster_sh(args: &[&str]) -> std::process::ExitStatus {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cluster.sh");
    Command::new(&script)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()))
}
