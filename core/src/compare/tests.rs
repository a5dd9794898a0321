//! Comparison rules and the comparison of outputs under them.
use super::*;
use serde_json::json;

/// A triage-like Output schema: an enum, a number, a boolean, free text, a
/// code with a pattern, and a list of objects.
fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "category": {"type": "string", "enum": ["bug", "billing"]},
            "score": {"type": "number"},
            "urgent": {"type": "boolean"},
            "summary": {"type": "string"},
            "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "steps": {"type": "array", "items": {"type": "object", "properties": {
                "text": {"type": "string"}, "minutes": {"type": "integer"}}}}
        }
    })
}

fn base() -> Value {
    json!({"category": "bug", "score": 0.5, "urgent": true, "summary": "The app crashes on start.",
           "code": "ABC", "steps": [{"text": "Reinstall", "minutes": 5}]})
}

fn with(field: &str, value: Value) -> Value {
    let mut v = base();
    v[field] = value;
    v
}

fn paths(c: &Comparison) -> Vec<&str> {
    c.differences.iter().map(|d| d.path.as_str()).collect()
}

#[test]
fn defaults_compare_enums_numbers_booleans_and_coded_strings_exactly() {
    let rule = CompareRule::default();
    assert_eq!(
        compare(&rule, &schema(), &base(), &base()),
        Comparison::default()
    );
    let actual = json!({"category": "billing", "score": 0.51, "urgent": false, "summary": "The app crashes on start.",
                        "code": "ABD", "steps": [{"text": "Reinstall", "minutes": 6}]});
    let c = compare(&rule, &schema(), &base(), &actual);
    assert_eq!(
        paths(&c),
        ["category", "code", "score", "steps[0].minutes", "urgent"]
    );
    assert_eq!(c.differences[0].reason, "enum values differ");
    assert!(c.text_checks.is_empty());
}

#[test]
fn defaults_leave_reworded_free_text_to_the_runner_and_pass_cosmetic_changes() {
    let rule = CompareRule::default();
    let cosmetic = with("summary", json!("the app crashes on START"));
    assert_eq!(
        compare(&rule, &schema(), &base(), &cosmetic),
        Comparison::default()
    );
    let reworded = with("summary", json!("Launching the app makes it crash."));
    let c = compare(&rule, &schema(), &base(), &reworded);
    assert!(c.differences.is_empty());
    assert_eq!(c.text_checks.len(), 1);
    assert_eq!(c.text_checks[0].path, "summary");
    assert!(!c.text_checks[0].normalized_equal());
    // Free text inside array items is found too.
    let mut nested = base();
    nested["steps"][0]["text"] = json!("Install it again");
    let c = compare(&rule, &schema(), &base(), &nested);
    assert_eq!(c.text_checks[0].path, "steps[0].text");
}

#[test]
fn exact_compares_everything_including_free_text_but_not_key_order_or_number_form() {
    let rule = CompareRule {
        exact: true,
        ..CompareRule::default()
    };
    let reordered: Value = serde_json::from_str(
        r#"{"steps": [{"minutes": 5.0, "text": "Reinstall"}], "code": "ABC", "summary": "The app crashes on start.", "urgent": true, "score": 0.5, "category": "bug"}"#,
    )
    .unwrap_or_default();
    assert_eq!(
        compare(&rule, &schema(), &base(), &reordered),
        Comparison::default()
    );
    let c = compare(
        &rule,
        &schema(),
        &base(),
        &with("summary", json!("the app crashes on start")),
    );
    assert_eq!(paths(&c), ["summary"]);
    assert!(c.text_checks.is_empty());
}

#[test]
fn fields_limit_the_comparison_to_the_listed_paths() {
    let rule = CompareRule {
        fields: vec!["category".into(), "steps.minutes".into()],
        ..CompareRule::default()
    };
    let mut actual = with("score", json!(9));
    actual["summary"] = json!("something else entirely");
    assert_eq!(
        compare(&rule, &schema(), &base(), &actual),
        Comparison::default()
    );
    actual["steps"][0]["minutes"] = json!(7);
    actual["category"] = json!("billing");
    assert_eq!(
        paths(&compare(&rule, &schema(), &base(), &actual)),
        ["category", "steps[0].minutes"]
    );
    let missing = json!({"steps": []});
    let c = compare(&rule, &schema(), &base(), &missing);
    assert_eq!(paths(&c), ["category", "steps"]);
    assert_eq!(
        c.differences[0].reason,
        "missing from the implementation's output"
    );
    assert_eq!(c.differences[1].reason, "1 items against 0");
}

