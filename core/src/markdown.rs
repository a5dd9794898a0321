//! A line scanner for the Markdown subset the formats use: YAML frontmatter,
//! ATX headings and fenced code blocks. Everything else is prose, kept verbatim.
//!
//! A full CommonMark parser would accept more than the format needs and lose the
//! exact line/column bookkeeping the diagnostics rely on, so this is line-based.

use crate::diagnostic::{Collector, Position};

/// The frontmatter and body of a file, with where each starts.
#[derive(Debug)]
pub(crate) struct Split<'a> {
    /// The YAML between the `---` lines.
    pub frontmatter: &'a str,
    /// Line number of the first frontmatter line.
    pub frontmatter_line: usize,
    /// Everything after the closing `---` line, verbatim.
    pub body: &'a str,
    /// Line number of the first body line.
    pub body_line: usize,
}

/// Splits `src` into frontmatter and body, or reports why it cannot.
pub(crate) fn split_frontmatter<'a>(src: &'a str, diags: &mut Collector) -> Option<Split<'a>> {
    let mut offset = 0;
    let mut opened = false;
    for (idx, raw) in src.split_inclusive('\n').enumerate() {
        let line = raw.trim_end_matches(['\n', '\r']);
        if idx == 0 {
            // A UTF-8 byte-order mark is invisible in editors; accept it.
            if line.trim_start_matches('\u{feff}').trim_end() != "---" {
                diags.error(
                    Position::new(1, 1),
                    "expected YAML frontmatter: the file must start with a '---' line",
                );
                return None;
            }
            opened = true;
        } else if line.trim_end() == "---" || line.trim_end() == "..." {
            let first = src.split_inclusive('\n').next().map_or(0, str::len);
            return Some(Split {
                frontmatter: &src[first..offset],
                frontmatter_line: 2,
                body: &src[offset + raw.len()..],
                body_line: idx + 2,
            });
        }
        offset += raw.len();
    }
    if opened {
        diags.error(
            Position::new(1, 1),
            "the frontmatter opened here is never closed: expected a closing '---' line",
        );
    } else {
        diags.error(
            Position::new(1, 1),
            "expected YAML frontmatter: the file must start with a '---' line",
        );
    }
    None
}

/// One structural element of a Markdown body.
#[derive(Debug, Clone)]
pub(crate) enum Block<'a> {
    /// `#`..`######` followed by text.
    Heading {
        level: usize,
        text: &'a str,
        line: usize,
        /// Column where `text` starts.
        text_column: usize,
    },
    /// A fenced code block (``` or ~~~).
    Fence {
        info: &'a str,
        content: String,
        open_line: usize,
        close_line: usize,
    },
    /// Any other line, blank lines included.
    Text { text: &'a str, line: usize },
}

impl Block<'_> {
    /// The first line the block occupies.
    pub(crate) fn line(&self) -> usize {
        match self {
            Block::Heading { line, .. } | Block::Text { line, .. } => *line,
            Block::Fence { open_line, .. } => *open_line,
        }
    }
}

/// Scans `body` (whose first line is `first_line`) into blocks.
pub(crate) fn scan<'a>(body: &'a str, first_line: usize, diags: &mut Collector) -> Vec<Block<'a>> {
    let lines: Vec<&str> = body
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    // `split` yields a final empty piece after a trailing newline; it is not a line.
    let count = if body.ends_with('\n') {
        lines.len() - 1
    } else {
        lines.len()
    };
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < count {
        let text = lines[i];
        let line = first_line + i;
        if let Some((marker, info)) = fence_open(text) {
            let mut content = String::new();
            let mut j = i + 1;
            let mut closed = false;
            while j < count {
                if fence_closes(lines[j], marker) {
                    closed = true;
                    break;
                }
                content.push_str(lines[j]);
                content.push('\n');
                j += 1;
            }
            if !closed {
                diags.error(
                    Position::new(line, 1),
                    format!("the code block opened here is never closed: expected a closing '{marker}' line"),
                );
            }
            blocks.push(Block::Fence {
                info,
                content,
                open_line: line,
                close_line: first_line + j.min(count.saturating_sub(1)),
            });
            i = j + 1;
        } else if let Some((level, heading, column)) = heading(text) {
            blocks.push(Block::Heading {
                level,
                text: heading,
                line,
                text_column: column,
            });
            i += 1;
        } else {
            blocks.push(Block::Text { text, line });
            i += 1;
        }
    }
    blocks
}

