//! The tokenizer of the guard's free text: a string read as tokens (words,
//! numbers, codes, quoted spans, commas) that carry what the rules compare:
//! case (names, acronyms, mixed case), polarity (explicit and implicit
//! negations), the sentence and whether it asks, titles; and the word lists
//! and word helpers the rules share (stems, names, role markers).

use super::numbers::{MONTHS, clock, duration_unit, iso_date, number_word, plain_number, ratio};

/// What a token of free text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Word,
    /// A number, normalised (`12th`, `twelve`, `a dozen` and `1,2` all read `12` / `1.2`).
    Number,
    /// An identifier: has digits and letters (`KB-104`), or is a URL, e-mail,
    /// domain or an all-capitals compound (`LAMP-OAK`).
    Code,
    /// The content of a double-quoted span, verbatim.
    Quoted,
    /// A comma or dash between words.
    Comma,
}

/// The polarity a word carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Neg {
    None,
    /// `not`, `n't`, `no`, `never`, `without`, `zero`, ...
    Explicit,
    /// Negative by its form or meaning: `un-`/`non-` words, `missing`, `fails`, `instead`.
    Implicit,
}

#[derive(Debug, Clone)]
pub(super) struct Tok {
    /// Lower case for words and codes, canonical for numbers, verbatim for quotes.
    pub(super) norm: String,
    pub(super) kind: Kind,
    /// Written with a capital first letter.
    pub(super) cap: bool,
    /// Written in capitals (`SKU`, `URLs`).
    pub(super) acronym: bool,
    /// Written in mixed case with a capital after the first letter (`iOS`,
    /// `eBay`, `GitHub`): a brand or identifier wherever it stands.
    pub(super) mixed: bool,
    /// First word of its sentence.
    pub(super) initial: bool,
    /// In a sentence where most words are capitalised (a title).
    pub(super) title: bool,
    /// A number written in words (may combine with the next number word).
    pub(super) spelled: bool,
    /// A time of day whose half of the day is known (`3 pm` read `15:00`).
    pub(super) half_day: bool,
    /// In a sentence that ends with a question mark.
    pub(super) asks: bool,
    pub(super) neg: Neg,
    pub(super) sentence: usize,
}

/// Free text as tokens: quoted spans whole; contractions split (`can't` →
/// `can not`); clitics dropped; hyphenated and snake_case words split unless
/// they hold digits or are all capitals; numbers normalised.
pub(super) fn tokens(text: &str) -> Vec<Tok> {
    let text = text.replace(['\u{2019}', '\u{2018}'], "'");
    let mut t = Tokenizer::default();
    let mut rest = text.as_str();
    while let Some(open) = rest.find(['"', '\u{201C}']) {
        t.chunks(&rest[..open]);
        let after = &rest[open + rest[open..].chars().next().map_or(1, char::len_utf8)..];
        match after.find(['"', '\u{201D}']) {
            Some(close) => {
                t.quoted(after[..close].trim());
                rest = &after[close + after[close..].chars().next().map_or(1, char::len_utf8)..];
            }
            None => rest = after,
        }
    }
    t.chunks(rest);
    t.finish()
}

#[derive(Default)]
struct Tokenizer {
    out: Vec<Tok>,
    sentence: usize,
    /// Whether the next word starts a sentence (inverted so that the default starts one).
    mid_sentence: bool,
}

impl Tokenizer {
    fn push(&mut self, norm: String, kind: Kind, original: &str) {
        let letters: Vec<char> = original.chars().filter(|c| c.is_alphabetic()).collect();
        let stem = original.strip_suffix('s').unwrap_or(original);
        let acronym = kind == Kind::Word
            && stem.chars().filter(|c| c.is_alphabetic()).count() >= 2
            && stem.chars().all(|c| c.is_uppercase() || !c.is_alphabetic());
        let mixed = kind == Kind::Word
            && !acronym
            && letters.iter().skip(1).any(|c| c.is_uppercase())
            && letters.iter().any(|c| c.is_lowercase());
        let norm = if acronym && original.ends_with('s') && !stem.ends_with('S') {
            stem.to_lowercase()
        } else {
            norm
        };
        self.out.push(Tok {
            norm,
            kind,
            cap: letters.first().is_some_and(|c| c.is_uppercase()),
            acronym,
            mixed,
            initial: !self.mid_sentence,
            title: false,
            spelled: false,
            half_day: false,
            asks: false,
            neg: Neg::None,
            sentence: self.sentence,
        });
        self.mid_sentence = true;
    }

