//! Chunking for the context manager: [`Chunker`] splits a document into
//! [`Chunk`]s along its Markdown structure (headings, paragraphs, fenced code
//! blocks, then sentences and words), within a token budget per chunk; and
//! the text helpers the selection shares (headings, sentences, words).

use std::collections::HashMap;
use std::sync::Arc;

use super::tokens::{EstimateCounter, TokenCounter};
use crate::digest::sha256_hex;

/// The largest chunk, in tokens, unless [`Chunker::with_max_tokens`] says otherwise.
pub const DEFAULT_MAX_CHUNK_TOKENS: usize = 200;

/// One piece of a document, the unit that is embedded and selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The document's name (e.g. `docs/refund-policy.md`, `feature:analytics`).
    pub doc: String,
    /// The titles of the headings the chunk is under, outermost first.
    pub heading_path: Vec<String>,
    /// Its position in the document, from 0.
    pub ordinal: usize,
    /// Its text, a contiguous slice of the document (line ends normalised to `\n`).
    pub text: String,
    /// Its tokens, as the chunker's counter counts them.
    pub tokens: usize,
    /// sha256 (lower-case hex) of the document name, heading path and text
    /// ([`chunk_hash`]): the same text in the same place has the same hash. The
    /// n-th repeat (n >= 1) of a chunk in a document hashes `"<hash>#<n>"`, so
    /// every chunk of a document has its own hash.
    pub hash: String,
}

impl Chunk {
    /// The text that is embedded: the heading path, then the text.
    pub fn embedding_text(&self) -> String {
        if self.heading_path.is_empty() {
            self.text.clone()
        } else {
            format!("{}\n{}", self.heading_path.join(" > "), self.text)
        }
    }
}

/// The hash of a chunk (see [`Chunk::hash`]).
pub fn chunk_hash(doc: &str, heading_path: &[String], text: &str) -> String {
    sha256_hex(&format!(
        "{doc}\u{0}{}\u{0}{text}",
        heading_path.join("\u{1f}")
    ))
}

/// Chunks decoded from bytes that may not be valid UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedChunks {
    /// The chunks of the decoded text.
    pub chunks: Vec<Chunk>,
    /// How many invalid UTF-8 sequences were replaced by U+FFFD.
    pub replaced: usize,
}

/// Splits documents into chunks along their Markdown structure.
#[derive(Clone)]
pub struct Chunker {
    counter: Arc<dyn TokenCounter>,
    max_tokens: usize,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunker")
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

impl Default for Chunker {
    fn default() -> Self {
        Self::new(Arc::new(EstimateCounter))
    }
}

/// A byte range of the normalised text and its tokens.
#[derive(Debug, Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    tokens: usize,
}

struct Section {
    path: Vec<String>,
    units: Vec<Unit>,
}

/// The title of an ATX heading line (`#`..`######`), with its level.
pub(super) fn heading(line: &str) -> Option<(usize, String)> {
    let level = line.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &line[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let title = rest.trim();
    let stripped = title.trim_end_matches('#');
    let title = if stripped.is_empty() || stripped.ends_with([' ', '\t']) {
        stripped.trim_end()
    } else {
        title
    };
    Some((level, title.to_owned()))
}

/// The opening of a fenced code block: its character and length.
fn fence(line: &str) -> Option<(char, usize)> {
    let c = line.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let n = line.chars().take_while(|x| *x == c).count();
    (n >= 3).then_some((c, n))
}

/// Byte ranges of the sentences of `s` (relative to `s`), trimmed, non-empty.
pub(super) fn sentences(s: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let (latin, cjk) = (
            matches!(c, '.' | '!' | '?' | '…'),
            matches!(c, '。' | '！' | '？'),
        );
        if !(latin || cjk) {
            continue;
        }
        let mut end = i + c.len_utf8();
        while let Some(&(j, d)) = chars.peek() {
            if matches!(
                d,
                '.' | '!' | '?' | '"' | '\'' | ')' | ']' | '”' | '’' | '」' | '』'
            ) {
                end = j + d.len_utf8();
                chars.next();
            } else {
                break;
            }
        }
        let at_break = chars.peek().is_none_or(|&(_, d)| d.is_whitespace());
        if cjk || at_break {
            push_trimmed(s, start, end, &mut out);
            start = end;
        }
    }
    push_trimmed(s, start, s.len(), &mut out);
    out
}

