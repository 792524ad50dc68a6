//! A whole note read the way Obsidian reads it: title, front matter, tags, aliases, headings, list
//! items and tasks, links.
//!
//! One pulldown-cmark pass over the body gives the structure: headings, list items (a task is a list
//! item whose text starts with `[c]`; the status character is read from the source, since
//! pulldown-cmark itself only knows `[ ]` and `[x]`), links, and the code and HTML ranges that tags
//! must skip. Obsidian's `%%` comments hide what they span over several lines — list items inside
//! are not list items — so those regions are blanked (same byte offsets) before parsing. Tags are
//! then scanned on the original text outside code and HTML, which is also where Obsidian finds them,
//! comments included.

use std::ops::Range;

use pulldown_cmark::{Event, LinkType, Options, Parser, Tag, TagEnd};
use serde_json::{Map, Value};

use super::frontmatter::{FrontMatterError, split};
use super::task::{Status, TaskFields, parse_fields};

/// A note, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedNote {
    /// Front matter `title`, else the first heading, else the file name.
    pub title: String,
    /// The front matter (empty when absent or unreadable).
    pub front_matter: Map<String, Value>,
    /// Why the front matter could not be read, if it could not (the body is still parsed).
    pub front_matter_error: Option<FrontMatterError>,
    /// Front matter tags and inline tags, without `#`, first spelling kept, in order of appearance.
    pub tags: Vec<String>,
    /// Front matter `aliases` (or `alias`).
    pub aliases: Vec<String>,
    /// Every heading.
    pub headings: Vec<NoteHeading>,
    /// Every list item, tasks included (what Obsidian calls `listItems`).
    pub list_items: Vec<ListItem>,
    /// Every task.
    pub tasks: Vec<NoteTask>,
    /// Every link and embed.
    pub links: Vec<NoteLink>,
}

/// A heading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteHeading {
    /// 1 to 6.
    pub level: u8,
    /// Its text.
    pub text: String,
    /// 1-based line.
    pub line: usize,
}

/// A list item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListItem {
    /// 1-based line where the item starts.
    pub line: usize,
    /// The status character, when the item is a task.
    pub task: Option<char>,
}

/// A task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteTask {
    /// 1-based line.
    pub line: usize,
    /// Its status.
    pub status: Status,
    /// Its fields and description.
    pub fields: TaskFields,
    /// Tags on the task's line, without `#`.
    pub tags: Vec<String>,
    /// The nearest heading above it.
    pub heading: Option<String>,
}

/// What kind of link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// `[[Note]]`
    Wiki,
    /// `![[file]]` or `![alt](file)`
    Embed,
    /// `[text](note.md)`
    Markdown,
}

impl LinkKind {
    /// The kind's name, as stored.
    pub fn name(self) -> &'static str {
        match self {
            LinkKind::Wiki => "wikilink",
            LinkKind::Embed => "embed",
            LinkKind::Markdown => "markdown",
        }
    }
}

/// A link to a note or file in the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteLink {
    /// What kind.
    pub kind: LinkKind,
    /// The path part as written (percent-decoded for Markdown links); empty for a link within the
    /// note itself (`[[#Heading]]`).
    pub target: String,
    /// `#Heading`, `#Heading#Sub` or `#^block`, if any.
    pub subpath: Option<String>,
    /// The text shown (the alias of `[[Note|alias]]`, a Markdown link's text).
    pub display: Option<String>,
    /// 1-based line.
    pub line: usize,
}