#[test]
fn a_listed_field_whose_parent_changed_type_differs() {
    let rule = CompareRule {
        fields: vec!["steps.minutes".into()],
        ..CompareRule::default()
    };
    let c = compare(&rule, &schema(), &base(), &with("steps", json!("none")));
    assert_eq!(paths(&c), ["steps"]);
    assert_eq!(c.differences[0].reason, "array against string");
    let c = compare(&rule, &schema(), &base(), &with("steps", json!([7])));
    assert_eq!(paths(&c), ["steps[0]"]);
    assert_eq!(c.differences[0].reason, "object against number");
}

#[test]
fn tolerance_applies_to_numbers_only() {
    let rule = CompareRule {
        tolerance: 0.01,
        ..CompareRule::default()
    };
    assert!(
        compare(&rule, &schema(), &base(), &with("score", json!(0.509)))
            .differences
            .is_empty()
    );
    let c = compare(&rule, &schema(), &base(), &with("score", json!(0.52)));
    assert_eq!(paths(&c), ["score"]);
    assert!(
        c.differences[0].reason.contains("tolerance 0.01"),
        "{:?}",
        c.differences
    );
    assert_eq!(
        paths(&compare(
            &rule,
            &schema(),
            &base(),
            &with("urgent", json!(false))
        )),
        ["urgent"]
    );
}

#[test]
fn semantic_lists_and_off_choose_which_strings_are_compared_by_meaning() {
    let reworded = with("summary", json!("Launching the app makes it crash."));
    let off = CompareRule {
        semantic: SemanticFields::Off,
        ..CompareRule::default()
    };
    assert_eq!(
        paths(&compare(&off, &schema(), &base(), &reworded)),
        ["summary"]
    );
    let only = CompareRule {
        semantic: SemanticFields::Only(vec!["steps.text".into()]),
        ..CompareRule::default()
    };
    assert_eq!(
        paths(&compare(&only, &schema(), &base(), &reworded)),
        ["summary"]
    );
    let mut step = base();
    step["steps"][0]["text"] = json!("Install it again");
    let c = compare(&only, &schema(), &base(), &step);
    assert!(c.differences.is_empty());
    assert_eq!(c.text_checks[0].path, "steps[0].text");
}

#[test]
fn judge_hands_the_listed_fields_to_the_model() {
    let rule = CompareRule {
        judge: Some("same category".into()),
        fields: vec!["category".into()],
        ..CompareRule::default()
    };
    let c = compare(
        &rule,
        &schema(),
        &base(),
        &with("category", json!("billing")),
    );
    assert!(c.differences.is_empty() && c.text_checks.is_empty());
    let judge = c.judge.unwrap_or_else(|| panic!("no judge request"));
    assert_eq!(judge.criterion, "same category");
    assert_eq!(judge.expected, json!({"category": "bug"}));
    assert_eq!(judge.actual, json!({"category": "billing"}));
    let rule = CompareRule {
        judge: Some(String::new()),
        fields: vec!["steps.text".into(), "nowhere".into()],
        ..CompareRule::default()
    };
    let judge = compare(&rule, &schema(), &base(), &base()).judge;
    assert_eq!(
        judge.map(|j| j.expected),
        Some(json!({"steps.text": ["Reinstall"], "nowhere": null}))
    );
}

#[test]
fn extra_and_missing_fields_and_type_changes_differ() {
    let rule = CompareRule::default();
    let mut actual = base();
    actual["extra"] = json!(1);
    actual["score"] = json!("0.5");
    if let Some(m) = actual.as_object_mut() {
        m.remove("urgent");
    }
    let c = compare(&rule, &schema(), &base(), &actual);
    assert_eq!(paths(&c), ["score", "urgent", "extra"]);
    assert_eq!(c.differences[0].reason, "number against string");
    assert_eq!(c.differences[2].reason, "not in the prototype's output");
}

const FEATURE: &str = "---\nname: triage\nphase: implementation\n---\n\n## Operations\n\n### classify\nSorts a ticket.\n\nInput:\n```yaml\ntype: object\nproperties:\n  text: {type: string}\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  category: {type: string, enum: [bug, billing]}\n  score: {type: number}\n  summary: {type: string}\n  steps:\n    type: array\n    items: {type: object, properties: {text: {type: string}}}\n```\n\nCompare:\n```yaml\nRULE```\n\n```python\ndef classify(text):\n    return {\"category\": \"bug\", \"score\": 1, \"summary\": text, \"steps\": []}\n```\n";

/// The feature with `rule` as its Compare block (first rule line: line 32).
fn parse(rule: &str) -> Result<crate::Feature, crate::Diagnostics> {
    crate::parse_feature("triage.eol", &FEATURE.replace("RULE", rule))
}

