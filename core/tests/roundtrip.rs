//! Property tests for the `.eol` round trip.
//!
//! Features are generated as structured values (frontmatter, prose, operations with
//! schemas and code), rendered to `.eol` text by a renderer written here that varies
//! the layout (quoting styles, key order, blank lines, part order, fence styles, line
//! endings), and then checked: the text parses, the model holds exactly the generated
//! values, and parse/write/parse is a fixed point that leaves the body byte-identical.
//! A last property feeds the parsers text built from format fragments and random
//! unicode: they must report errors, never panic.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

use eol_core::{
    CacheSettings, Feature, Frontmatter, ModelSettings, OperationPhase, Phase, Reference,
    ResultCaching, SourceLocation, ToolServer, parse_feature, parse_test_suite, with_feature_phase,
    with_operation_code, with_operation_phase, write_feature,
};
use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------
// Small deterministic RNG for the renderer's micro-choices (quoting style of each
// string, indentation...). Its seed is part of the generated case, so a failing
// case replays exactly.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------
// YAML scalar rendering
// ---------------------------------------------------------------------------

/// Words a YAML parser may read as something other than a string when unquoted.
const YAML_WORDS: &[&str] = &[
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf", "infinity",
];

/// Whether `s` can be written as a plain scalar, in block and flow context alike.
/// Deliberately conservative: anything doubtful is quoted.
fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    first.is_ascii_alphabetic()
        && !s.ends_with(' ')
        && !s.contains("  ")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || " -_./()".contains(c))
        && !YAML_WORDS.contains(&s.to_ascii_lowercase().as_str())
}

/// Whether `s` can be written single-quoted (no character there needs an escape).
fn single_ok(s: &str) -> bool {
    !s.chars().any(|c| {
        c.is_control() || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\t')
    })
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if c.is_control() || c == '\u{feff}' => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn single_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `s` as a YAML scalar in a style chosen by `rng` among those that can hold it.
fn scalar(s: &str, rng: &mut Rng) -> String {
    match rng.below(3) {
        0 if plain_ok(s) => s.to_owned(),
        1 if single_ok(s) => single_quoted(s),
        _ => double_quoted(s),
    }
}

/// A float as a YAML scalar, in Rust's `Display` ("0.0000001") or `Debug` ("1e-7") form.
fn float(f: f64, rng: &mut Rng) -> String {
    if rng.one_in(2) {
        format!("{f}")
    } else {
        format!("{f:?}")
    }
}

/// A JSON value as a YAML flow node.
fn flow(v: &Value, rng: &mut Rng) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar(s, rng),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|i| flow(i, rng)).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", scalar(k, rng), flow(v, rng)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// A JSON object as YAML block-mapping lines at `indent`, nesting in block or flow style.
fn block(map: &Map<String, Value>, indent: usize, rng: &mut Rng, out: &mut Vec<String>) {
    let pad = " ".repeat(indent);
    for (k, v) in map {
        let key = scalar(k, rng);
        match v {
            Value::Object(m) if !m.is_empty() && !rng.one_in(3) => {
                out.push(format!("{pad}{key}:"));
                block(m, indent + *rng.pick(&[2, 4]), rng, out);
            }
            Value::Array(items) if !items.is_empty() && rng.one_in(2) => {
                out.push(format!("{pad}{key}:"));
                let item_pad = " ".repeat(indent + *rng.pick(&[0, 2]));
                for item in items {
                    out.push(format!("{item_pad}- {}", flow(item, rng)));
                }
            }
            other => out.push(format!("{pad}{key}: {}", flow(other, rng))),
        }
    }
}

/// A schema's lines inside its fence: YAML block, YAML flow, or JSON (pretty or compact).
fn schema_lines(schema: &Value, rng: &mut Rng) -> Vec<String> {
    let Value::Object(map) = schema else {
        unreachable!("schemas are objects")
    };
    match rng.below(4) {
        0 => vec![flow(schema, rng)],
        1 => serde_json::to_string_pretty(schema)
            .expect("json")
            .lines()
            .map(str::to_owned)
            .collect(),
        2 => vec![serde_json::to_string(schema).expect("json")],
        _ => {
            let mut out = Vec::new();
            block(map, 0, rng, &mut out);
            out
        }
    }
}

// ---------------------------------------------------------------------------
// Generated values
// ---------------------------------------------------------------------------

/// One word of prose: text, or a reference the parser must find.
#[derive(Debug, Clone)]
enum Word {
    Text(String),
    Ref(String, Reference),
}

/// One item of a prose paragraph.
#[derive(Debug, Clone)]
enum Item {
    /// A line of words.
    Line(Vec<Word>),
    /// A fixed line that looks structural but is prose where it stands.
    Tricky(String),
    /// A heading that stays prose (level >= 2 outside operations, >= 4 inside).
    Heading(usize, String),
    /// A ```text fence, kept in the prose.
    Fence(Vec<String>),
}

type Paragraph = Vec<Item>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Phase,
    Prose,
    Input,
    Output,
    Code,
}

#[derive(Debug, Clone)]
struct GenOp {
    name: String,
    declared: Option<OperationPhase>,
    /// The phase to declare if the feature is hybrid and none was declared.
    fallback: OperationPhase,
    paragraphs: Vec<Paragraph>,
    input: Value,
    output: Value,
    /// Python lines after the `def` line.
    code: Option<Vec<String>>,
    /// Order of the operation's parts (filtered to those it has).
    order: Vec<Part>,
    seed: u64,
}

