//! The guard's near-miss rule, per free-text field: a near-identical text
//! (most tokens kept in order, or a single token changed) may not change a
//! content word; articles, politeness and discourse words may come and go.

use super::tokens::{Kind, Tok, stem};

/// Words that may come and go in a light rewording: articles (`one` for
/// `a`), politeness and discourse adverbs.
pub(super) const IGNORABLE: [&str; 14] = [
    "a",
    "an",
    "one",
    "the",
    "please",
    "kindly",
    "just",
    "also",
    "really",
    "actually",
    "yet",
    "still",
    "already",
    "currently",
];

/// The near-miss rule: when one text keeps at least [`LOCAL_EDIT_SHARE`] of
/// the other's tokens (in order), every token it drops or adds must be an
/// article-like word or reappear elsewhere in the other text (a moved word, an
/// inflection); a changed content word ("reserved" / "in stock", "wool" /
/// "cotton", "paid" / "unpaid") is a different request.
pub(super) fn local_edit(a: &[Tok], b: &[Tok]) -> Result<f64, String> {
    let ka: Vec<&str> = a
        .iter()
        .filter(|t| t.kind != Kind::Comma)
        .map(|t| same_word(&t.norm))
        .collect();
    let kb: Vec<&str> = b
        .iter()
        .filter(|t| t.kind != Kind::Comma)
        .map(|t| same_word(&t.norm))
        .collect();
    let (n, m) = (ka.len(), kb.len());
    if n == 0 || m == 0 {
        return Ok(0.0);
    }
    // Longest common subsequence, with the matched tokens of each side.
    let mut dp = vec![0u16; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            dp[at(i, j)] = if ka[i] == kb[j] {
                dp[at(i + 1, j + 1)] + 1
            } else {
                dp[at(i + 1, j)].max(dp[at(i, j + 1)])
            };
        }
    }
    let common = usize::from(dp[at(0, 0)]);
    let share = (2 * common) as f64 / ((n + m) as f64);
    // A single word changed, added or dropped is a light edit however short the text.
    let single = common >= 2 && n - common <= 1 && m - common <= 1;
    if share < LOCAL_EDIT_SHARE && !single {
        return Ok(share);
    }
    let (mut ma, mut mb) = (vec![false; n], vec![false; m]);
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if ka[i] == kb[j] {
            (ma[i], mb[j]) = (true, true);
            (i, j) = (i + 1, j + 1);
        } else if dp[at(i + 1, j)] >= dp[at(i, j + 1)] {
            i += 1;
        } else {
            j += 1;
        }
    }
    let left = |k: &[&str], matched: &[bool]| -> Vec<String> {
        k.iter()
            .zip(matched)
            .filter(|(w, m)| !**m && !IGNORABLE.contains(*w))
            .map(|(w, _)| (*w).to_owned())
            .collect()
    };
    let (la, lb) = (left(&ka, &ma), left(&kb, &mb));
    // A word left over on one side is fine when the other side has one left
    // over with the same stem: a moved word or an inflection.
    let changed = |mine: &[String], other: &[String]| -> Vec<String> {
        mine.iter()
            .filter(|w| !other.iter().any(|o| stem(o) == stem(w)))
            .cloned()
            .collect()
    };
    let (ca, cb) = (changed(&la, &lb), changed(&lb, &la));
    if ca.is_empty() && cb.is_empty() {
        return Ok(share);
    }
    Err(format!(
        "wording: a near-identical text changes {ca:?} to {cb:?}"
    ))
}

/// One spelling for function words that say the same: the universal
/// quantifiers (`each`, `every`, `all`).
fn same_word(w: &str) -> &str {
    match w {
        "each" | "all" => "every",
        w => w,
    }
}

/// Share of tokens two texts keep in order (2·LCS / (|a| + |b|)) from which
/// the second is taken for a light edit of the first.
pub(super) const LOCAL_EDIT_SHARE: f64 = 0.7;

#[cfg(test)]
mod tests {
    use crate::semantic::guard::testing::{same, why};

    #[test]
    fn a_near_identical_text_may_not_change_a_content_word() {
        // One word replaced, added or dropped in otherwise identical wording.
        assert_eq!(
            why(
                "Which invoices were emailed last week?",
                "Which invoices were printed last week?"
            ),
            Some("wording".into())
        );
        assert_eq!(
            why(
                "Show the price of the oak desk",
                "Show the price of the pine desk"
            ),
            Some("wording".into())
        );
        assert_eq!(
            why(
                "List the invoices that are paid",
                "List the invoices that are unpaid"
            ),
            Some("wording".into())
        );
        assert_eq!(
            why("Carol paid Bob", "Alice paid Bob"),
            Some("wording".into())
        );
        assert_eq!(
            why(
                "Archive the report about the outage",
                "Archive the report about the audit"
            ),
            Some("wording".into())
        );
        // Articles, politeness, discourse adverbs, inflections and moved words are not a change.
        same("Please archive the old report", "archive old report");
        same(
            "The printer jams every time I print on both sides",
            "The printer jams each time I print on both sides",
        );
        same("the order did not arrive", "the order didn't arrive yet");
        same(
            "Is the invoice for Acme ready",
            "Are the invoices for Acme ready",
        );
        // A real rewording keeps less than 70% of the tokens and is left to the other rules.
        same(
            "Summarize the post about Kubernetes",
            "Write a summary of the post about Kubernetes",
        );
    }
}
