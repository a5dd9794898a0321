//! The guard of the semantic cache: whether a stored input may answer a new
//! one ([`guard`], whose docs give the rules). This module owns the guard's
//! outcome ([`GuardFailure`]) and the comparison of the structured inputs
//! (same fields, equal exact values), which gathers their free-text fields
//! for the rules on free text: `marks` (all fields together), `wording` and
//! `roles` (per field), on the tokens of `tokens`.

use serde_json::Value;

use super::language::{is_english, same_text};
use super::marks::compare_marks;
use super::roles::{exchanged_contexts, moved_objects, swapped_roles, swapped_spans};
use super::tokens::{Tok, tokens};
use super::wording::local_edit;

/// Where and why two inputs were judged different in meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardFailure {
    /// The dotted path of the field (`$` for the whole input).
    pub path: String,
    /// What differs.
    pub reason: String,
}

impl std::fmt::Display for GuardFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Whether a stored input may answer a new one, by the rules below. Only
/// free-text fields that differ are tokenised; identical inputs return at once.
///
/// Embeddings alone confuse inputs that are close in wording but differ in
/// meaning, so the guard compares the structured inputs:
///
/// - both inputs have the same fields (recursively; arrays of equal length);
/// - numbers, booleans and nulls are equal;
/// - strings are equal when either of them has no whitespace (enums, ids,
///   codes, single words) or when the field is listed as exact in the
///   [`CallContext`](super::CallContext) (by its dotted path such as
///   `order.id`, or its last key);
/// - other strings are free text. The rules below read **English only**: a
///   free-text field in another language (`language`: a non-Latin script,
///   or more function words and accented letters of German, French, Spanish,
///   Italian, Portuguese, Dutch or Polish than English function words) must
///   be the same text on both sides, up to case, spacing and the closing
///   mark; so must an English text and its translation (an answer cached in
///   one language does not answer a request in another). English free text
///   may differ in wording. It is read as
///   tokens: double-quoted spans whole; URLs, e-mails, domains, words with
///   digits (`KB-104`) and all-capital compounds (`LAMP-OAK`) as codes;
///   numbers normalised (`1,500`, `twelve`, `12th`, `a dozen`, `twice`,
///   `double`, `twenty-five`, `5kg` → `5` + `kg`, `8-hour` → `8` + `hour`,
///   `30 percent` → `30%`, `order 88's` → `88`, a ratio `16:9` → `16` and
///   `9` (a time of day writes its minutes with two digits), an ISO date
///   `2024-03-05` → `5 March 2024`; a number with a time unit is one
///   duration, so `two weeks` is `14 days` and `half an hour`, `a quarter
///   of an hour` are `30` and `15 minutes`; `one`, `first` and `once` are left
///   as words: they are as often articles or pronouns, except `one` before a
///   unit of time, and `a`/`an` between a preposition and one, which count
///   one unit: `within a day` is `24 hours`, `one hour` is `60 minutes`,
///   while the rates `twice a week` and `5 euros a month` have no `1`);
///   contractions split
///   (`can't` → `can not`), clitics dropped (`Alice's`), other hyphenated and
///   snake_case words split. Over **all free-text fields together** (a name
///   may move from a subject to a body), the texts must agree on
///   - **polarity**: as many explicit negations (`not`, `n't`, `no`, `never`,
///     `none`, `nobody`, `nothing`, `nowhere`, `neither`, `nor`, `without`,
///     `zero`) on both sides, except that an extra one may be balanced by a
///     word of negative meaning that only the other side has: an `un-` or
///     `non-` word, a `not-`/`non-` compound, `missing`, `lack`, `fail`,
///     `instead`, `absent`, `unless`, `stop`, a verb that keeps something
///     from happening (`hold`, `skip`, `avoid`, `decline`, `reject`,
///     `refuse`, `deny`, `block`, `prevent`, `ignore`, `except`), or a
///     state of `not yet` or `no` (`pending`, `waiting`, `awaiting`,
///     `outstanding`, `inactive`, `free`, `broken`, the `out` of `out of
///     stock`) (`hasn't paid` / `unpaid`, `can't attach` / `attaching
///     fails`, `not packed yet` / `still waiting to be packed`, `hold the
///     order` / `don't ship the order`), when the side with more negations has no such word of its own (`not
///     pending` / `waiting` is refused); negative words alone never refuse;
///   - **numbers**, as sets (a paraphrase may repeat or reorder them); a
///     `1` left unmatched may be the other side's word `one`, `once` or
///     `first`, and one unit of time the other's unit with no number or its
///     rate (`one week` / `a week later`, `24 hours` / `a day`, `every two
///     weeks` / `fortnightly`); a
///     time of day with its half of the day (`7 pm`, `7:30am`, `19:30`) is
///     read on the 24-hour clock, and matches the same hour written without
///     it (`7 pm` / `19:00` / `at 7`) but not the other half (`7 am` /
///     `7 pm`);
///   - **names**: every code, quoted string (or the same words unquoted) and
///     name needs a counterpart on the other side (same code; for a name the
///     same word in any case, or an inflection of it). A name is a word
///     capitalised in mid-sentence outside a title-cased line; a capital at
///     the start of a sentence makes a name only when the word is capitalised
///     in mid-sentence somewhere too (so "Record", "Transfer", "Someone" are
///     not names). A word in mixed case, with a capital after its first
///     letter (`iPad`, `eBay`, `YouTube`), is a name wherever it stands: no
///     rule of the language writes it so. A place matches its adjective:
///     two names sharing a stem of at least four letters, after which one
///     ends in an adjective suffix (`-n`, `-an`, `-ian`, `-ean`, `-ese`,
///     `-ish`, `-i`) or nothing and the other in at most two letters
///     (`Italy` / `Italian`, `Canada` / `Canadian`, `China` / `Chinese`);
///     a short list of pairs no such rule makes matches too (`Ireland` /
///     `Irish`, `France` / `French`, `Netherlands` / `Dutch`).
///     Acronyms (`SKU`, `URL`) are weaker: one may be dropped or
///     spelled out (`PO` / `post office`), but acronyms unmatched on both
///     sides (`DHL` / `UPS`) are a different entity;
///   - **questions**: two questions asking for different things (`when`,
///     `where`, `who`, `why`, `how much`/`many`, `how long`, `how often`,
///     `how fast`, plain `how`) differ; `what`/`which` and imperatives match
///     any. A question word asks in a question, at the start of a sentence
///     or after a word that opens an indirect question (`tell me when`,
///     `explain why`); one that joins a clause to a noun asks nothing ("a
///     slot where Elif is free"). A question how to do something (plain
///     `how` followed by `to`, or by a verb and a person, `how do I`, `how
///     can we`, in a sentence that ends with `?`; "how do X and Y compare?"
///     asks about X and Y) differs from a text that asks no question at
///     all: that is a request to do it or a report that it fails, not a request for
///     instructions ("How do I rename a folder?" / "Please let me rename
///     folders.", "The rename button does nothing.");
///   - **periods**: periods of the calendar named by their place (`this
///     week`, `last month`, `the first month`, `next business day`,
///     `yesterday`, `the last 30 days`) may not differ where both texts
///     name one with the same place or length ("this week" / "this month",
///     "the first month" / "the last month", "the first 30 days" / "the
///     last 30 days"; "the next 7 days" is "the coming week"); a period only one text names may be written there
///     another way ("last week" / "the 7 days before today"). Parts of a day
///     and rates (`weekly`) are left to the other rules.
///
///   Then **per field**:
///   - **a near-identical text may not change a content word**: when the two
///     keep at least 70% of their tokens in order (2·LCS/(|a|+|b|)), or differ
///     by a single token, every token left over must be an article,
///     politeness or discourse word (`a`, `the`, `one`, `please`, `just`,
///     `yet`, `still`, ...) or have a left-over counterpart with the same stem
///     (a moved word, an inflection); `each`, `every` and `all` count as one
///     word. This is what catches near-misses with
///     lower-case words: "reserved" / "in stock", "wool" / "cotton socks",
///     "paid" / "unpaid", "Carol paid Bob" / "Alice paid Bob";
///   - **roles may not be exchanged**: a word's role is the nearest marker
///     (`from`, `to`, `into`, `by`, `for`, `with`, `at`, `on`, `of`, ...) at
///     most three tokens before it in its clause, shared by a run or a list of
///     names (`12 September`, `Priya and Omar`). Two names (or two words that
///     both carry a marker) that trade roles are refused ("from Leeds to
///     York" / "from York to Leeds", "merge 702 into 715" / "715 into 702",
///     "in which Aisha interviews Tom" / "Tom interviews Aisha"); so are two
///     names with the same role in one clause in the opposite order ("Alice
///     refunded Bob" / "Bob refunded Alice", "to Acme ... to Umbrella") when
///     the texts keep at least half their tokens in order. Items of a list
///     (`DHL or UPS`, `sam@... and kim@...`) may come in any order. With the
///     same share kept in order, a marker found once in each text whose
///     object (the words and names up to four tokens after it, before a
///     comma or another marker) moves to other words, each
///     found in the other text too, has exchanged them, lower-case or not
///     ("put the lamp after the mirror" / "put the mirror after the lamp",
///     "bill it to marketing instead of sales" / "to sales instead of
///     marketing"); a list in the object is read whole, so its items may
///     come in any order. When the texts keep at least 70% of their tokens
///     in order, two content words found once in each that trade places,
///     each standing where the other stood (the word just before, or just
///     after, is exchanged and differs), are refused too: "raising prices
///     cut churn and grew sales" / "raising prices cut sales and grew
///     churn"; not when the exchanged neighbour is `and`, `or` or a comma
///     (a list in another order). Two such words with the same neighbour on
///     one side in both texts fill one slot (`the backup job` / `the cleanup
///     job`): they are refused when more than list words stand between
///     them, the same in both ("run the backup job before the cleanup job"
///     / "the cleanup job before the backup job"; "the red car and the blue
///     car" is a list). And two spans that trade places around the same
///     words, the rest of the texts identical (`P X M Y S` / `P Y M X S`),
///     are refused when `M` holds more than list words and the shared
///     frame: "does the weekly report include the monthly summary" / "does
///     the monthly summary include the weekly report".
///
/// The guard errs on the side of a miss: a real paraphrase that changes one
/// word of a short request ("Cancel my plan" / "Stop my plan"), that adds a
/// name or a number ("every weekday" / "Monday to Friday", "twice" /
/// "a duplicate charge") or that negates where the other uses a verb of negative
/// meaning it does not know (`cancel` / `won't take place`) is computed again. What it
/// cannot see: a different request in different words with the same names,
/// numbers and polarity ("Add 25 units of X to stock" / "Reserve 25 units of
/// X for an order"), and roles given by word order alone when the texts are
/// reworded.
pub fn guard(stored: &Value, new: &Value, exact_fields: &[String]) -> Result<(), GuardFailure> {
    let mut texts = Vec::new();
    compare(stored, new, "", exact_fields, &mut texts)?;
    if texts.iter().all(|t| t.a == t.b) {
        return Ok(());
    }
    // The rules below read English only (`language`): text in another
    // language passes only as the same text.
    for t in texts.iter().filter(|t| t.a != t.b) {
        let english = is_english(t.a) && is_english(t.b);
        if !english && !same_text(t.a, t.b) {
            return fail(
                &t.path,
                "not English, and not the same text: the rules on free text read English only",
            );
        }
    }
    // Each text tokenised once; a field equal on both sides once for both.
    let sides: Vec<(Vec<Tok>, Vec<Tok>)> = texts
        .iter()
        .map(|t| {
            let a = tokens(t.a);
            let b = if t.a == t.b { a.clone() } else { tokens(t.b) };
            (a, b)
        })
        .collect();
    // The whole input (every free-text field, so that a name may move from
    // the subject to the body): polarity, numbers, names, questions.
    let mut differing = texts.iter().zip(&sides).filter(|(t, _)| t.a != t.b);
    let path = match (differing.next(), differing.next()) {
        (Some((t, _)), None) => t.path.clone(),
        _ => String::new(),
    };
    let join = |stored: bool| {
        let mut all: Vec<Tok> = Vec::new();
        for (a, b) in &sides {
            let base = all.last().map_or(0, |x| x.sentence + 1);
            all.extend((if stored { a } else { b }).iter().cloned().map(|mut x| {
                x.sentence += base;
                x
            }));
        }
        all
    };
    compare_marks(&join(true), &join(false)).or_else(|r| fail(&path, r))?;
    // Per field: a near-identical rewording must not change a content word,
    // nor exchange the roles of two names.
    for (t, (a, b)) in texts.iter().zip(&sides).filter(|(t, _)| t.a != t.b) {
        local_edit(a, b)
            .and_then(|share| swapped_roles(a, b, share).map(|()| share))
            .and_then(|share| moved_objects(a, b, share).map(|()| share))
            .and_then(|share| exchanged_contexts(a, b, share))
            .and_then(|()| swapped_spans(a, b))
            .or_else(|r| fail(&t.path, r))?;
    }
    Ok(())
}

