//! The semantic-cache evaluation sets (`vector/eval/`) stay valid: every
//! split parses, its labels agree with its kinds, no pair repeats a pair of
//! another split, and the blind split keeps issue 20's minimums (1,000
//! near-misses, 500 paraphrases, the 8 domains and 11 operations). The checks
//! are `vector/eval/check.py`'s, run with the system Python.

use std::path::Path;
use std::process::Command;

#[test]
fn the_evaluation_sets_pass_check_py() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("eval/check.py");
    let out = Command::new("python3")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 {}: {e} (is Python 3 installed?)",
                script.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} found problems:\n{stderr}\n{stdout}",
        script.display()
    );
    assert!(
        stdout.contains("blind set: ") && stdout.trim_end().ends_with("OK"),
        "check.py did not check the blind set: {stdout}"
    );
}
