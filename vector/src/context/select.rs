//! Choosing the context of a call: [`ContextIndex::select`] takes the chunks
//! most relevant to the call that fit a token budget, in document order, and
//! compresses the rest ([`Compression`]: first sentences, or a
//! [`Summarizer`]'s summary) into what is left of it ([`Selection`]).

use std::collections::HashSet;

use futures::future::BoxFuture;

use super::chunk::{heading, sentences, words};
use super::tokens::TokenCounter;
use super::{ContextError, ContextIndex, VERSION_MARK, redis_err, unix_now};
use crate::index::Filter;

/// At most this many chunks of a feature are candidates of one selection.
pub const MAX_CANDIDATES: usize = 2000;
/// At most this many tokens of remaining chunks are given to a [`Summarizer`].
pub const SUMMARY_INPUT_TOKENS: usize = 4000;
/// The mark that ends a shortened text.
const ELLIPSIS: &str = "…";

/// Why a summary could not be made.
#[derive(Debug, thiserror::Error)]
#[error("summary failed: {0}")]
pub struct SummarizeError(pub String);

/// Summarises texts with a model (the prototyping LLM, typically).
pub trait Summarizer: Send + Sync {
    /// A summary of `texts` (most relevant first) in at most about `max_tokens`
    /// tokens. A longer answer is shortened to fit.
    fn summarize<'a>(
        &'a self,
        texts: &'a [String],
        max_tokens: usize,
    ) -> BoxFuture<'a, Result<String, SummarizeError>>;
}

/// How chunks that do not fit in full are represented.
pub enum Compression {
    /// The first sentence of each remaining chunk, most relevant first, each
    /// ending with `…`, as many as fit the reserve.
    Truncate,
    /// A model's summary of the remaining chunks; on failure, [`Self::Truncate`].
    Summarize(Box<dyn Summarizer>),
}

impl std::fmt::Debug for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Truncate => "Truncate",
            Self::Summarize(_) => "Summarize",
        })
    }
}

/// A chunk as stored and selected.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectedChunk {
    /// The document's name.
    pub doc: String,
    /// Position of the document in the last sync's list.
    pub doc_index: usize,
    /// The heading path.
    pub heading_path: Vec<String>,
    /// Position in the document.
    pub ordinal: usize,
    /// The text.
    pub text: String,
    /// Tokens, by the index's counter.
    pub tokens: usize,
    /// Cosine distance to the query.
    pub distance: f32,
}

impl SelectedChunk {
    /// `doc#ordinal`, for notes and traces.
    pub fn label(&self) -> String {
        format!("{}#{}", self.doc, self.ordinal)
    }
}

/// The compressed form of the chunks that did not fit in full.
#[derive(Debug, Clone, PartialEq)]
pub struct Remainder {
    /// The text (excerpts one per line, or a summary).
    pub text: String,
    /// Its tokens.
    pub tokens: usize,
    /// `doc#ordinal` of the chunks it stands for.
    pub covers: Vec<String>,
    /// Whether it is a model summary (else excerpts).
    pub summary: bool,
}

/// The context chosen for one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Chunks in full, in document order.
    pub chunks: Vec<SelectedChunk>,
    /// The rest, compressed, if any of it fit.
    pub remainder: Option<Remainder>,
    /// `doc#ordinal` of chunks neither included nor represented in the remainder.
    pub dropped: Vec<String>,
    /// Tokens of the chunks and the remainder: at most `budget`.
    pub total_tokens: usize,
    /// The budget asked for.
    pub budget: usize,
    /// What was left out and why (for the call trace); `None` when all of it is in full.
    pub note: Option<String>,
    /// Chunks stored under the feature (or version) selected from; 0 when nothing
    /// was synced under it, or it was collected (see [`ContextIndex::sync_version`]).
    pub indexed: usize,
}

impl Selection {
    /// The chunks' texts, then the remainder, separated by blank lines.
    pub fn render(&self) -> String {
        let mut parts: Vec<&str> = self.chunks.iter().map(|c| c.text.as_str()).collect();
        if let Some(r) = &self.remainder {
            parts.push(&r.text);
        }
        parts.join("\n\n")
    }
}

