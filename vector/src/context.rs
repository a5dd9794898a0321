//! The context manager: a feature's prose and referenced documents, chunked
//! along their Markdown structure, embedded and indexed per feature, and for
//! each prototyped call the chunks most relevant to the call that fit a token
//! budget, with the rest compressed.
//!
//! - [`Chunker`] splits a document into [`Chunk`]s: a heading starts a chunk;
//!   paragraphs (a fenced code block counts as one) are packed whole into
//!   chunks of at most [`DEFAULT_MAX_CHUNK_TOKENS`] tokens; a longer paragraph
//!   is split at sentence ends (a code block at line ends), a longer sentence
//!   between words. Only a single "word" (no whitespace) longer than the
//!   maximum on its own is cut, at a character boundary. Every chunk records
//!   its document, heading path, ordinal, text, token count and a sha256 hash
//!   of (document, heading path, text).
//! - [`TokenCounter`] counts tokens: [`EstimateCounter`] estimates without a
//!   model, [`TokenizerCounter`] uses a model's own `tokenizers` tokenizer.
//! - [`ContextIndex::sync`] keeps a feature's chunks in a RediSearch index
//!   (HASH documents tagged `feature`, `doc`, `hash`; the embedder's
//!   dimension), embedding only chunks whose hash is new and deleting chunks
//!   that disappeared; the feature's chunk hashes are kept in a Redis set.
//!   [`ContextIndex::sync_version`] does it under a version of the feature
//!   named by its chunks, so that runners with different documents (both sides
//!   of a rollout) keep apart, and deletes versions no runner selected from
//!   for an hour.
//! - [`ContextIndex::select`] picks chunks by relevance to a query (KNN within
//!   the feature) while they fit the budget, compresses the remainder
//!   ([`Compression`]: first sentences, or a model summary) into what is
//!   left, and returns them in document order with a note of what was dropped.
//!   The total never exceeds the budget.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use redis::aio::ConnectionManager;

use crate::digest::sha256_hex;
use crate::index::{
    Document, FieldAttrs, FieldSpec, FieldType, Filter, IndexError, IndexInfo, IndexSchema,
    SchemaError, VectorIndex,
};
use crate::{EmbedError, Embedder};

/// The largest chunk, in tokens, unless [`Chunker::with_max_tokens`] says otherwise.
pub const DEFAULT_MAX_CHUNK_TOKENS: usize = 200;
/// The share of the budget (percent) kept for the compressed remainder when
/// not every relevant chunk fits.
pub const DEFAULT_REMAINDER_PERCENT: usize = 15;
/// At most this many chunks of a feature are candidates of one selection.
pub const MAX_CANDIDATES: usize = 2000;
/// At most this many tokens of remaining chunks are given to a [`Summarizer`].
pub const SUMMARY_INPUT_TOKENS: usize = 4000;
/// A chunk and the position of its document in the synced list.
type Placed = (usize, Chunk);
/// Separates a feature from its version in a scope (feature names have no `@`).
const VERSION_MARK: char = '@';
/// How long a version of a feature's context may go without a selection
/// before another version's [`ContextIndex::sync_version`] deletes it.
pub const DEFAULT_VERSION_IDLE: std::time::Duration = std::time::Duration::from_secs(3600);
/// Texts per call to the embedder during [`ContextIndex::sync`].
const EMBED_BATCH: usize = 64;
/// The mark that ends a shortened text.
const ELLIPSIS: &str = "…";

// ------------------------------------------------------------------ tokens

/// Counts the tokens of a text, as a model would see them.
pub trait TokenCounter: Send + Sync {
    /// The number of tokens of `text` (no special tokens added).
    fn count(&self, text: &str) -> usize;
}

/// A tokenizer-free estimate close to BPE/WordPiece counts, and additive over
/// whitespace (the count of `a + " " + b` is the count of `a` plus that of `b`):
///
/// - a word of ASCII letters: one token per 4 characters, rounded up;
/// - a run of digits: one token per 3 digits, rounded up;
/// - a word with other (accented, Cyrillic, ...) letters: one token per 2 characters;
/// - each CJK character (Han, kana, Hangul): one token;
/// - each punctuation mark or symbol (anything else that is not whitespace): one token;
/// - whitespace: nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct EstimateCounter;

