//! Where things are in a Markdown body: headings with their sections, and named
//! `<!-- quire:begin NAME -->` … `<!-- quire:end NAME -->` blocks.
//!
//! Both are found with pulldown-cmark rather than by scanning lines, so a `## Tasks` or a marker
//! inside a fenced code block is never mistaken for the real thing.

use std::ops::Range;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// A heading in a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heading {
    /// 1 to 6.
    pub level: u8,
    /// The heading's text, trimmed.
    pub text: String,
    /// Bytes of the heading itself (for a setext heading, both lines).
    pub range: Range<usize>,
}

/// A named block's replaceable content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The block's name.
    pub name: String,
    /// The bytes between the markers: from just after the begin marker (and its line break, when it
    /// ends a line) to the start of the end marker (or the start of its line, when it begins one).
    pub content: Range<usize>,
    /// Whether both markers stand on their own lines, so the content is whole lines.
    pub line_mode: bool,
}

/// Options quire parses Markdown with everywhere (Obsidian-flavoured: tables, task lists,
/// strikethrough, footnotes).
pub fn parser_options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_FOOTNOTES
}

/// Every heading in `body`, in order.
pub fn headings(body: &str) -> Vec<Heading> {
    let mut out = Vec::new();
    let mut current: Option<(u8, String, usize)> = None;
    for (event, range) in Parser::new_ext(body, parser_options()).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                current = Some((level as u8, String::new(), range.start));
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, text, start)) = current.take() {
                    out.push(Heading {
                        level,
                        text: text.trim().to_owned(),
                        range: start..range.end,
                    });
                }
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, text, _)) = current.as_mut() {
                    text.push_str(&t);
                }
            }
            _ => {}
        }
    }
    out
}

/// The section under the first heading matching `wanted`: from the end of the heading's line to the
/// next heading of the same or a higher level (or the end of the body).
///
/// `wanted` is the heading's text (`Tasks`), or its text with the level written out (`## Tasks`) to
/// pick one level. The first match wins, as an Obsidian `[[Note#Heading]]` link does.
pub fn section(body: &str, wanted: &str) -> Option<Range<usize>> {
    let wanted = wanted.trim();
    let (level, text) = match wanted.find(|c| c != '#') {
        Some(n) if n > 0 && n <= 6 && wanted[n..].starts_with([' ', '\t']) => {
            (Some(n as u8), wanted[n..].trim())
        }
        _ => (None, wanted),
    };
    let all = headings(body);
    let (i, h) = all
        .iter()
        .enumerate()
        .find(|(_, h)| h.text == text && level.is_none_or(|l| l == h.level))?;
    let start = line_end(body, h.range.end.saturating_sub(1).max(h.range.start));
    let end = all[i + 1..]
        .iter()
        .find(|next| next.level <= h.level)
        .map_or(body.len(), |next| next.range.start);
    Some(start..end.max(start))
}

/// The offset just past the line break of the line holding `at` (or the end of the text).
fn line_end(text: &str, at: usize) -> usize {
    text[at..].find('\n').map_or(text.len(), |i| at + i + 1)
}

/// Every named block in `body`. Markers are HTML comments `<!-- quire:begin NAME -->` and
/// `<!-- quire:end NAME -->` outside code.
pub fn blocks(body: &str) -> Result<Vec<Block>, String> {
    let mut markers = Vec::new(); // (is_begin, name, range)
    let mut html_start: Option<usize> = None;
    for (event, range) in Parser::new_ext(body, parser_options()).into_offset_iter() {
        match event {
            Event::Start(Tag::HtmlBlock) => html_start = Some(range.start),
            Event::End(TagEnd::HtmlBlock) => {
                if let Some(s) = html_start.take() {
                    find_markers(body, s..range.end, &mut markers);
                }
            }
            Event::InlineHtml(_) if html_start.is_none() => {
                find_markers(body, range, &mut markers);
            }
            _ => {}
        }
    }
    let mut out: Vec<Block> = Vec::new();
    let mut open: Option<(String, Range<usize>)> = None;
    for (is_begin, name, range) in markers {
        match (is_begin, open.take()) {
            (true, None) => open = Some((name, range)),
            (true, Some((outer, _))) => {
                return Err(format!(
                    "block `{name}` begins inside block `{outer}`; blocks cannot nest"
                ));
            }
            (false, Some((begin_name, begin))) if begin_name == name => {
                let starts_line = begin.start == 0 || body.as_bytes()[begin.start - 1] == b'\n';
                let begin_ends_line =
                    body[begin.end..].starts_with('\n') || body[begin.end..].starts_with("\r\n");
                let end_line_start = body[..range.start].rfind('\n').map_or(0, |i| i + 1);
                let end_starts_line = body[end_line_start..range.start].trim().is_empty();
                let line_mode = starts_line && begin_ends_line && end_starts_line;
                let content = if line_mode {
                    line_end(body, begin.end)..end_line_start
                } else {
                    begin.end..range.start
                };
                let content = content.start..content.end.max(content.start);
                out.push(Block {
                    name,
                    content,
                    line_mode,
                });
            }
            (false, Some((begin_name, _))) => {
                return Err(format!(
                    "block `{begin_name}` is closed by `quire:end {name}`; close it with `<!-- quire:end {begin_name} -->`"
                ));
            }
            (false, None) => {
                return Err(format!(
                    "`quire:end {name}` has no matching `quire:begin {name}`"
                ));
            }
        }
    }
    if let Some((name, _)) = open {
        return Err(format!(
            "block `{name}` is never closed; add `<!-- quire:end {name} -->`"
        ));
    }
    Ok(out)
}