#[derive(Debug, Clone)]
struct GenFeature {
    fm: Frontmatter,
    /// Permutation of `Frontmatter::KEYS` indices.
    key_order: Vec<usize>,
    title: Option<String>,
    intro: Vec<Paragraph>,
    preamble: Vec<Paragraph>,
    trailing: Option<(usize, String, Vec<Paragraph>)>,
    ops: Vec<GenOp>,
    crlf: bool,
    final_newline: bool,
    bom: bool,
    seed: u64,
}

/// What a rendered body line is, for computing the expected prose and specs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Shared prose (`Feature::prose`).
    Prose,
    /// Spec prose of operation `n`.
    Spec(usize),
    /// Structure: title, `## Operations`, headings, `Phase:` lines, labels, fences.
    Other,
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

const TRICKY: &[&str] = &[
    "HOSTILE: hostile text",
    "Inputs are validated before the call.",
    "Input: a mapping, described below",
    "Output is a mapping.",
    "Outputs:",
    "Input::",
    "Output: see the schema",
    "phase: lowercase, so prose",
    "Phases: none of them",
    "The Phase: line is elsewhere.",
    "#hashtag and #5 are not headings",
    "####### seven hashes are prose",
    "--- not a frontmatter fence",
    "---",
    "...",
    "`code` at the start",
    "`` two backticks",
    "~~ two tildes",
    "Mail me@example.com, not a reference",
    "name: looks like YAML",
    "- a list item",
    "> a quote",
    "| a | table |",
    "    indented four spaces",
    "\ttab-indented",
    "trailing spaces   ",
    "Übergrößenträger café 日本語 🦀",
];

const TRICKY_OUTSIDE_OPS: &[&str] = &[
    "Phase: hybrid",
    "Phase: implementation",
    "Input:",
    "Output:",
];

fn hostile_string(with_newlines: bool) -> BoxedStrategy<String> {
    const FRAGMENTS: &[&str] = &[
        "'",
        "\"",
        ": ",
        ":",
        "#",
        " #",
        "# ",
        "- ",
        "? ",
        "&a ",
        "*a",
        "!tag ",
        "|",
        ">",
        "%",
        "@",
        "`",
        "{",
        "}",
        "[",
        "]",
        ",",
        "null",
        "true",
        "~",
        "0x1F",
        "1e3",
        "0o17",
        ".inf",
        "ü",
        "日本語",
        "🦀",
        " ",
        "  ",
        "\t",
        "\\",
        "\\n",
        "---",
        "...",
        "yes",
        "no",
        "\u{2028}",
        "\u{feff}",
        "\u{a0}",
        "$ref",
        "\u{301}",
    ];
    let fragment = prop_oneof![
        4 => "[a-zA-Z0-9 ]{1,8}",
        2 => "\\PC{1,4}",
        4 => select(FRAGMENTS).prop_map(str::to_owned),
        if with_newlines { 1 } else { 0 } => select(vec!["\n", "\n\n", " \n", "\n  ", "\r\n"]).prop_map(str::to_owned),
    ];
    vec(fragment, 0..16).prop_map(|v| v.concat()).boxed()
}

/// A string for a JSON Schema (kept JSON-compatible YAML: no U+2028/U+2029,
/// which YAML reads as line breaks inside a JSON string).
fn schema_string() -> BoxedStrategy<String> {
    hostile_string(false)
        .prop_map(|s| s.replace(['\u{2028}', '\u{2029}'], " "))
        .boxed()
}

fn semver() -> impl Strategy<Value = String> {
    (
        0..30u64,
        0..30u64,
        0..300u64,
        prop::option::of(select(vec![
            "alpha", "alpha.1", "rc.2", "0.3.7", "x-y-z", "beta",
        ])),
        prop::option::of(select(vec!["build.5", "sha.abc123", "001", "exp-sha"])),
    )
        .prop_map(|(a, b, c, pre, build)| {
            let mut v = format!("{a}.{b}.{c}");
            if let Some(p) = pre {
                v.push('-');
                v.push_str(p);
            }
            if let Some(b) = build {
                v.push('+');
                v.push_str(b);
            }
            v
        })
}

fn unit_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        select(vec![
            0.0,
            -0.0,
            0.1,
            0.7,
            1.0,
            2.0,
            1e-7,
            0.30000000000000004,
            5e-324,
            f64::MIN_POSITIVE
        ]),
        0.0f64..=2.0,
    ]
}

fn model() -> impl Strategy<Value = ModelSettings> {
    (
        prop::option::of(prop_oneof![
            select(vec!["gpt-4o-mini", "llama3.1:8b", "mistral/7b"]).prop_map(str::to_owned),
            hostile_string(false),
        ]),
        prop::option::of(unit_float()),
        prop::option::of(any::<u32>()),
        prop::option::of(prop_oneof![
            any::<i64>(),
            select(vec![0, i64::MIN, i64::MAX])
        ]),
    )
        .prop_map(|(name, temperature, max_tokens, seed)| ModelSettings {
            name,
            temperature,
            max_tokens,
            seed,
            // A price round-trips through serde like the other fields; its
            // floats are covered by the cost module's tests.
            price: None,
            ..ModelSettings::default()
        })
}

fn cache() -> impl Strategy<Value = CacheSettings> {
    (
        any::<bool>(),
        prop::option::of(unit_float()),
        prop::option::of(prop_oneof![1..=u64::MAX, Just(u64::MAX)]),
        prop::collection::vec("[a-z]{1,6}(\\.[a-z]{1,6})?", 0..3),
        prop::option::of(any::<bool>()),
        any::<bool>(),
    )
        .prop_map(
            |(enabled, distance_threshold, ttl, exact, embeddings, results)| CacheSettings {
                enabled,
                distance_threshold,
                ttl,
                exact,
                embeddings,
                // Operation names are checked against the body; `true`/`false` always parse.
                results: ResultCaching::All(results),
                semantic: None,
            },
        )
}

