//! The .eol and .test.eol formats: what parses, what is refused, and how.
#![allow(clippy::unwrap_used)] // Tests fail loudly on any unexpected error.

use eol_core::{
    Expectation, OperationPhase, Phase, parse_feature, parse_test_suite, with_feature_phase,
    with_operation_code, with_operation_phase, write_feature,
};
use std::path::PathBuf;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../features/examples")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(examples().join(name)).expect("example feature")
}

const MINIMAL: &str = "---\nname: demo\nphase: implementation\n---\n\n# Demo\n\n## Operations\n\n### echo\n\nReturns its input.\n\nInput:\n```yaml\ntype: object\nproperties:\n  text: {type: string}\n```\n\nOutput:\n```yaml\ntype: object\n```\n\n```python\ndef echo(text):\n    return {\"text\": text}\n```\n";

/// Messages of a failed parse, as "line:col: message".
fn errors(src: &str) -> Vec<String> {
    parse_feature("f.eol", src)
        .expect_err("the source should be refused")
        .iter()
        .map(|d| format!("{}:{}: {}", d.position.line, d.position.column, d.message))
        .collect()
}

#[test]
fn example_features_parse() {
    for (file, phase, ops) in [
        ("inventory.eol", Phase::Implementation, 3),
        ("support-triage.eol", Phase::Prototyping, 2),
        ("blog-publisher.eol", Phase::Hybrid, 3),
    ] {
        let f = parse_feature(file, &read(file)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.frontmatter.phase, phase, "{file}");
        assert_eq!(f.operations.len(), ops, "{file}");
    }
    let blog = parse_feature("b", &read("blog-publisher.eol")).unwrap();
    let phases: Vec<_> = blog.operations.iter().map(|o| o.phase).collect();
    assert_eq!(
        phases,
        [
            OperationPhase::Implementation,
            OperationPhase::Implementation,
            OperationPhase::Prototyping
        ]
    );
    assert_eq!(blog.operation("slugify").unwrap().parameters(), ["title"]);
    let code = blog.operation("slugify").unwrap().code.as_ref().unwrap();
    assert!(code.source.starts_with("import re\n"));
    assert_eq!(
        code.file_line(1),
        read("blog-publisher.eol")
            .lines()
            .position(|l| l == "import re")
            .unwrap()
            + 1
    );
}

#[test]
fn references_are_found_in_prose_but_not_in_addresses() {
    let f = parse_feature("s", &read("support-triage.eol")).unwrap();
    assert_eq!(f.references.len(), 1);
    match &f.references[0] {
        eol_core::Reference::Path { path, location } => {
            assert_eq!(path, "docs/refund-policy.md");
            assert_eq!(location.0.line, 17);
        }
        other => panic!("unexpected {other:?}"),
    }
    let src = MINIMAL.replace(
        "Returns its input.",
        "Mail me@example.com, see @feature:other-thing and @notes/a.md.",
    );
    let f = parse_feature("f", &src).unwrap();
    let refs: Vec<String> = f.references.iter().map(|r| format!("{r:?}")).collect();
    assert_eq!(refs.len(), 2, "{refs:?}");
    assert!(refs[0].contains("other-thing") && refs[1].contains("notes/a.md"));
}

#[test]
fn malformed_yaml_is_located() {
    let errs = errors("---\nname: demo\nphase: [implementation\n---\n## Operations\n");
    assert!(
        errs[0].starts_with("3:") || errs[0].starts_with("4:"),
        "{errs:?}"
    );
    assert!(
        errs[0].contains("invalid YAML in the frontmatter"),
        "{errs:?}"
    );
}