fn is_cjk(c: char) -> bool {
    matches!(u32::from(c),
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF
        | 0xAC00..=0xD7AF | 0x20000..=0x2FFFF)
}

impl TokenCounter for EstimateCounter {
    fn count(&self, text: &str) -> usize {
        let mut tokens = 0;
        let (mut len, mut digits, mut ascii) = (0usize, true, true);
        let mut flush = |len: &mut usize, digits: &mut bool, ascii: &mut bool| {
            if *len > 0 {
                tokens += if *digits {
                    len.div_ceil(3)
                } else if *ascii {
                    len.div_ceil(4)
                } else {
                    len.div_ceil(2)
                };
            }
            (*len, *digits, *ascii) = (0, true, true);
        };
        let mut extra = 0;
        for c in text.chars() {
            if c.is_alphanumeric() && !is_cjk(c) {
                len += 1;
                digits &= c.is_ascii_digit();
                ascii &= c.is_ascii();
            } else {
                flush(&mut len, &mut digits, &mut ascii);
                if !c.is_whitespace() {
                    extra += 1;
                }
            }
        }
        flush(&mut len, &mut digits, &mut ascii);
        tokens + extra
    }
}

/// Counts with a model's own tokenizer (e.g. the `tokenizer.json` of
/// all-MiniLM-L6-v2): the number of ids of the text without special tokens,
/// padding or truncation.
pub struct TokenizerCounter {
    tokenizer: tokenizers::Tokenizer,
}

impl std::fmt::Debug for TokenizerCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenizerCounter").finish_non_exhaustive()
    }
}

impl TokenizerCounter {
    /// Counts with `tokenizer`; its padding and truncation are turned off.
    pub fn new(mut tokenizer: tokenizers::Tokenizer) -> Self {
        tokenizer.with_padding(None);
        // Turning truncation off cannot fail.
        let _ = tokenizer.with_truncation(None);
        Self { tokenizer }
    }

    /// Reads a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self, ContextError> {
        tokenizers::Tokenizer::from_file(path)
            .map(Self::new)
            .map_err(|e| ContextError::Tokenizer(format!("{}: {e}", path.display())))
    }
}

impl TokenCounter for TokenizerCounter {
    fn count(&self, text: &str) -> usize {
        match self.tokenizer.encode(text, false) {
            Ok(encoding) => encoding.len(),
            // A tokenizer that fails on a text should not make it free.
            Err(_) => EstimateCounter.count(text),
        }
    }
}

