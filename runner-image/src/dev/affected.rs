//! Which test cases a save calls for: those of the operations whose section
//! (prose, schemas, code, phase) changed, those that are new or changed in
//! the test file, and every case when the frontmatter changed.

use eol_core::{Feature, OperationPhase, TestCase, TestSuite};
use std::collections::BTreeSet;

/// The operations a save changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Affected {
    /// Every operation: the first version, or a new frontmatter (settings
    /// every operation runs under).
    All,
    /// These operations, by name.
    Operations(BTreeSet<String>),
}

impl Affected {
    /// The operations `after` changed from `before` (`None`: the first version).
    ///
    /// Locations do not count: a line added above an operation moves it
    /// without changing it ([`eol_core::SourceLocation`] compares equal).
    pub fn between(before: Option<&Feature>, after: &Feature) -> Self {
        let Some(before) = before else {
            return Self::All;
        };
        if before.frontmatter != after.frontmatter {
            return Self::All;
        }
        // The shared prose and references are every prototyped operation's context.
        let context_changed = before.title != after.title
            || before.prose != after.prose
            || before.references != after.references;
        let changed = after
            .operations
            .iter()
            .filter(|op| {
                (context_changed && op.phase == OperationPhase::Prototyping)
                    || before.operations.iter().find(|b| b.name == op.name) != Some(*op)
            })
            .map(|op| op.name.clone())
            .collect();
        Self::Operations(changed)
    }

    /// Whether `operation` is among the changed ones.
    pub fn contains(&self, operation: &str) -> bool {
        match self {
            Self::All => true,
            Self::Operations(names) => names.contains(operation),
        }
    }
}

/// The cases of `suite` to run after a save: those of the `affected`
/// operations, and those not in `before` as they are now (new or edited).
pub fn cases_to_run<'a>(
    suite: &'a TestSuite,
    before: Option<&TestSuite>,
    affected: &Affected,
) -> Vec<&'a TestCase> {
    suite
        .cases
        .iter()
        .filter(|case| {
            affected.contains(&case.operation) || before.is_none_or(|b| !b.cases.contains(case))
        })
        .collect()
}

/// The operations `cases` call, each once, in order of first appearance.
pub fn operations_of(cases: &[&TestCase]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    cases
        .iter()
        .filter(|c| seen.insert(c.operation.as_str()))
        .map(|c| c.operation.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEATURE: &str = include_str!("../../../features/examples/inventory.eol");
    const TESTS: &str = include_str!("../../../features/examples/inventory.test.eol");

    fn feature(src: &str) -> Feature {
        eol_core::parse_feature("inventory.eol", src).expect("a valid feature")
    }

    fn suite(src: &str) -> TestSuite {
        eol_core::parse_test_suite("inventory.test.eol", src).expect("a valid suite")
    }

    fn names(affected: &Affected) -> Vec<&str> {
        match affected {
            Affected::All => vec!["(all)"],
            Affected::Operations(n) => n.iter().map(String::as_str).collect(),
        }
    }

    fn titles(cases: &[&TestCase]) -> Vec<String> {
        cases.iter().map(|c| c.operation.clone()).collect()
    }

    #[test]
    fn a_code_change_affects_its_operation_and_runs_its_cases_only() {
        let before = feature(FEATURE);
        let after = feature(&FEATURE.replace(
            "return {\"sku\": sku, \"level\": level}",
            "return {\"sku\": sku.lower(), \"level\": level}",
        ));
        let affected = Affected::between(Some(&before), &after);
        assert_eq!(names(&affected), ["add_stock"]);
        let suite = suite(TESTS);
        let cases = cases_to_run(&suite, Some(&suite), &affected);
        assert_eq!(titles(&cases), ["add_stock"]);
        assert_eq!(operations_of(&cases), ["add_stock"]);
    }

    #[test]
    fn schemas_and_prose_of_an_operation_count_but_moving_it_does_not() {
        let before = feature(FEATURE);
        let schema = feature(&FEATURE.replace(
            "quantity: {type: integer, minimum: 1}\nrequired: [sku, quantity]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  reserved",
            "quantity: {type: integer, minimum: 2}\nrequired: [sku, quantity]\n```\n\nOutput:\n```yaml\ntype: object\nproperties:\n  reserved",
        ));
        assert_eq!(
            names(&Affected::between(Some(&before), &schema)),
            ["reserve"]
        );
        let prose =
            feature(&FEATURE.replace("Returns the current stock level", "Returns the stock level"));
        assert_eq!(
            names(&Affected::between(Some(&before), &prose)),
            ["stock_level"]
        );
        // Shared prose reaches only prototyped operations; these are implemented.
        let moved = feature(&FEATURE.replace("# Inventory\n", "# Inventory\n\nMore words.\n"));
        assert_eq!(
            Affected::between(Some(&before), &moved),
            Affected::Operations(BTreeSet::new())
        );
    }

    #[test]
    fn the_first_version_or_a_new_frontmatter_affects_everything() {
        let before = feature(FEATURE);
        assert_eq!(Affected::between(None, &before), Affected::All);
        let after = feature(&FEATURE.replace("version: 1.0.0", "version: 1.0.1"));
        let affected = Affected::between(Some(&before), &after);
        assert_eq!(affected, Affected::All);
        let suite = suite(TESTS);
        assert_eq!(cases_to_run(&suite, Some(&suite), &affected).len(), 3);
    }

    #[test]
    fn new_and_edited_cases_run_even_when_their_operation_did_not_change() {
        let before = suite(TESTS);
        let after = suite(&TESTS.replace("sku: NO-SUCH-SKU-42", "sku: NO-SUCH-SKU-44"));
        let none = Affected::Operations(BTreeSet::new());
        let cases = cases_to_run(&after, Some(&before), &none);
        assert_eq!(titles(&cases), ["stock_level"]);
        assert!(cases_to_run(&after, Some(&after), &none).is_empty());
        assert_eq!(cases_to_run(&after, None, &none).len(), 3);
    }
}