fn context_entry() -> BoxedStrategy<String> {
    prop_oneof![
        "[a-z]{1,8}(/[a-z]{1,8}){0,2}\\.md",
        "feature:[a-z][a-z0-9-]{0,10}",
        hostile_string(false),
    ]
    .boxed()
}

fn tool() -> impl Strategy<Value = ToolServer> {
    (
        "[a-z][a-z0-9_-]{0,8}",
        any::<bool>(),
        vec(hostile_string(false), 0..3),
        btree_map("[A-Z][A-Z0-9_]{0,6}", hostile_string(false), 0..3),
    )
        .prop_map(|(name, stdio, args, env)| ToolServer {
            name,
            command: stdio.then(|| "npx".to_owned()),
            args: if stdio { args } else { Vec::new() },
            url: (!stdio).then(|| "http://localhost:8080/mcp".to_owned()),
            env: if stdio { env } else { BTreeMap::new() },
        })
}

fn frontmatter() -> impl Strategy<Value = Frontmatter> {
    (
        "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?",
        prop::option::of(semver()),
        prop::option::of(hostile_string(true)),
        select(Phase::ALL.to_vec()),
        prop::option::of(model()),
        vec(context_entry(), 0..3),
        vec(tool(), 0..2),
        prop::option::of(cache()),
        prop::option::of(budget()),
    )
        .prop_map(
            |(name, version, description, phase, model, context, tools, cache, budget)| {
                Frontmatter {
                    name,
                    version,
                    description,
                    phase,
                    model,
                    context,
                    tools,
                    cache,
                    budget,
                }
            },
        )
}

fn budget() -> impl Strategy<Value = eol_core::cost::Budget> {
    use eol_core::cost::{Budget, BudgetWindow, OnExceeded};
    (
        1i64..1_000_000,
        prop::option::of(0u32..10_000),
        select(vec![
            BudgetWindow::Hour,
            BudgetWindow::Day,
            BudgetWindow::Month,
        ]),
        select(vec![
            OnExceeded::Reject,
            OnExceeded::Implementation,
            OnExceeded::Model,
        ]),
    )
        .prop_map(|(tokens, cents, per, on_exceeded)| Budget {
            tokens: Some(tokens),
            // Whole cents: they print and parse back exactly.
            cost: cents.map(|c| f64::from(c) / 100.0),
            per,
            on_exceeded,
            model: (on_exceeded == OnExceeded::Model).then(|| "small".to_owned()),
        })
}

fn word() -> BoxedStrategy<Word> {
    prop_oneof![
        6 => "[a-zA-Z0-9,.;!?'\"()-]{1,10}".prop_map(Word::Text),
        // No '@' in random words: every reference is a generated one.
        2 => "\\PC{1,3}".prop_map(|s| Word::Text(s.replace('@', "a"))),
        1 => ("[a-z]{1,6}(/[a-z]{1,6}){0,2}\\.(md|txt)", select(vec!["", ".", ",", ")"]))
            .prop_map(|(path, punct)| {
                let open = if punct == ")" { "(" } else { "" };
                Word::Ref(
                    format!("{open}@{path}{punct}"),
                    Reference::Path { path, location: SourceLocation::default() },
                )
            }),
        1 => "[a-z][a-z0-9-]{0,10}".prop_map(|name| Word::Ref(
            format!("@feature:{name}"),
            Reference::Feature { name, location: SourceLocation::default() },
        )),
    ]
    .boxed()
}

/// A paragraph of prose; `in_op` selects the tricky lines that stay prose inside an
/// operation, `min_level` the lowest heading level that stays prose where it goes.
fn paragraph(in_op: bool, min_level: usize) -> BoxedStrategy<Paragraph> {
    let tricky: Vec<&'static str> = if in_op {
        TRICKY.to_vec()
    } else {
        TRICKY.iter().chain(TRICKY_OUTSIDE_OPS).copied().collect()
    };
    let item = prop_oneof![
        8 => vec(word(), 1..8).prop_map(Item::Line),
        2 => select(tricky).prop_map(|s| Item::Tricky(s.to_owned())),
        1 => (min_level..=6usize, select(vec!["Notes", "Background", "Operations overview", "Ünïcode", "About C#", "#5"]))
            .prop_map(|(l, t)| Item::Heading(l, t.to_owned())),
        1 => vec("[ -~]{0,20}".prop_map(|l| l.replace('`', "'")), 0..3).prop_map(Item::Fence),
    ];
    vec(item, 1..4).boxed()
}

fn prop_schema() -> BoxedStrategy<Value> {
    let ty = select(vec!["string", "integer", "number", "boolean", "array"]);
    (
        ty,
        prop::option::of(schema_string()),
        prop::option::of(-5i64..100),
        prop::option::of(select(vec!["^[a-z]{3}$", "^\\d+$", "a|b", "[{}]: #"])),
        prop::option::of(vec(schema_string(), 1..3)),
    )
        .prop_map(|(ty, description, minimum, pattern, enumeration)| {
            let mut s = Map::new();
            s.insert("type".into(), json!(ty));
            if let Some(d) = description {
                s.insert("description".into(), json!(d));
            }
            match ty {
                "integer" | "number" => {
                    if let Some(m) = minimum {
                        s.insert("minimum".into(), json!(m));
                    }
                }
                "string" => {
                    if let Some(p) = pattern {
                        s.insert("pattern".into(), json!(p));
                    } else if let Some(e) = enumeration {
                        s.insert("enum".into(), json!(e));
                    }
                }
                "array" => {
                    s.insert("items".into(), json!({"type": "string"}));
                }
                _ => {}
            }
            Value::Object(s)
        })
        .boxed()
}

