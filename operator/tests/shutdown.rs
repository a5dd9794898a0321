//! SIGTERM ends `eol-operator run` even when the API server cannot be reached
//! (its watches retry forever; the kubelet would otherwise have to SIGKILL it).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigterm_stops_the_operator_while_the_api_server_is_unreachable() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    // Port 1 on loopback: nothing listens, every request fails to connect.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\n\
         clusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\", insecure-skip-tls-verify: true}}]\n\
         users: [{name: u, user: {token: x}}]\n\
         contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n",
    )
    .expect("write the kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eol-operator"))
        .args(["run", "--listen", "127.0.0.1:0"])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start eol-operator");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().expect("status").is_none(),
        "it keeps retrying until told to stop"
    );
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let start = Instant::now();
    // The grace period is 15 s; the chart gives the pod 30 s.
    while start.elapsed() < Duration::from_secs(28) {
        if let Some(status) = child.try_wait().expect("status") {
            assert!(status.success(), "a clean stop: {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    panic!("still running 28 s after SIGTERM");
}