    fn end_sentence(&mut self) {
        if self.mid_sentence {
            self.sentence += 1;
        }
        self.mid_sentence = false;
    }

    fn comma(&mut self) {
        if self.out.last().is_some_and(|t| t.kind != Kind::Comma) {
            let mut c = self.out.last().cloned().expect("a token");
            c.kind = Kind::Comma;
            c.norm = ",".into();
            c.neg = Neg::None;
            c.acronym = false;
            c.mixed = false;
            self.out.push(c);
        }
    }

    fn quoted(&mut self, content: &str) {
        if !content.is_empty() {
            self.push(content.to_owned(), Kind::Quoted, "");
        }
    }

    fn chunks(&mut self, text: &str) {
        for chunk in text.split_whitespace() {
            let core = chunk.trim_start_matches(|c: char| !c.is_alphanumeric());
            let end = core
                .char_indices()
                .rev()
                .find(|(_, c)| c.is_alphanumeric() || *c == '%')
                .map_or(0, |(i, c)| i + c.len_utf8());
            let (core, tail) = core.split_at(end);
            let tail = if core.is_empty() { chunk } else { tail };
            if !core.is_empty() {
                self.chunk(core);
            }
            if tail.contains('?') {
                let s = self.sentence;
                for t in self.out.iter_mut().rev().take_while(|t| t.sentence == s) {
                    t.asks = true;
                }
            }
            if tail.contains(['.', '!', '?', ';', ':']) {
                self.end_sentence();
            } else if tail.contains([',', '\u{2014}', '\u{2013}', '-', '(', ')']) {
                self.comma();
            }
        }
    }