fn push_trimmed(s: &str, start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    let piece = &s[start..end];
    let lead = piece.len() - piece.trim_start().len();
    let trail = piece.len() - piece.trim_end().len();
    if lead + trail < piece.len() {
        out.push((start + lead, end - trail));
    }
}

/// Byte ranges of the whitespace-separated words of `s` (relative to `s`).
pub(super) fn words(s: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut rest = 0;
    std::iter::from_fn(move || {
        let tail = &s[rest..];
        let lead = tail.len() - tail.trim_start().len();
        let start = rest + lead;
        if start >= s.len() {
            return None;
        }
        let end = s[start..]
            .find(char::is_whitespace)
            .map_or(s.len(), |n| start + n);
        rest = end;
        Some((start, end))
    })
}

impl Chunker {
    /// A chunker counting with `counter`, chunks of at most [`DEFAULT_MAX_CHUNK_TOKENS`].
    pub fn new(counter: Arc<dyn TokenCounter>) -> Self {
        Self {
            counter,
            max_tokens: DEFAULT_MAX_CHUNK_TOKENS,
        }
    }

    /// Sets the largest chunk, in tokens (at least 1).
    pub fn with_max_tokens(mut self, max_tokens: usize) -> Self {
        self.max_tokens = max_tokens.max(1);
        self
    }

    /// The largest chunk, in tokens.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The counter this chunker uses.
    pub fn counter(&self) -> &Arc<dyn TokenCounter> {
        &self.counter
    }

    /// Decodes `bytes` as UTF-8, replacing each invalid sequence by U+FFFD,
    /// then chunks the text.
    pub fn chunk_bytes(&self, doc: &str, bytes: &[u8]) -> DecodedChunks {
        let replaced = bytes
            .utf8_chunks()
            .filter(|c| !c.invalid().is_empty())
            .count();
        DecodedChunks {
            chunks: self.chunk(doc, &String::from_utf8_lossy(bytes)),
            replaced,
        }
    }

    /// Splits the document `doc` with text `text` into chunks, in order.
    /// A document with no non-blank text has no chunks.
    pub fn chunk(&self, doc: &str, text: &str) -> Vec<Chunk> {
        let text = if text.contains('\r') {
            text.replace("\r\n", "\n").replace('\r', "\n")
        } else {
            text.to_owned()
        };
        let sections = self.sections(&text);
        let mut chunks = Vec::new();
        let mut seen = HashMap::new();
        for section in sections {
            let mut current: Option<(usize, usize, usize)> = None; // start, end, tokens
            for unit in section.units {
                match current {
                    Some((start, _, tokens)) if tokens + unit.tokens <= self.max_tokens => {
                        current = Some((start, unit.end, tokens + unit.tokens));
                    }
                    Some((start, end, _)) => {
                        self.emit(
                            doc,
                            &section.path,
                            &text[start..end],
                            &mut chunks,
                            &mut seen,
                        );
                        current = Some((unit.start, unit.end, unit.tokens));
                    }
                    None => current = Some((unit.start, unit.end, unit.tokens)),
                }
            }
            if let Some((start, end, _)) = current {
                self.emit(
                    doc,
                    &section.path,
                    &text[start..end],
                    &mut chunks,
                    &mut seen,
                );
            }
        }
        chunks
    }

    fn emit(
        &self,
        doc: &str,
        path: &[String],
        text: &str,
        chunks: &mut Vec<Chunk>,
        seen: &mut HashMap<String, usize>,
    ) {
        let mut hash = chunk_hash(doc, path, text);
        let repeats = seen.entry(hash.clone()).or_insert(0);
        if *repeats > 0 {
            hash = sha256_hex(&format!("{hash}#{repeats}"));
        }
        *repeats += 1;
        chunks.push(Chunk {
            doc: doc.to_owned(),
            heading_path: path.to_vec(),
            ordinal: chunks.len(),
            text: text.to_owned(),
            tokens: self.counter.count(text),
            hash,
        });
    }