#[test]
fn unknown_key_lists_the_known_ones() {
    let errs = errors(&MINIMAL.replace("phase: implementation", "phase: implementation\nphse: x"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("4:1: unknown frontmatter key 'phse'"),
        "{errs:?}"
    );
    assert!(errs[0].contains("did you mean 'phase'"), "{errs:?}");
    assert!(
        errs[0].contains("name, version, description, phase, model, context, tools, cache"),
        "{errs:?}"
    );
}

#[test]
fn missing_phase_is_reported() {
    let errs = errors(&MINIMAL.replace("phase: implementation\n", ""));
    assert!(
        errs.iter()
            .any(|e| e.contains("missing required frontmatter key 'phase'")),
        "{errs:?}"
    );
}

#[test]
fn operation_without_input_schema_is_reported_at_its_heading() {
    let src = MINIMAL.replace(
        "Input:\n```yaml\ntype: object\nproperties:\n  text: {type: string}\n```\n",
        "",
    );
    let errs = errors(&src);
    assert_eq!(
        errs,
        [
            "10:5: operation 'echo' has no Input schema: expected an 'Input:' line followed by a ```yaml block"
        ]
    );
}

#[test]
fn several_errors_are_all_reported_in_order() {
    let src = "---\nname: Bad_Name\nphase: sideways\ncolour: red\n---\n## Operations\n### Bad-Op\nInput:\n```yaml\ntype: [\n```\n### fine\nPhase: later\n";
    let errs = errors(src);
    assert!(errs.len() >= 5, "{errs:?}");
    assert!(
        errs[0].starts_with("2:1: invalid name 'Bad_Name'"),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("3:1: invalid phase 'sideways'"),
        "{errs:?}"
    );
    assert!(
        errs[2].starts_with("4:1: unknown frontmatter key 'colour'"),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("7:5: invalid operation name 'Bad-Op'")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("invalid YAML in the Input schema")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("13:") && e.contains("unknown phase 'later'")),
        "{errs:?}"
    );
    let mut sorted = errs.clone();
    sorted.sort_by_key(|e| e.split(':').next().unwrap().parse::<usize>().unwrap());
    assert_eq!(sorted, errs);
}

#[test]
fn invalid_json_schema_and_non_object_input_are_refused() {
    let errs = errors(&MINIMAL.replace(
        "type: object\n```\n\n```python",
        "type: 12\n```\n\n```python",
    ));
    assert!(
        errs.iter()
            .any(|e| e.contains("Output schema is not a valid JSON Schema")),
        "{errs:?}"
    );
    let errs = errors(&MINIMAL.replace(
        "type: object\nproperties:\n  text: {type: string}",
        "type: string",
    ));
    assert!(
        errs.iter()
            .any(|e| e.contains("Input schema must have 'type: object'")),
        "{errs:?}"
    );
}

#[test]
fn implementation_needs_code_and_hybrid_needs_phase_lines() {
    let no_code = MINIMAL.split("```python").next().unwrap().to_owned();
    let errs = errors(&no_code);
    assert!(
        errs[0].contains("is in the implementation phase but has no ```python block"),
        "{errs:?}"
    );
    let hybrid = MINIMAL.replace("phase: implementation", "phase: hybrid");
    let errs = errors(&hybrid);
    assert!(
        errs[0].contains("under 'phase: hybrid' each operation needs"),
        "{errs:?}"
    );
}

#[test]
fn missing_frontmatter_and_unclosed_blocks() {
    assert_eq!(
        errors("# Just markdown\n")[0],
        "1:1: expected YAML frontmatter: the file must start with a '---' line"
    );
    assert!(errors("---\nname: x\n")[0].contains("never closed"));
    let errs = errors(&MINIMAL.replace(
        "```python\ndef echo(text):\n    return {\"text\": text}\n```\n",
        "```python\ndef echo(text):\n",
    ));
    assert!(
        errs.iter()
            .any(|e| e.contains("code block opened here is never closed")),
        "{errs:?}"
    );
}

#[test]
fn writing_an_unchanged_file_only_normalises_frontmatter() {
    for file in ["inventory.eol", "support-triage.eol", "blog-publisher.eol"] {
        let src = read(file);
        let f = parse_feature(file, &src).unwrap();
        let written = write_feature(&f);
        let body = |s: &str| s.splitn(3, "---\n").nth(2).unwrap().to_owned();
        assert_eq!(body(&written), body(&src), "{file}: body changed");
        assert_eq!(
            parse_feature(file, &written).unwrap(),
            f,
            "{file}: model changed"
        );
        // Normalised text is a fixed point.
        assert_eq!(
            write_feature(&parse_feature(file, &written).unwrap()),
            written
        );
    }
    let reordered = MINIMAL.replace(
        "name: demo\nphase: implementation",
        "phase: implementation   # comment\nname: demo",
    );
    let written = write_feature(&parse_feature("f", &reordered).unwrap());
    assert!(
        written.starts_with("---\nname: demo\nphase: implementation\n---\n"),
        "{written}"
    );
}

