//! The plugin's command line without a cluster: help with examples, shell
//! completions, man pages, and the error when there is no kubeconfig.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

use std::process::{Command, Output};

fn plugin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-eol"))
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn every_command_has_help_with_examples() {
    let top = plugin(&["--help"]);
    assert!(top.status.success());
    assert!(
        stdout(&top).contains("Usage: kubectl eol [OPTIONS] <COMMAND>"),
        "{}",
        stdout(&top)
    );
    for command in [
        "get",
        "switch",
        "run",
        "logs",
        "compare",
        "completions",
        "man",
    ] {
        let o = plugin(&[command, "--help"]);
        assert!(o.status.success(), "{command}");
        let text = stdout(&o);
        assert!(text.contains("Examples:"), "{command}:\n{text}");
        assert!(text.contains("kubectl"), "{command}:\n{text}");
    }
}

#[test]
fn completions_and_man_pages_are_generated_without_a_cluster() {
    let o = plugin(&["completions", "bash"]);
    assert!(o.status.success());
    let script = stdout(&o);
    assert!(script.contains("-o default kubectl-eol\n"), "{script}");
    for command in ["get", "switch", "run", "logs", "compare"] {
        assert!(script.contains(command), "{command}");
    }
    let dir = tempfile::tempdir().unwrap();
    let o = plugin(&["man", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout(&o).starts_with("wrote 8 man pages to "),
        "{}",
        stdout(&o)
    );
    let switch = std::fs::read_to_string(dir.path().join("kubectl-eol-switch.1")).unwrap();
    assert!(switch.contains("kubectl eol switch"), "{switch}");
    assert!(switch.contains("\\-\\-operation"), "{switch}");
}

#[test]
fn without_a_kubeconfig_it_says_so_and_exits_2() {
    let o = plugin(&["get", "feature", "inventory"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("error: failed to load the kubeconfig: "),
        "{err}"
    );
    assert!(err.contains("/nonexistent/kubeconfig"), "{err}");
}

#[test]
fn bad_arguments_are_refused_before_any_request() {
    let o = plugin(&["switch", "inventory", "--to", "sideways"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("invalid value 'sideways' for '--to <TO>'"),
        "{err}"
    );
    assert!(err.contains("prototyping, implementation, hybrid"), "{err}");
    let o = plugin(&["run", "inventory"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "an operation or --tests is required"
    );
}
