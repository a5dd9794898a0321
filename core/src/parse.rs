//! Parsing and validating `.eol` feature files.

use crate::cost::{Budget, ModelPrice};
use crate::diagnostic::{Collector, Diagnostics, Position};
use crate::feature::{
    CacheSettings, Code, Feature, Frontmatter, ModelSettings, Operation, OperationLayout,
    Reference, ResultCaching, Schema, SemanticBound, SourceLocation, ToolServer, Verbatim,
};
use crate::markdown::{self, Block};
use crate::phase::{OperationPhase, Phase};
use regex::Regex;
use std::sync::LazyLock;

mod yaml;

pub(crate) use yaml::{check_keys, key_line, parse_yaml_mapping, yaml_message, yaml_position};

static DNS_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$").expect("static regex"));
static SNAKE_CASE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z_][a-z0-9_]*$").expect("static regex"));
// `@` must start a word so that e-mail addresses are not references.
static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[\s(\[])@(feature:[A-Za-z0-9-]+|[A-Za-z0-9_./-]*[./][A-Za-z0-9_./-]*)")
        .expect("static regex")
});

/// Parses a feature from `src`; `file` names it in diagnostics.
///
/// Every problem found is reported, each with its line and column; a file with
/// any problem yields no feature at all, so it is never half-run.
pub fn parse_feature(file: &str, src: &str) -> Result<Feature, Diagnostics> {
    let mut diags = Collector::new(file);
    let Some(split) = markdown::split_frontmatter(src, &mut diags) else {
        return diags.finish(unreachable_feature());
    };
    let frontmatter = parse_frontmatter(split.frontmatter, split.frontmatter_line, &mut diags);
    let blocks = markdown::scan(split.body, split.body_line, &mut diags);
    let body = parse_body(&blocks, frontmatter.as_ref().map(|f| f.phase), &mut diags);
    if let (Some(f), Some(b)) = (&frontmatter, &body)
        && let Some(ResultCaching::Operations(names)) = f.cache.as_ref().map(|c| &c.results)
    {
        for name in names {
            if !b.operations.iter().any(|op| &op.name == name) {
                let line = key_line(split.frontmatter, split.frontmatter_line, "cache");
                diags.error(
                    Position::new(line, 1),
                    format!(
                        "cache.results names '{name}', which is not an operation of this feature"
                    ),
                );
            }
        }
    }
    match (frontmatter, body) {
        (Some(frontmatter), Some(body)) if !diags.has_errors() => Ok(Feature {
            frontmatter,
            title: body.title,
            prose: body.prose,
            operations: body.operations,
            references: body.references,
            verbatim: Verbatim {
                frontmatter: split.frontmatter.to_owned(),
                body: split.body.to_owned(),
                body_line: split.body_line,
            },
        }),
        _ => diags.finish(unreachable_feature()),
    }
}

/// Only ever passed to `Collector::finish` when it holds errors, so never returned.
fn unreachable_feature() -> Feature {
    Feature {
        frontmatter: Frontmatter {
            name: String::new(),
            version: None,
            description: None,
            phase: Phase::Prototyping,
            model: None,
            context: Vec::new(),
            tools: Vec::new(),
            cache: None,
            budget: None,
        },
        title: None,
        prose: String::new(),
        operations: Vec::new(),
        references: Vec::new(),
        verbatim: Verbatim::default(),
    }
}