// ---------------------------------------------------------------- chunking

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
fn heading(line: &str) -> Option<(usize, String)> {
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
fn sentences(s: &str) -> Vec<(usize, usize)> {
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
fn words(s: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
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

// ---------------------------------------------------------------- errors

/// Why indexing or selecting context failed.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The index schema is invalid.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The vector index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Embedding chunks or the query failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// A Redis command failed.
    #[error("context index: cannot {action}: {source}")]
    Redis {
        /// What was being done.
        action: String,
        /// The client's error.
        source: redis::RedisError,
    },
    /// The tokenizer could not be loaded.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

/// `<feature>@<hash of the chunks' hashes>`: the scope of one version of its context.
fn scope_of(feature: &str, chunks: &[Placed]) -> String {
    let mut hashes: Vec<&str> = chunks.iter().map(|(_, c)| c.hash.as_str()).collect();
    hashes.sort_unstable();
    let version = &sha256_hex(&hashes.join(","))[..12];
    format!("{feature}{VERSION_MARK}{version}")
}

/// Seconds since the Unix epoch (the score of a version's last use).
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn redis_err(action: &str) -> impl FnOnce(redis::RedisError) -> ContextError + '_ {
    move |source| ContextError::Redis {
        action: action.to_owned(),
        source,
    }
}

// ---------------------------------------------------------------- compression

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

// ---------------------------------------------------------------- index

/// A document to index: a feature's prose or a referenced document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextDoc {
    /// What it is referenced as (e.g. `prose`, `docs/refund-policy.md`, `feature:analytics`).
    pub name: String,
    /// Its text.
    pub text: String,
}

impl ContextDoc {
    /// A document.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// What [`ContextIndex::sync`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncReport {
    /// Chunks embedded and stored (new hashes, or stored ones that had vanished).
    pub added: usize,
    /// Chunks already stored, not embedded again.
    pub kept: usize,
    /// Stored chunks no longer in the documents, deleted.
    pub removed: usize,
}

/// What [`ContextIndex::sync_version`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSync {
    /// The version's scope, to select from.
    pub scope: String,
    /// The sync of the version's chunks.
    pub report: SyncReport,
    /// Chunks of idle versions (and unversioned ones) deleted.
    pub collected: usize,
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

/// The schema of the context index `name` for vectors of `dims` dimensions:
/// tags `feature`, `doc`, `hash`, `embedder` (case-sensitive); numeric `doc_index`,
/// `ordinal`, `tokens`; the HNSW cosine vector `embedding`. The `text` and
/// `heading` (a JSON array) fields are stored but not indexed.
pub fn context_schema(name: &str, dims: usize) -> IndexSchema {
    let field = |n: &str, kind: FieldType, attrs: FieldAttrs| FieldSpec {
        name: n.to_owned(),
        kind,
        attrs,
    };
    let tag = FieldAttrs {
        case_sensitive: Some(true),
        ..FieldAttrs::default()
    };
    IndexSchema {
        index: IndexInfo {
            name: name.to_owned(),
            prefix: format!("eol:{name}"),
            key_separator: ":".into(),
            storage_type: "hash".into(),
        },
        fields: vec![
            field("feature", FieldType::Tag, tag.clone()),
            field("doc", FieldType::Tag, tag.clone()),
            field("hash", FieldType::Tag, tag.clone()),
            field("embedder", FieldType::Tag, tag),
            field("doc_index", FieldType::Numeric, FieldAttrs::default()),
            field("ordinal", FieldType::Numeric, FieldAttrs::default()),
            field("tokens", FieldType::Numeric, FieldAttrs::default()),
            field(
                "embedding",
                FieldType::Vector,
                FieldAttrs {
                    algorithm: Some("hnsw".into()),
                    dims: Some(dims as i64),
                    distance_metric: Some("cosine".into()),
                    datatype: Some("float32".into()),
                    m: Some(16),
                    ef_construction: Some(200),
                    ef_runtime: Some(50),
                    ..FieldAttrs::default()
                },
            ),
        ],
    }
}

/// A feature's chunks in a RediSearch index (`eol-context-<dims>` by default),
/// kept in step with its documents, and the selection of context for a call.
pub struct ContextIndex {
    index: VectorIndex,
    embedder: Arc<dyn Embedder>,
    chunker: Chunker,
    compression: Compression,
    remainder_percent: usize,
    model_tag: String,
}

impl std::fmt::Debug for ContextIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextIndex")
            .field("index", &self.index)
            .field("embedder", &self.embedder.model_id())
            .field("chunker", &self.chunker)
            .field("compression", &self.compression)
            .finish()
    }
}

impl ContextIndex {
    /// Opens (creating or recreating) the index `eol-context-<dims>`.
    pub async fn new(
        conn: ConnectionManager,
        embedder: Arc<dyn Embedder>,
        chunker: Chunker,
    ) -> Result<Self, ContextError> {
        Self::with_index_name(conn, embedder, chunker, "eol-context").await
    }

    /// Opens the index `<base>-<dims>`.
    pub async fn with_index_name(
        conn: ConnectionManager,
        embedder: Arc<dyn Embedder>,
        chunker: Chunker,
        base: &str,
    ) -> Result<Self, ContextError> {
        // Chunks can always be re-embedded from the documents: a schema change may drop the index.
        let index = VectorIndex::open_recreatable::<ContextError>(
            conn,
            embedder.as_ref(),
            base,
            context_schema,
        )
        .await?;
        let model_tag = sha256_hex(embedder.model_id())[..12].to_owned();
        Ok(Self {
            index,
            embedder,
            chunker,
            model_tag,
            compression: Compression::Truncate,
            remainder_percent: DEFAULT_REMAINDER_PERCENT,
        })
    }

    /// Sets how the chunks that do not fit are compressed.
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sets the share of the budget (percent, at most 100) kept for the
    /// compressed remainder when not every chunk fits.
    pub fn with_remainder_percent(mut self, percent: usize) -> Self {
        self.remainder_percent = percent.min(100);
        self
    }

