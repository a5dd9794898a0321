//! The guard's rules on roles, per free-text field: two names (or marked
//! words) may not exchange roles (`from X to Y` / `from Y to X`, `X paid Y`
//! / `Y paid X`), a marker's object may not move to other words, two words
//! of a near-identical text may not trade places, nor may two spans of an
//! otherwise identical text; items of a list come in any order.

use super::tokens::{Kind, Neg, ROLE_MARKERS, Tok, is_entity, stem};
use super::wording::{IGNORABLE, LOCAL_EDIT_SHARE};

/// Words that join the items of a list, whose order is free (`DHL or UPS`).
const COORDINATORS: [&str; 6] = ["and", "or", "nor", "plus", "both", "either"];

/// Share of tokens kept in order from which two names in the opposite order
/// (and no marker telling their roles apart) count as swapped; below it the
/// text is reworded enough for the order of clauses to change.
const FLIP_SHARE: f64 = 0.5;

/// The word marking the role of the token at `i`: the nearest role marker
/// at most three tokens before it in its clause; a run of adjacent names
/// (`12 September`, `order 7730`) or a list of them (`Priya and Omar`)
/// shares the role of its first token.
fn role(toks: &[Tok], i: usize) -> Option<&str> {
    let s = toks[i].sentence;
    let mut start = i;
    // Back over the run of names, and over the items of a list (`X, Y and Z`).
    while start > 0 && toks[start - 1].sentence == s {
        let prev = &toks[start - 1];
        let joins = prev.kind == Kind::Comma
            || (prev.kind == Kind::Word && COORDINATORS.contains(&prev.norm.as_str()));
        if is_entity(prev) {
            start -= 1;
        } else if joins
            && start >= 2
            && toks[start - 2].sentence == s
            && is_entity(&toks[start - 2])
        {
            start -= 2;
        } else {
            break;
        }
    }
    for t in toks[..start].iter().rev().take(3) {
        if t.sentence != s || t.kind == Kind::Comma || is_entity(t) {
            return None;
        }
        if t.kind == Kind::Word && ROLE_MARKERS.contains(&t.norm.as_str()) {
            return Some(t.norm.as_str());
        }
    }
    None
}

/// A word or name mentioned as often in both texts.
struct Shared<'a> {
    key: &'a str,
    /// Its first mention in each text.
    ia: usize,
    ib: usize,
    /// A name (not a lower-case word) in either text.
    named: bool,
    /// The marker of its role at its first mention in each text.
    role_a: Option<&'a str>,
    role_b: Option<&'a str>,
}

/// The comparison key of each token that may hold a role (`None` for the others).
fn role_keys(x: &[Tok]) -> Vec<Option<&str>> {
    x.iter()
        .map(|t| {
            if is_entity(t) {
                Some(t.norm.as_str())
            } else if t.kind == Kind::Word
                && t.neg == Neg::None
                && !IGNORABLE.contains(&t.norm.as_str())
                && !ROLE_MARKERS.contains(&t.norm.as_str())
                && !COORDINATORS.contains(&t.norm.as_str())
            {
                Some(stem(&t.norm))
            } else {
                None
            }
        })
        .collect()
}