fn object_schema() -> BoxedStrategy<Value> {
    (
        btree_map("[a-z][a-z0-9_]{0,8}", prop_schema(), 0..5),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(props, always_props, required_bits)| {
            let mut s = Map::new();
            s.insert("type".into(), json!("object"));
            let required: Vec<&String> = props
                .keys()
                .enumerate()
                .filter(|(i, _)| (required_bits >> i) & 1 == 1)
                .map(|(_, k)| k)
                .collect();
            if !required.is_empty() {
                s.insert("required".into(), json!(required));
            }
            if !props.is_empty() || always_props {
                s.insert(
                    "properties".into(),
                    Value::Object(props.into_iter().collect()),
                );
            }
            Value::Object(s)
        })
        .boxed()
}

fn output_schema() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => object_schema(),
        1 => prop_schema(),
    ]
    .boxed()
}

const CODE_LINES: &[&str] = &[
    "    # Input: a comment, not a label",
    "    x = 1   ",
    "    s = \"``` inside a string\"",
    "",
    "\t# tab-indented comment",
    "    ## not a heading",
    "# Phase: implementation",
    "Input:",
    "---",
    "    value = redis.get(f\"key:{x}\")",
    "    data = json.dumps({\"a\": [1, 2]})",
    "    ünïcode = \"日本語 🦀\"",
];

fn operation(name: String) -> BoxedStrategy<GenOp> {
    (
        prop::option::of(select(vec![
            OperationPhase::Prototyping,
            OperationPhase::Implementation,
        ])),
        select(vec![
            OperationPhase::Prototyping,
            OperationPhase::Implementation,
        ]),
        vec(paragraph(true, 4), 0..3),
        object_schema(),
        output_schema(),
        prop::option::of(vec(select(CODE_LINES).prop_map(str::to_owned), 0..5)),
        Just(vec![
            Part::Phase,
            Part::Prose,
            Part::Input,
            Part::Output,
            Part::Code,
        ])
        .prop_shuffle(),
        any::<u64>(),
    )
        .prop_map(
            move |(declared, fallback, paragraphs, input, output, code, order, seed)| GenOp {
                name: name.clone(),
                declared,
                fallback,
                paragraphs,
                input,
                output,
                code,
                order,
                seed,
            },
        )
        .boxed()
}

fn feature() -> impl Strategy<Value = GenFeature> {
    let ops = btree_set("[a-z_][a-z0-9_]{0,12}", 1..=5)
        .prop_flat_map(|names| names.into_iter().map(operation).collect::<Vec<_>>());
    // A title may end in '#' ("Learn C#"): only a separate run of '#' closes a heading.
    let title = prop::option::of("[A-Z][a-z]{1,8}( [a-zA-Zé0-9]{1,8}){0,3}( C#| F##)?");
    let trailing = prop::option::of((
        1..=2usize,
        select(vec!["Notes", "Glossary", "Operations overview"]).prop_map(str::to_owned),
        vec(paragraph(false, 2), 0..3),
    ));
    (
        (
            frontmatter(),
            Just((0..Frontmatter::KEYS.len()).collect::<Vec<_>>()).prop_shuffle(),
            title,
            vec(paragraph(false, 2), 0..3),
            vec(paragraph(false, 4), 0..2),
            trailing,
        ),
        ops,
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<u64>()),
    )
        .prop_map(
            |(
                (fm, key_order, title, intro, preamble, trailing),
                mut ops,
                (crlf, final_newline, bom, seed),
            )| {
                // Make the operations valid for the feature's phase.
                for op in &mut ops {
                    if fm.phase == Phase::Hybrid && op.declared.is_none() {
                        op.declared = Some(op.fallback);
                    }
                    if resolved(&fm, op) == OperationPhase::Implementation && op.code.is_none() {
                        op.code = Some(vec!["    return {}".to_owned()]);
                    }
                }
                GenFeature {
                    fm,
                    key_order,
                    title,
                    intro,
                    preamble,
                    trailing,
                    ops,
                    crlf,
                    final_newline,
                    bom: bom && seed % 8 == 0,
                    seed,
                }
            },
        )
}

