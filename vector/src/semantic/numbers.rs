//! How the guard's tokenizer reads numbers: plain numbers (`1,500`, `9:05`,
//! `30%`), number words (`twelve`, `a dozen`, `twice`), ISO dates, ratios,
//! times of day and units of time, each in one canonical spelling.

/// A normalised number read as a time of day: `3` or `3:30` as (hour, minute).
pub(super) fn clock(norm: &str) -> Option<(u32, u32)> {
    let (h, m) = norm.split_once(':').unwrap_or((norm, "0"));
    let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

/// Month names, for dates written `2025-08-21`.
pub(super) const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// An ISO date `YYYY-MM-DD` as (year, month, day).
pub(super) fn iso_date(s: &str) -> Option<(u32, usize, u32)> {
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return None;
    };
    let digits = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_digit());
    if !(digits(y, 4) && digits(m, 2) && digits(d, 2)) {
        return None;
    }
    let (y, m, d) = (y.parse().ok()?, m.parse::<usize>().ok()?, d.parse().ok()?);
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y, m, d))
}

/// A ratio `1:1`, `16:9` as its numbers: digits and colons where a part after
/// the first has a single digit (a time of day writes minutes with two).
pub(super) fn ratio(s: &str) -> Option<Vec<String>> {
    let parts: Vec<&str> = s.split(':').collect();
    let numeric = parts
        .iter()
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    (parts.len() >= 2 && numeric && parts[1..].iter().any(|p| p.len() == 1))
        .then(|| parts.iter().filter_map(|p| plain_number(p)).collect())
}

/// A time unit as (factor, canonical unit): seconds, or months for months and years.
pub(super) fn duration_unit(w: &str) -> Option<(f64, &'static str)> {
    Some(match w {
        "second" | "seconds" | "sec" | "secs" | "s" => (1.0, "s"),
        "minute" | "minutes" | "min" | "mins" => (60.0, "s"),
        "hour" | "hours" | "hr" | "hrs" | "h" => (3600.0, "s"),
        "day" | "days" => (86_400.0, "s"),
        "week" | "weeks" => (604_800.0, "s"),
        "fortnight" | "fortnights" => (1_209_600.0, "s"),
        "month" | "months" => (1.0, "mo"),
        "year" | "years" => (12.0, "mo"),
        _ => return None,
    })
}

/// `1,200`, `3.5`, `9:15`, `30%` as a canonical string; `None` when not a plain number.
pub(super) fn plain_number(s: &str) -> Option<String> {
    let (body, pct) = match s.strip_suffix('%') {
        Some(b) => (b, "%"),
        None => (s, ""),
    };
    if body.is_empty()
        || !body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | ':'))
    {
        return None;
    }
    if body.contains(':') {
        // `9:05` and `09:05` alike; minutes and seconds keep two digits.
        let parts: Option<Vec<String>> = body
            .split(':')
            .enumerate()
            .map(|(i, p)| {
                p.parse::<u64>().ok().map(|n| {
                    if i == 0 {
                        n.to_string()
                    } else {
                        format!("{n:02}")
                    }
                })
            })
            .collect();
        return parts.map(|p| p.join(":") + pct);
    }
    // A comma before exactly three digits groups thousands; otherwise it is a decimal point.
    let mut canon = String::new();
    let groups: Vec<&str> = body.split(',').collect();
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            if g.len() == 3 && g.chars().all(|c| c.is_ascii_digit()) {
            } else {
                canon.push('.');
            }
        }
        canon.push_str(g);
    }
    canon.parse::<f64>().ok().map(|x| format!("{x}{pct}"))
}