fn parse_frontmatter(text: &str, first_line: usize, diags: &mut Collector) -> Option<Frontmatter> {
    let map = parse_yaml_mapping(text, first_line, "frontmatter", diags)?;
    check_keys(
        &map,
        &Frontmatter::KEYS,
        text,
        first_line,
        "frontmatter",
        diags,
    );
    let at = |key: &str| Position::new(key_line(text, first_line, key), 1);
    let get = |key: &str| map.get(serde_yaml::Value::String(key.to_owned()));

    let name = match get("name") {
        None => {
            diags.error(
                Position::new(first_line, 1),
                "missing required frontmatter key 'name' (a DNS-1123 label such as 'url-shortener')",
            );
            None
        }
        Some(serde_yaml::Value::String(n)) if DNS_LABEL.is_match(n) => Some(n.clone()),
        Some(v) => {
            diags.error(
                at("name"),
                format!(
                    "invalid name {}: expected a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)",
                    yaml_inline(v)
                ),
            );
            None
        }
    };
    let phase = match get("phase") {
        None => {
            diags.error(
                Position::new(first_line, 1),
                "missing required frontmatter key 'phase' (expected one of: prototyping, implementation, hybrid)",
            );
            None
        }
        Some(v) => match v.as_str().map(str::parse::<Phase>) {
            Some(Ok(p)) => Some(p),
            _ => {
                diags.error(
                    at("phase"),
                    format!(
                        "invalid phase {}: expected one of: prototyping, implementation, hybrid",
                        yaml_inline(v)
                    ),
                );
                None
            }
        },
    };
    let version = get("version").and_then(|v| {
        let s = match v {
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        match semver::Version::parse(&s) {
            Ok(_) => Some(s),
            Err(e) => {
                diags.error(
                    at("version"),
                    format!(
                        "invalid version {}: expected semver such as 0.2.0 ({e})",
                        yaml_inline(v)
                    ),
                );
                None
            }
        }
    });
    let description = typed::<String>(get("description"), "description", "a string", at, diags);
    let model = typed::<ModelSettings>(
        get("model"),
        "model",
        "a mapping with name, temperature, max_tokens, seed, price, fallbacks (each base_url, name, api_key_env) and cooldown",
        at,
        diags,
    );
    let context = typed::<Vec<String>>(
        get("context"),
        "context",
        "a list of file paths or 'feature:NAME' entries",
        at,
        diags,
    )
    .unwrap_or_default();
    let tools = typed::<Vec<ToolServer>>(
        get("tools"),
        "tools",
        "a list of MCP servers, each with name and command or url",
        at,
        diags,
    )
    .unwrap_or_default();
    let cache = typed::<CacheSettings>(
        get("cache"),
        "cache",
        "a mapping with enabled, distance_threshold, ttl, exact, embeddings, results, semantic",
        at,
        diags,
    );

    let budget = typed::<Budget>(
        get("budget"),
        "budget",
        "a mapping with tokens and/or cost, per (hour, day, month), on_exceeded (Reject, Implementation, Model) and model",
        at,
        diags,
    );
    if let Some(problem) = budget.as_ref().and_then(Budget::problem) {
        diags.error(at("budget"), problem);
    }
    if let Some(problem) = model
        .as_ref()
        .and_then(|m| m.price.as_ref())
        .and_then(ModelPrice::problem)
    {
        diags.error(at("model"), format!("model.price: {problem}"));
    }
    if let Some(problem) = model.as_ref().and_then(ModelSettings::fallback_problem) {
        diags.error(at("model"), problem);
    }
    for tool in &tools {
        if tool.command.is_some() == tool.url.is_some() {
            diags.error(
                at("tools"),
                format!("tool server '{}' needs exactly one of 'command' (stdio) or 'url' (streamable HTTP)", tool.name),
            );
        }
    }
    if let Some(c) = &cache
        && let Some(t) = c.distance_threshold
        && !(0.0..=2.0).contains(&t)
    {
        diags.error(at("cache"), format!("cache.distance_threshold {t} is out of range: expected a cosine distance between 0 and 2"));
    }
    if let Some(problem) = cache
        .as_ref()
        .and_then(|c| c.semantic.as_ref())
        .and_then(SemanticBound::problem)
    {
        diags.error(at("cache"), problem);
    }
    if let Some(c) = &cache
        && c.ttl == Some(0)
    {
        diags.error(
            at("cache"),
            "cache.ttl is 0: give the lifetime of cache entries in seconds (at least 1)",
        );
    }
    if let Some(m) = &model
        && let Some(t) = m.temperature
        && !(0.0..=2.0).contains(&t)
    {
        diags.error(
            at("model"),
            format!("model.temperature {t} is out of range: expected 0 to 2"),
        );
    }
    Some(Frontmatter {
        name: name?,
        version,
        description,
        phase: phase?,
        model,
        context,
        tools,
        cache,
        budget,
    })
}

/// A frontmatter value deserialised into `T`, or a located error saying what was expected.
fn typed<T: serde::de::DeserializeOwned>(
    value: Option<&serde_yaml::Value>,
    key: &str,
    expected: &str,
    at: impl Fn(&str) -> Position,
    diags: &mut Collector,
) -> Option<T> {
    let value = value?;
    match serde_yaml::from_value::<T>(value.clone()) {
        Ok(v) => Some(v),
        Err(e) => {
            diags.error(
                at(key),
                format!(
                    "invalid '{key}': {} (expected {expected})",
                    yaml_message(&e)
                ),
            );
            None
        }
    }
}

fn yaml_inline(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::String(s) => format!("'{s}'"),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    }
}

struct Body {
    title: Option<String>,
    prose: String,
    operations: Vec<Operation>,
    references: Vec<Reference>,
}