/// If `text` opens a fence, its marker (e.g. "```") and info string.
fn fence_open(text: &str) -> Option<(&str, &str)> {
    let indent = text.len() - text.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &text[indent..];
    let ch = rest.chars().next()?;
    if ch != '`' && ch != '~' {
        return None;
    }
    let run = rest.len() - rest.trim_start_matches(ch).len();
    if run < 3 {
        return None;
    }
    let info = rest[run..].trim();
    // A backtick fence's info string may not contain backticks (CommonMark).
    if ch == '`' && info.contains('`') {
        return None;
    }
    Some((&rest[..run], info))
}

fn fence_closes(text: &str, marker: &str) -> bool {
    let trimmed = text.trim();
    let Some(ch) = marker.chars().next() else {
        return false;
    };
    trimmed.len() >= marker.len() && trimmed.chars().all(|c| c == ch)
}

/// If `text` is an ATX heading: its level, its text and the text's column.
fn heading(text: &str) -> Option<(usize, &str, usize)> {
    let indent = text.len() - text.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &text[indent..];
    let level = rest.len() - rest.trim_start_matches('#').len();
    if level == 0 || level > 6 {
        return None;
    }
    let after = &rest[level..];
    if !after.is_empty() && !after.starts_with([' ', '\t']) {
        return None;
    }
    let content = after.trim();
    // Closing hashes ("## Title ##") are decoration, but only as a separate run:
    // in "# Learn C#" the '#' is part of the text (CommonMark).
    let content = match content.trim_end_matches('#') {
        "" => "",
        rest if rest.ends_with([' ', '\t']) => rest.trim_end(),
        _ => content,
    };
    let column = indent + level + (after.len() - after.trim_start().len()) + 1;
    Some((level, content, column))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_inside_fences_are_code() {
        let mut d = Collector::new("t");
        let blocks = scan("# T\n```md\n## not a heading\n```\n## real\n", 1, &mut d);
        let headings: Vec<_> = blocks
            .iter()
            .filter_map(|b| match b {
                Block::Heading { text, .. } => Some(*text),
                _ => None,
            })
            .collect();
        assert_eq!(headings, ["T", "real"]);
        assert!(!d.has_errors());
    }

    #[test]
    fn longer_fences_nest_shorter_ones() {
        let mut d = Collector::new("t");
        let blocks = scan("````md\n```python\nx\n```\n````\n", 1, &mut d);
        assert_eq!(blocks.len(), 1);
        match &blocks[0] {
            Block::Fence {
                content,
                close_line,
                ..
            } => {
                assert_eq!(content, "```python\nx\n```\n");
                assert_eq!(*close_line, 5);
            }
            other => panic!("expected a fence, got {other:?}"),
        }
    }

    #[test]
    fn closing_hashes_need_a_space_before_them() {
        // Found by the round-trip property tests: "# Learn C#" was read as "Learn C".
        assert_eq!(heading("# Learn C#"), Some((1, "Learn C#", 3)));
        assert_eq!(heading("## About F## ##"), Some((2, "About F##", 4)));
        assert_eq!(heading("### op ###"), Some((3, "op", 5)));
        assert_eq!(heading("## Title\t#"), Some((2, "Title", 4)));
        assert_eq!(heading("# #5"), Some((1, "#5", 3)));
        assert_eq!(heading("## ##"), Some((2, "", 4)));
        assert_eq!(heading("#"), Some((1, "", 2)));
    }

    #[test]
    fn unclosed_fence_is_reported_at_its_opening() {
        let mut d = Collector::new("f.eol");
        scan("text\n```yaml\na: 1\n", 10, &mut d);
        let err = d.finish(()).unwrap_err();
        assert_eq!(err.0[0].position, Position::new(11, 1));
        assert!(err.0[0].message.contains("never closed"));
    }
}