fn resolved(fm: &Frontmatter, op: &GenOp) -> OperationPhase {
    op.declared
        .or(fm.phase.forced())
        .expect("hybrid operations declare their phase")
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

/// Whether a prose line would be read as structure inside an operation
/// (a heading, a fence, a `Phase:` line or an `Input:`/`Output:` label).
fn structural(line: &str, in_op: bool) -> bool {
    let t = line.trim_start();
    let hashes = t.len() - t.trim_start_matches('#').len();
    let heading = hashes > 0 && (t[hashes..].is_empty() || t[hashes..].starts_with([' ', '\t']));
    let label = |l: &str| t.trim().strip_prefix(l).is_some_and(|r| r.trim() == ":");
    heading
        || t.starts_with("```")
        || t.starts_with("~~~")
        || (in_op && (t.starts_with("Phase:") || label("Input") || label("Output")))
}

struct Body {
    lines: Vec<(String, Kind)>,
    references: Vec<Reference>,
}

impl Body {
    fn push(&mut self, line: impl Into<String>, kind: Kind) {
        self.lines.push((line.into(), kind));
    }

    fn blanks(&mut self, n: usize, kind: Kind) {
        for _ in 0..n {
            self.push("", kind);
        }
    }

    fn paragraph(&mut self, p: &Paragraph, kind: Kind) {
        let in_op = matches!(kind, Kind::Spec(_));
        for item in p {
            match item {
                Item::Line(words) => {
                    let mut text: Vec<&str> = Vec::new();
                    let mut refs = Vec::new();
                    for w in words {
                        match w {
                            Word::Text(t) => text.push(t),
                            Word::Ref(t, r) => {
                                text.push(t);
                                refs.push(r.clone());
                            }
                        }
                    }
                    let mut line = text.join(" ");
                    if structural(&line, in_op) {
                        line.insert_str(0, "so ");
                    }
                    self.references.extend(refs);
                    self.push(line, kind);
                }
                Item::Tricky(t) => self.push(t.clone(), kind),
                Item::Heading(level, text) => {
                    self.push(format!("{} {text}", "#".repeat(*level)), kind);
                }
                Item::Fence(lines) => {
                    self.push("```text", kind);
                    for l in lines {
                        self.push(l.clone(), kind);
                    }
                    self.push("```", kind);
                }
            }
        }
    }

    fn paragraphs(&mut self, ps: &[Paragraph], kind: Kind, rng: &mut Rng) {
        for (i, p) in ps.iter().enumerate() {
            if i > 0 {
                let n = 1 + rng.below(2);
                self.blanks(n, kind);
            }
            self.paragraph(p, kind);
        }
    }
}

fn render_operation(index: usize, op: &GenOp, body: &mut Body) {
    let mut rng = Rng(op.seed);
    let spec = Kind::Spec(index);
    let heading = match rng.below(5) {
        0 => format!("###  {}", op.name),
        1 => format!("### {} ###", op.name),
        2 => format!("   ### {}", op.name),
        3 => format!("###\t{}", op.name),
        _ => format!("### {}", op.name),
    };
    body.push(heading, Kind::Other);
    let n = rng.below(3);
    body.blanks(n, spec);
    let parts: Vec<Part> = op
        .order
        .iter()
        .copied()
        .filter(|p| match p {
            Part::Phase => op.declared.is_some(),
            Part::Prose => !op.paragraphs.is_empty(),
            Part::Code => op.code.is_some(),
            Part::Input | Part::Output => true,
        })
        .collect();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            let n = rng.below(3);
            body.blanks(n, spec);
        }
        match part {
            Part::Phase => {
                let phase = op.declared.expect("filtered");
                let line = match rng.below(4) {
                    0 => format!("Phase:{phase}"),
                    1 => format!("  Phase:   {phase}  "),
                    2 => format!("Phase: {phase}   "),
                    _ => format!("Phase: {phase}"),
                };
                body.push(line, Kind::Other);
            }
            Part::Prose => body.paragraphs(&op.paragraphs, spec, &mut rng),
            Part::Input | Part::Output => {
                let (label, schema) = if *part == Part::Input {
                    ("Input", &op.input)
                } else {
                    ("Output", &op.output)
                };
                let line = match rng.below(4) {
                    0 => format!("{label} :"),
                    1 => format!(" {label}:"),
                    2 => format!("{label}:  "),
                    _ => format!("{label}:"),
                };
                body.push(line, Kind::Other);
                let n = rng.below(3);
                body.blanks(n, Kind::Other);
                let (marker, info) = *rng.pick(&[
                    ("```", "yaml"),
                    ("```", "yml"),
                    ("```", "json"),
                    ("```", ""),
                    ("```", "yaml schema"),
                    ("~~~", "yaml"),
                    ("````", "yaml"),
                    ("```", "  yaml"),
                ]);
                body.push(format!("{marker}{info}"), Kind::Other);
                for l in schema_lines(schema, &mut rng) {
                    body.push(l, Kind::Other);
                }
                body.push(marker, Kind::Other);
            }
            Part::Code => {
                let (marker, info) = *rng.pick(&[
                    ("```", "python"),
                    ("```", "py"),
                    ("```", "python3"),
                    ("~~~", "python"),
                    ("````", "python"),
                    ("```", "python title=x"),
                ]);
                body.push(format!("{marker}{info}"), Kind::Other);
                for l in code_lines(op) {
                    body.push(l, Kind::Other);
                }
                body.push(marker, Kind::Other);
            }
        }
    }
    let n = rng.below(3);
    body.blanks(n, spec);
}

/// The operation's Python source, line by line.
fn code_lines(op: &GenOp) -> Vec<String> {
    let params = params(&op.input).join(", ");
    let mut lines = vec![format!("def {}({params}):", op.name)];
    lines.extend(op.code.iter().flatten().cloned());
    lines
}