fn errors(rule: &str) -> Vec<String> {
    match parse(rule) {
        Ok(_) => panic!("rule {rule:?} was accepted"),
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn valid_rules_parse_into_the_model() {
    let f = parse("fields: [category, steps.text]\ntolerance: 0.01\nsemantic: [summary, steps.text]\ndistance: 0.2\n")
        .unwrap_or_else(|d| panic!("{d}"));
    let rule = f.operations[0].compare.clone().unwrap_or_default();
    assert_eq!(rule.fields, ["category", "steps.text"]);
    assert_eq!(rule.tolerance, 0.01);
    assert_eq!(
        rule.semantic,
        SemanticFields::Only(vec!["summary".into(), "steps.text".into()])
    );
    assert_eq!(rule.max_distance(), 0.2);
    let f = parse("exact: true\n").unwrap_or_else(|d| panic!("{d}"));
    assert!(f.operations[0].compare.as_ref().is_some_and(|r| r.exact));
    let f = parse("judge: the same category for the same reason\nfields: [category, summary]\n")
        .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        f.operations[0]
            .compare
            .as_ref()
            .and_then(|r| r.judge.as_deref()),
        Some("the same category for the same reason")
    );
    let f = parse("judge: true\n").unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        f.operations[0]
            .compare
            .as_ref()
            .and_then(|r| r.judge.as_deref()),
        Some("")
    );
    let f = parse("semantic: false\n").unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        f.operations[0].compare.as_ref().map(|r| &r.semantic),
        Some(&SemanticFields::Off)
    );
    // No Compare block: the defaults.
    let plain = FEATURE.replace("Compare:\n```yaml\nRULE```\n\n", "");
    let f = crate::parse_feature("triage.eol", &plain).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(f.operations[0].compare, None);
}

#[test]
fn an_unknown_key_is_located_and_names_the_known_ones() {
    assert_eq!(
        errors("fields: [category]\ntolerence: 0.1\n"),
        [
            "triage.eol:33:1: unknown Compare key 'tolerence': did you mean 'tolerance'? known keys are exact, fields, tolerance, semantic, distance, judge"
        ]
    );
}

#[test]
fn bad_types_are_located_errors() {
    assert_eq!(
        errors("exact: yes please\n"),
        ["triage.eol:32:1: operation 'classify': Compare 'exact' must be true or false"]
    );
    let e = errors("tolerance: -1\n");
    assert!(e[0].starts_with("triage.eol:32:1: operation 'classify': Compare 'tolerance' must be a number of at least 0"), "{e:?}");
    let e = errors("fields: category\n");
    assert!(
        e[0].starts_with(
            "triage.eol:32:1: operation 'classify': Compare 'fields' must be a non-empty list"
        ),
        "{e:?}"
    );
    let e = errors("semantic: [summary]\ndistance: 3\n");
    assert!(
        e[0].starts_with(
            "triage.eol:33:1: operation 'classify': Compare 'distance' must be a cosine distance"
        ),
        "{e:?}"
    );
    let e = errors("- exact\n");
    assert!(
        e[0].starts_with(
            "triage.eol:32:1: operation 'classify': the Compare block must be a YAML mapping"
        ),
        "{e:?}"
    );
    let e = errors("fields: [a\n");
    assert!(e[0].contains("invalid YAML in the Compare block"), "{e:?}");
}

#[test]
fn fields_not_in_the_output_schema_are_located_errors() {
    assert_eq!(
        errors("tolerance: 0.1\nfields: [category, steps.txt]\n"),
        [
            "triage.eol:33:1: operation 'classify': Compare 'fields' names 'steps.txt', which is not a field of the Output schema (its fields: category, score, steps, steps.text, summary)"
        ]
    );
    let e = errors("semantic: [score]\n");
    assert_eq!(
        e,
        [
            "triage.eol:32:1: operation 'classify': Compare 'semantic' names 'score', which is not a string field of the Output schema"
        ]
    );
}

#[test]
fn contradicting_settings_are_refused() {
    let e = errors("exact: true\ntolerance: 0.5\n");
    assert_eq!(
        e,
        [
            "triage.eol:33:1: operation 'classify': Compare 'exact: true' compares the whole output exactly, so 'tolerance' cannot be set with it"
        ]
    );
    let e = errors("judge: true\nsemantic: true\n");
    assert!(
        e[0].starts_with(
            "triage.eol:33:1: operation 'classify': under Compare 'judge' the model decides"
        ),
        "{e:?}"
    );
    let e = errors("semantic: false\ndistance: 0.2\n");
    assert!(e[0].starts_with("triage.eol:33:1:"), "{e:?}");
}

#[test]
fn compare_without_a_block_is_located() {
    let src = FEATURE.replace("Compare:\n```yaml\nRULE```\n", "Compare:\nexact\n");
    let e: Vec<String> = match crate::parse_feature("triage.eol", &src) {
        Ok(_) => panic!("accepted"),
        Err(d) => d.iter().map(ToString::to_string).collect(),
    };
    assert_eq!(
        e,
        [
            "triage.eol:30:1: operation 'classify': expected a ```yaml block holding the comparison rule after 'Compare:'"
        ]
    );
}