/// Cardinal and ordinal number words. `one`, `first` and `once` are left as
/// words: `one` is as often a pronoun or article (`attach one`, `an hour` /
/// `one hour`) as a count.
pub(super) fn number_word(w: &str) -> Option<f64> {
    Some(match w {
        "two" | "twice" | "both" | "double" => 2.0,
        "three" | "third" | "thrice" | "triple" => 3.0,
        "four" | "fourth" => 4.0,
        "five" | "fifth" => 5.0,
        "six" | "sixth" => 6.0,
        "seven" | "seventh" => 7.0,
        "eight" | "eighth" => 8.0,
        "nine" | "ninth" => 9.0,
        "ten" | "tenth" => 10.0,
        "eleven" | "eleventh" => 11.0,
        "twelve" | "twelfth" | "dozen" => 12.0,
        "thirteen" => 13.0,
        "fourteen" => 14.0,
        "fifteen" => 15.0,
        "sixteen" => 16.0,
        "seventeen" => 17.0,
        "eighteen" => 18.0,
        "nineteen" => 19.0,
        "twenty" => 20.0,
        "thirty" => 30.0,
        "forty" => 40.0,
        "fifty" => 50.0,
        "sixty" => 60.0,
        "seventy" => 70.0,
        "eighty" => 80.0,
        "ninety" => 90.0,
        "hundred" => 100.0,
        "thousand" => 1000.0,
        "million" => 1_000_000.0,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use crate::semantic::guard::testing::{same, why};

    #[test]
    fn numbers_written_differently_are_read_alike() {
        // A number joined to a word by a hyphen, and written with its unit.
        same(
            "We cut the 8-hour import to a few minutes",
            "The import that took eight hours now takes a few minutes",
        );
        assert_eq!(
            why("Schedule a 20-minute review", "Schedule a 25 minute review"),
            Some("numbers".into())
        );
        // `percent` and `per cent` are `%`.
        same(
            "Give Initech 15% off the next invoice",
            "Initech should see fifteen percent taken off its upcoming invoice",
        );
        same(
            "Give Initech 15% off the next invoice",
            "Initech should see 15 per cent taken off its upcoming invoice",
        );
        assert_eq!(
            why("Give Initech 15% off", "Initech gets 15 euros off"),
            Some("numbers".into())
        );
        // A possessive on a number is the number.
        same(
            "Email the owner of order 88 about the delay",
            "Order 88's owner should hear about the delay by email",
        );
        // An ISO date is a day, a month and a year.
        same(
            "Notes from the 2024-03-05 planning call",
            "What we agreed on the planning call of 5 March 2024",
        );
        assert_eq!(
            why(
                "Notes from the 2024-03-05 planning call",
                "What we agreed on the planning call of 5 April 2024"
            ),
            Some("entities".into())
        );
        // A ratio is two numbers, not a time of day; `1` may be written `one`.
        same(
            "Crop the banner to 16:9",
            "Resize that banner so its width and height are 16 by 9",
        );
        same(
            "Book a 1:1 with Dana about the roadmap",
            "Roadmap questions from Dana: a one-on-one meeting",
        );
        assert_eq!(
            why("Crop the banner to 16:9", "Crop the banner to 4:3"),
            Some("numbers".into())
        );
        // `half an hour`, `a quarter of an hour`, `double`.
        same(
            "Block 30 minutes for the demo",
            "Reserve half an hour in the calendar for the demo",
        );
        same(
            "Remind me 15 minutes before the demo",
            "Send me a reminder a quarter of an hour ahead of the demo",
        );
        assert_eq!(
            why(
                "Remind me 15 minutes before the demo",
                "Send me a reminder half an hour ahead of the demo"
            ),
            Some("numbers".into())
        );
        same(
            "Why was the card charged twice for the course?",
            "The card shows a double charge for the course, why?",
        );
        // One unit of time matches the unit with no number.
        same(
            "A week of free trial for every new team",
            "Every new team gets a free trial of one week",
        );
        same(
            "Send the survey 24 hours after checkout",
            "A day after checkout, send the survey",
        );
        assert_eq!(
            why(
                "Send the survey 48 hours after checkout",
                "A day after checkout, send the survey"
            ),
            Some("numbers".into())
        );
    }
}
