//! The `minilm-text` data of the KNN bench: distinct English lines from the
//! doc comments of the crates under `$CARGO_HOME/registry/src` (then the
//! Python stdlib's docstrings and comments), shuffled with a fixed seed, and
//! their all-MiniLM-L6-v2 vectors, cached in `$EOL_CACHE_DIR/knn/` keyed by a
//! hash of the lines and the model (see `knn.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use eol_vector::embed::local::{self, MiniLm};
use sha2::{Digest, Sha256};

/// Words per corpus line, inclusive: shorter lines say little, longer ones are rare.
pub(crate) const LINE_WORDS: std::ops::RangeInclusive<usize> = 5..=60;
/// The seed of the corpus shuffle (which lines are indexed and which are queries).
pub(crate) const CORPUS_SEED: u64 = 42;
/// Texts handed to the embedder at once (it sorts them by length and runs batches of 32).
const EMBED_CHUNK: usize = 512;

/// The lines of the text corpus and where they came from.
pub(crate) struct Corpus {
    /// Distinct lines in their shuffled order.
    pub(crate) lines: Vec<String>,
    /// Distinct lines from Rust doc comments, from `rust_files` files.
    pub(crate) rust_lines: usize,
    pub(crate) rust_files: usize,
    /// Lines added from the Python stdlib (0 when the Rust lines were enough).
    pub(crate) python_lines: usize,
    pub(crate) python_files: usize,
}

/// `text` with its whitespace collapsed, if it has an acceptable number of words.
fn corpus_line(text: &str) -> Option<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    LINE_WORDS.contains(&words.len()).then(|| words.join(" "))
}

/// Adds `line` unless a line equal to it ignoring case is there already (the
/// model is uncased: such lines would embed identically and tie in the truth).
/// Of equal lines the smallest is kept, so the result does not depend on file order.
fn add_line(lines: &mut BTreeMap<String, String>, text: &str) {
    if let Some(line) = corpus_line(text) {
        let key = line.to_lowercase();
        match lines.get(&key) {
            Some(kept) if *kept <= line => {}
            _ => {
                lines.insert(key, line);
            }
        }
    }
}

/// The files under `dir` whose name ends with `extension`, without following
/// symbolic links and skipping directories named in `skip`, in no particular order.
fn files_under(dir: &Path, extension: &str, skip: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        let name = entry.file_name();
        if kind.is_dir() && !skip.iter().any(|s| name == *s) {
            files_under(&path, extension, skip, out);
        } else if kind.is_file() && name.to_string_lossy().ends_with(extension) {
            out.push(path);
        }
    }
}

/// Adds the `///` and `//!` lines of the Rust files under `root`, outside fenced
/// code blocks (examples are code, not English). Returns the files read.
fn add_rust_doc_lines(root: &Path, lines: &mut BTreeMap<String, String>) -> usize {
    let mut files = Vec::new();
    files_under(root, ".rs", &[], &mut files);
    files.sort();
    for file in &files {
        // Not UTF-8 (a test fixture, say): not text for this corpus.
        let Ok(source) = std::fs::read_to_string(file) else {
            continue;
        };
        let mut in_code = false;
        for raw in source.lines() {
            let t = raw.trim_start();
            let doc = if t.starts_with("////") {
                None
            } else {
                t.strip_prefix("///").or_else(|| t.strip_prefix("//!"))
            };
            let Some(doc) = doc else {
                // A fence left open ends with its comment block.
                in_code = false;
                continue;
            };
            let doc = doc.trim();
            if doc.starts_with("```") {
                in_code = !in_code;
            } else if !in_code {
                add_line(lines, doc);
            }
        }
    }
    files.len()
}

/// Adds the comment lines and the lines of triple-quoted strings that open a
/// line (docstrings, mostly) of the Python files under `root`, skipping
/// installed packages. Returns the files read.
fn add_python_doc_lines(root: &Path, lines: &mut BTreeMap<String, String>) -> usize {
    let mut files = Vec::new();
    files_under(
        root,
        ".py",
        &["site-packages", "dist-packages", "__pycache__"],
        &mut files,
    );
    files.sort();
    for file in &files {
        let Ok(source) = std::fs::read_to_string(file) else {
            continue;
        };
        let mut open: Option<&str> = None;
        for raw in source.lines() {
            let t = raw.trim();
            if let Some(quote) = open {
                match t.find(quote) {
                    Some(end) => {
                        add_line(lines, &t[..end]);
                        open = None;
                    }
                    None => add_line(lines, t),
                }
            } else if let Some(comment) = t.strip_prefix('#') {
                add_line(lines, comment.trim_start_matches('#'));
            } else {
                let unprefixed = t.trim_start_matches(['r', 'R', 'u', 'U', 'b', 'B']);
                for quote in ["\"\"\"", "'''"] {
                    if let Some(rest) = unprefixed.strip_prefix(quote) {
                        match rest.find(quote) {
                            Some(end) => add_line(lines, &rest[..end]),
                            None => {
                                add_line(lines, rest);
                                open = Some(quote);
                            }
                        }
                        break;
                    }
                }
            }
        }
    }
    files.len()
}