    /// The underlying vector index.
    pub fn index(&self) -> &VectorIndex {
        &self.index
    }

    /// The chunker.
    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    /// The Redis set of the hashes of `feature`'s chunks stored with this
    /// index's embedder (`<index>:hashes:<model id>:<feature>`).
    pub fn hashes_key(&self, feature: &str) -> String {
        format!(
            "{}:hashes:{}:{feature}",
            self.index.name(),
            self.embedder.model_id()
        )
    }

    /// The Redis key of the chunk of `feature` with `hash`, embedded by this
    /// index's embedder: `<prefix>:<feature>:<model tag>:<hash>`, the model tag
    /// being the first 12 hex digits of the sha256 of the model id.
    pub fn chunk_key(&self, feature: &str, hash: &str) -> String {
        self.index.schema().key(&self.id(feature, hash))
    }

    fn id(&self, feature: &str, hash: &str) -> String {
        format!("{feature}:{}:{hash}", &self.model_tag)
    }

    /// Makes the stored chunks of `feature` those of `docs` (in this order):
    /// chunks with a new hash are embedded and stored, stored ones are kept
    /// (their positions updated), stored ones not in `docs` are deleted.
    pub async fn sync(
        &self,
        feature: &str,
        docs: &[ContextDoc],
    ) -> Result<SyncReport, ContextError> {
        self.sync_placed(feature, self.placed(docs)).await
    }

    /// The distinct chunks of `docs`, each with its document's position.
    fn placed(&self, docs: &[ContextDoc]) -> Vec<Placed> {
        let mut chunks: Vec<Placed> = Vec::new();
        let mut seen = HashSet::new();
        for (d, doc) in docs.iter().enumerate() {
            for chunk in self.chunker.chunk(&doc.name, &doc.text) {
                if seen.insert(chunk.hash.clone()) {
                    chunks.push((d, chunk));
                }
            }
        }
        chunks
    }