#[test]
fn phase_and_code_edits_touch_only_their_lines() {
    let src = read("blog-publisher.eol");
    let f = parse_feature("b", &src).unwrap();
    let switched = with_feature_phase(&f, Phase::Prototyping);
    assert_eq!(
        switched
            .lines()
            .filter(|l| !src.contains(l))
            .collect::<Vec<_>>(),
        ["phase: prototyping"]
    );

    // Code first, then the phase: an implemented operation must have code.
    let op = f.operation("suggest_tags").unwrap();
    let text = with_operation_code(
        &f,
        op,
        "def suggest_tags(title, text):\n    return {\"tags\": [\"x\"]}\n",
    );
    let with_code = parse_feature("b", &text).unwrap();
    let op = with_code.operation("suggest_tags").unwrap();
    assert_eq!(op.phase, OperationPhase::Prototyping);
    let text = with_operation_phase(&with_code, op, OperationPhase::Implementation);
    let g = parse_feature("b", &text).unwrap();
    let op = g.operation("suggest_tags").unwrap();
    assert_eq!(op.phase, OperationPhase::Implementation);
    assert!(
        op.code
            .as_ref()
            .unwrap()
            .source
            .contains("return {\"tags\"")
    );
    // Replacing existing code keeps the rest intact.
    let slug = g.operation("slugify").unwrap();
    let replaced = with_operation_code(
        &g,
        slug,
        "def slugify(title):\n    return {\"slug\": \"x\"}",
    );
    let h = parse_feature("b", &replaced).unwrap();
    assert_eq!(
        h.operation("slugify")
            .unwrap()
            .code
            .as_ref()
            .unwrap()
            .source,
        "def slugify(title):\n    return {\"slug\": \"x\"}\n"
    );
    assert_eq!(h.operation("reading_time"), g.operation("reading_time"));
    assert_eq!(h.operation("suggest_tags"), g.operation("suggest_tags"));
}

#[test]
fn test_suites_parse_with_both_kinds_of_expectation() {
    let suite = parse_test_suite("s.test.eol", &read("support-triage.test.eol")).unwrap();
    assert_eq!(suite.feature, "support-triage");
    assert_eq!(suite.cases.len(), 2);
    assert!(
        matches!(&suite.cases[0].expect, Expectation::Values(v) if v["label"]["type"] == "string")
    );
    assert_eq!(
        suite.cases[1].expect,
        Expectation::Judged("the reply acknowledges the double charge".into())
    );
    let feature = parse_feature("s.eol", &read("support-triage.eol")).unwrap();
    suite.check_against("s.test.eol", &feature).unwrap();
}

#[test]
fn bad_test_suites_are_located() {
    let src = "---\nfeature: x\nextra: 1\n---\n\n## no op\nInput:\n```yaml\na: 1\n```\nExpect:\n```yaml\nb: [\n```\n";
    let err = parse_test_suite("t.test.eol", src).unwrap_err();
    let msgs: Vec<String> = err.iter().map(|d| d.to_string()).collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("t.test.eol:3:1: unknown test frontmatter key 'extra'")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("invalid YAML in Expect")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("t.test.eol:6:4: case 'no op' has no 'Operation: <name>' line")),
        "{msgs:?}"
    );

    let suite = parse_test_suite(
        "t",
        &read("inventory.test.eol").replace("Operation: reserve", "Operation: reserv"),
    )
    .unwrap();
    let feature = parse_feature("i", &read("inventory.eol")).unwrap();
    let err = suite.check_against("t", &feature).unwrap_err();
    assert!(
        err.to_string().contains(
            "unknown operation 'reserv' (feature 'inventory' has: add_stock, stock_level, reserve)"
        ),
        "{err}"
    );
}

#[test]
fn the_cache_block_configures_all_three_caches() {
    let src = MINIMAL.replace(
        "phase: implementation\n",
        "phase: implementation\ncache:\n  distance_threshold: 0.08\n  ttl: 600\n  exact: [order.id, sku]\n  embeddings: false\n  results: [echo]\n",
    );
    let feature = parse_feature("f.eol", &src).unwrap();
    let cache = feature.frontmatter.cache.as_ref().unwrap();
    assert!(cache.enabled, "enabled defaults to true");
    assert_eq!(cache.distance_threshold, Some(0.08));
    assert_eq!(cache.ttl, Some(600));
    assert_eq!(cache.exact, ["order.id", "sku"]);
    assert_eq!(cache.embeddings, Some(false));
    assert!(cache.results.covers("echo") && !cache.results.covers("other"));
    // Written back and parsed again, the block is the same.
    let again = parse_feature("f.eol", &write_feature(&feature)).unwrap();
    assert_eq!(again.frontmatter.cache, feature.frontmatter.cache);

    let all = MINIMAL.replace(
        "phase: implementation\n",
        "phase: implementation\ncache: {results: true}\n",
    );
    let feature = parse_feature("f.eol", &all).unwrap();
    assert!(
        feature
            .frontmatter
            .cache
            .unwrap()
            .results
            .covers("anything")
    );
}