/// The next value of a splitmix64 generator: the shuffle must not change when
/// the `rand` crate changes its algorithms, or the cached vectors would be lost.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn cargo_registry_src() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME is set")
        .join("registry")
        .join("src")
}

fn python_stdlib() -> Option<PathBuf> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !path.trim().is_empty()).then(|| PathBuf::from(path.trim()))
}

/// At least `needed` distinct lines (see the module doc), shuffled; fails with
/// what was found when there are fewer.
pub(crate) fn text_corpus(needed: usize) -> Corpus {
    let registry = cargo_registry_src();
    let mut lines = BTreeMap::new();
    let rust_files = add_rust_doc_lines(&registry, &mut lines);
    let rust_lines = lines.len();
    let (mut python_lines, mut python_files, mut stdlib) = (0, 0, None);
    if rust_lines < needed {
        stdlib = python_stdlib();
        if let Some(dir) = &stdlib {
            python_files = add_python_doc_lines(dir, &mut lines);
            python_lines = lines.len() - rust_lines;
        }
    }
    if lines.len() < needed {
        panic!(
            "EOL_KNN_DATA=minilm-text needs {needed} distinct lines (EOL_KNN_N + EOL_KNN_QUERIES) \
             but found {}: {rust_lines} from the doc comments of {rust_files} Rust files under {} \
             (run `cargo fetch` or a build to fill it) and {python_lines} from {python_files} \
             Python files under {}",
            lines.len(),
            registry.display(),
            stdlib.map_or_else(
                || "the Python stdlib (python3 not found)".to_owned(),
                |p| p.display().to_string()
            ),
        );
    }
    let mut lines: Vec<String> = lines.into_values().collect();
    let mut state = CORPUS_SEED;
    for i in (1..lines.len()).rev() {
        let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
        lines.swap(i, j);
    }
    Corpus {
        lines,
        rust_lines,
        rust_files,
        python_lines,
        python_files,
    }
}

fn cache_dir() -> PathBuf {
    std::env::var_os("EOL_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("eol")))
        .unwrap_or_else(|| PathBuf::from("/tmp/eol"))
        .join("knn")
}

/// The all-MiniLM-L6-v2 vectors of `texts`, from the cache or computed (and
/// cached), and the hash of the texts and the model that names them.
pub(crate) fn minilm_vectors(texts: &[String]) -> (Vec<Vec<f32>>, String) {
    let dims = local::DIMENSION;
    let mut hash = Sha256::new();
    hash.update(format!("{}\n{dims}\n", local::MODEL_ID));
    for t in texts {
        hash.update(t.as_bytes());
        hash.update(b"\n");
    }
    let digest: String = hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = cache_dir();
    let stem = format!("{}-{}x{dims}-{digest}", local::MODEL_ID, texts.len());
    let path = dir.join(format!("{stem}.f32"));
    if let Ok(bytes) = std::fs::read(&path) {
        if bytes.len() == texts.len() * dims * 4 {
            println!("vectors read from {}", path.display());
            let vectors = bytes
                .chunks_exact(dims * 4)
                .map(|row| {
                    row.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect()
                })
                .collect();
            return (vectors, digest);
        }
        eprintln!("ignoring {}: wrong size", path.display());
    }

    let model = MiniLm::from_env().unwrap_or_else(|e| panic!("{e}"));
    // Shortest first, across the whole corpus: less padding than per chunk.
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts[i].len());
    let mut out = vec![Vec::new(); texts.len()];
    let start = Instant::now();
    let mut done = 0;
    let mut reported = 0;
    for chunk in order.chunks(EMBED_CHUNK) {
        let batch: Vec<String> = chunk.iter().map(|&i| texts[i].clone()).collect();
        let vectors = model
            .embed_blocking(&batch)
            .unwrap_or_else(|e| panic!("embedding the corpus failed: {e}"));
        for (&i, v) in chunk.iter().zip(vectors) {
            out[i] = v;
        }
        done += chunk.len();
        if done - reported >= 5_000 || done == texts.len() {
            reported = done;
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "  embedded {done}/{} in {secs:.0} s ({:.1} texts/s; the longest texts come last)",
                texts.len(),
                done as f64 / secs
            );
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "embedded {} texts in {secs:.1} s ({:.1} texts/s, {} CPUs)",
        texts.len(),
        texts.len() as f64 / secs,
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );

    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("failed to create {}: {e}", dir.display()));
    let bytes: Vec<u8> = out
        .iter()
        .flat_map(|v| v.iter().flat_map(|x| x.to_le_bytes()))
        .collect();
    // Written aside then renamed: an interrupted run never leaves a short file.
    let tmp = dir.join(format!("{stem}.f32.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .unwrap_or_else(|e| panic!("failed to write {}: {e}", path.display()));
    // The lines beside them, to see what was embedded.
    let text_path = dir.join(format!("{stem}.txt"));
    std::fs::write(&text_path, texts.join("\n") + "\n")
        .unwrap_or_else(|e| panic!("failed to write {}: {e}", text_path.display()));
    println!("vectors cached in {}", path.display());
    (out, digest)
}