/// Parses the note `text`; `file_stem` (the file name without `.md`) is the fallback title.
pub fn parse_note(file_stem: &str, text: &str) -> ParsedNote {
    let doc = split(text);
    let lines = LineIndex::new(text);
    let (front_matter, front_matter_error) = match doc.front_matter_map() {
        Ok(m) => (m, None),
        Err(e) => (Map::new(), Some(e)),
    };
    let base = doc.body_offset;
    let body = doc.body;
    let masked = mask_comment_blocks(body);

    let mut note = ParsedNote {
        front_matter,
        front_matter_error,
        ..ParsedNote::default()
    };
    let mut skip: Vec<Range<usize>> = Vec::new();
    let mut heading: Option<(u8, String, usize)> = None;
    let mut link: Option<(NoteLink, String)> = None;
    let mut code_start = None;
    let mut html_start = None;
    // Each task's line, status and text: made into tasks once the whole note is walked (on all
    // cores for a long list, straight into a list of the right size).
    let mut found_tasks: Vec<(usize, Status, &str)> = Vec::new();

    let options = Options::ENABLE_TABLES
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_WIKILINKS;
    for (event, range) in Parser::new_ext(&masked, options).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                heading = Some((level as u8, String::new(), range.start))
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, _, start)) = heading.take() {
                    note.headings.push(NoteHeading {
                        level,
                        text: heading_text(&body[start..range.end]),
                        line: lines.line(base + start),
                    });
                }
            }
            Event::Start(Tag::Item) => {
                // A nested item's range can start in the indentation, or even at the end of the line
                // before; the marker is where the item really is.
                let at = marker_start(&masked, range.start);
                let line = lines.line(base + at);
                let task = task_marker(&masked, at);
                note.list_items.push(ListItem {
                    line,
                    task: task.map(|(c, _)| c),
                });
                if let Some((c, text_start)) = task {
                    let text_end = body[text_start..]
                        .find('\n')
                        .map_or(body.len(), |i| text_start + i);
                    let raw = body[text_start..text_end].trim_end_matches('\r');
                    found_tasks.push((line, Status::from_char(c), raw));
                }
            }
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                ..
            }) => {
                link = make_link(link_type, &dest_url, false, lines.line(base + range.start))
                    .map(|l| (l, String::new()));
                skip.push(range);
            }
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                ..
            }) => {
                link = make_link(link_type, &dest_url, true, lines.line(base + range.start))
                    .map(|l| (l, String::new()));
                skip.push(range);
            }
            Event::End(TagEnd::Link | TagEnd::Image) => {
                if let Some((mut l, text)) = link.take() {
                    let text = text.trim();
                    if !text.is_empty() {
                        l.display = Some(text.to_owned());
                    }
                    note.links.push(l);
                }
            }
            Event::Text(t) => {
                if let Some((_, text, _)) = heading.as_mut() {
                    text.push_str(&t);
                }
                if let Some((_, text)) = link.as_mut() {
                    text.push_str(&t);
                }
            }
            Event::Code(t) => {
                if let Some((_, text, _)) = heading.as_mut() {
                    text.push_str(&t);
                }
                if let Some((_, text)) = link.as_mut() {
                    text.push_str(&t);
                }
                skip.push(range);
            }
            Event::Start(Tag::CodeBlock(_)) => code_start = Some(range.start),
            Event::End(TagEnd::CodeBlock) => {
                if let Some(s) = code_start.take() {
                    skip.push(s..range.end);
                }
            }
            Event::Start(Tag::HtmlBlock) => html_start = Some(range.start),
            Event::End(TagEnd::HtmlBlock) => {
                if let Some(s) = html_start.take() {
                    skip.push(s..range.end);
                }
            }
            Event::InlineHtml(_) | Event::Html(_) if html_start.is_none() => skip.push(range),
            Event::InlineMath(_) | Event::DisplayMath(_) => skip.push(range),
            _ => {}
        }
    }

    note.tasks = read_tasks(&found_tasks);

    // Tags: front matter first, then inline ones in order; tasks get those on their own line.
    skip.sort_by_key(|r| r.start);
    let inline = scan_tags(body, &skip);
    let mut seen = std::collections::HashSet::new();
    for tag in front_matter_strings(&note.front_matter, &["tags", "tag"])
        .into_iter()
        .chain(inline.iter().map(|(_, t)| t.clone()))
    {
        if seen.insert(tag.to_lowercase()) {
            note.tags.push(tag);
        }
    }
    // Tags and headings are in document order, so each task finds its own by binary search: a
    // note with 160,000 tasks costs as many lookups, not 160,000 times its tag count.
    let headings = &note.headings;
    let place = |task: &mut NoteTask| {
        let line_range = lines.range(task.line);
        let first = inline.partition_point(|(at, _)| base + at < line_range.start);
        task.tags = inline[first..]
            .iter()
            .take_while(|(at, _)| base + at < line_range.end)
            .map(|(_, t)| t.clone())
            .collect();
        let above = headings.partition_point(|h| h.line < task.line);
        task.heading = above.checked_sub(1).map(|i| headings[i].text.clone());
    };
    if note.tasks.len() < MANY_TASKS {
        note.tasks.iter_mut().for_each(place);
    } else {
        use rayon::prelude::*;
        note.tasks.par_iter_mut().with_min_len(1024).for_each(place);
    }
    note.aliases = front_matter_strings(&note.front_matter, &["aliases", "alias"]);
    note.title = note
        .front_matter
        .get("title")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        // A note that opens with an H1 is titled by it; otherwise, as in Obsidian, by its file
        // name, never by a lower heading (`### Change the title` is a section, not the title).
        .or_else(|| {
            note.headings
                .first()
                .filter(|h| h.level == 1)
                .map(|h| h.text.clone())
                .filter(|t| !t.is_empty())
        })
        .unwrap_or_else(|| file_stem.to_owned());
    note
}