/// Finds quire markers within `range` of `text`.
fn find_markers(text: &str, range: Range<usize>, out: &mut Vec<(bool, String, Range<usize>)>) {
    let region = &text[range.clone()];
    let mut from = 0;
    while let Some(i) = region[from..].find("<!--") {
        let open = from + i;
        // Search for the end after `<!--`, so `<!-->` cannot end before it starts.
        let Some(inner_end) = region[open + 4..].find("-->").map(|j| open + 4 + j) else {
            break;
        };
        let close = inner_end + 3;
        let inner = region[open + 4..inner_end].trim();
        let parsed = inner
            .strip_prefix("quire:begin")
            .map(|n| (true, n))
            .or_else(|| inner.strip_prefix("quire:end").map(|n| (false, n)));
        if let Some((is_begin, name)) = parsed
            && name.starts_with(char::is_whitespace)
        {
            let name = name.trim();
            if !name.is_empty() && !name.contains(char::is_whitespace) {
                out.push((
                    is_begin,
                    name.to_owned(),
                    range.start + open..range.start + close,
                ));
            }
        }
        from = close;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_skip_code_blocks() {
        let body = "# Top\n\n```\n## Tasks\n```\n\n## Tasks\n- [ ] a\n";
        let hs = headings(body);
        assert_eq!(hs.len(), 2);
        assert_eq!(hs[1].text, "Tasks");
        assert_eq!(&body[hs[1].range.clone()], "## Tasks\n");
    }

    #[test]
    fn section_ends_at_next_heading_of_same_or_higher_level() {
        let body = "# A\n## Tasks\n- [ ] a\n### Sub\nx\n## Next\ny\n";
        let s = section(body, "Tasks").unwrap();
        assert_eq!(&body[s], "- [ ] a\n### Sub\nx\n");
        let s = section(body, "# A").unwrap();
        assert_eq!(&body[s.clone()], &body[4..]);
        assert!(section(body, "### Tasks").is_none());
        assert!(section(body, "Missing").is_none());
        let s = section("## Last", "Last").unwrap();
        assert_eq!(s, 7..7);
    }

    #[test]
    fn blocks_in_line_and_inline_modes() {
        let body = "x\n<!-- quire:begin summary -->\nold\n<!-- quire:end summary -->\ny <!-- quire:begin n -->1<!-- quire:end n --> z\n";
        let bs = blocks(body).unwrap();
        assert_eq!(bs.len(), 2);
        assert_eq!(&body[bs[0].content.clone()], "old\n");
        assert!(bs[0].line_mode);
        assert_eq!(&body[bs[1].content.clone()], "1");
        assert!(!bs[1].line_mode);
    }

    #[test]
    fn degenerate_comments_are_not_markers() {
        for body in [
            "<!-->\n",
            "<!--->\n",
            "<!---->\n",
            "x <!--> y\n",
            "<!-- quire:begin -->\n",
            "<!--quire:beginx-->\n",
            "<!--",
        ] {
            assert_eq!(blocks(body).unwrap(), vec![], "{body:?}");
        }
    }

    #[test]
    fn markers_in_code_are_ignored_and_mismatches_explained() {
        let body = "```\n<!-- quire:begin a -->\n```\n";
        assert!(blocks(body).unwrap().is_empty());
        assert!(
            blocks("<!-- quire:begin a -->\n")
                .unwrap_err()
                .contains("never closed")
        );
        assert!(
            blocks("<!-- quire:end a -->\n")
                .unwrap_err()
                .contains("no matching")
        );
    }
}