    fn chunk(&mut self, core: &str) {
        let lower = core.to_lowercase();
        let has_digit = core.chars().any(|c| c.is_ascii_digit());
        let internal_dot = core
            .char_indices()
            .any(|(i, c)| c == '.' && i > 0 && core[i + 1..].starts_with(char::is_alphabetic));
        if lower.contains("://")
            || lower.starts_with("www.")
            || (core.contains('@') && core.contains('.'))
        {
            // URLs are case-sensitive past the host; e-mails are not.
            let norm = if core.contains('@') {
                lower
            } else {
                core.to_owned()
            };
            return self.push(norm, Kind::Code, core);
        }
        if core.contains('/') && (internal_dot || has_digit) {
            return self.push(core.to_owned(), Kind::Code, core);
        }
        if has_digit {
            // A possessive on a number (`ticket 4583's`) is the number.
            let core = core
                .strip_suffix("'s")
                .or_else(|| core.strip_suffix('\''))
                .unwrap_or(core);
            let lower = core.to_lowercase();
            if let Some((y, m, d)) = iso_date(core) {
                // `2025-08-21` as `21 August 2025`.
                self.push(format!("{d}"), Kind::Number, core);
                self.push(MONTHS[m - 1].into(), Kind::Word, MONTHS[m - 1]);
                return self.push(format!("{y}"), Kind::Number, core);
            }
            if let Some(parts) = ratio(core) {
                // `1:1`, `16:9`: a ratio, not a time of day (minutes have two digits).
                for p in parts {
                    self.push(p, Kind::Number, core);
                }
                return;
            }
            if let Some(n) = plain_number(core) {
                return self.push(n, Kind::Number, core);
            }
            // `12th`, `500s`, `5kg`, `2FA`: the number, then the unit as a word;
            // `40-minute`, `3-day`: the number, then the words.
            let split = core
                .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | ',' | ':')))
                .unwrap_or(core.len());
            let (digits, unit) = core.split_at(split);
            let hyphened = unit.strip_prefix('-').filter(|u| {
                !u.is_empty()
                    && u.chars().all(|c| c.is_alphabetic() || c == '-')
                    && u.chars().any(char::is_lowercase)
            });
            if !digits.is_empty()
                && let Some(words) = hyphened
                && let Some(n) = plain_number(digits)
            {
                self.push(n, Kind::Number, digits);
                for w in words.split('-').filter(|w| !w.is_empty()) {
                    self.word(w);
                }
                return;
            }
            if !digits.is_empty()
                && unit.chars().all(char::is_alphabetic)
                && let Some(n) = plain_number(digits)
            {
                self.push(n, Kind::Number, digits);
                if !["st", "nd", "rd", "th", "s"].contains(&unit.to_lowercase().as_str()) {
                    self.word(unit);
                }
                return;
            }
            return self.push(lower, Kind::Code, core);
        }
        if internal_dot {
            return self.push(lower, Kind::Code, core);
        }
        if core.contains(['-', '_', '/']) {
            let parts: Vec<&str> = core
                .split(['-', '_', '/'])
                .filter(|p| !p.is_empty())
                .collect();
            let letters = core.chars().filter(|c| c.is_alphabetic());
            if parts.len() > 1 && core.contains('-') && letters.clone().all(char::is_uppercase) {
                return self.push(lower, Kind::Code, core);
            }
            for (i, part) in parts.iter().enumerate() {
                let p = part.to_lowercase();
                if i == 0 && parts.len() > 1 && (p == "non" || p == "not") {
                    // `non-root`, `not-found`: a negative compound, not a negated clause.
                    self.push(p, Kind::Word, part);
                    if let Some(t) = self.out.last_mut() {
                        t.neg = Neg::Implicit;
                    }
                } else {
                    self.word(part);
                }
            }
            return;
        }
        if let Some((base, clitic)) = lower.split_once('\'') {
            let original = &core[..base.len()];
            if clitic == "t" && base.ends_with('n') {
                let stem = &base[..base.len() - 1];
                let stem = match stem {
                    "ca" => "can",
                    "wo" => "will",
                    "sha" => "shall",
                    s => s,
                };
                self.word(&original[..stem.len().min(original.len())]);
                if let Some(t) = self.out.last_mut() {
                    t.norm = stem.to_owned();
                }
                return self.negation("not");
            }
            return self.word(original);
        }
        self.word(core);
    }

    fn negation(&mut self, norm: &str) {
        self.push(norm.to_owned(), Kind::Word, norm);
        if let Some(t) = self.out.last_mut() {
            t.neg = Neg::Explicit;
        }
    }

    fn word(&mut self, w: &str) {
        if w.is_empty() {
            return;
        }
        let lower = w.to_lowercase();
        if lower == "cannot" {
            self.push("can".into(), Kind::Word, w);
            return self.negation("not");
        }
        if NEGATIONS.contains(&lower.as_str()) {
            self.push(lower, Kind::Word, w);
            if let Some(t) = self.out.last_mut() {
                t.neg = Neg::Explicit;
            }
            return;
        }
        if let Some(n) = number_word(&lower) {
            if let Some(prev) = self.out.last_mut().filter(|t| t.spelled) {
                let p: f64 = prev.norm.parse().unwrap_or(0.0);
                let combined =
                    if ["hundred", "thousand", "million", "dozen"].contains(&lower.as_str()) {
                        Some(p * n)
                    } else if (20.0..100.0).contains(&p) && p % 10.0 == 0.0 && n < 10.0 {
                        Some(p + n)
                    } else {
                        None
                    };
                if let Some(c) = combined {
                    prev.norm = format!("{c}");
                    return;
                }
            }
            self.push(format!("{n}"), Kind::Number, w);
            if let Some(t) = self.out.last_mut() {
                t.spelled = true;
            }
            return;
        }
        // `out of stock`, `out of office`: `out` says `no` (`zero stock`,
        // `not in the office`); other `out of`s only move something.
        const LACKED: [&str; 12] = [
            "stock", "office", "date", "print", "range", "order", "service", "budget", "scope",
            "warranty", "space", "memory",
        ];
        let n = self.out.len();
        if LACKED.contains(&lower.as_str())
            && n >= 2
            && self.out[n - 1].norm == "of"
            && self.out[n - 2].norm == "out"
            && self.out[n - 2].sentence == self.sentence
        {
            self.out[n - 2].neg = Neg::Implicit;
        }
        let implicit = implicit_negative(&lower);
        self.push(lower, Kind::Word, w);
        if implicit && let Some(t) = self.out.last_mut() {
            t.neg = Neg::Implicit;
        }
    }

    /// Reads a number and its time unit as one duration in seconds (or
    /// months), so `two weeks` is `14 days`; marks title-cased sentences,
    /// where capitals say nothing about names.
    fn finish(mut self) -> Vec<Tok> {
        // `half an hour`, `a quarter of an hour`: a fraction of one unit of time.
        let mut i = 0;
        while i < self.out.len() {
            let fraction = match self.out[i].norm.as_str() {
                "half" => Some(0.5),
                "quarter" => Some(0.25),
                _ => None,
            };
            let at = |j: usize| self.out.get(j).map_or("", |t: &Tok| t.norm.as_str());
            let mut j = i + 1;
            if at(j) == "of" {
                j += 1;
            }
            if at(j) == "a" || at(j) == "an" {
                j += 1;
            }
            let singular =
                |w: &str| duration_unit(w).is_some() && duration_unit(&format!("{w}s")).is_some();
            if let Some(f) = fraction
                && self.out[i].kind == Kind::Word
                && singular(at(j))
            {
                self.out[i].norm = format!("{f}");
                self.out[i].kind = Kind::Number;
                self.out.drain(i + 1..j);
            }
            i += 1;
        }
        // `one hour`, and `in a week`, `for an hour` after a preposition, are
        // one unit of time (not a rate: `twice a week`, `5 euros a month`).
        for i in 0..self.out.len().saturating_sub(1) {
            let unit = &self.out[i + 1];
            let singular = unit.kind == Kind::Word
                && duration_unit(&unit.norm).is_some()
                && duration_unit(&format!("{}s", unit.norm)).is_some();
            let after_preposition = i > 0 && {
                let p = &self.out[i - 1];
                p.kind == Kind::Word
                    && p.sentence == unit.sentence
                    && (ROLE_MARKERS.contains(&p.norm.as_str()) || p.norm == "within")
            };
            let t = &self.out[i];
            let one = t.kind == Kind::Word
                && (t.norm == "one" || (after_preposition && (t.norm == "a" || t.norm == "an")));
            if singular && one {
                self.out[i].norm = "1".into();
                self.out[i].kind = Kind::Number;
            }
        }
        let mut i = 0;
        while i + 1 < self.out.len() {
            // `3 pm`, `3:30pm`, `11 a.m.` as a time of day on the 24-hour clock.
            let pm = match self.out[i + 1].norm.as_str() {
                "am" | "a.m" => Some(false),
                "pm" | "p.m" => Some(true),
                _ => None,
            };
            if self.out[i].kind == Kind::Number
                && let Some(pm) = pm
                && let Some((h, m)) = clock(&self.out[i].norm)
                && (1..=12).contains(&h)
            {
                let h = h % 12 + if pm { 12 } else { 0 };
                self.out[i].norm = format!("{h}:{m:02}");
                self.out[i].half_day = true;
                self.out.remove(i + 1);
                i += 1;
                continue;
            }
            // `12 percent`, `12 per cent` as `12%`.
            let cent = self.out.get(i + 2).is_some_and(|t| t.norm == "cent");
            let percent = match self.out[i + 1].norm.as_str() {
                "percent" => Some(1),
                "per" if cent => Some(2),
                _ => None,
            };
            if self.out[i].kind == Kind::Number
                && !self.out[i].norm.ends_with('%')
                && let Some(n) = percent
            {
                self.out[i].norm.push('%');
                self.out.drain(i + 1..i + 1 + n);
                i += 1;
                continue;
            }
            if self.out[i].kind == Kind::Number
                && self.out[i + 1].kind == Kind::Word
                && let Some((factor, unit)) = duration_unit(&self.out[i + 1].norm)
                && let Ok(x) = self.out[i].norm.parse::<f64>()
            {
                self.out[i].norm = format!("{}{unit}", x * factor);
                self.out.remove(i + 1);
            }
            i += 1;
        }
        let mut start = 0;
        while start < self.out.len() {
            let s = self.out[start].sentence;
            let end = self.out[start..]
                .iter()
                .position(|t| t.sentence != s)
                .map_or(self.out.len(), |p| start + p);
            let words: Vec<&Tok> = self.out[start..end]
                .iter()
                .filter(|t| t.kind == Kind::Word && !t.acronym)
                .collect();
            let caps = words.iter().filter(|t| t.cap).count();
            if words.len() >= 3 && caps * 5 >= words.len() * 3 {
                for t in &mut self.out[start..end] {
                    t.title = true;
                }
            }
            start = end;
        }
        self.out
    }
}

