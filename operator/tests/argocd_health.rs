//! The Argo CD health checks of `charts/eol/argocd/eol.dev/<Kind>/health.lua`.
//!
//! Each `health_test.yaml` case (argo-cd's own layout and format) runs through
//! `lua5.1` the way Argo CD runs a custom check: `obj` set to the object, the
//! script evaluated as a function body that returns `hs`, with only the
//! libraries Argo CD opens for scripts from `argocd-cm` (no string library).
//! Also: malformed objects never make a script fail, the copies of the scripts
//! in `argocd-cm.yaml`, the argo-cd Helm values and `docs/argocd.md` are
//! verbatim, and the example Application syncs `features/manifests/`.
//!
//! Needs `lua5.1` (Debian: `apt-get install -y lua5.1`); without it the tests
//! fail and say so, they are never skipped.

use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Argo CD embeds gopher-lua, a Lua 5.1.
const LUA: &str = "lua5.1";
/// The kinds with a health check, under `charts/eol/argocd/eol.dev/`.
const KINDS: [&str; 2] = ["Feature", "FeatureRun"];
/// The health statuses Argo CD accepts from a script.
const STATUSES: [&str; 6] = [
    "Healthy",
    "Progressing",
    "Degraded",
    "Suspended",
    "Missing",
    "Unknown",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the operator crate sits in the workspace")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn check_dir(kind: &str) -> PathBuf {
    repo().join("charts/eol/argocd/eol.dev").join(kind)
}

fn script_path(kind: &str) -> PathBuf {
    check_dir(kind).join("health.lua")
}

/// The `argocd-cm` key Argo CD reads a custom health check of `eol.dev/<kind>` from.
fn cm_key(kind: &str) -> String {
    format!("resource.customizations.health.eol.dev_{kind}")
}

#[derive(Debug, Deserialize)]
struct HealthTests {
    tests: Vec<HealthTest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthTest {
    health_status: Health,
    input_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Health {
    status: String,
    #[serde(default)]
    message: String,
}

// ---------------------------------------------------------------------------
// JSON -> Lua table literal, as Argo CD hands the object to the script.

/// Appends `s` as a Lua 5.1 string literal: printable ASCII as is, `"` and `\`
/// escaped, every other byte (controls, UTF-8 sequences) as a three-digit
/// decimal escape, so a digit after it can never be read as part of it.
fn lua_string(s: &str, out: &mut String) {
    out.push('"');
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\{b:03}");
            }
        }
    }
    out.push('"');
}

/// Appends `value` as a Lua expression. Objects become tables keyed by string,
/// arrays become sequences (1-based). `null` is `nil`, so it is left out of
/// objects and arrays alike, as Argo CD does (gopher-lua's table append skips nil).
fn lua_literal(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("nil"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else {
                let f = n.as_f64().expect("a JSON number is an integer or a float");
                let _ = write!(out, "{f:?}");
            }
        }
        Value::String(s) => lua_string(s, out),
        Value::Array(items) => {
            out.push('{');
            for item in items.iter().filter(|v| !v.is_null()) {
                lua_literal(item, out);
                out.push_str(", ");
            }
            out.push('}');
        }
        Value::Object(map) => {
            out.push('{');
            for (key, item) in map.iter().filter(|(_, v)| !v.is_null()) {
                out.push('[');
                lua_string(key, out);
                out.push_str("] = ");
                lua_literal(item, out);
                out.push_str(", ");
            }
            out.push('}');
        }
    }
}

// ---------------------------------------------------------------------------
// Running Lua.

/// A JSON encoder for the harness's answers (the harness itself has every library).
const LUA_JSON: &str = r#"
local function json_string(s)
  local named = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
  return '"' .. s:gsub('[%c"\\]', function(c)
    return named[c] or string.format('\\u%04x', c:byte())
  end) .. '"'
end

