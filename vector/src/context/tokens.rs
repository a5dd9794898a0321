//! Token counting for the context manager: the [`TokenCounter`] trait, a
//! model-free estimate ([`EstimateCounter`]) and a model's own tokenizer
//! ([`TokenizerCounter`]).

use std::path::Path;

use super::ContextError;

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