/// Two names that exchange roles: `from X to Y` / `from Y to X`, `X into Y`
/// / `Y into X`, or, with the same marker or none, `X <verb> Y` / `Y <verb> X`
/// in one clause. Items of a list (`X or Y`, `X, Y and Z`) may come in any
/// order. Names are compared at their first mention and must be mentioned as
/// often in both texts; lower-case words only count when a marker's role moves.
pub(super) fn swapped_roles(a: &[Tok], b: &[Tok], share: f64) -> Result<(), String> {
    let (ka, kb) = (role_keys(a), role_keys(b));
    let mut shared: Vec<Shared> = Vec::new();
    for (i, k) in ka.iter().enumerate() {
        let Some(k) = *k else { continue };
        if shared.iter().any(|s| s.key == k) {
            continue;
        }
        let Some(j) = kb.iter().position(|u| *u == Some(k)) else {
            continue;
        };
        let mentions = |keys: &[Option<&str>]| keys.iter().filter(|u| **u == Some(k)).count();
        if mentions(&ka) != mentions(&kb) {
            continue;
        }
        let named = (0..a.len()).any(|m| ka[m] == Some(k) && is_entity(&a[m]))
            || (0..b.len()).any(|m| kb[m] == Some(k) && is_entity(&b[m]));
        shared.push(Shared {
            key: k,
            ia: i,
            ib: j,
            named,
            role_a: role(a, i),
            role_b: role(b, j),
        });
    }
    let coordinated = |x: &[Tok], i: usize, j: usize| {
        let (lo, hi) = (i.min(j), i.max(j));
        x[lo + 1..hi].iter().all(|t| {
            t.kind == Kind::Comma
                || (t.kind == Kind::Word && COORDINATORS.contains(&t.norm.as_str()))
                || is_entity(t)
        })
    };
    for (p, x) in shared.iter().enumerate() {
        for y in &shared[p + 1..] {
            let (rax, ray, rbx, rby) = (x.role_a, y.role_a, x.role_b, y.role_b);
            let exchanged = rax != ray && rax == rby && ray == rbx;
            let marked = exchanged
                && ((x.named && y.named && (rax.is_some() || ray.is_some()))
                    || (rax.is_some() && ray.is_some()));
            // Two names with one role in one clause of each text, in opposite orders.
            let flipped = share >= FLIP_SHARE
                && x.named
                && y.named
                && rax == ray
                && rbx == rby
                && rax == rbx
                && a[x.ia].sentence == a[y.ia].sentence
                && b[x.ib].sentence == b[y.ib].sentence
                && (x.ia < y.ia) != (x.ib < y.ib)
                && !coordinated(a, x.ia, y.ia)
                && !coordinated(b, x.ib, y.ib);
            if marked || flipped {
                return Err(format!("roles swapped ({} and {})", x.key, y.key));
            }
        }
    }
    Ok(())
}

/// Tokens after a role marker that make its object (`before the design review`).
const OBJECT_SPAN: usize = 4;

/// The object of the marker at `i`: the keys of the content words and names
/// up to [`OBJECT_SPAN`] tokens after it, before a comma, the end of the
/// sentence or another marker. A list (`with Priya and Omar`, `to X, Y or
/// Z`) is read whole, to the end of its clause: its items come in any order.
fn marker_object<'a>(x: &[Tok], keys: &[Option<&'a str>], i: usize) -> Vec<&'a str> {
    let end = x[i + 1..]
        .iter()
        .position(|t| {
            t.sentence != x[i].sentence
                || (t.kind == Kind::Word && ROLE_MARKERS.contains(&t.norm.as_str()))
        })
        .map_or(x.len(), |p| i + 1 + p);
    let clause = &x[i + 1..end];
    let list = clause
        .iter()
        .any(|t| t.kind == Kind::Word && COORDINATORS.contains(&t.norm.as_str()));
    let span = if list {
        clause.len()
    } else {
        clause
            .iter()
            .take(OBJECT_SPAN)
            .position(|t| t.kind == Kind::Comma)
            .unwrap_or(OBJECT_SPAN.min(clause.len()))
    };
    let mut object = Vec::new();
    for k in keys[i + 1..i + 1 + span].iter().flatten() {
        if !object.contains(k) {
            object.push(*k);
        }
    }
    object
}