local function json(v)
  local t = type(v)
  if t == "string" then return json_string(v) end
  if t == "number" then return string.format("%.17g", v) end
  if t == "boolean" then return tostring(v) end
  if t ~= "table" then error("cannot encode a " .. t) end
  local n, keys = 0, {}
  for k in pairs(v) do
    n = n + 1
    keys[#keys + 1] = k
  end
  if n == #v then
    local items = {}
    for i = 1, #v do items[i] = json(v[i]) end
    return "[" .. table.concat(items, ",") .. "]"
  end
  local items = {}
  for _, k in ipairs(keys) do
    items[#items + 1] = json_string(tostring(k)) .. ":" .. json(v[k])
  end
  return "{" .. table.concat(items, ",") .. "}"
end
"#;

/// Runs `program` with `lua5.1` and returns what it printed.
fn run_lua(program: &str) -> String {
    let mut child = match Command::new(LUA)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{LUA} is not installed: these tests run the Argo CD health checks with it \
             (Argo CD embeds a Lua 5.1). Install it with `apt-get install -y lua5.1` \
             (scripts/test.sh installs it)"
        ),
        Err(e) => panic!("start {LUA}: {e}"),
    };
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(program.as_bytes())
        .expect("write the Lua program");
    let out = child.wait_with_output().expect("run lua5.1");
    assert!(
        out.status.success(),
        "{LUA} failed ({}): {}\nprogram:\n{program}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("lua5.1 printed UTF-8")
}

/// What a health script made of an object: the health, or why it failed.
fn evaluate(script: &Path, object: &Value) -> Result<Health, String> {
    let mut program = String::from(LUA_JSON);
    program.push_str("\nlocal object = ");
    lua_literal(object, &mut program);
    program.push_str("\nlocal chunk, load_error = loadfile(");
    lua_string(
        script.to_str().expect("the repository path is UTF-8"),
        &mut program,
    );
    program.push_str(")\n");
    program.push_str(
        r#"
local function answer(t)
  io.write(json(t), "\n")
  os.exit(0)
end
if not chunk then answer({ error = "does not load: " .. load_error }) end

-- Argo CD runs a check from argocd-cm in a fresh state with the base, table,
-- package and a "safe" os library opened: no string, math, io or debug. Scripts
-- see `obj` as a global; the script is the body of a function returning `hs`.
local env = {
  obj = object,
  table = table,
  os = { time = os.time, clock = os.clock, date = os.date },
}
for _, name in ipairs({ "assert", "error", "getmetatable", "ipairs", "next", "pairs",
    "pcall", "print", "rawequal", "rawget", "rawset", "select", "setmetatable",
    "tonumber", "tostring", "type", "unpack", "xpcall", "_VERSION" }) do
  env[name] = _G[name]
end
env._G = env
setfenv(chunk, env)
-- Without the string library a string has no methods: ("x"):len() fails there.
local strings = getmetatable("")
local methods = strings.__index
strings.__index = nil
local ok, hs = pcall(chunk)
strings.__index = methods

if not ok then answer({ error = "raised: " .. tostring(hs) }) end
if type(hs) ~= "table" then answer({ error = "returned a " .. type(hs) .. ", not a table" }) end
if type(hs.status) ~= "string" then answer({ error = "hs.status is a " .. type(hs.status) }) end
local message = hs.message
if message == nil then message = "" end
if type(message) ~= "string" then answer({ error = "hs.message is a " .. type(message) }) end
answer({ status = hs.status, message = message })
"#,
    );
    let printed = run_lua(&program);
    let answer: Value = serde_json::from_str(printed.trim())
        .unwrap_or_else(|e| panic!("the harness printed {printed:?}: {e}"));
    if let Some(error) = answer.get("error") {
        return Err(error.as_str().unwrap_or_default().to_owned());
    }
    let health: Health = serde_json::from_value(answer).expect("status and message");
    if !STATUSES.contains(&health.status.as_str()) {
        return Err(format!(
            "returned status {:?}, which Argo CD does not know",
            health.status
        ));
    }
    Ok(health)
}

// ---------------------------------------------------------------------------
// The tests.

#[test]
fn lua_literals_round_trip() {
    let tricky = json!({
        "quotes": "say \"hi\" and 'bye'",
        "backslashes": "C:\\path\\ and \\\" and a trailing \\",
        "lines": "one\ntwo\r\nthree\tcolumns",
        "controls": "\u{0}\u{1}\u{1f}\u{7f}after",
        "digits after escapes": "\u{7}123 \u{1b}9",
        "long brackets": "]] [[ ]=] --[[ not a comment",
        "utf-8": "naïve café — 日本語 🙂",
        "empty": "",
        "numbers": [0, -2, 42, 9_007_199_254_740_991_i64, 1.5, -0.25, 1e-7, 6.02e23],
        "booleans": [true, false],
        "nested": {"a": [{"b": [[1, 2], [3]]}, {"c": {"d": "e"}}]},
        "with nulls": [1, null, 2],
        "null member": null,
        "key with \"quotes\" and \\": "v",
        "ключ": "значение"
    });
    let mut program = String::from(LUA_JSON);
    program.push_str("\nio.write(json(");
    lua_literal(&tricky, &mut program);
    program.push_str("), \"\\n\")\n");
    let printed = run_lua(&program);
    let back: Value = serde_json::from_str(printed.trim())
        .unwrap_or_else(|e| panic!("Lua printed {printed:?}: {e}"));
    // What Lua can hold: no nulls (they are nil).
    let mut expected = tricky.clone();
    let map = expected.as_object_mut().expect("an object");
    map.remove("null member");
    map["with nulls"] = json!([1, 2]);
    assert_eq!(back, expected);
}

#[test]
fn harness_withholds_what_argo_cd_withholds() {
    let dir = std::env::temp_dir().join(format!("eol-argocd-health-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let cases = [
        (
            "string_method.lua",
            "local hs = {}\nhs.status = (\"Healthy\"):lower()\nreturn hs\n",
        ),
        (
            "string_lib.lua",
            "return { status = string.upper(\"healthy\") }\n",
        ),
        (
            "math_lib.lua",
            "return { status = \"Healthy\", message = tostring(math.floor(1.5)) }\n",
        ),
        (
            "io_lib.lua",
            "io.write(\"x\")\nreturn { status = \"Healthy\" }\n",
        ),
    ];
    let object = json!({"status": {}});
    for (name, source) in cases {
        let path = dir.join(name);
        std::fs::write(&path, source).expect("write a script");
        let result = evaluate(&path, &object);
        assert!(
            matches!(&result, Err(e) if e.starts_with("raised:")),
            "{name} should fail in Argo CD's sandbox, got {result:?}"
        );
    }
    let path = dir.join("fine.lua");
    std::fs::write(
        &path,
        "local hs = {}\nhs.status = \"Healthy\"\nhs.message = \"n=\" .. tostring(#obj.status) .. table.concat({\"a\", \"b\"}, \",\")\nreturn hs\n",
    )
    .expect("write a script");
    assert_eq!(
        evaluate(&path, &object),
        Ok(Health {
            status: "Healthy".into(),
            message: "n=0a,b".into()
        })
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn health_checks_pass_their_tests() {
    let mut failures = Vec::new();
    let mut ran = 0;
    for kind in KINDS {
        let dir = check_dir(kind);
        let tests: HealthTests = serde_yaml::from_str(&read(&dir.join("health_test.yaml")))
            .unwrap_or_else(|e| panic!("{kind}/health_test.yaml: {e}"));
        let mut seen_statuses = BTreeSet::new();
        let mut used = BTreeSet::new();
        for test in &tests.tests {
            let input = dir.join(&test.input_path);
            used.insert(test.input_path.clone());
            let object = yaml(&input);
            assert_eq!(
                object["kind"], kind,
                "{kind}/{} is not a {kind}",
                test.input_path
            );
            seen_statuses.insert(test.health_status.status.clone());
            ran += 1;
            match evaluate(&script_path(kind), &object) {
                Ok(got) if got == test.health_status => {}
                Ok(got) => failures.push(format!(
                    "{kind}/{}:\n  expected {:?}: {:?}\n  got      {:?}: {:?}",
                    test.input_path,
                    test.health_status.status,
                    test.health_status.message,
                    got.status,
                    got.message
                )),
                Err(e) => failures.push(format!("{kind}/{}: the script {e}", test.input_path)),
            }
        }
        // Every sample object is a test case, and each check reaches every status it can return.
        let testdata: BTreeSet<String> = std::fs::read_dir(dir.join("testdata"))
            .expect("a testdata directory")
            .map(|e| {
                format!(
                    "testdata/{}",
                    e.expect("a file").file_name().to_string_lossy()
                )
            })
            .collect();
        let unused: Vec<_> = testdata.difference(&used).collect();
        assert!(
            unused.is_empty(),
            "{kind}: testdata without a case in health_test.yaml: {unused:?}"
        );
        for status in ["Healthy", "Progressing", "Degraded"] {
            assert!(
                seen_statuses.contains(status),
                "{kind}/health_test.yaml has no {status} case"
            );
        }
    }
    assert!(ran >= 20, "only {ran} cases ran");
    assert!(
        failures.is_empty(),
        "{} of {ran} health cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// True when every member of `part` is in `whole` with the same value.
fn is_within(part: &Value, whole: &Value, at: &str, problems: &mut Vec<String>) {
    match (part, whole) {
        (Value::Object(p), Value::Object(w)) => {
            for (k, v) in p {
                match w.get(k) {
                    Some(wv) => is_within(v, wv, &format!("{at}.{k}"), problems),
                    None => problems.push(format!("{at}.{k} is not a field of the type")),
                }
            }
        }
        (Value::Array(p), Value::Array(w)) if p.len() == w.len() => {
            for (i, (pv, wv)) in p.iter().zip(w).enumerate() {
                is_within(pv, wv, &format!("{at}[{i}]"), problems);
            }
        }
        _ if part == whole => {}
        _ => problems.push(format!("{at}: {part} reads back as {whole}")),
    }
}

#[test]
fn testdata_are_objects_the_operator_could_have_written() {
    for kind in KINDS {
        let dir = check_dir(kind).join("testdata");
        for entry in std::fs::read_dir(&dir).expect("a testdata directory") {
            let path = entry.expect("a file").path();
            let text = read(&path);
            let original: Value = serde_yaml::from_str(&text).expect("YAML");
            // Through the CRD types and back: a misspelt field would be dropped.
            let typed = match kind {
                "Feature" => serde_yaml::from_str::<eol_core::crd::Feature>(&text)
                    .map(|f| serde_json::to_value(f).expect("JSON")),
                _ => serde_yaml::from_str::<eol_core::crd::FeatureRun>(&text)
                    .map(|r| serde_json::to_value(r).expect("JSON")),
            }
            .unwrap_or_else(|e| panic!("{} is not a {kind}: {e}", path.display()));
            let mut problems = Vec::new();
            is_within(&original, &typed, "", &mut problems);
            // apiVersion and kind come from the type; the rest must survive.
            problems.retain(|p| !p.starts_with(".apiVersion") && !p.starts_with(".kind"));
            assert!(
                problems.is_empty(),
                "{}: {}",
                path.display(),
                problems.join("; ")
            );
            assert_eq!(original["apiVersion"], "eol.dev/v1alpha1");
        }
    }
}

#[test]
fn health_checks_never_fail_on_malformed_objects() {
    let condition_list =
        |items: Value| json!({"status": {"observedGeneration": 1, "conditions": items}});
    let mut objects = vec![
        json!({}),
        json!({"metadata": "not a map", "status": {"conditions": []}}),
        json!({"metadata": {"generation": "seven"}, "status": {"observedGeneration": "x"}}),
        json!({"metadata": {"generation": 2}, "status": {"observedGeneration": true}}),
        json!({"metadata": {"generation": "2"}, "status": {"observedGeneration": "2"}}),
        json!({"status": "Ready"}),
        json!({"status": 3}),
        json!({"status": ["Ready"]}),
        json!({"status": {"conditions": "Ready=True"}}),
        json!({"status": {"conditions": {"type": "Ready", "status": "True"}}}),
        condition_list(json!(["Ready", 7, true, [], {}])),
        condition_list(json!([{"type": "Ready"}, {"type": "Succeeded"}])),
        condition_list(json!([{"type": ["Ready"], "status": {"x": 1}}])),
    ];
    // Every condition the checks read, with each status and hostile fields.
    for type_ in [
        "SpecValid",
        "ModelConfigured",
        "PhaseSwitch",
        "Ready",
        "Succeeded",
    ] {
        for status in [
            json!("True"),
            json!("False"),
            json!("Unknown"),
            json!(null),
            json!(1),
        ] {
            for (reason, message) in [
                (json!(null), json!(null)),
                (json!(""), json!("")),
                (json!(7), json!({"nested": "message"})),
                (json!("Progressing"), json!(["a", "b"])),
            ] {
                objects.push(json!({
                    "metadata": {"generation": 1},
                    "status": {"observedGeneration": 1, "conditions": [
                        {"type": type_, "status": status, "reason": reason, "message": message}
                    ]}
                }));
            }
        }
    }
    let mut failures = Vec::new();
    for kind in KINDS {
        for object in &objects {
            match evaluate(&script_path(kind), object) {
                Ok(health) if health.message.is_empty() && health.status != "Healthy" => {
                    failures.push(format!("{kind} on {object}: {health:?} explains nothing"))
                }
                Ok(_) => {}
                Err(e) => failures.push(format!("{kind} on {object}: the script {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Where a copy differs from the script, for the failure message.
fn first_difference(copy: &str, script: &str) -> String {
    for (i, (a, b)) in copy.lines().zip(script.lines()).enumerate() {
        if a != b {
            return format!("line {}: copy {a:?}, script {b:?}", i + 1);
        }
    }
    format!(
        "{} lines in the copy, {} in the script (or a different final newline)",
        copy.lines().count(),
        script.lines().count()
    )
}

fn assert_copies(what: &str, scripts: &Value, indent: usize) {
    let map = scripts
        .as_object()
        .unwrap_or_else(|| panic!("{what}: the health checks are not a map"));
    for kind in KINDS {
        let key = cm_key(kind);
        let script = read(&script_path(kind));
        let copy = map
            .get(&key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{what} has no key {key}"));
        assert!(
            copy == script,
            "{what}: {key} is not charts/eol/argocd/eol.dev/{kind}/health.lua verbatim ({}). \
             Copy the script into it as a `|` block indented {indent} spaces.",
            first_difference(copy, &script)
        );
    }
    let ours: Vec<&String> = map
        .keys()
        .filter(|k| k.starts_with("resource.customizations.health.eol.dev_"))
        .collect();
    assert_eq!(ours.len(), KINDS.len(), "{what}: unexpected keys {ours:?}");
}

#[test]
fn argocd_cm_holds_the_scripts_verbatim() {
    let cm = yaml(&repo().join("charts/eol/argocd/argocd-cm.yaml"));
    assert_eq!(cm["apiVersion"], "v1");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    assert_eq!(cm["metadata"]["namespace"], "argocd");
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/part-of"], "argocd",
        "Argo CD watches only ConfigMaps labelled part-of=argocd"
    );
    assert_copies("charts/eol/argocd/argocd-cm.yaml", &cm["data"], 4);
}

#[test]
fn helm_values_and_docs_hold_the_scripts_verbatim() {
    let values = yaml(&repo().join("charts/eol/argocd/argo-cd-values.yaml"));
    assert_copies(
        "charts/eol/argocd/argo-cd-values.yaml",
        &values["configs"]["cm"],
        6,
    );

    // The values snippet in docs/argocd.md: the ```yaml block holding `configs:`.
    let docs = read(&repo().join("docs/argocd.md"));
    let snippet = docs
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.find("\n```").map(|end| &block[..=end]))
        .find(|block| block.starts_with("configs:") || block.contains("\nconfigs:\n"))
        .expect("docs/argocd.md has a ```yaml block with the argo-cd values (configs.cm)");
    let parsed: Value = serde_yaml::from_str(snippet).expect("the docs' values snippet is YAML");
    assert_copies(
        "the argo-cd values in docs/argocd.md",
        &parsed["configs"]["cm"],
        6,
    );
}

#[test]
fn application_syncs_the_feature_manifests() {
    let app = yaml(&repo().join("features/argocd/application.yaml"));
    assert_eq!(app["apiVersion"], "argoproj.io/v1alpha1");
    assert_eq!(app["kind"], "Application");
    let source = &app["spec"]["source"];
    let path = source["path"]
        .as_str()
        .expect("spec.source.path")
        .trim_end_matches('/');
    assert_eq!(path, "features/manifests");
    // Not recursive: features/manifests/keda/ holds an example that needs KEDA.
    assert_ne!(
        source["directory"]["recurse"],
        Value::Bool(true),
        "the Application must not sync features/manifests/keda/"
    );
    assert!(
        app["spec"]["destination"]["namespace"]
            .as_str()
            .is_some_and(|ns| !ns.is_empty()),
        "spec.destination.namespace names the namespace the Features go to"
    );
    let options: Vec<&str> = app["spec"]["syncPolicy"]["syncOptions"]
        .as_array()
        .expect("spec.syncPolicy.syncOptions")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for option in ["ServerSideApply=true", "CreateNamespace=true"] {
        assert!(options.contains(&option), "syncOptions lack {option}");
    }

    // What it syncs: Features and FeatureRuns, none sharing the Application's
    // name (the operator's app.kubernetes.io/instance label would make their
    // Deployments look like the Application's own under label tracking).
    let app_name = app["metadata"]["name"].as_str().expect("metadata.name");
    let mut kinds = BTreeSet::new();
    for entry in std::fs::read_dir(repo().join(path)).expect("features/manifests") {
        let file = entry.expect("a file").path();
        if file.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let object = yaml(&file);
        assert_eq!(
            object["apiVersion"],
            "eol.dev/v1alpha1",
            "{}",
            file.display()
        );
        assert!(
            object["metadata"].get("namespace").is_none(),
            "{} sets a namespace: the Application's destination would not apply",
            file.display()
        );
        assert_ne!(object["metadata"]["name"], app_name, "{}", file.display());
        kinds.insert(object["kind"].as_str().expect("kind").to_owned());
    }
    assert_eq!(
        kinds,
        BTreeSet::from(["Feature".to_owned(), "FeatureRun".to_owned()])
    );
}