/// From how many tasks a note's tasks are worth reading and recording on all cores (one note of
/// 160,000 tasks is as much work as a vault).
pub const MANY_TASKS: usize = 4096;

/// The tasks found, their fields read from their text: on all cores for a note of [`MANY_TASKS`]
/// or more.
fn read_tasks(found: &[(usize, Status, &str)]) -> Vec<NoteTask> {
    use rayon::prelude::*;
    let task = |&(line, status, text): &(usize, Status, &str)| NoteTask {
        line,
        status,
        fields: parse_fields(text),
        tags: Vec::new(),
        heading: None,
    };
    if found.len() < MANY_TASKS {
        found.iter().map(task).collect()
    } else {
        found.par_iter().with_min_len(1024).map(task).collect()
    }
}

/// A heading's text as written (Obsidian keeps `[[links]]` and emphasis marks in it): an ATX
/// heading without its `#` markers, a setext heading without its underline.
fn heading_text(source: &str) -> String {
    let first = source.lines().next().unwrap_or("").trim();
    if let Some(atx) = first.strip_prefix('#') {
        let text = atx.trim_start_matches('#').trim();
        // An optional closing sequence: ` ##` at the end.
        let closed = text.trim_end_matches('#');
        let text =
            if closed.len() < text.len() && (closed.is_empty() || closed.ends_with([' ', '\t'])) {
                closed.trim_end()
            } else {
                text
            };
        return text.to_owned();
    }
    let mut lines: Vec<&str> = source.lines().map(str::trim).collect();
    lines.pop(); // the `===` or `---` underline
    lines.join(" ").trim().to_owned()
}

/// The first byte at or after `at` that is not indentation, a line break or a blockquote `>`.
pub(crate) fn marker_start(text: &str, at: usize) -> usize {
    let rest = &text[at..];
    at + (rest.len() - rest.trim_start_matches([' ', '\t', '\n', '\r', '>']).len())
}

/// If the list item starting at `at` is a task, its status character and where its text starts.
pub(crate) fn task_marker(text: &str, at: usize) -> Option<(char, usize)> {
    let rest = &text[at..];
    let after_marker = if let Some(r) = rest.strip_prefix(['-', '*', '+']) {
        r
    } else {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        rest[digits..].strip_prefix(['.', ')'])?
    };
    let spaces = after_marker
        .bytes()
        .take_while(|b| *b == b' ' || *b == b'\t')
        .count();
    if spaces == 0 {
        return None;
    }
    let bracket = after_marker[spaces..].strip_prefix('[')?;
    let mut chars = bracket.chars();
    let c = chars.next().filter(|c| *c != '\n' && *c != '\r')?;
    let after = chars.as_str().strip_prefix(']')?;
    if !(after.is_empty() || after.starts_with([' ', '\t', '\n', '\r'])) {
        return None;
    }
    let text_start = text.len() - after.len();
    let lead = after
        .bytes()
        .take_while(|b| *b == b' ' || *b == b'\t')
        .count();
    Some((c, text_start + lead))
}