impl ContextIndex {
    /// The context for a call: the chunks of `feature` most relevant to
    /// `query` that fit in `budget_tokens`, the rest compressed into what is
    /// left, in document order. `total_tokens <= budget_tokens` always.
    pub async fn select(
        &self,
        feature: &str,
        query: &str,
        budget_tokens: usize,
    ) -> Result<Selection, ContextError> {
        let mut conn = self.index.connection();
        let mut pipe = redis::pipe();
        pipe.cmd("SCARD").arg(self.hashes_key(feature));
        // A version in use is marked so in the same round trip (see `sync_version`).
        if let Some((base, _)) = feature.split_once(VERSION_MARK) {
            pipe.cmd("ZADD")
                .arg(self.versions_key(base))
                .arg(unix_now())
                .arg(feature)
                .ignore();
        }
        let (count,): (usize,) = pipe
            .query_async(&mut conn)
            .await
            .map_err(redis_err("count the feature's chunks"))?;
        let mut selection = Selection {
            chunks: Vec::new(),
            remainder: None,
            dropped: Vec::new(),
            total_tokens: 0,
            budget: budget_tokens,
            note: None,
            indexed: count,
        };
        if count == 0 {
            return Ok(selection);
        }
        let vector = self
            .embedder
            .embed(&[query.to_owned()])
            .await?
            .pop()
            .unwrap_or_default();
        let k = count.min(MAX_CANDIDATES);
        let hits = self
            .index
            .knn(
                &vector,
                k,
                &Filter::tag("feature", feature).and_tag("embedder", self.embedder.model_id()),
                &["doc", "doc_index", "heading", "ordinal", "text"],
            )
            .await?;
        let counter = self.chunker.counter();
        let mut ranked: Vec<SelectedChunk> = hits
            .into_iter()
            .map(|h| {
                let field = |n: &str| h.fields.get(n).cloned().unwrap_or_default();
                let text = field("text");
                SelectedChunk {
                    doc: field("doc"),
                    doc_index: field("doc_index").parse().unwrap_or(0),
                    heading_path: serde_json::from_str(&field("heading")).unwrap_or_default(),
                    ordinal: field("ordinal").parse().unwrap_or(0),
                    tokens: counter.count(&text),
                    text,
                    distance: h.distance,
                }
            })
            .collect();
        // Equally distant chunks in document order: the same query gives the same context.
        ranked.sort_by(|a, b| {
            a.distance
                .total_cmp(&b.distance)
                .then((a.doc_index, a.ordinal).cmp(&(b.doc_index, b.ordinal)))
        });
        let beyond = count.saturating_sub(ranked.len());

        // Everything that fits in full, most relevant first.
        let take = |limit: usize| {
            let mut used = 0;
            let mut chosen = vec![false; ranked.len()];
            for (i, c) in ranked.iter().enumerate() {
                if used + c.tokens <= limit {
                    used += c.tokens;
                    chosen[i] = true;
                }
            }
            (chosen, used)
        };
        let rest_of = |chosen: &[bool]| -> Vec<&SelectedChunk> {
            ranked
                .iter()
                .zip(chosen)
                .filter(|(_, c)| !**c)
                .map(|(r, _)| r)
                .collect()
        };
        let (mut chosen, mut used) = take(budget_tokens);
        let reserved = chosen.iter().any(|c| !c);
        if reserved {
            // Keep a reserve for the compressed remainder.
            let reserve = (budget_tokens * self.remainder_percent).div_ceil(100);
            (chosen, used) = take(budget_tokens - reserve.min(budget_tokens));
        }
        let mut rest = rest_of(&chosen);
        let left = budget_tokens - used;
        let mut failure = None;
        let remainder = if rest.is_empty() || left == 0 {
            None
        } else {
            match &self.compression {
                Compression::Truncate => self.excerpts(&rest, left),
                Compression::Summarize(s) => match self.summary(s.as_ref(), &rest, left).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(feature, error = %e, "context summary failed; using excerpts");
                        failure = Some(e.to_string());
                        self.excerpts(&rest, left)
                    }
                },
            }
        };
        if remainder.is_none() && reserved {
            // Nothing compressed fits: the reserve goes back to whole chunks.
            (chosen, used) = take(budget_tokens);
            rest = rest_of(&chosen);
        }
        let covered: HashSet<&str> = remainder
            .as_ref()
            .map(|r| r.covers.iter().map(String::as_str).collect())
            .unwrap_or_default();
        selection.dropped = rest
            .iter()
            .map(|c| c.label())
            .filter(|l| !covered.contains(l.as_str()))
            .collect();
        let mut full: Vec<SelectedChunk> = ranked
            .iter()
            .zip(&chosen)
            .filter(|(_, c)| **c)
            .map(|(r, _)| r.clone())
            .collect();
        full.sort_by_key(|c| (c.doc_index, c.ordinal));
        selection.total_tokens = used + remainder.as_ref().map_or(0, |r| r.tokens);
        let mut note = Vec::new();
        if !rest.is_empty() || beyond > 0 {
            note.push(format!(
                "context: {} of {count} chunks in full ({used} tokens of a budget of {budget_tokens})",
                full.len()
            ));
            if let Some(r) = &remainder {
                note.push(format!(
                    "{} {} ({} tokens)",
                    r.covers.len(),
                    if r.summary {
                        "summarised"
                    } else {
                        "as first sentences"
                    },
                    r.tokens
                ));
            }
            if !selection.dropped.is_empty() || beyond > 0 {
                let mut labels = selection.dropped.clone();
                labels.truncate(20);
                let more = selection.dropped.len() - labels.len() + beyond;
                note.push(format!(
                    "dropped {}: {}{}",
                    selection.dropped.len() + beyond,
                    labels.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                ));
            }
            if let Some(f) = failure {
                note.push(format!("({f}; used first sentences)"));
            }
        }
        selection.note = (!note.is_empty()).then(|| note.join("; "));
        selection.chunks = full;
        selection.remainder = remainder;
        debug_assert!(selection.total_tokens <= budget_tokens);
        Ok(selection)
    }

    /// First sentences of `rest` (most relevant first), one per line, each
    /// ending with `…`, while they fit `limit`.
    fn excerpts(&self, rest: &[&SelectedChunk], limit: usize) -> Option<Remainder> {
        let counter = self.chunker.counter();
        let mut text = String::new();
        let mut covers = Vec::new();
        for chunk in rest {
            let used = if text.is_empty() {
                0
            } else {
                counter.count(&text)
            };
            if used >= limit {
                break;
            }
            // The first sentence of the body, after heading lines.
            let body: String = chunk
                .text
                .lines()
                .skip_while(|l| heading(l.trim_start()).is_some() || l.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n");
            let Some(&(s, e)) = sentences(&body).first() else {
                continue;
            };
            let Some(excerpt) = fit_words(counter.as_ref(), &body[s..e], limit - used) else {
                continue;
            };
            let candidate = if text.is_empty() {
                excerpt
            } else {
                format!("{text}\n{excerpt}")
            };
            if counter.count(&candidate) <= limit {
                text = candidate;
                covers.push(chunk.label());
            }
        }
        (!covers.is_empty()).then(|| Remainder {
            tokens: counter.count(&text),
            text,
            covers,
            summary: false,
        })
    }

    async fn summary(
        &self,
        summarizer: &dyn Summarizer,
        rest: &[&SelectedChunk],
        limit: usize,
    ) -> Result<Option<Remainder>, SummarizeError> {
        let counter = self.chunker.counter();
        let mut texts = Vec::new();
        let mut covers = Vec::new();
        let mut input = 0;
        for c in rest {
            if input + c.tokens > SUMMARY_INPUT_TOKENS && !texts.is_empty() {
                break;
            }
            input += c.tokens;
            texts.push(c.text.clone());
            covers.push(c.label());
        }
        let summary = summarizer.summarize(&texts, limit).await?;
        let summary = summary.trim();
        let text = if counter.count(summary) <= limit {
            Some(summary.to_owned())
        } else {
            fit_words(counter.as_ref(), summary, limit)
        };
        Ok(text.filter(|t| !t.is_empty()).map(|text| Remainder {
            tokens: counter.count(&text),
            text,
            covers,
            summary: true,
        }))
    }
}

/// `text` ending with ` …`, shortened at a word boundary so that it counts
/// at most `limit` tokens; `None` when not even one word fits.
fn fit_words(counter: &dyn TokenCounter, text: &str, limit: usize) -> Option<String> {
    let whole = format!("{text} {ELLIPSIS}");
    if counter.count(&whole) <= limit {
        return Some(whole);
    }
    let bounds: Vec<(usize, usize)> = words(text).collect();
    // The longest prefix of words that fits (counts grow with the prefix).
    let (mut lo, mut hi) = (0usize, bounds.len());
    let fits = |n: usize| {
        n > 0 && counter.count(&format!("{} {ELLIPSIS}", &text[..bounds[n - 1].1])) <= limit
    };
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    (lo > 0).then(|| format!("{} {ELLIPSIS}", &text[..bounds[lo - 1].1]))
}