    /// The sections of `text` (a heading starts one), each with its units.
    fn sections(&self, text: &str) -> Vec<Section> {
        let mut sections = vec![Section {
            path: Vec::new(),
            units: Vec::new(),
        }];
        let mut stack: Vec<(usize, String)> = Vec::new();
        let mut block: Option<(usize, usize, bool)> = None; // start, end, fenced
        let mut open_fence: Option<(char, usize)> = None;
        let mut pos = 0;
        for raw in text.split_inclusive('\n') {
            let start = pos;
            pos += raw.len();
            let line = raw.strip_suffix('\n').unwrap_or(raw);
            let end = start + line.len();
            let trimmed = line.trim_start();
            let indented = line.len() - trimmed.len() >= 4;
            let units = &mut sections.last_mut().expect("a section").units;
            if let Some((c, n)) = open_fence {
                if let Some((s, _, f)) = block {
                    block = Some((s, end, f));
                }
                let closing = fence(trimmed).is_some_and(|(d, m)| {
                    d == c && m >= n && trimmed.trim_end().chars().all(|x| x == c)
                });
                if closing && !indented {
                    open_fence = None;
                    self.flush(text, block.take(), units);
                }
                continue;
            }
            if !indented && let Some((c, n)) = fence(trimmed) {
                self.flush(text, block.take(), units);
                block = Some((start, end, true));
                open_fence = Some((c, n));
                continue;
            }
            if !indented && let Some((level, title)) = heading(trimmed) {
                self.flush(text, block.take(), units);
                while stack.last().is_some_and(|(l, _)| *l >= level) {
                    stack.pop();
                }
                stack.push((level, title));
                let tokens = self.counter.count(line);
                sections.push(Section {
                    path: stack.iter().map(|(_, t)| t.clone()).collect(),
                    units: vec![Unit { start, end, tokens }],
                });
                continue;
            }
            if line.trim().is_empty() {
                self.flush(text, block.take(), units);
                continue;
            }
            block = Some(match block {
                Some((s, _, f)) => (s, end, f),
                None => (start, end, false),
            });
        }
        let units = &mut sections.last_mut().expect("a section").units;
        self.flush(text, block.take(), units);
        sections.retain(|s| !s.units.is_empty());
        sections
    }

    /// Adds the units of one block (a paragraph or a fenced code block).
    fn flush(&self, text: &str, block: Option<(usize, usize, bool)>, units: &mut Vec<Unit>) {
        let Some((start, end, fenced)) = block else {
            return;
        };
        let body = &text[start..end];
        if body.trim().is_empty() {
            return;
        }
        let tokens = self.counter.count(body);
        if tokens <= self.max_tokens {
            units.push(Unit { start, end, tokens });
            return;
        }
        let pieces: Vec<(usize, usize)> = if fenced {
            let mut lines = Vec::new();
            let mut at = 0;
            for line in body.split_inclusive('\n') {
                push_trimmed(body, at, at + line.len(), &mut lines);
                at += line.len();
            }
            lines
        } else {
            sentences(body)
        };
        for (s, e) in pieces {
            let piece = &body[s..e];
            let tokens = self.counter.count(piece);
            if tokens <= self.max_tokens {
                units.push(Unit {
                    start: start + s,
                    end: start + e,
                    tokens,
                });
            } else {
                self.split_words(text, start + s, start + e, units);
            }
        }
    }

    /// Adds the words of `text[start..end]` as units; a word longer than the
    /// maximum on its own is cut at character boundaries.
    fn split_words(&self, text: &str, start: usize, end: usize, units: &mut Vec<Unit>) {
        let body = &text[start..end];
        for (s, e) in words(body) {
            let word = &body[s..e];
            let tokens = self.counter.count(word);
            if tokens <= self.max_tokens {
                units.push(Unit {
                    start: start + s,
                    end: start + e,
                    tokens,
                });
                continue;
            }
            // Not a word of any language: cut it into the longest pieces that fit.
            let mut from = 0;
            while from < word.len() {
                // Ends of the next characters, at most 16 per allowed token.
                let ends: Vec<usize> = word[from..]
                    .char_indices()
                    .map(|(i, c)| from + i + c.len_utf8())
                    .take(16 * self.max_tokens + 16)
                    .collect();
                let (mut lo, mut hi) = (1usize, ends.len());
                while lo < hi {
                    let mid = (lo + hi).div_ceil(2);
                    if self.counter.count(&word[from..ends[mid - 1]]) <= self.max_tokens {
                        lo = mid;
                    } else {
                        hi = mid - 1;
                    }
                }
                // At least one character, even when it alone is over the maximum.
                let to = ends[lo - 1];
                let piece = &word[from..to];
                units.push(Unit {
                    start: start + s + from,
                    end: start + s + to,
                    tokens: self.counter.count(piece),
                });
                from = to;
            }
        }
    }
}
