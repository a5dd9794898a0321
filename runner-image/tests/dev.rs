//! `eol dev` as a developer uses it: the feature served while it is edited,
//! each save reloaded with its affected tests shown, a broken save located
//! while the last good version serves on. Real `eol`, Python and Redis (the
//! local one from the cache); only implemented operations, so no model.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

mod common;

use common::server::{Server, post};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// How long one step (a reload and its tests) may take on a loaded machine.
const STEP: Duration = Duration::from_secs(60);

/// A running `eol dev` and everything it printed, stdout and stderr together.
struct Dev {
    server: Server,
    lines: mpsc::UnboundedReceiver<String>,
    printed: Vec<String>,
}

impl Dev {
    /// `eol dev FILE ARGS...` in `dir`, with no Redis or model configured.
    async fn start(dir: &Path, file: &str, args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eol"))
            .args(["dev", file, "--listen", &listen])
            .args(args)
            .env_remove("REDIS_URL")
            .env_remove("EOL_LLM_BASE_URL")
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (sender, lines) = mpsc::unbounded_channel();
        forward(BufReader::new(child.stdout.take().unwrap()), sender.clone());
        forward(BufReader::new(child.stderr.take().unwrap()), sender);
        Self {
            server: Server {
                child,
                url: format!("http://{listen}"),
            },
            lines,
            printed: Vec::new(),
        }
    }

    /// A mark in what was printed: [`Dev::wait_for`] looks after it.
    fn mark(&self) -> usize {
        self.printed.len()
    }

    /// What was printed from `mark` until a line containing `needle` (60 s at most).
    async fn wait_for(&mut self, mark: usize, needle: &str) -> String {
        let found = tokio::time::timeout(STEP, async {
            while !self.printed[mark..].iter().any(|l| l.contains(needle)) {
                match self.lines.recv().await {
                    Some(line) => self.printed.push(line),
                    None => return false,
                }
            }
            true
        })
        .await;
        let printed = self.printed[mark..].join("\n");
        assert!(
            matches!(found, Ok(true)),
            "eol dev did not print {needle:?}; it printed:\n{}",
            self.printed.join("\n")
        );
        printed
    }

    /// `add_stock` of `quantity` units of `sku`: the SKU and level it answers.
    async fn add_stock(&self, sku: &str, quantity: u32) -> serde_json::Value {
        let body = json!({ "sku": sku, "quantity": quantity }).to_string();
        let (status, out) = post(&self.server, "add_stock", &body).await;
        assert_eq!(status, 200, "{out}");
        out
    }
}

fn forward(reader: impl AsyncBufRead + Unpin + Send + 'static, to: mpsc::UnboundedSender<String>) {
    tokio::spawn(async move {
        let mut lines = reader.lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = to.send(line);
        }
    });
}

/// Saves `text` as editors do: a temporary file renamed over the old one.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("eol.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A directory holding a copy of the inventory example and its tests.
fn inventory() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read_to_string(common::examples().join("inventory.eol")).unwrap();
    std::fs::write(dir.path().join("inventory.eol"), &source).unwrap();
    std::fs::copy(
        common::examples().join("inventory.test.eol"),
        dir.path().join("inventory.test.eol"),
    )
    .unwrap();
    let file = dir.path().join("inventory.eol");
    (dir, file, source)
}

const ADD_STOCK_RETURNS: &str = r#"return {"sku": sku, "level": level}"#;