/// Explicit negations (`n't` and `cannot` are split into `not`; `zero` reads as `no`).
const NEGATIONS: [&str; 11] = [
    "not", "no", "never", "none", "nobody", "nothing", "nowhere", "neither", "nor", "without",
    "zero",
];

/// Words negative by their form (`un-`, `non-`) or meaning; they balance an
/// explicit negation on the other side (`unpaid` / `hasn't paid`, `missing` /
/// `not there`, `instead of X` / `not X`, `still waiting to be packed` /
/// `not packed yet`, `at no charge` / `for free`, `inactive` / `hasn't
/// logged in`).
fn implicit_negative(w: &str) -> bool {
    const NOT_PREFIXED: [&str; 9] = [
        "under",
        "unit",
        "union",
        "uniq",
        "univers",
        "unix",
        "unif",
        "until",
        "unlimited",
    ];
    const NEGATIVE: [&str; 13] = [
        "missing", "lack", "lacks", "lacking", "lacked", "fail", "fails", "failed", "failing",
        "failure", "instead", "absent", "unless",
    ];
    // States that say `not yet` or `no`: `still waiting to ship` / `not
    // shipped yet`, `for free` / `at no charge`, `broken` / `doesn't load`.
    const NOT_YET: [&str; 7] = [
        "pending",
        "waiting",
        "awaiting",
        "outstanding",
        "inactive",
        "free",
        "broken",
    ];
    // Verbs that do the opposite or keep something from happening: `hold
    // the order` / `don't ship the order`, `skip` / `don't run`.
    const WITHHOLDING: [&str; 18] = [
        "hold", "held", "avoid", "skip", "skipp", "refus", "refuse", "declin", "decline", "reject",
        "deny", "deni", "den", "block", "prevent", "ignor", "ignore", "except",
    ];
    let prefixed =
        (w.len() >= 5 && w.starts_with("un") && !NOT_PREFIXED.iter().any(|p| w.starts_with(p)))
            || (w.len() >= 6 && w.starts_with("non"));
    prefixed
        || NEGATIVE.contains(&w)
        || NOT_YET.contains(&w)
        || ["stop", "stops", "stopped", "stopping"].contains(&w)
        || WITHHOLDING.contains(&stem(w))
}

