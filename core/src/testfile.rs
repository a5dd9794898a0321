//! The `.test.eol` format: test cases for a feature's operations.

use crate::diagnostic::{Collector, Diagnostic, Diagnostics, Position};
use crate::feature::{Feature, SourceLocation};
use crate::markdown::{self, Block};
use crate::parse::{check_keys, key_line, parse_yaml_mapping, yaml_message, yaml_position};
use crate::phase::OperationPhase;

/// A parsed `.test.eol` file.
#[derive(Debug, Clone, PartialEq)]
pub struct TestSuite {
    /// The name of the feature under test.
    pub feature: String,
    /// The cases, in file order.
    pub cases: Vec<TestCase>,
}

/// One `## title` case.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    /// The case's title.
    pub title: String,
    /// The operation it calls.
    pub operation: String,
    /// The only phase it runs in, if limited to one.
    pub phase: Option<OperationPhase>,
    /// The input passed to the operation.
    pub input: serde_json::Value,
    /// What the output must satisfy.
    pub expect: Expectation,
    /// Where the case's heading is.
    pub location: SourceLocation,
}

/// What a case expects of the output.
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// Exact values or per-field matchers (`pattern`, `type`, `contains`, `min`, `max`).
    Values(serde_json::Value),
    /// A natural-language assertion, judged by the LLM.
    Judged(String),
}

/// Parses a test suite from `src`; `file` names it in diagnostics.
pub fn parse_test_suite(file: &str, src: &str) -> Result<TestSuite, Diagnostics> {
    let mut diags = Collector::new(file);
    let empty = TestSuite {
        feature: String::new(),
        cases: Vec::new(),
    };
    let Some(split) = markdown::split_frontmatter(src, &mut diags) else {
        return diags.finish(empty);
    };
    let mut feature = None;
    if let Some(map) = parse_yaml_mapping(
        split.frontmatter,
        split.frontmatter_line,
        "frontmatter",
        &mut diags,
    ) {
        check_keys(
            &map,
            &["feature"],
            split.frontmatter,
            split.frontmatter_line,
            "test frontmatter",
            &mut diags,
        );
        match map.get("feature") {
            Some(serde_yaml::Value::String(f)) => feature = Some(f.clone()),
            Some(_) => diags.error(
                Position::new(
                    key_line(split.frontmatter, split.frontmatter_line, "feature"),
                    1,
                ),
                "'feature' must be the name of the feature under test",
            ),
            None => diags.error(
                Position::new(split.frontmatter_line, 1),
                "missing required frontmatter key 'feature' (the name of the feature under test)",
            ),
        }
    }
    let blocks = markdown::scan(split.body, split.body_line, &mut diags);
    let mut cases = Vec::new();
    let mut i = 0;
    while i < blocks.len() {
        if let Block::Heading { level: 2, .. } = blocks[i] {
            let end = blocks[i + 1..]
                .iter()
                .position(|b| matches!(b, Block::Heading { level, .. } if *level <= 2))
                .map_or(blocks.len(), |p| i + 1 + p);
            if let Some(case) = parse_case(&blocks[i..end], &mut diags) {
                cases.push(case);
            }
            i = end;
        } else {
            i += 1;
        }
    }
    if cases.is_empty() && !diags.has_errors() {
        diags.error(
            Position::new(split.body_line, 1),
            "no test cases: expected '## <case title>' sections with Operation:, Input: and Expect:",
        );
    }
    diags.finish(TestSuite {
        feature: feature.unwrap_or_default(),
        cases,
    })
}

fn label_value<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.trim_start()
        .strip_prefix(label)
        .and_then(|r| r.strip_prefix(':'))
        .map(str::trim)
}