/// A pair of free-text strings at the same path of both inputs.
struct FreeText<'a> {
    path: String,
    a: &'a str,
    b: &'a str,
}

fn fail(path: &str, reason: impl Into<String>) -> Result<(), GuardFailure> {
    Err(GuardFailure {
        path: if path.is_empty() {
            "$".into()
        } else {
            path.to_owned()
        },
        reason: reason.into(),
    })
}

fn compare<'a>(
    a: &'a Value,
    b: &'a Value,
    path: &str,
    exact: &[String],
    texts: &mut Vec<FreeText<'a>>,
) -> Result<(), GuardFailure> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            if let Some(k) = x
                .keys()
                .chain(y.keys())
                .find(|k| !(x.contains_key(*k) && y.contains_key(*k)))
            {
                return fail(&join(path, k), "present in one input only");
            }
            for (k, va) in x {
                if let Some(vb) = y.get(k) {
                    compare(va, vb, &join(path, k), exact, texts)?;
                }
            }
            Ok(())
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return fail(path, format!("{} items vs {}", x.len(), y.len()));
            }
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                compare(va, vb, &format!("{path}[{i}]"), exact, texts)?;
            }
            Ok(())
        }
        (Value::String(x), Value::String(y)) => {
            let leaf = path.rsplit('.').next().unwrap_or(path);
            let listed = exact.iter().any(|e| e == path || e == leaf);
            let free =
                !listed && x.contains(char::is_whitespace) && y.contains(char::is_whitespace);
            if free {
                texts.push(FreeText {
                    path: if path.is_empty() {
                        "$".into()
                    } else {
                        path.to_owned()
                    },
                    a: x,
                    b: y,
                });
                Ok(())
            } else if x == y {
                Ok(())
            } else {
                fail(path, "exact values differ")
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            if x == y || x.as_f64() == y.as_f64() {
                Ok(())
            } else {
                fail(path, format!("{x} vs {y}"))
            }
        }
        _ if a == b => Ok(()),
        _ => fail(path, format!("{a} vs {b}")),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// What the tests of the guard's rules check with: a free-text input and the
/// guard's verdict on two of them.
#[cfg(test)]
pub(super) mod testing {
    use serde_json::{Value, json};

    use super::guard;

    fn t(s: &str) -> Value {
        json!({"text": s})
    }

    /// The first word of the guard's reason, `None` when it accepts.
    pub(in crate::semantic) fn why(a: &str, b: &str) -> Option<String> {
        guard(&t(a), &t(b), &[])
            .err()
            .map(|e| e.reason.split([' ', ':']).next().unwrap_or("").to_owned())
    }

    /// Asserts that the guard accepts the texts `a` and `b`.
    pub(in crate::semantic) fn same(a: &str, b: &str) {
        let e = guard(&t(a), &t(b), &[]);
        assert!(e.is_ok(), "{a:?} / {b:?} refused: {e:?}");
    }

    /// Checks the pairs written for a rule (`testdata/*.tsv`: kind, text,
    /// text): those of kind `refused` must be refused for `reason`, those of
    /// kind `P` accepted. Returns how many of each it read.
    pub(in crate::semantic) fn written_pairs(
        tsv: &str,
        refused: &str,
        reason: &str,
    ) -> (usize, usize) {
        let (mut refusals, mut accepts) = (0, 0);
        for line in tsv.lines() {
            let mut cols = line.split('\t');
            let (Some(kind), Some(a), Some(b)) = (cols.next(), cols.next(), cols.next()) else {
                continue;
            };
            if kind == refused {
                refusals += 1;
                assert_eq!(why(a, b), Some(reason.into()), "{a} / {b}");
            } else if kind == "P" {
                accepts += 1;
                same(a, b);
            }
        }
        (refusals, accepts)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{same, why};
    use super::*;
    use serde_json::json;

    fn ok(a: Value, b: Value) -> bool {
        guard(&a, &b, &[]).is_ok()
    }

    #[test]
    fn the_runner_test_pairs_keep_their_verdicts() {
        // The pairs of runner-image/tests/caches.rs (semantic cache on the real model).
        let stored = "The app crashes every time I open the settings page.";
        same(
            stored,
            "The app crashes each time I open the settings page.",
        );
        assert_eq!(
            why(
                stored,
                "The app never crashes when I open the settings page."
            ),
            Some("negation".into())
        );
    }

    #[test]
    fn guard_compares_structured_fields_exactly() {
        assert!(!ok(json!({"qty": 3}), json!({"qty": 30})));
        assert!(ok(json!({"qty": 3}), json!({"qty": 3.0})));
        assert!(!ok(json!({"status": "open"}), json!({"status": "closed"})));
        assert!(!ok(json!({"a": true}), json!({"a": false})));
        assert!(!ok(json!({"a": 1}), json!({"a": 1, "b": 2})));
        assert!(!ok(json!({"a": [1, 2]}), json!({"a": [1]})));
        let exact = vec!["note".to_owned()];
        let (a, b) = (
            json!({"note": "leave the parcel with the neighbour"}),
            json!({"note": "the neighbour can take the parcel in"}),
        );
        assert!(guard(&a, &b, &[]).is_ok());
        let e = guard(&a, &b, &exact).unwrap_err();
        assert_eq!(e.path, "note");
    }
}