fn params(schema: &Value) -> Vec<String> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn render_frontmatter(g: &GenFeature, rng: &mut Rng) -> Vec<String> {
    let fm = &g.fm;
    let mut out = Vec::new();
    if rng.one_in(4) {
        out.push("# a comment: with a colon".to_owned());
    }
    let comment = |rng: &mut Rng| {
        if rng.one_in(4) {
            "   # trailing comment"
        } else {
            ""
        }
    };
    for &k in &g.key_order {
        let before = out.len();
        match Frontmatter::KEYS[k] {
            "name" => out.push(format!("name: {}{}", scalar(&fm.name, rng), comment(rng))),
            "version" => {
                if let Some(v) = &fm.version {
                    out.push(format!("version: {}{}", scalar(v, rng), comment(rng)));
                }
            }
            "description" => {
                if let Some(d) = &fm.description {
                    out.push(format!("description: {}{}", scalar(d, rng), comment(rng)));
                }
            }
            "phase" => out.push(format!("phase: {}{}", fm.phase, comment(rng))),
            "model" => {
                if let Some(m) = &fm.model {
                    let mut fields = Vec::new();
                    if let Some(n) = &m.name {
                        fields.push(format!("name: {}", scalar(n, rng)));
                    }
                    if let Some(t) = m.temperature {
                        fields.push(format!("temperature: {}", float(t, rng)));
                    }
                    if let Some(t) = m.max_tokens {
                        fields.push(format!("max_tokens: {t}"));
                    }
                    if let Some(s) = m.seed {
                        fields.push(format!("seed: {s}"));
                    }
                    mapping(&mut out, "model", fields, rng);
                }
            }
            "context" => {
                if !fm.context.is_empty() {
                    let items: Vec<String> = fm.context.iter().map(|c| scalar(c, rng)).collect();
                    sequence(&mut out, "context", items, rng);
                }
            }
            "tools" => {
                if !fm.tools.is_empty() {
                    out.push("tools:".to_owned());
                    let pad = " ".repeat(*rng.pick(&[0, 2]));
                    for t in &fm.tools {
                        out.push(format!("{pad}- name: {}", scalar(&t.name, rng)));
                        if let Some(c) = &t.command {
                            out.push(format!("{pad}  command: {}", scalar(c, rng)));
                        }
                        if let Some(u) = &t.url {
                            out.push(format!("{pad}  url: {}", scalar(u, rng)));
                        }
                        if !t.args.is_empty() {
                            let args: Vec<String> = t.args.iter().map(|a| scalar(a, rng)).collect();
                            out.push(format!("{pad}  args: [{}]", args.join(", ")));
                        }
                        if !t.env.is_empty() {
                            out.push(format!("{pad}  env:"));
                            for (k, v) in &t.env {
                                out.push(format!(
                                    "{pad}    {}: {}",
                                    scalar(k, rng),
                                    scalar(v, rng)
                                ));
                            }
                        }
                    }
                }
            }
            "cache" => {
                if let Some(c) = &fm.cache {
                    let mut fields = Vec::new();
                    if !c.enabled || rng.one_in(2) {
                        fields.push(format!("enabled: {}", c.enabled));
                    }
                    if let Some(t) = c.distance_threshold {
                        fields.push(format!("distance_threshold: {}", float(t, rng)));
                    }
                    if let Some(t) = c.ttl {
                        fields.push(format!("ttl: {t}"));
                    }
                    if !c.exact.is_empty() {
                        fields.push(format!("exact: [{}]", c.exact.join(", ")));
                    }
                    if let Some(e) = c.embeddings {
                        fields.push(format!("embeddings: {e}"));
                    }
                    if let ResultCaching::All(r) = c.results
                        && (r || rng.one_in(2))
                    {
                        fields.push(format!("results: {r}"));
                    }
                    mapping(&mut out, "cache", fields, rng);
                }
            }
            "budget" => {
                if let Some(b) = &fm.budget {
                    use eol_core::cost::{BudgetWindow, OnExceeded};
                    let mut fields = Vec::new();
                    if let Some(t) = b.tokens {
                        fields.push(format!("tokens: {t}"));
                    }
                    if let Some(c) = b.cost {
                        fields.push(format!("cost: {c}"));
                    }
                    let per = match b.per {
                        BudgetWindow::Hour => "hour",
                        BudgetWindow::Day => "day",
                        BudgetWindow::Month => "month",
                    };
                    if b.per != BudgetWindow::Day || rng.one_in(2) {
                        fields.push(format!("per: {per}"));
                    }
                    // Both spellings: the frontmatter's snake case and the CRD's camel case.
                    let (key, value) = match b.on_exceeded {
                        OnExceeded::Reject => ("on_exceeded", "reject"),
                        OnExceeded::Implementation => ("onExceeded", "Implementation"),
                        OnExceeded::Model => ("on_exceeded", "Model"),
                    };
                    if b.on_exceeded != OnExceeded::Reject || rng.one_in(2) {
                        fields.push(format!("{key}: {value}"));
                    }
                    if let Some(m) = &b.model {
                        fields.push(format!("model: {}", scalar(m, rng)));
                    }
                    mapping(&mut out, "budget", fields, rng);
                }
            }
            other => unreachable!("unknown key {other}"),
        }
        if out.len() > before && rng.one_in(5) {
            out.push(String::new());
        }
    }
    out
}

/// `key:` with `fields` ("k: v" strings) as a block or a flow mapping.
fn mapping(out: &mut Vec<String>, key: &str, fields: Vec<String>, rng: &mut Rng) {
    if fields.is_empty() || rng.one_in(3) {
        out.push(format!("{key}: {{{}}}", fields.join(", ")));
    } else {
        out.push(format!("{key}:"));
        let pad = " ".repeat(*rng.pick(&[2, 4]));
        out.extend(fields.into_iter().map(|f| format!("{pad}{f}")));
    }
}

/// `key:` with `items` (YAML scalars) as a block or a flow sequence.
fn sequence(out: &mut Vec<String>, key: &str, items: Vec<String>, rng: &mut Rng) {
    if rng.one_in(3) {
        out.push(format!("{key}: [{}]", items.join(", ")));
    } else {
        out.push(format!("{key}:"));
        let pad = " ".repeat(*rng.pick(&[0, 2]));
        out.extend(items.into_iter().map(|i| format!("{pad}- {i}")));
    }
}

/// The rendered file, its body, and the body's lines with their kinds.
struct Rendered {
    text: String,
    body: String,
    body_lines: Body,
}