fn parse_case(blocks: &[Block<'_>], diags: &mut Collector) -> Option<TestCase> {
    let Block::Heading {
        text: title,
        line,
        text_column,
        ..
    } = blocks[0]
    else {
        return None;
    };
    let at = Position::new(line, text_column);
    let mut operation = None;
    let mut phase = None;
    let mut input = None;
    let mut expect = None;
    let mut ok = true;
    let mut i = 1;
    while i < blocks.len() {
        let Block::Text { text, line } = blocks[i] else {
            i += 1;
            continue;
        };
        if let Some(op) = label_value(text, "Operation") {
            operation = Some(op.to_owned());
        } else if let Some(p) = label_value(text, "Phase") {
            match p.parse::<OperationPhase>() {
                Ok(p) => phase = Some(p),
                Err(e) => {
                    diags.error(Position::new(line, 1), format!("case '{title}': {e}"));
                    ok = false;
                }
            }
        } else if let Some(rest) = label_value(text, "Input").or(label_value(text, "Expect")) {
            let is_input = label_value(text, "Input").is_some();
            let which = if is_input { "Input" } else { "Expect" };
            if !is_input && !rest.is_empty() {
                // "Expect: <sentence>" may continue on the following lines of the paragraph.
                let mut sentence = rest.to_owned();
                while let Some(Block::Text { text, .. }) = blocks.get(i + 1) {
                    if text.trim().is_empty() {
                        break;
                    }
                    sentence.push(' ');
                    sentence.push_str(text.trim());
                    i += 1;
                }
                expect = Some(Expectation::Judged(sentence));
                i += 1;
                continue;
            }
            let mut j = i + 1;
            while matches!(blocks.get(j), Some(Block::Text { text, .. }) if text.trim().is_empty())
            {
                j += 1;
            }
            match blocks.get(j) {
                Some(Block::Fence {
                    content, open_line, ..
                }) => {
                    match serde_yaml::from_str::<serde_json::Value>(content) {
                        Ok(v) => {
                            let v = if v.is_null() {
                                serde_json::json!({})
                            } else {
                                v
                            };
                            if is_input {
                                if !v.is_object() {
                                    diags.error(Position::new(open_line + 1, 1), format!("case '{title}': the Input must be a mapping of the operation's input fields"));
                                    ok = false;
                                }
                                input = Some(v);
                            } else {
                                expect = Some(Expectation::Values(v));
                            }
                        }
                        Err(e) => {
                            diags.error(
                                yaml_position(&e, open_line + 1),
                                format!(
                                    "case '{title}': invalid YAML in {which}: {}",
                                    yaml_message(&e)
                                ),
                            );
                            ok = false;
                        }
                    }
                    i = j + 1;
                    continue;
                }
                _ => {
                    let what = if is_input {
                        "a ```yaml block with the input"
                    } else {
                        "a ```yaml block or a sentence on the same line"
                    };
                    diags.error(
                        Position::new(line, 1),
                        format!("case '{title}': expected {what} after '{which}:'"),
                    );
                    ok = false;
                }
            }
        }
        i += 1;
    }
    for (missing, what) in [
        (operation.is_none(), "'Operation: <name>' line"),
        (
            input.is_none() && ok,
            "'Input:' line followed by a ```yaml block",
        ),
        (
            expect.is_none() && ok,
            "'Expect:' line (a ```yaml block, or a sentence judged by the model)",
        ),
    ] {
        if missing {
            diags.error(at, format!("case '{title}' has no {what}"));
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    Some(TestCase {
        title: title.to_owned(),
        operation: operation?,
        phase,
        input: input?,
        expect: expect?,
        location: SourceLocation(at),
    })
}

impl TestSuite {
    /// Checks the suite against the feature it tests: the feature's name and
    /// every case's operation must match. `file` names the test file.
    pub fn check_against(&self, file: &str, feature: &Feature) -> Result<(), Diagnostics> {
        let mut out = Vec::new();
        if self.feature != feature.name() {
            out.push(Diagnostic {
                file: file.to_owned(),
                position: Position::new(2, 1),
                message: format!(
                    "tests are for feature '{}' but the feature file defines '{}'",
                    self.feature,
                    feature.name()
                ),
            });
        }
        for case in &self.cases {
            if feature.operation(&case.operation).is_none() {
                out.push(Diagnostic {
                    file: file.to_owned(),
                    position: case.location.0,
                    message: format!(
                        "case '{}' calls unknown operation '{}' (feature '{}' has: {})",
                        case.title,
                        case.operation,
                        feature.name(),
                        feature.operation_names().join(", ")
                    ),
                });
            }
        }
        if out.is_empty() {
            Ok(())
        } else {
            Err(Diagnostics(out))
        }
    }
}