/// A marker whose object moved to other words of the same text: `move X
/// before Y` / `move Y before X`, `sort by price, then name` / `sort by name,
/// then price`. The marker must come once in each text, its two objects must
/// share no word and each must be found in the other text, and the texts
/// must keep at least [`FLIP_SHARE`] of their tokens in order (a reordering,
/// not a rewording). Lower-case words count as much as names here.
pub(super) fn moved_objects(a: &[Tok], b: &[Tok], share: f64) -> Result<(), String> {
    if share < FLIP_SHARE {
        return Ok(());
    }
    let (ka, kb) = (role_keys(a), role_keys(b));
    let markers = |x: &[Tok], m: &str| {
        x.iter()
            .enumerate()
            .filter(|(_, t)| t.kind == Kind::Word && t.norm == m)
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    for m in ROLE_MARKERS {
        let (pa, pb) = (markers(a, m), markers(b, m));
        let ([ia], [ib]) = (pa.as_slice(), pb.as_slice()) else {
            continue;
        };
        let (oa, ob) = (marker_object(a, &ka, *ia), marker_object(b, &kb, *ib));
        let found = |o: &[&str], keys: &[Option<&str>]| {
            !o.is_empty() && o.iter().all(|w| keys.contains(&Some(*w)))
        };
        if found(&oa, &kb) && found(&ob, &ka) && !oa.iter().any(|w| ob.contains(w)) {
            return Err(format!(
                "roles swapped (the object of `{m}` moves from {oa:?} to {ob:?})"
            ));
        }
    }
    Ok(())
}

/// Two words that trade places in a near-identical text (at least
/// [`LOCAL_EDIT_SHARE`] of the tokens kept in order): each is found once in
/// both texts and stands, in one, where the other stood in the other (the
/// word before it, or after it, is exchanged and differs between the two):
/// "raising prices cut churn and grew sales" / "raising prices cut sales
/// and grew churn". Items of a list (after `and`, `or` or a comma on both
/// sides, or joined only by such words) may come in any order.
pub(super) fn exchanged_contexts(a: &[Tok], b: &[Tok], share: f64) -> Result<(), String> {
    if share < LOCAL_EDIT_SHARE {
        return Ok(());
    }
    let (ka, kb) = (role_keys(a), role_keys(b));
    let near = |x: &[Tok], i: usize, after: bool| -> Option<String> {
        let j = if after { i + 1 } else { i.checked_sub(1)? };
        let t = x.get(j).filter(|t| t.sentence == x[i].sentence)?;
        Some(t.norm.clone())
    };
    let joins = |w: &Option<String>| {
        w.as_deref()
            .is_some_and(|w| w == "," || COORDINATORS.contains(&w))
    };
    let coordinated = |x: &[Tok], i: usize, j: usize| {
        let (lo, hi) = (i.min(j), i.max(j));
        x[lo + 1..hi].iter().all(|t| {
            t.kind == Kind::Comma
                || (t.kind == Kind::Word && COORDINATORS.contains(&t.norm.as_str()))
        })
    };
    let once = |keys: &[Option<&str>], k: &str| keys.iter().filter(|u| **u == Some(k)).count() == 1;
    let mut words: Vec<(usize, usize)> = Vec::new();
    for (i, k) in ka.iter().enumerate() {
        let Some(k) = *k else { continue };
        if once(&ka, k) && once(&kb, k) {
            let j = kb.iter().position(|u| *u == Some(k)).expect("found once");
            words.push((i, j));
        }
    }
    for (p, &(xa, xb)) in words.iter().enumerate() {
        for &(ya, yb) in &words[p + 1..] {
            if (xa < ya) == (xb < yb) || coordinated(a, xa, ya) || coordinated(b, xb, yb) {
                continue;
            }
            let mut slot = Vec::new();
            for after in [false, true] {
                let (cxa, cya) = (near(a, xa, after), near(a, ya, after));
                let (cxb, cyb) = (near(b, xb, after), near(b, yb, after));
                if cxa.is_some()
                    && cya.is_some()
                    && cxa != cya
                    && cxa == cyb
                    && cya == cxb
                    && ![&cxa, &cya].iter().any(|c| joins(c))
                {
                    return Err(format!(
                        "roles swapped ({} and {} trade places)",
                        a[xa].norm, a[ya].norm
                    ));
                }
                // The same word on this side of both, in both texts: the two
                // fill one slot (`the backup job` / `the cleanup job`).
                if let Some(c) = cxa
                    && [&cya, &cxb, &cyb]
                        .iter()
                        .all(|o| o.as_deref() == Some(c.as_str()))
                    && !joins(&Some(c.clone()))
                {
                    slot.push(c);
                }
            }
            // Fillers of one slot trade roles when more than a list's words
            // stand between them, the same in both texts (`run before`,
            // `cheaper than`, `first and ... second`); `the red car and the
            // blue car` is a list.
            if !slot.is_empty() {
                let between = between_words(a, &ka, xa, ya, &slot);
                if !between.is_empty() && between == between_words(b, &kb, xb, yb, &slot) {
                    return Err(format!(
                        "roles swapped ({} and {} trade places around {})",
                        a[xa].norm,
                        a[ya].norm,
                        between.join(" ")
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Two spans of a text that trade places around the same words: `a` is
/// `P X M Y S` and `b` is `P Y M X S` (`Does the weekly report include the
/// monthly summary?` / `Does the monthly summary include the weekly
/// report?`). The spans in between (`M`) must hold a word that gives the two
/// roles (a verb, a marker, a comparative): only list words (`and`, `or`, a
/// comma, an article, and words of the shared frame `P`/`S`, as the head of
/// `the red car and the blue car`) make a list, whose items come in any
/// order.
pub(super) fn swapped_spans(a: &[Tok], b: &[Tok]) -> Result<(), String> {
    if a.len() != b.len() {
        return Ok(());
    }
    let same = |x: &[Tok], y: &[Tok]| x.iter().zip(y).all(|(s, t)| s.norm == t.norm);
    let n = a.len();
    let p = (0..n).take_while(|&i| a[i].norm == b[i].norm).count();
    if p == n {
        return Ok(());
    }
    let s = (0..n - p)
        .take_while(|&k| a[n - 1 - k].norm == b[n - 1 - k].norm)
        .count();
    let (ma, mb) = (&a[p..n - s], &b[p..n - s]);
    let frame: Vec<&str> = a[..p]
        .iter()
        .chain(&a[n - s..])
        .map(|t| t.norm.as_str())
        .collect();
    let m = ma.len();
    // A reordering keeps the same words: most pairs stop here.
    if m < 3 || sorted_words(ma) != sorted_words(mb) {
        return Ok(());
    }
    // `X` opens `a`'s middle and closes `b`'s; `Y` the other way round.
    let xs: Vec<usize> = (1..m)
        .filter(|&lx| same(&ma[..lx], &mb[m - lx..]))
        .collect();
    let ys: Vec<usize> = (1..m)
        .filter(|&ly| same(&ma[m - ly..], &mb[..ly]))
        .collect();
    for &lx in &xs {
        for &ly in ys.iter().filter(|&&ly| lx + ly < m) {
            let lm = m - lx - ly;
            let (x, mid, y) = (&ma[..lx], &ma[lx..lx + lm], &ma[lx + lm..]);
            if !same(&mb[ly..ly + lm], mid) {
                continue;
            }
            let joins = |t: &Tok| {
                t.kind == Kind::Comma
                    || (t.kind == Kind::Word && COORDINATORS.contains(&t.norm.as_str()))
            };
            let listed = mid.iter().any(joins);
            let roles: Vec<&str> = mid
                .iter()
                .filter(|t| {
                    let list_word =
                        joins(t) || (t.kind == Kind::Word && IGNORABLE.contains(&t.norm.as_str()));
                    !(list_word || (listed && frame.contains(&t.norm.as_str())))
                })
                .map(|t| t.norm.as_str())
                .collect();
            if !roles.is_empty() {
                return Err(format!(
                    "roles swapped (`{}` and `{}` trade places around `{}`)",
                    words(x),
                    words(y),
                    roles.join(" ")
                ));
            }
        }
    }
    Ok(())
}

/// The words of `x`, sorted.
fn sorted_words(x: &[Tok]) -> Vec<&str> {
    let mut w: Vec<&str> = x.iter().map(|t| t.norm.as_str()).collect();
    w.sort_unstable();
    w
}

/// The words of `span`, as written in a reason.
fn words(span: &[Tok]) -> String {
    span.iter()
        .map(|t| t.norm.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The content words and role markers between the tokens `i` and `j` of
/// `x`, sorted, without the words of `slot` (the context the two share).
fn between_words(
    x: &[Tok],
    keys: &[Option<&str>],
    i: usize,
    j: usize,
    slot: &[String],
) -> Vec<String> {
    let (lo, hi) = (i.min(j), i.max(j));
    let mut words: Vec<String> = (lo + 1..hi)
        .filter(|&t| !slot.contains(&x[t].norm))
        .filter_map(|t| match keys[t] {
            Some(k) => Some(k.to_owned()),
            None if x[t].kind == Kind::Word && ROLE_MARKERS.contains(&x[t].norm.as_str()) => {
                Some(x[t].norm.clone())
            }
            None => None,
        })
        .collect();
    words.sort_unstable();
    words
}

#[cfg(test)]
mod tests {
    use crate::semantic::guard::testing::{same, why, written_pairs};

    #[test]
    fn swapped_roles_are_refused() {
        let swapped = Some("roles".into());
        assert_eq!(
            why(
                "Move the team from Oslo to Bergen",
                "Move the team from Bergen to Oslo"
            ),
            swapped
        );
        assert_eq!(
            why(
                "Merge ticket 41 into ticket 52",
                "Merge ticket 52 into ticket 41"
            ),
            swapped
        );
        assert_eq!(
            why(
                "Priya thanked Omar for the review",
                "Omar thanked Priya for the review"
            ),
            swapped
        );
        assert_eq!(
            why(
                "Point example.org/old at example.org/new",
                "Point example.org/new at example.org/old"
            ),
            swapped
        );
        assert_eq!(
            why(
                "Invoice the hours to Initech and send a copy to Hooli",
                "Invoice the hours to Hooli and send a copy to Initech"
            ),
            swapped
        );
        assert_eq!(
            why(
                "Move the boxes from the cellar to the attic",
                "Move the boxes from the attic to the cellar"
            ),
            swapped
        );
        // Items of a list come in any order; a passive keeps the roles.
        same(
            "Book a call with Priya and Omar",
            "Book a call with Omar and Priya",
        );
        same(
            "Is Hooli or Initech cheaper for us?",
            "Which is cheaper for us: Initech or Hooli?",
        );
        same("Omar was paid by Priya", "Priya paid Omar");
    }

    #[test]
    fn a_marker_whose_object_moves_to_other_words_is_refused() {
        let swapped = Some("roles".into());
        assert_eq!(
            why(
                "Put the lamp after the mirror in the hallway",
                "Put the mirror after the lamp in the hallway"
            ),
            swapped
        );
        assert_eq!(
            why(
                "Bill the hours to marketing instead of sales",
                "Bill the hours to sales instead of marketing"
            ),
            swapped
        );
        assert_eq!(
            why(
                "Schedule the product demo after the weekly standup",
                "Schedule the weekly standup after the product demo"
            ),
            swapped
        );
        // The same object in another place, or a reworded text, is no exchange.
        same(
            "Put the lamp after the mirror",
            "After the mirror, put the lamp",
        );
        // A list in the object is read whole.
        same(
            "Book a table for Priya and Omar at noon",
            "At noon, book a table for Omar and Priya",
        );
    }

    #[test]
    fn words_that_trade_places_are_refused() {
        assert_eq!(
            why(
                "Raising prices cut churn by 2% and grew sales by 5%.",
                "Raising prices cut sales by 2% and grew churn by 5%."
            ),
            Some("roles".into())
        );
        // A list in another order is the same list.
        same(
            "Order pens, paper and staples for the office",
            "Order paper, pens and staples for the office",
        );
        // A moved word keeps its place among the others.
        same(
            "Tomorrow, cancel the standup",
            "Cancel the standup tomorrow",
        );
    }

    #[test]
    fn fillers_of_one_slot_that_trade_places_are_refused() {
        // `the X job` / `the Y job`: the same word beside both, so neither
        // context moves; what stands between them gives the roles.
        for (a, b) in [
            (
                "Should the backup job run before the cleanup job?",
                "Should the cleanup job run before the backup job?",
            ),
            (
                "Is the blue plan cheaper than the green plan?",
                "Is the green plan cheaper than the blue plan?",
            ),
            (
                "Archive the closed tickets and keep the open tickets.",
                "Archive the open tickets and keep the closed tickets.",
            ),
            (
                "Ship the small box first and the large box second.",
                "Ship the large box first and the small box second.",
            ),
        ] {
            assert_eq!(why(a, b), Some("roles".into()), "{a} / {b}");
        }
        // Items of a list in another order, and clauses in another order.
        same(
            "Send the red car and the blue car to the depot",
            "Send the blue car and the red car to the depot",
        );
        same(
            "Archive the closed tickets and keep the open tickets.",
            "Keep the open tickets and archive the closed tickets.",
        );
    }

    #[test]
    fn spans_that_trade_places_are_refused() {
        // Whole phrases move, each with its own words around it.
        for (a, b) in [
            (
                "Does the weekly report include the monthly summary?",
                "Does the monthly summary include the weekly report?",
            ),
            (
                "Can a viewer invite an editor to the workspace?",
                "Can an editor invite a viewer to the workspace?",
            ),
            (
                "Will the spring sale end before the summer launch starts?",
                "Will the summer launch end before the spring sale starts?",
            ),
            (
                "Did the support agent escalate to the on-call engineer?",
                "Did the on-call engineer escalate to the support agent?",
            ),
        ] {
            assert_eq!(why(a, b), Some("roles".into()), "{a} / {b}");
        }
        // A list of phrases in another order is the same list.
        same(
            "Invite the design team and the sales lead to the demo",
            "Invite the sales lead and the design team to the demo",
        );
        same(
            "Refund the shipping fee, the gift wrap and the item",
            "Refund the gift wrap, the shipping fee and the item",
        );
    }

    #[test]
    fn the_written_swaps_are_refused_and_their_reorderings_accepted() {
        // `testdata/swaps.tsv`: 40 swaps (15 refused before the slot and span
        // rules) and 7 reorderings of one meaning.
        assert_eq!(
            written_pairs(include_str!("testdata/swaps.tsv"), "S", "roles"),
            (40, 7)
        );
    }
}