pub(crate) fn make_link(
    link_type: LinkType,
    dest: &str,
    image: bool,
    line: usize,
) -> Option<NoteLink> {
    let wiki = matches!(link_type, LinkType::WikiLink { .. });
    let kind = match (wiki, image) {
        (_, true) => LinkKind::Embed,
        (true, false) => LinkKind::Wiki,
        (false, false) => LinkKind::Markdown,
    };
    if matches!(link_type, LinkType::Autolink | LinkType::Email) {
        return None;
    }
    let dest = dest.trim();
    if !wiki && has_scheme(dest) {
        return None;
    }
    // Inside a table Obsidian writes the alias pipe escaped (`[[Note\|alias]]`, `![[a.png\|100]]`),
    // so the cell is not split there; the backslash belongs to the pipe, not to the target.
    let dest = match link_type {
        LinkType::WikiLink { has_pothole: true } => dest.strip_suffix('\\').unwrap_or(dest),
        _ => dest,
    };
    let decoded;
    let dest = if wiki {
        dest
    } else {
        decoded = percent_encoding::percent_decode_str(dest)
            .decode_utf8_lossy()
            .into_owned();
        decoded.as_str()
    };
    let (target, subpath) = match dest.find('#') {
        Some(i) => (&dest[..i], Some(dest[i..].to_owned())),
        // `[[Note^block]]`: a block reference without the `#`.
        None if wiki && dest.contains('^') => {
            let i = dest.find('^').unwrap_or(dest.len());
            (&dest[..i], Some(format!("#{}", &dest[i..])))
        }
        None => (dest, None),
    };
    if target.trim().is_empty() && subpath.is_none() {
        return None; // `[]()`: a link to nothing
    }
    Some(NoteLink {
        kind,
        target: target.trim().to_owned(),
        subpath,
        display: None,
        line,
    })
}

pub(crate) fn has_scheme(dest: &str) -> bool {
    match dest.find(':') {
        Some(i) if i > 1 => dest[..i]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')),
        _ => false,
    }
}

