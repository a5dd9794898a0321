//! The guard's rule on periods of the calendar named by their place (`this
//! week`, `last month`, `yesterday`): two texts may not name different ones.
//! English words only, like the rest of the rules on free text.

use super::numbers::duration_unit;
use super::tokens::{Kind, Tok};

/// A period of the calendar: its place (`this`, `last`, `next`, `first`)
/// and its length as the tokenizer writes a duration (`604800s` for a week,
/// `1mo` for a month), or `weekend`.
pub(super) type Period = (&'static str, String);

/// The periods of the calendar a text names by their place: `this week`
/// (`this`, a week), `yesterday` (`last`, a day), `the first month`, `next
/// business day`, `the last 30 days`. The word nearest the unit or number
/// tells the place (`this past week` is `last week`). A length with no
/// place is a duration, not a period. Parts of a day (`this afternoon`
/// within `today`) and rates (`weekly`, also an adjective: `monthly
/// recurring revenue`) are left out: paraphrases write them in too many ways.
pub(super) fn periods(x: &[Tok]) -> Vec<Period> {
    let length = |w: &str| -> Option<String> {
        match w {
            "weekend" => Some("weekend".into()),
            "quarter" => Some("3mo".into()),
            "hour" | "day" | "week" | "fortnight" | "month" | "year" => {
                duration_unit(w).map(|(factor, unit)| format!("{factor}{unit}"))
            }
            _ => None,
        }
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
    let mut found: Vec<Period> = Vec::new();
    for (i, t) in x.iter().enumerate() {
        let word = |k: usize| {
            i.checked_sub(k)
                .and_then(|j| x.get(j))
                .filter(|p| p.kind == Kind::Word && p.sentence == t.sentence)
        };
        let placed = || {
            let p = match word(1) {
                Some(p) if BETWEEN.contains(&p.norm.as_str()) => word(2),
                p => p,
            };
            p.and_then(|p| place(&p.norm))
        };
        let named: Option<Period> = match (t.kind, t.norm.as_str()) {
            (Kind::Word, "today") => length("day").map(|l| ("this", l)),
            (Kind::Word, "yesterday") => length("day").map(|l| ("last", l)),
            (Kind::Word, "tomorrow") => length("day").map(|l| ("next", l)),
            (Kind::Word, w) => length(w).and_then(|l| placed().map(|p| (p, l))),
            // `the last 30 days`: a duration (the tokenizer's `2592000s`) with a place.
            (Kind::Number, n) if n.ends_with('s') || n.ends_with("mo") => {
                placed().map(|p| (p, n.to_owned()))
            }
            _ => None,
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
/// lacks, against one of the other's with the same place or length (`this
/// week` / `this month`, `first month` / `last month`). A period only one
/// side names may be written there another way (`last month` / `in the
/// month before today`).
pub(super) fn periods_differ(a: &[Period], b: &[Period]) -> bool {
    let lacked = |x: &[Period], y: &[Period]| -> Vec<Period> {
        x.iter().filter(|p| !y.contains(p)).cloned().collect()
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
        // `testdata/periods.tsv`: 19 pairs naming different periods, all
        // accepted before the period rule, and 18 naming one period.
        assert_eq!(
            written_pairs(include_str!("testdata/periods.tsv"), "D", "time"),
            (19, 18)
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