fn parse_body(blocks: &[Block<'_>], phase: Option<Phase>, diags: &mut Collector) -> Option<Body> {
    let mut title = None;
    let mut prose = String::new();
    let mut references = Vec::new();
    let mut operations = Vec::new();
    let mut ops_heading = None;
    let mut i = 0;
    while i < blocks.len() {
        match &blocks[i] {
            Block::Heading { level: 1, text, .. } if title.is_none() && ops_heading.is_none() => {
                title = Some((*text).to_owned());
                i += 1;
            }
            Block::Heading {
                level: 2,
                text,
                line,
                ..
            } if text.eq_ignore_ascii_case("operations") => {
                if ops_heading.is_some() {
                    diags.error(
                        Position::new(*line, 1),
                        "a second '## Operations' section: all operations belong in one",
                    );
                }
                ops_heading = Some(*line);
                i += 1;
                // Operations run until the next heading of level 1 or 2.
                let end = blocks[i..]
                    .iter()
                    .position(|b| matches!(b, Block::Heading { level, .. } if *level <= 2))
                    .map_or(blocks.len(), |p| i + p);
                let section = &blocks[i..end];
                let first_op = section
                    .iter()
                    .position(|b| matches!(b, Block::Heading { level: 3, .. }))
                    .unwrap_or(section.len());
                // Prose between "## Operations" and the first "###" is shared context.
                append_prose(&mut prose, &mut references, &section[..first_op]);
                let mut start = first_op;
                while start < section.len() {
                    let next = section[start + 1..]
                        .iter()
                        .position(|b| matches!(b, Block::Heading { level: 3, .. }))
                        .map_or(section.len(), |p| start + 1 + p);
                    if let Some(op) =
                        parse_operation(&section[start..next], phase, &mut references, diags)
                    {
                        operations.push(op);
                    }
                    start = next;
                }
                i = end;
            }
            _ => {
                append_prose(&mut prose, &mut references, &blocks[i..=i]);
                i += 1;
            }
        }
    }
    if ops_heading.is_none() {
        diags.error(
            Position::new(blocks.last().map_or(1, Block::line), 1),
            "no '## Operations' section: expected one, holding a '### name' section per operation",
        );
        return None;
    }
    if operations.is_empty() && !diags.has_errors() {
        diags.error(
            Position::new(ops_heading.unwrap_or(1), 1),
            "the '## Operations' section holds no operation: expected at least one '### name' section",
        );
    }
    let mut seen = std::collections::HashMap::new();
    for op in &operations {
        if let Some(first) = seen.insert(op.name.clone(), op.location.0.line) {
            diags.error(
                op.location.0,
                format!(
                    "operation '{}' is defined twice (first at line {first})",
                    op.name
                ),
            );
        }
    }
    Some(Body {
        title,
        prose: prose.trim_matches('\n').to_owned(),
        operations,
        references,
    })
}

fn append_prose(prose: &mut String, refs: &mut Vec<Reference>, blocks: &[Block<'_>]) {
    for b in blocks {
        match b {
            Block::Text { text, line } => {
                collect_references(text, *line, refs);
                prose.push_str(text);
                prose.push('\n');
            }
            Block::Heading { level, text, .. } => {
                prose.push_str(&"#".repeat(*level));
                prose.push(' ');
                prose.push_str(text);
                prose.push('\n');
            }
            Block::Fence { info, content, .. } => {
                prose.push_str(&format!("```{info}\n{content}```\n"));
            }
        }
    }
}

fn collect_references(text: &str, line: usize, refs: &mut Vec<Reference>) {
    for cap in REFERENCE.captures_iter(text) {
        let Some(m) = cap.get(1) else { continue };
        // Sentence punctuation after a path is not part of it.
        let target = m.as_str().trim_end_matches(['.', ',', ';', ':', ')']);
        if target.is_empty() {
            continue;
        }
        let column = text[..m.start()].chars().count(); // points at the '@'
        let location = SourceLocation(Position::new(line, column));
        if let Some(name) = target.strip_prefix("feature:") {
            refs.push(Reference::Feature {
                name: name.to_owned(),
                location,
            });
        } else {
            refs.push(Reference::Path {
                path: target.to_owned(),
                location,
            });
        }
    }
}

/// The index of the first block at or after `from` that is not blank text
/// (a label's block may follow it after blank lines).
fn after_blank_lines(blocks: &[Block<'_>], from: usize) -> usize {
    let mut j = from;
    while matches!(blocks.get(j), Some(Block::Text { text, .. }) if text.trim().is_empty()) {
        j += 1;
    }
    j
}

fn parse_operation(
    blocks: &[Block<'_>],
    feature_phase: Option<Phase>,
    refs: &mut Vec<Reference>,
    diags: &mut Collector,
) -> Option<Operation> {
    let Some(Block::Heading {
        text: name,
        line: heading_line,
        text_column,
        ..
    }) = blocks.first()
    else {
        return None;
    };
    let heading_pos = Position::new(*heading_line, *text_column);
    let mut ok = true;
    if !SNAKE_CASE.is_match(name) {
        diags.error(
            heading_pos,
            format!("invalid operation name '{name}': expected a snake_case identifier such as 'shorten_url' (it names the Python function)"),
        );
        ok = false;
    }
    let mut declared_phase = None;
    let mut phase_line = None;
    let mut input: Option<Schema> = None;
    let mut output: Option<Schema> = None;
    let mut output_close_line = *heading_line;
    let mut code: Option<(Code, (usize, usize))> = None;
    let mut spec: Vec<Block<'_>> = Vec::new();
    // A label without its block is reported where it stands, not again as "missing".
    let (mut input_label, mut output_label) = (false, false);
    // The Compare block is read once the Output schema it names fields of is known.
    let mut compare_block: Option<(String, usize)> = None;
    let mut i = 1;
    while i < blocks.len() {
        match &blocks[i] {
            Block::Text { text, line } if text.trim_start().starts_with("Phase:") => {
                let value = text.trim_start()["Phase:".len()..].trim();
                let col = text.find("Phase:").unwrap_or(0) + "Phase:".len() + 2;
                if phase_line.is_some() {
                    diags.error(
                        Position::new(*line, 1),
                        format!("operation '{name}' has a second 'Phase:' line"),
                    );
                    ok = false;
                }
                match value.parse::<OperationPhase>() {
                    Ok(p) => declared_phase = Some(p),
                    Err(e) => {
                        diags.error(
                            Position::new(*line, col),
                            format!("operation '{name}': {e}"),
                        );
                        ok = false;
                    }
                }
                phase_line = Some(*line);
                i += 1;
            }
            Block::Text { text, line } if is_label(text, "Compare") => {
                let j = after_blank_lines(blocks, i + 1);
                match blocks.get(j) {
                    Some(Block::Fence {
                        info,
                        content,
                        open_line,
                        ..
                    }) if is_schema_fence(info) => {
                        if compare_block.is_some() {
                            diags.error(
                                Position::new(*line, 1),
                                format!("operation '{name}' has a second Compare block"),
                            );
                            ok = false;
                        }
                        compare_block = Some((content.clone(), open_line + 1));
                        i = j + 1;
                    }
                    _ => {
                        diags.error(
                            Position::new(*line, 1),
                            format!("operation '{name}': expected a ```yaml block holding the comparison rule after 'Compare:'"),
                        );
                        ok = false;
                        i += 1;
                    }
                }
            }
            Block::Text { text, line } if is_label(text, "Input") || is_label(text, "Output") => {
                let which = if is_label(text, "Input") {
                    "Input"
                } else {
                    "Output"
                };
                if which == "Input" {
                    input_label = true;
                } else {
                    output_label = true;
                }
                // The schema block follows, after optional blank lines.
                let j = after_blank_lines(blocks, i + 1);
                match blocks.get(j) {
                    Some(Block::Fence {
                        info,
                        content,
                        open_line,
                        close_line,
                    }) if is_schema_fence(info) => {
                        let schema = parse_schema(content, *open_line, name, which, diags);
                        if which == "Input" {
                            if input.is_some() {
                                diags.error(
                                    Position::new(*line, 1),
                                    format!("operation '{name}' has a second Input schema"),
                                );
                            }
                            input = schema;
                        } else {
                            if output.is_some() {
                                diags.error(
                                    Position::new(*line, 1),
                                    format!("operation '{name}' has a second Output schema"),
                                );
                            }
                            output = schema;
                            output_close_line = *close_line;
                        }
                        i = j + 1;
                    }
                    _ => {
                        diags.error(
                            Position::new(*line, 1),
                            format!("operation '{name}': expected a ```yaml block holding the {which} JSON Schema after '{which}:'"),
                        );
                        ok = false;
                        i += 1;
                    }
                }
            }
            Block::Fence {
                info,
                content,
                open_line,
                close_line,
            } if is_python_fence(info) => {
                if let Some((_, (first, _))) = &code {
                    diags.error(
                        Position::new(*open_line, 1),
                        format!("operation '{name}' has a second ```python block (the first is at line {first}): expected at most one"),
                    );
                    ok = false;
                } else {
                    code = Some((
                        Code {
                            source: content.clone(),
                            first_line: SourceLocation(Position::new(open_line + 1, 1)),
                        },
                        (*open_line, *close_line),
                    ));
                }
                i += 1;
            }
            other => {
                if let Block::Text { text, line } = other {
                    collect_references(text, *line, refs);
                }
                spec.push(other.clone());
                i += 1;
            }
        }
    }
    let phase = declared_phase.or(feature_phase.and_then(Phase::forced));
    if declared_phase.is_none() && feature_phase == Some(Phase::Hybrid) {
        diags.error(
            heading_pos,
            format!("operation '{name}' has no 'Phase:' line: under 'phase: hybrid' each operation needs 'Phase: prototyping' or 'Phase: implementation'"),
        );
        ok = false;
    }
    if input.is_none() {
        ok = false;
    }
    if output.is_none() {
        ok = false;
    }
    if input.is_none() && !input_label {
        diags.error(heading_pos, format!("operation '{name}' has no Input schema: expected an 'Input:' line followed by a ```yaml block"));
        ok = false;
    }
    if output.is_none() && !output_label {
        diags.error(heading_pos, format!("operation '{name}' has no Output schema: expected an 'Output:' line followed by a ```yaml block"));
        ok = false;
    }
    if phase == Some(OperationPhase::Implementation) && code.is_none() {
        diags.error(
            heading_pos,
            format!("operation '{name}' is in the implementation phase but has no ```python block defining 'def {name}(...)'"),
        );
        ok = false;
    }
    if let Some(schema) = &input
        && schema.value.get("type").and_then(|t| t.as_str()) != Some("object")
    {
        diags.error(
            schema.location.0,
            format!("operation '{name}': the Input schema must have 'type: object'; its properties are the function's parameters"),
        );
        ok = false;
    }
    let compare = match (&compare_block, &output) {
        (Some((content, first_line)), Some(schema)) => {
            let rule = crate::compare::parse_rule(content, *first_line, name, &schema.value, diags);
            ok &= rule.is_some();
            rule
        }
        _ => None,
    };
    let mut spec_text = String::new();
    append_prose(&mut spec_text, &mut Vec::new(), &spec);
    let (code, code_lines) = match code {
        Some((c, lines)) => (Some(c), Some(lines)),
        None => (None, None),
    };
    if !ok {
        return None;
    }
    Some(Operation {
        name: (*name).to_owned(),
        phase: phase?,
        declared_phase,
        spec: spec_text.trim_matches('\n').to_owned(),
        input: input?,
        output: output?,
        code,
        compare,
        location: SourceLocation(heading_pos),
        layout: OperationLayout {
            heading_line: *heading_line,
            phase_line,
            output_close_line,
            code_lines,
        },
    })
}

fn is_label(text: &str, label: &str) -> bool {
    text.trim()
        .strip_prefix(label)
        .is_some_and(|rest| rest.trim() == ":")
}

fn is_schema_fence(info: &str) -> bool {
    matches!(
        info.split_whitespace().next(),
        Some("yaml" | "yml" | "json") | None
    )
}

fn is_python_fence(info: &str) -> bool {
    matches!(
        info.split_whitespace().next(),
        Some("python" | "py" | "python3")
    )
}

fn parse_schema(
    content: &str,
    open_line: usize,
    op: &str,
    which: &str,
    diags: &mut Collector,
) -> Option<Schema> {
    let first_line = open_line + 1;
    let location = SourceLocation(Position::new(first_line, 1));
    let value: serde_json::Value = match serde_yaml::from_str(content) {
        Ok(v) => v,
        Err(e) => {
            diags.error(
                yaml_position(&e, first_line),
                format!(
                    "operation '{op}': invalid YAML in the {which} schema: {}",
                    yaml_message(&e)
                ),
            );
            return None;
        }
    };
    if !value.is_object() {
        diags.error(
            location.0,
            format!("operation '{op}': the {which} schema must be a JSON Schema object (a YAML mapping such as 'type: object')"),
        );
        return None;
    }
    if let Err(e) = jsonschema::validator_for(&value) {
        let path = e.instance_path().to_string();
        let place = if path.is_empty() {
            String::new()
        } else {
            format!(" at {path}")
        };
        diags.error(
            location.0,
            format!("operation '{op}': the {which} schema is not a valid JSON Schema{place}: {e}"),
        );
        return None;
    }
    Some(Schema { value, location })
}