/// A crude stem: enough for `passwords`/`password`, `locked`/`lock`, `caching`/`cached`.
pub(super) fn stem(w: &str) -> &str {
    for (suffix, min) in [("ies", 5), ("ing", 6), ("ed", 5), ("es", 5), ("s", 4)] {
        if w.len() >= min
            && let Some(s) = w.strip_suffix(suffix)
        {
            if suffix == "s" && s.ends_with('s') {
                return w;
            }
            return s;
        }
    }
    w
}

/// Words that mark the role of what follows (`from X to Y`, `X into Y`).
pub(super) const ROLE_MARKERS: [&str; 22] = [
    "from", "to", "into", "onto", "than", "by", "for", "with", "at", "on", "in", "of", "over",
    "under", "between", "after", "before", "via", "toward", "towards", "as", "per",
];

/// Whether `t` names something: a number, code, quote, or a capitalised word
/// that is not merely first in its sentence or in a title.
pub(super) fn is_entity(t: &Tok) -> bool {
    match t.kind {
        Kind::Number | Kind::Code | Kind::Quoted => true,
        Kind::Word => t.acronym || t.mixed || (t.cap && !t.initial && !t.title && t.norm != "i"),
        Kind::Comma => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::semantic::guard::testing::{same, why};

    #[test]
    fn mixed_case_words_are_names() {
        // A capital after the first letter makes a name, even in lower case first.
        assert_eq!(
            why(
                "Sell the old lamp on eBay this week",
                "This week, sell the old lamp online"
            ),
            Some("entities".into())
        );
        assert_eq!(
            why(
                "The iPad app crashes while the macOS app works",
                "The macOS app crashes while the iPad app works"
            ),
            Some("roles".into())
        );
        // ... even at the start of a sentence, and matched in any case.
        assert_eq!(
            why("GitHub rejects my token", "My token is rejected everywhere"),
            Some("entities".into())
        );
        same("Is the iPad app slow today?", "is the ipad app slow today");
        // Plurals of acronyms are acronyms, not mixed case.
        same(
            "Shorten these URLs for me",
            "Make these links shorter for me",
        );
    }
}
