//! YAML helpers of the parsers: mappings read with their syntax errors
//! located, key lines, and unknown keys with a suggestion.

use crate::diagnostic::{Collector, Position};

/// Parses YAML frontmatter into a mapping, reporting syntax errors at their place.
pub(crate) fn parse_yaml_mapping(
    text: &str,
    first_line: usize,
    what: &str,
    diags: &mut Collector,
) -> Option<serde_yaml::Mapping> {
    if text.trim().is_empty() {
        return Some(serde_yaml::Mapping::new());
    }
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(serde_yaml::Value::Mapping(m)) => Some(m),
        Ok(serde_yaml::Value::Null) => Some(serde_yaml::Mapping::new()),
        Ok(_) => {
            diags.error(
                Position::new(first_line, 1),
                format!("the {what} must be a YAML mapping of keys to values"),
            );
            None
        }
        Err(e) => {
            diags.error(
                yaml_position(&e, first_line),
                format!("invalid YAML in the {what}: {}", yaml_message(&e)),
            );
            None
        }
    }
}

/// The position of a YAML error in the whole file.
pub(crate) fn yaml_position(e: &serde_yaml::Error, first_line: usize) -> Position {
    match e.location() {
        Some(loc) => Position::new(first_line + loc.line() - 1, loc.column()),
        None => Position::new(first_line, 1),
    }
}

/// serde_yaml appends " at line X column Y" with positions relative to the
/// snippet; those would contradict the file position we report, so drop them.
pub(crate) fn yaml_message(e: &serde_yaml::Error) -> String {
    let msg = e.to_string();
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg,
    }
}

/// The line of a top-level key in a frontmatter text (block style puts them at column 1).
pub(crate) fn key_line(text: &str, first_line: usize, key: &str) -> usize {
    text.lines()
        .position(|l| {
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map_or(first_line, |i| first_line + i)
}

/// The closest known key to an unknown one, for "did you mean".
pub(crate) fn suggestion<'k>(given: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(given, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Reports every key of `map` not in `known`, naming the known ones.
pub(crate) fn check_keys(
    map: &serde_yaml::Mapping,
    known: &[&str],
    text: &str,
    first_line: usize,
    what: &str,
    diags: &mut Collector,
) {
    for key in map.keys() {
        let name = match key {
            serde_yaml::Value::String(s) => s.clone(),
            other => format!("{other:?}"),
        };
        if known.contains(&name.as_str()) {
            continue;
        }
        let hint = suggestion(&name, known)
            .map(|s| format!("did you mean '{s}'? "))
            .unwrap_or_default();
        diags.error(
            Position::new(key_line(text, first_line, &name), 1),
            format!(
                "unknown {what} key '{name}': {hint}known keys are {}",
                known.join(", ")
            ),
        );
    }
}