/// Blanks Obsidian `%% … %%` comments that span lines, keeping byte offsets and line breaks, so the
/// structure inside them is invisible to the parser. Comments within one line stay (list items are
/// found at line starts, and what is inside an inline comment is still indexed by Obsidian).
pub(crate) fn mask_comment_blocks(body: &str) -> std::borrow::Cow<'_, str> {
    if !body.contains("%%") {
        return std::borrow::Cow::Borrowed(body);
    }
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(open) = rest.find("%%") {
        let after = &rest[open + 2..];
        let close = after
            .find("%%")
            .map(|i| open + 2 + i + 2)
            .unwrap_or(rest.len());
        let region = &rest[open..close];
        out.push_str(&rest[..open]);
        if region.contains('\n') {
            for c in region.chars() {
                if c == '\n' || c == '\r' {
                    out.push(c);
                } else {
                    out.extend(std::iter::repeat_n(' ', c.len_utf8()));
                }
            }
        } else {
            out.push_str(region);
        }
        rest = &rest[close..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Whether `c` may be part of a tag: anything but whitespace, ASCII punctuation other than `-`, `_`
/// and `/`, and the Unicode punctuation blocks (which include zero-width spaces).
fn is_tag_char(c: char) -> bool {
    if c.is_whitespace() {
        return false;
    }
    if c.is_ascii_punctuation() {
        return matches!(c, '-' | '_' | '/');
    }
    !matches!(c, '\u{2000}'..='\u{206F}' | '\u{2E00}'..='\u{2E7F}' | '\u{3000}'..='\u{303F}' | '\u{FEFF}')
}

/// Inline tags in `text` outside the `skip` ranges (sorted): `#tag` at the start or after whitespace,
/// not all digits. Returns each tag's offset and text (without `#`).
pub(crate) fn scan_tags(text: &str, skip: &[Range<usize>]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut skip_ix = 0;
    let mut i = 0;
    while let Some(found) = text[i..].find('#') {
        let at = i + found;
        i = at + 1;
        while skip_ix < skip.len() && skip[skip_ix].end <= at {
            skip_ix += 1;
        }
        if skip.get(skip_ix).is_some_and(|r| r.contains(&at)) {
            continue;
        }
        if at > 0 {
            // After a word character or a path separator `#` is part of a word or URL
            // (`C#`, `page#frag`, `/#/`); after an opening bracket or quote it starts a tag.
            let prev = text[..at].chars().next_back().unwrap_or(' ');
            if !(prev.is_whitespace() || "([{\"'*~>,.;:!?|".contains(prev)) {
                continue;
            }
        }
        let tag: String = text[at + 1..]
            .chars()
            .take_while(|c| is_tag_char(*c))
            .collect();
        if tag.is_empty()
            || tag.chars().all(|c| c.is_ascii_digit())
            || bytes.get(at + 1) == Some(&b'#')
        {
            continue;
        }
        i = at + 1 + tag.len();
        out.push((at, tag));
    }
    out
}

/// String values of the first of `keys` present in the front matter: a list of strings, or one
/// string of comma- or space-separated values (tags lose a leading `#`).
fn front_matter_strings(fm: &Map<String, Value>, keys: &[&str]) -> Vec<String> {
    let Some(value) = fm
        .iter()
        .find(|(k, _)| keys.contains(&k.as_str()))
        .map(|(_, v)| v)
    else {
        return Vec::new();
    };
    let tags = keys.contains(&"tags");
    let clean = |s: &str| {
        let s = s.trim();
        let s = if tags { s.trim_start_matches('#') } else { s };
        (!s.is_empty()).then(|| s.to_owned())
    };
    match value {
        // Obsidian reads a string as one tag, which must be a valid one: `tags: a, b` gives none.
        Value::String(s) if tags => clean(s)
            .filter(|t| t.chars().all(is_tag_char))
            .into_iter()
            .collect(),
        Value::String(s) => s.split(',').filter_map(clean).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => clean(s),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Byte offset → 1-based line.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|s| *s <= offset)
    }

    fn range(&self, line: usize) -> Range<usize> {
        let start = self.starts.get(line - 1).copied().unwrap_or(usize::MAX);
        let end = self.starts.get(line).copied().unwrap_or(usize::MAX);
        start..end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_lists_and_fields() {
        let text = "---\ntitle: T\n---\n# Head\n\n- [ ] a 📅 2026-12-01 #x\n- plain\n  1. [/] nested ⏫\n> - [-] quoted\n\n```\n- [ ] code\n```\n* [?] odd\n";
        let n = parse_note("f", text);
        assert_eq!(n.title, "T");
        let items: Vec<_> = n.list_items.iter().map(|i| (i.line, i.task)).collect();
        assert_eq!(
            items,
            [
                (6, Some(' ')),
                (7, None),
                (8, Some('/')),
                (9, Some('-')),
                (14, Some('?'))
            ]
        );
        assert_eq!(n.tasks[0].fields.description, "a #x");
        assert_eq!(n.tasks[0].tags, ["x"]);
        assert_eq!(n.tasks[0].heading.as_deref(), Some("Head"));
        assert_eq!(n.tasks[1].status, Status::InProgress);
        assert_eq!(n.tasks[1].fields.description, "nested");
        assert_eq!(n.tasks[3].status, Status::Other('?'));
    }

    #[test]
    fn comment_blocks_hide_list_items_but_not_tags() {
        let text = "%%\n- [ ] hidden #t1\n%%\n- [ ] shown %% #t2 %%\n";
        let n = parse_note("f", text);
        assert_eq!(n.tasks.len(), 1);
        assert_eq!(n.tasks[0].line, 4);
        assert_eq!(n.tags, ["t1", "t2"]);
    }

    #[test]
    fn tags_follow_obsidian_rules() {
        let text = "---\ntags: [fm, Shared]\n---\n#a #b/c x#no #123 #1a `#code` <!-- #html --> [x](#anchor) #shared #é\u{200b}x\n";
        let n = parse_note("f", text);
        assert_eq!(n.tags, ["fm", "Shared", "a", "b/c", "1a", "é"]);
        // A front matter string is one tag; `a, b` is not a valid tag (Obsidian agrees).
        assert_eq!(parse_note("f", "---\ntags: one\n---\n").tags, ["one"]);
        assert!(
            parse_note("f", "---\ntags: one, two\n---\n")
                .tags
                .is_empty()
        );
        assert_eq!(parse_note("f", "(#p) [#q] a/#no C#no\n").tags, ["p", "q"]);
    }

    #[test]
    fn links_of_every_kind() {
        let text = "[[Note]] [[dir/Other#Head|shown]] ![[pic.png]] [md](../x/My%20Note.md#sec) [web](https://e.org) [[#local]] [[N^blk]] ![alt](img.jpg)\n`[[not]]`\n";
        let n = parse_note("f", text);
        let got: Vec<_> = n
            .links
            .iter()
            .map(|l| {
                (
                    l.kind,
                    l.target.as_str(),
                    l.subpath.as_deref(),
                    l.display.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (LinkKind::Wiki, "Note", None, Some("Note")),
                (LinkKind::Wiki, "dir/Other", Some("#Head"), Some("shown")),
                (LinkKind::Embed, "pic.png", None, Some("pic.png")),
                (
                    LinkKind::Markdown,
                    "../x/My Note.md",
                    Some("#sec"),
                    Some("md")
                ),
                (LinkKind::Wiki, "", Some("#local"), Some("#local")),
                (LinkKind::Wiki, "N", Some("#^blk"), Some("N^blk")),
                (LinkKind::Embed, "img.jpg", None, Some("alt")),
            ]
        );
    }

    #[test]
    fn title_falls_back_to_an_opening_h1_then_file_name() {
        assert_eq!(parse_note("f", "text\n# First\n## Second\n").title, "First");
        // A lower heading is a section, never the title (Obsidian and Quartz use the file name).
        assert_eq!(parse_note("Tips", "### Change the title\n").title, "Tips");
        assert_eq!(parse_note("f", "text\n## Second\n# First\n").title, "f");
        assert_eq!(parse_note("file name", "no heading\n").title, "file name");
        let n = parse_note("f", "---\naliases: [A, B]\n---\n");
        assert_eq!(n.aliases, ["A", "B"]);
    }

    #[test]
    fn bad_front_matter_still_indexes_the_body() {
        let n = parse_note("f", "---\na: [oops\n---\n- [ ] still here\n");
        assert!(n.front_matter_error.is_some());
        assert_eq!(n.tasks.len(), 1);
        assert_eq!(n.tasks[0].line, 4);
    }

    #[test]
    fn crlf_and_bom() {
        let n = parse_note(
            "f",
            "\u{feff}---\r\ntitle: T\r\n---\r\n- [x] done ✅ 2026-01-02\r\n",
        );
        assert_eq!(n.title, "T");
        assert_eq!(n.tasks[0].line, 4);
        assert_eq!(n.tasks[0].fields.description, "done");
        assert!(n.tasks[0].fields.done.as_ref().unwrap().date.is_some());
    }

    proptest::proptest! {
        #![proptest_config(crate::fuzz::config(1500))]

        /// Any note is read without a panic: tasks and headings have lines inside the note, in
        /// order, and every task's heading is one of the note's headings.
        #[test]
        fn fuzz_any_note_is_read(text in crate::fuzz::tricky_text(crate::render::MARKDOWN_PIECES, 60)) {
            let n = parse_note("f", &text);
            let lines = text.split_inclusive('\n').count().max(1) + 1;
            let mut last = 0;
            for t in &n.tasks {
                proptest::prop_assert!(t.line >= 1 && t.line <= lines, "{} of {}", t.line, lines);
                proptest::prop_assert!(t.line >= last);
                last = t.line;
                if let Some(h) = &t.heading {
                    proptest::prop_assert!(n.headings.iter().any(|x| &x.text == h));
                }
            }
            for h in &n.headings {
                proptest::prop_assert!(h.line >= 1 && h.line <= lines);
            }
        }
    }
}