fn render(g: &GenFeature) -> Rendered {
    let mut rng = Rng(g.seed);
    let eol = if g.crlf { "\r\n" } else { "\n" };
    let mut b = Body {
        lines: Vec::new(),
        references: Vec::new(),
    };
    let n = rng.below(2);
    b.blanks(n, Kind::Prose);
    let title_line = |t: &str, rng: &mut Rng| match rng.below(3) {
        0 => format!("#  {t}  "),
        1 => format!("# {t} #"),
        _ => format!("# {t}"),
    };
    let title_after_first = !g.intro.is_empty() && rng.one_in(3);
    if let Some(t) = &g.title
        && !title_after_first
    {
        let line = title_line(t, &mut rng);
        b.push(line, Kind::Other);
        b.blanks(1, Kind::Prose);
    }
    for (i, p) in g.intro.iter().enumerate() {
        if i > 0 {
            let n = 1 + rng.below(2);
            b.blanks(n, Kind::Prose);
        }
        b.paragraph(p, Kind::Prose);
        if i == 0
            && title_after_first
            && let Some(t) = &g.title
        {
            b.blanks(1, Kind::Prose);
            let line = title_line(t, &mut rng);
            b.push(line, Kind::Other);
        }
    }
    let n = rng.below(3);
    b.blanks(n, Kind::Prose);
    let ops_heading = *rng.pick(&[
        "## Operations",
        "## operations",
        "## OPERATIONS",
        "##   Operations  ##",
        "  ## Operations",
    ]);
    b.push(ops_heading, Kind::Other);
    let n = rng.below(3);
    b.blanks(n, Kind::Prose);
    if !g.preamble.is_empty() {
        b.paragraphs(&g.preamble, Kind::Prose, &mut rng);
        b.blanks(1, Kind::Prose);
    }
    for (i, op) in g.ops.iter().enumerate() {
        render_operation(i, op, &mut b);
    }
    if let Some((level, heading, ps)) = &g.trailing {
        b.push(format!("{} {heading}", "#".repeat(*level)), Kind::Prose);
        b.blanks(1, Kind::Prose);
        b.paragraphs(ps, Kind::Prose, &mut rng);
    }

    let mut body = b
        .lines
        .iter()
        .map(|(l, _)| l.as_str())
        .collect::<Vec<_>>()
        .join(eol);
    if g.final_newline {
        body.push_str(eol);
    }
    let mut text = String::new();
    if g.bom {
        text.push('\u{feff}');
    }
    text.push_str(if rng.one_in(4) { "---  " } else { "---" });
    text.push_str(eol);
    for l in render_frontmatter(g, &mut rng) {
        text.push_str(&l);
        text.push_str(eol);
    }
    text.push_str(if rng.one_in(5) { "..." } else { "---" });
    text.push_str(eol);
    text.push_str(&body);
    Rendered {
        text,
        body,
        body_lines: b,
    }
}

