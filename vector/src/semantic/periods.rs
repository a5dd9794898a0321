//! The guard's rule on periods of the calendar named by their place (`this
//! week`, `last month`, `yesterday`): two texts may not name different ones.
//! English words only, like the rest of the rules on free text.

use super::tokens::{Kind, Tok};

/// The periods of the calendar a text names by their place: `this week`
/// (`this`, `week`), `yesterday` (`last`, `day`), `the first month`,
/// `next business day`. The word nearest the unit tells the place (`this
/// past week` is `last week`). A unit after a number is a duration, not a
/// period. Parts of a day (`this afternoon` within `today`) and rates
/// (`weekly`, also an adjective: `monthly recurring revenue`) are left out:
/// paraphrases write them in too many ways.
pub(super) fn periods(x: &[Tok]) -> Vec<(&'static str, &'static str)> {
    let unit = |w: &str| -> Option<&'static str> {
        Some(match w {
            "hour" => "hour",
            "day" => "day",
            "week" => "week",
            "weekend" => "weekend",
            "month" => "month",
            "quarter" => "quarter",
            "year" => "year",
            _ => return None,
        })
    };
    let place = |w: &str| -> Option<&'static str> {
        Some(match w {
            "this" | "current" | "present" => "this",
            "last" | "past" | "previous" | "prior" | "preceding" | "final" => "last",
            "next" | "coming" | "upcoming" | "following" => "next",
            "first" => "first",
            _ => return None,
        })
    };
    /// Words that may stand between the place and the unit.
    const BETWEEN: [&str; 9] = [
        "full",
        "whole",
        "entire",
        "calendar",
        "business",
        "working",
        "fiscal",
        "financial",
        "school",
    ];
    let mut found = Vec::new();
    for (i, t) in x.iter().enumerate() {
        let word = |k: usize| {
            i.checked_sub(k)
                .and_then(|j| x.get(j))
                .filter(|p| p.kind == Kind::Word && p.sentence == t.sentence)
        };
        let named = match t.norm.as_str() {
            _ if t.kind != Kind::Word => None,
            "today" => Some(("this", "day")),
            "yesterday" => Some(("last", "day")),
            "tomorrow" => Some(("next", "day")),
            w => unit(w).and_then(|u| {
                let placed = match word(1) {
                    Some(p) if BETWEEN.contains(&p.norm.as_str()) => word(2),
                    p => p,
                };
                placed.and_then(|p| place(&p.norm)).map(|p| (p, u))
            }),
        };
        if let Some(named) = named
            && !found.contains(&named)
        {
            found.push(named);
        }
    }
    found
}

/// Whether two texts name different periods: a period of one that the other
/// lacks, against one of the other's with the same place or unit (`this
/// week` / `this month`, `first month` / `last month`). A period only one
/// side names may be written there another way (`last month` / `in the 30
/// days before today`).
pub(super) fn periods_differ(
    a: &[(&'static str, &'static str)],
    b: &[(&'static str, &'static str)],
) -> bool {
    let lacked = |x: &[(&'static str, &'static str)], y: &[(&'static str, &'static str)]| {
        x.iter()
            .filter(|p| !y.contains(p))
            .copied()
            .collect::<Vec<_>>()
    };
    let (la, lb) = (lacked(a, b), lacked(b, a));
    la.iter()
        .any(|(pa, ua)| lb.iter().any(|(pb, ub)| pa == pb || ua == ub))
}

#[cfg(test)]
mod tests {
    use crate::semantic::guard::testing::{same, written_pairs};

    #[test]
    fn periods_of_the_calendar_must_agree() {
        // `testdata/periods.tsv`: 16 pairs naming different periods, all
        // accepted before the period rule, and 15 naming one period.
        assert_eq!(
            written_pairs(include_str!("testdata/periods.tsv"), "D", "time"),
            (16, 15)
        );
        // A period one side writes as a duration, or leaves out, is no conflict.
        same(
            "How many orders shipped last week?",
            "Count the orders shipped in the 7 days before today.",
        );
        // Parts of a day and rates are left to the other rules.
        same(
            "Which rooms are free at 4 pm today?",
            "Is a room available this afternoon at 4?",
        );
    }
}