    /// [`Self::sync`] of chunks already made.
    async fn sync_placed(
        &self,
        feature: &str,
        chunks: Vec<Placed>,
    ) -> Result<SyncReport, ContextError> {
        let mut conn = self.index.connection();
        let set = self.hashes_key(feature);
        let stored: HashSet<String> = redis::cmd("SMEMBERS")
            .arg(&set)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("read the feature's chunk hashes"))?;
        // Chunks listed but gone (deleted by hand, evicted) are embedded again.
        let listed: Vec<&Placed> = chunks
            .iter()
            .filter(|(_, c)| stored.contains(&c.hash))
            .collect();
        let mut present = HashSet::new();
        if !listed.is_empty() {
            let mut pipe = redis::pipe();
            for (_, c) in &listed {
                pipe.cmd("EXISTS").arg(self.chunk_key(feature, &c.hash));
            }
            let exists: Vec<bool> = pipe
                .query_async(&mut conn)
                .await
                .map_err(redis_err("check the stored chunks"))?;
            for ((_, c), e) in listed.iter().zip(exists) {
                if e {
                    present.insert(c.hash.clone());
                }
            }
        }
        let (kept, new): (Vec<&Placed>, Vec<&Placed>) =
            chunks.iter().partition(|(_, c)| present.contains(&c.hash));
        for batch in new.chunks(EMBED_BATCH) {
            let texts: Vec<String> = batch.iter().map(|(_, c)| c.embedding_text()).collect();
            let vectors = self.embedder.embed(&texts).await?;
            let documents: Vec<Document> = batch
                .iter()
                .zip(vectors)
                .map(|((d, c), v)| {
                    Document::new(self.id(feature, &c.hash))
                        .text("feature", feature)
                        .text("embedder", self.embedder.model_id())
                        .text("doc", c.doc.clone())
                        .text("hash", c.hash.clone())
                        .text(
                            "heading",
                            serde_json::to_string(&c.heading_path).unwrap_or_default(),
                        )
                        .text("text", c.text.clone())
                        .number("doc_index", *d as f64)
                        .number("ordinal", c.ordinal as f64)
                        .number("tokens", c.tokens as f64)
                        .vector("embedding", v)
                })
                .collect();
            self.index.load(&documents).await?;
            let mut sadd = redis::cmd("SADD");
            sadd.arg(&set);
            for (_, c) in batch {
                sadd.arg(&c.hash);
            }
            let _: () = sadd
                .query_async(&mut conn)
                .await
                .map_err(redis_err("record the chunk hashes"))?;
        }
        if !kept.is_empty() {
            let mut pipe = redis::pipe();
            for (d, c) in &kept {
                pipe.cmd("HSET")
                    .arg(self.chunk_key(feature, &c.hash))
                    .arg("doc_index")
                    .arg(*d)
                    .arg("ordinal")
                    .arg(c.ordinal)
                    .ignore();
            }
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(redis_err("update the positions of kept chunks"))?;
        }
        let current: HashSet<&str> = chunks.iter().map(|(_, c)| c.hash.as_str()).collect();
        let gone: Vec<&String> = stored
            .iter()
            .filter(|h| !current.contains(h.as_str()))
            .collect();
        if !gone.is_empty() {
            let mut pipe = redis::pipe();
            for batch in gone.chunks(500) {
                let mut del = redis::cmd("DEL");
                let mut srem = redis::cmd("SREM");
                srem.arg(&set);
                for h in batch {
                    del.arg(self.chunk_key(feature, h));
                    srem.arg(h.as_str());
                }
                pipe.add_command(del).ignore();
                pipe.add_command(srem).ignore();
            }
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(redis_err("delete the chunks that disappeared"))?;
        }
        let report = SyncReport {
            added: new.len(),
            kept: kept.len(),
            removed: gone.len(),
        };
        tracing::debug!(feature, ?report, "synced the feature's context");
        Ok(report)
    }

    /// Deletes every stored chunk of `feature`; returns how many.
    pub async fn remove_feature(&self, feature: &str) -> Result<usize, ContextError> {
        self.sync(feature, &[]).await.map(|r| r.removed)
    }

    /// The Redis sorted set of the versions of `feature`'s context, scored by
    /// when a runner last selected from them (`<index>:versions:<model id>:<feature>`).
    pub fn versions_key(&self, feature: &str) -> String {
        format!(
            "{}:versions:{}:{feature}",
            self.index.name(),
            self.embedder.model_id()
        )
    }

    /// The name one version of `feature`'s context is kept under:
    /// `<feature>@<hash of its chunks>`.
    pub fn version_scope(&self, feature: &str, docs: &[ContextDoc]) -> String {
        scope_of(feature, &self.placed(docs))
    }

    /// Syncs `docs` under their own version of `feature` ([`Self::version_scope`];
    /// select from the scope returned), so that runners with other documents (both
    /// sides of a rollout, or of a rollback) never delete or see each other's
    /// chunks. Marks the version in use, and deletes the versions no runner has
    /// selected from for `idle` (and chunks stored unversioned, as before
    /// versions), which a runner still using one restores by syncing again.
    pub async fn sync_version(
        &self,
        feature: &str,
        docs: &[ContextDoc],
        idle: std::time::Duration,
    ) -> Result<VersionSync, ContextError> {
        let chunks = self.placed(docs);
        let scope = scope_of(feature, &chunks);
        let report = self.sync_placed(&scope, chunks).await?;
        let key = self.versions_key(feature);
        let mut conn = self.index.connection();
        let now = unix_now();
        let _: () = redis::cmd("ZADD")
            .arg(&key)
            .arg(now)
            .arg(&scope)
            .query_async(&mut conn)
            .await
            .map_err(redis_err("mark the context version in use"))?;
        let idle_versions: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now - idle.as_secs_f64())
            .query_async(&mut conn)
            .await
            .map_err(redis_err("list the idle context versions"))?;
        let mut collected = self.remove_feature(feature).await?;
        for old in idle_versions.iter().filter(|v| **v != scope) {
            collected += self.remove_feature(old).await?;
            let _: () = redis::cmd("ZREM")
                .arg(&key)
                .arg(old)
                .query_async(&mut conn)
                .await
                .map_err(redis_err("forget an idle context version"))?;
        }
        Ok(VersionSync {
            scope,
            report,
            collected,
        })
    }

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