/// The text the parser keeps for lines of `kind`: one line each, trimmed of blank
/// lines at both ends (like `Feature::prose` and `Operation::spec`).
fn expected_text(body: &Body, kind: Kind) -> String {
    let mut s = String::new();
    for (line, k) in &body.lines {
        if *k == kind {
            s.push_str(line);
            s.push('\n');
        }
    }
    s.trim_matches('\n').to_owned()
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

fn config(cases: u32) -> ProptestConfig {
    // PROPTEST_CASES raises (or lowers) the count for a longer hunt.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // Failures are turned into named regression tests instead of a file.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// (a) parses and (b) the model holds the generated values.
fn check_model(g: &GenFeature, r: &Rendered, f: &Feature) -> Result<(), TestCaseError> {
    prop_assert_eq!(&f.frontmatter, &g.fm);
    prop_assert_eq!(&f.title, &g.title);
    prop_assert_eq!(&f.prose, &expected_text(&r.body_lines, Kind::Prose));
    prop_assert_eq!(&f.references, &r.body_lines.references);
    prop_assert_eq!(f.body(), r.body.as_str());
    prop_assert_eq!(f.operations.len(), g.ops.len());
    for (i, (op, want)) in f.operations.iter().zip(&g.ops).enumerate() {
        prop_assert_eq!(&op.name, &want.name);
        prop_assert_eq!(op.declared_phase, want.declared);
        prop_assert_eq!(op.phase, resolved(&g.fm, want));
        prop_assert_eq!(&op.spec, &expected_text(&r.body_lines, Kind::Spec(i)));
        prop_assert_eq!(&op.input.value, &want.input);
        prop_assert_eq!(&op.output.value, &want.output);
        let mut params = op.parameters();
        params.sort();
        prop_assert_eq!(params, params_sorted(&want.input));
        let code = want.code.as_ref().map(|_| {
            let mut s = code_lines(want).join("\n");
            s.push('\n');
            s
        });
        prop_assert_eq!(op.code.as_ref().map(|c| c.source.clone()), code);
    }
    Ok(())
}

fn params_sorted(schema: &Value) -> Vec<String> {
    let mut p = params(schema);
    p.sort();
    p
}

/// (c) parse(write(parse(t))) == parse(t), (d) write is idempotent, (e) the body is
/// byte-identical after write.
fn check_round_trip(text: &str, f: &Feature) -> Result<(), TestCaseError> {
    let written = write_feature(f);
    let again = parse_feature("written.eol", &written).map_err(|e| {
        TestCaseError::fail(format!("written text does not parse:\n{e}\n---\n{written}"))
    })?;
    prop_assert_eq!(&again, f, "model changed by write; written:\n{}", written);
    prop_assert_eq!(
        write_feature(&again),
        written.clone(),
        "write is not idempotent"
    );
    let body = f.body();
    prop_assert!(
        text.ends_with(body),
        "the parsed body is not the end of the source"
    );
    prop_assert!(
        written.ends_with(body) && written[..written.len() - body.len()].ends_with("---\n"),
        "the body changed in writing:\n{}",
        written
    );
    prop_assert_eq!(again.body(), body);
    Ok(())
}

proptest! {
    #![proptest_config(config(384))]

    #[test]
    fn generated_features_round_trip(g in feature()) {
        let r = render(&g);
        let f = parse_feature("gen.eol", &r.text).map_err(|e| {
            TestCaseError::fail(format!("generated feature does not parse:\n{e}\n---\n{}", r.text))
        })?;
        check_model(&g, &r, &f)?;
        check_round_trip(&r.text, &f)?;
    }
}

/// An edit's result, parsed; `what` names the edit in the failure.
fn parse_edit(text: &str, what: &str) -> Result<Feature, TestCaseError> {
    parse_feature("edited.eol", text)
        .map_err(|e| TestCaseError::fail(format!("{what} broke the file:\n{e}\n---\n{text}")))
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn edits_change_only_what_they_edit(g in feature(), phase in select(Phase::ALL.to_vec())) {
        let text = render(&g).text;
        let f = parse_feature("gen.eol", &text).map_err(|e| TestCaseError::fail(e.to_string()))?;

        // The feature's phase: the model changes in that one field, the body not at all.
        let switched = with_feature_phase(&f, phase);
        match parse_feature("switched.eol", &switched) {
            Ok(s) => {
                let mut want = f.clone();
                want.frontmatter.phase = phase;
                prop_assert_eq!(&s.frontmatter, &want.frontmatter);
                prop_assert_eq!(s.body(), f.body());
            }
            // Only prototyping never needs code or `Phase:` lines that may be missing.
            Err(e) => prop_assert!(phase != Phase::Prototyping, "{}\n---\n{}", e, switched),
        }

        for op in &f.operations {
            // An operation switched to prototyping: only its phase changes.
            let edited = parse_edit(
                &with_operation_phase(&f, op, OperationPhase::Prototyping),
                "with_operation_phase",
            )?;
            let mut want = f.clone();
            let o = want.operations.iter_mut().find(|o| o.name == op.name).expect("op");
            o.phase = OperationPhase::Prototyping;
            o.declared_phase = Some(OperationPhase::Prototyping);
            prop_assert_eq!(&edited, &want);

            // An operation given new code: only its code changes.
            let source = format!("def {}():\n    return {{\"ok\": True}}", op.name);
            let edited = parse_edit(&with_operation_code(&f, op, &source), "with_operation_code")?;
            let mut want = f.clone();
            let o = want.operations.iter_mut().find(|o| o.name == op.name).expect("op");
            let had_code = o.code.is_some();
            o.code = edited.operation(&op.name).and_then(|e| e.code.clone());
            let want_source = format!("{source}\n");
            prop_assert_eq!(
                o.code.as_ref().map(|c| c.source.as_str()),
                Some(want_source.as_str())
            );
            // New code goes after the Output block, preceded by a blank line that
            // may join the spec; nothing else may change.
            if had_code {
                prop_assert_eq!(&edited, &want);
            } else {
                want.operations.iter_mut().zip(&edited.operations).for_each(|(w, e)| {
                    if w.name == op.name {
                        w.spec.clone_from(&e.spec);
                    }
                });
                prop_assert_eq!(&edited, &want);
            }
        }
    }
}

const FRAGMENTS: &[&str] = &[
    "---\n",
    "---\nname: demo\nphase: prototyping\n---\n",
    "---\nfeature: demo\n---\n",
    "name: demo\n",
    "phase: hybrid\n",
    "phase: implementation\n",
    "description: \"a: b # c\"\n",
    "model: {temperature: 3}\n",
    "cache:\n  distance_threshold: -1\n",
    "tools:\n- name: x\n",
    "...\n",
    "# Title\n",
    "## Operations\n",
    "## case title\n",
    "### x\n",
    "### Bad-Name\n",
    "#### deep\n",
    "```yaml\n",
    "```json\n",
    "```python\n",
    "```\n",
    "````\n",
    "~~~\n",
    "Input:\n",
    "Output:\n",
    "Expect:\n",
    "Expect: the answer is polite\n",
    "Operation: x\n",
    "Phase: hybrid\n",
    "Phase: implementation\n",
    "Phase: prototyping\n",
    "type: object\n",
    "type: [\n",
    "properties:\n  a: {type: string}\n",
    "required: [a]\n",
    "a: 1\n",
    "def x(a):\n    return {}\n",
    "@docs/a.md ",
    "@feature:x ",
    "@",
    "\r\n",
    "\n",
    "\r",
    " ",
    "\t",
    "\u{feff}",
    "\u{2028}",
    "é",
    "🦀",
    "#",
    "`",
    ":",
];

fn fragment_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => select(FRAGMENTS).prop_map(str::to_owned),
        1 => "\\PC{0,8}",
        1 => any::<char>().prop_map(String::from),
        1 => ".{0,8}",
    ];
    vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn parsers_never_panic(src in prop_oneof![fragment_soup(), ".*", any::<String>()]) {
        if let Ok(f) = parse_feature("soup.eol", &src) {
            check_round_trip(&src, &f)?;
        }
        let _ = parse_test_suite("soup.test.eol", &src);
    }

    #[test]
    fn generated_features_with_noise_never_panic(
        g in feature(),
        cut in any::<prop::sample::Index>(),
        noise in select(FRAGMENTS),
    ) {
        // A valid feature with a fragment spliced in somewhere: errors, not panics;
        // and if it still parses, it still round-trips.
        let text = render(&g).text;
        let mut at = cut.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let src = format!("{}{noise}{}", &text[..at], &text[at..]);
        if let Ok(f) = parse_feature("noisy.eol", &src) {
            check_round_trip(&src, &f)?;
        }
        let _ = parse_test_suite("noisy.test.eol", &src);
    }
}