#[test]
fn bad_cache_settings_are_located_and_explained() {
    let with = |block: &str| {
        errors(&MINIMAL.replace(
            "phase: implementation\n",
            &format!("phase: implementation\ncache:\n{block}"),
        ))
    };
    let errs = with("  results: [echo, ecko]\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("4:1: cache.results names 'ecko', which is not an operation"),
        "{errs:?}"
    );
    let errs = with("  ttl: 0\n");
    assert!(errs[0].starts_with("4:1: cache.ttl is 0"), "{errs:?}");
    let errs = with("  distance_threshold: 3\n");
    assert!(errs[0].contains("out of range"), "{errs:?}");
    let errs = with("  exakt: [a]\n");
    assert!(errs[0].contains("exakt"), "{errs:?}");
    let errs = with("  semantic:\n    max_error_rate: 1.5\n");
    assert!(
        errs[0].starts_with("4:1: cache.semantic.max_error_rate 1.5 is out of range"),
        "{errs:?}"
    );
    let errs = with("  semantic: {maxErrorRate: 0.01, checkRate: -1}\n");
    assert!(
        errs[0].starts_with("4:1: cache.semantic.check_rate -1 is out of range"),
        "{errs:?}"
    );
    let errs = with("  semantic: {check_rate: 0.1}\n");
    assert!(errs[0].contains("needs max_error_rate"), "{errs:?}");
    let errs = with("  semantic: {max_eror_rate: 0.01}\n");
    assert!(errs[0].contains("max_eror_rate"), "{errs:?}");
    let ok = parse_feature(
        "f.eol",
        &MINIMAL.replace(
            "phase: implementation\n",
            "phase: implementation\ncache:\n  semantic: {maxErrorRate: 0.01}\n",
        ),
    )
    .expect("parses");
    let bound = ok.frontmatter.cache.and_then(|c| c.semantic);
    assert_eq!(bound.and_then(|b| b.max_error_rate), Some(0.01));
}

#[test]
fn model_fallbacks_parse_and_bad_ones_are_located() {
    let with_model = |model: &str| {
        MINIMAL.replace(
            "phase: implementation\n",
            &format!("phase: implementation\nmodel:\n{model}"),
        )
    };
    let src = with_model(
        "  name: primary\n  cooldown: 1.5\n  fallbacks:\n    - base_url: http://backup/v1\n      name: backup\n      api_key_env: BACKUP_KEY\n",
    );
    let f = parse_feature("f.eol", &src).unwrap_or_else(|e| panic!("{e}"));
    let model = f.frontmatter.model.clone().unwrap();
    assert_eq!(model.cooldown, Some(1.5));
    assert_eq!(model.fallbacks.len(), 1);
    assert_eq!(model.fallbacks[0].name, "backup");
    assert_eq!(
        model.fallbacks[0].api_key_env.as_deref(),
        Some("BACKUP_KEY")
    );
    // Written back as read.
    let again = parse_feature("f.eol", &write_feature(&f)).unwrap();
    assert_eq!(again.frontmatter.model, Some(model));

    // The key itself is not a field: only the variable holding it.
    let errs = errors(&with_model(
        "  fallbacks:\n    - base_url: http://b/v1\n      name: b\n      api_key: sk-1\n",
    ));
    assert!(errs[0].starts_with("4:1:"), "{errs:?}");
    assert!(errs[0].contains("api_key"), "{errs:?}");
    let errs = errors(&with_model("  cooldown: -1\n"));
    assert!(errs[0].starts_with("4:1: model.cooldown -1"), "{errs:?}");
    let errs = errors(&with_model(
        "  fallbacks:\n    - base_url: ''\n      name: b\n",
    ));
    assert!(
        errs[0].contains("model.fallbacks[0].base_url is empty"),
        "{errs:?}"
    );
}