#[tokio::test]
async fn each_save_is_served_with_its_affected_tests_and_a_broken_one_keeps_the_last_good_version()
{
    let (dir, file, v1) = inventory();
    let mut dev = Dev::start(dir.path(), "inventory.eol", &["--watch"]).await;

    // The first version: every test runs.
    let printed = dev.wait_for(0, "tests: ").await;
    assert!(
        printed.contains("serving inventory.eol (v1) on http://127.0.0.1:"),
        "{printed}"
    );
    assert!(
        printed.contains("tests: 3 passed, 0 failed (affected: all operations)"),
        "{printed}"
    );
    assert_eq!(
        dev.add_stock("DEV-1", 2).await,
        json!({"sku": "DEV-1", "level": 2})
    );

    // (a) A change to one operation's code: served at once, and only that
    // operation's case runs, failing as the new code makes it.
    let v2 = v1.replace(
        ADD_STOCK_RETURNS,
        r#"return {"sku": sku.lower(), "level": level}"#,
    );
    assert_ne!(v1, v2, "the example's add_stock changed");
    let mark = dev.mark();
    save(&file, &v2);
    let printed = dev.wait_for(mark, "tests: ").await;
    assert!(
        printed.contains("reloaded inventory.eol (v2) in "),
        "{printed}"
    );
    assert!(
        printed.contains("FAIL  add_stock :: adding stock returns the new level")
            && printed.contains(r#"/sku: expected "TEST-ADD-1", got "test-add-1""#),
        "{printed}"
    );
    assert!(
        printed.contains("tests: 0 passed, 1 failed (affected: add_stock)"),
        "{printed}"
    );
    assert!(!printed.contains("stock_level ::"), "{printed}");
    // The new code answers; the stock written under v1 is still there.
    assert_eq!(
        dev.add_stock("DEV-1", 2).await,
        json!({"sku": "dev-1", "level": 4})
    );

    // (b) Invalid YAML in the frontmatter: the error is shown where it is,
    // and v2 goes on serving.
    let broken = v2.replace("phase: implementation", "phase: [implementation");
    let mark = dev.mark();
    save(&file, &broken);
    let printed = dev.wait_for(mark, "invalid YAML in the frontmatter").await;
    assert!(
        printed.contains("FAIL  inventory.eol (still serving v2)"),
        "{printed}"
    );
    let located = printed
        .lines()
        .find(|l| l.contains("invalid YAML in the frontmatter"))
        .unwrap()
        .trim();
    let place: Vec<&str> = located.splitn(4, ':').collect();
    assert_eq!(place[0], "inventory.eol", "{located}");
    assert!(
        place[1]
            .parse::<usize>()
            .is_ok_and(|line| (1..=6).contains(&line))
            && place[2].parse::<usize>().is_ok(),
        "a line of the frontmatter and a column: {located}"
    );
    assert_eq!(
        dev.add_stock("DEV-1", 1).await,
        json!({"sku": "dev-1", "level": 5})
    );

    // (c) Fixed, with another change to the code: reloaded as v3.
    let v3 = v1.replace(
        ADD_STOCK_RETURNS,
        r#"return {"sku": sku + "-v3", "level": level}"#,
    );
    let mark = dev.mark();
    save(&file, &v3);
    let printed = dev.wait_for(mark, "tests: ").await;
    assert!(
        printed.contains("reloaded inventory.eol (v3) in "),
        "{printed}"
    );
    assert!(
        printed.contains("tests: 0 passed, 1 failed (affected: add_stock)"),
        "{printed}"
    );
    assert_eq!(
        dev.add_stock("DEV-1", 1).await,
        json!({"sku": "DEV-1-v3", "level": 6})
    );

    // A test file that no longer fits the feature is a broken save too.
    let tests_file = dir.path().join("inventory.test.eol");
    let tests = std::fs::read_to_string(&tests_file).unwrap();
    let mark = dev.mark();
    save(
        &tests_file,
        &tests.replace("Operation: reserve\n", "Operation: reserve_all\n"),
    );
    let printed = dev.wait_for(mark, "unknown operation 'reserve_all'").await;
    assert!(
        printed.contains("FAIL  inventory.test.eol (still serving v3)"),
        "{printed}"
    );
    assert!(
        printed.contains("      inventory.test.eol:"),
        "located in the test file: {printed}"
    );

    // A case edited in the test file (compared with the last good one): only it runs.
    let mark = dev.mark();
    save(
        &tests_file,
        &tests.replace("sku: NO-SUCH-SKU-42", "sku: NO-SUCH-SKU-44"),
    );
    let printed = dev.wait_for(mark, "tests: ").await;
    assert!(
        printed.contains("reloaded inventory.eol (v4) in "),
        "{printed}"
    );
    assert!(
        printed.contains("PASS  stock_level :: an unknown SKU has no stock"),
        "{printed}"
    );
    assert!(
        printed.contains("tests: 1 passed, 0 failed (affected: stock_level)"),
        "{printed}"
    );

    // SIGTERM stops it, with success.
    let pid = dev.server.child.id().unwrap();
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let exit = tokio::time::timeout(Duration::from_secs(10), dev.server.child.wait())
        .await
        .expect("eol dev stops within 10 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

/// `eol dev inventory.eol ARGS...` in `dir` without `--watch`, run to its end.
async fn dev_once(dir: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_eol"))
        .args(["dev", "inventory.eol", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("REDIS_URL")
        .current_dir(dir)
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn without_watch_a_broken_feature_fails_at_start_saying_where() {
    let (dir, file, v1) = inventory();
    std::fs::write(
        &file,
        v1.replace("phase: implementation", "phase: [implementation"),
    )
    .unwrap();
    let out = dev_once(dir.path(), &[]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("error: inventory.eol:") && err.contains("invalid YAML in the frontmatter"),
        "{err}"
    );
    assert_eq!(err.matches("invalid YAML").count(), 1, "said once: {err}");
}

/// The JSON events among printed lines (stderr's log lines are not JSON).
fn json_events(printed: &str) -> Vec<serde_json::Value> {
    printed
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("event").is_some())
        .collect()
}

#[tokio::test]
async fn tests_named_with_a_flag_are_run_and_watched_and_json_output_is_one_event_a_line() {
    let (dir, _file, _v1) = inventory();
    // The tests live under another name in another directory; the default
    // file next to the feature is gone.
    std::fs::create_dir(dir.path().join("cases")).unwrap();
    let named = dir.path().join("cases").join("stock.test.eol");
    std::fs::rename(dir.path().join("inventory.test.eol"), &named).unwrap();
    let mut dev = Dev::start(
        dir.path(),
        "inventory.eol",
        &[
            "--watch",
            "--tests",
            "cases/stock.test.eol",
            "--output",
            "json",
        ],
    )
    .await;

    let printed = dev.wait_for(0, r#""event":"tests""#).await;
    let events = json_events(&printed);
    let serving = events
        .iter()
        .find(|e| e["event"] == "serving")
        .unwrap_or_else(|| panic!("a serving event: {printed}"));
    assert_eq!(
        (&serving["file"], &serving["version"]),
        (&json!("inventory.eol"), &json!(1)),
        "{printed}"
    );
    assert!(
        serving["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{printed}"
    );
    let cases: Vec<_> = events.iter().filter(|e| e["event"] == "case").collect();
    assert_eq!(cases.len(), 3, "the named file's three cases: {printed}");
    let tests = events.iter().find(|e| e["event"] == "tests").unwrap();
    assert_eq!(tests["summary"]["passed"], 3, "{printed}");
    assert_eq!(tests["summary"]["failed"], 0, "{printed}");
    assert_eq!(tests["affected"], "all", "{printed}");
    // No text lines on stdout in JSON mode: every line read is JSON or a log line on stderr.
    assert!(!printed.contains("tests: 3 passed"), "{printed}");

    // A save of the named file is watched: reloaded, and only its edited case runs.
    let text = std::fs::read_to_string(&named).unwrap();
    let mark = dev.mark();
    save(
        &named,
        &text.replace("sku: NO-SUCH-SKU-42", "sku: NO-SUCH-SKU-44"),
    );
    let printed = dev.wait_for(mark, r#""event":"tests""#).await;
    let events = json_events(&printed);
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "reloaded" && e["version"] == 2),
        "{printed}"
    );
    let tests = events.iter().find(|e| e["event"] == "tests").unwrap();
    assert_eq!(
        (&tests["summary"]["passed"], &tests["affected"]),
        (&json!(1), &json!(["stock_level"])),
        "{printed}"
    );
}

#[tokio::test]
async fn tests_named_with_a_flag_that_do_not_exist_are_an_error_not_no_tests() {
    let (dir, _file, _v1) = inventory();
    let out = dev_once(dir.path(), &["--tests", "cases/missing.test.eol"]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("failed to read cases/missing.test.eol: No such file"),
        "names the file and the cause: {err}"
    );
}

/// The processes whose parent is `parent`: (pid, name), from `/proc/*/stat`.
fn children(parent: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "PID (NAME) STATE PPID ...": the name may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            found.push((pid, stat[open + 1..close].to_owned()));
        }
    }
    found
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let close = stat.rfind(')')?;
            stat[close + 1..]
                .split_whitespace()
                .next()
                .map(|s| s != "Z")
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn what_eol_started_ends_with_it_even_when_it_is_killed_with_sigkill() {
    let (dir, _file, _v1) = inventory();
    let mut dev = Dev::start(dir.path(), "inventory.eol", &["--watch"]).await;
    dev.wait_for(0, "tests: ").await;
    let eol = dev.server.child.id().unwrap();
    let started = children(eol);
    assert!(
        started.iter().any(|(_, name)| name == "redis-server"),
        "eol dev started its own Redis (no REDIS_URL): its children are {started:?}"
    );
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
    unsafe { libc::kill(eol as libc::pid_t, libc::SIGKILL) };
    dev.server.child.wait().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for (pid, name) in &started {
        while alive(*pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} ({pid}) outlived eol (SIGKILL) by 10 s; eol had started {started:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
