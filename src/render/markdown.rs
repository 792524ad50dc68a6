//! A note's Markdown to HTML, the way Obsidian shows it.
//!
//! pulldown-cmark parses (tables, footnotes, strikethrough, task lists, wikilinks); this module
//! rewrites the event stream before pulldown-cmark writes it out:
//!
//! - wikilinks, embeds and Markdown links to vault files are resolved with the index's
//!   [`Resolver`](crate::index::Resolver) — the same answer `quire check` gives — into relative URLs;
//!   links to nothing, or to notes that are not published, become marked `<span>`s, so every link
//!   in the site leads somewhere;
//! - `![[note]]` transcludes the note (to a depth of three, never in a cycle), `![[image.png]]` is an
//!   image, other attachments are links; attachments used are reported so they are copied;
//! - `> [!type] Title` blockquotes become callouts;
//! - task items keep their status character (`data-task`), and show a disabled checkbox;
//! - headings get anchors (`id`) and feed the table of contents; `^block` ids become anchors;
//! - inline `#tags` link to their tag pages; code blocks are highlighted;
//! - link and image URLs with schemes other than http, https, mailto and tel are dropped.
//!
//! Raw HTML is passed through and the whole note is then sanitized (by the caller, with ammonia);
//! notes without raw HTML need no sanitizing, since everything else here is escaped by construction.

use std::collections::{BTreeSet, HashMap};

use pulldown_cmark::{
    CodeBlockKind, CowStr, Event, HeadingLevel, LinkType, Options, Parser, Tag, TagEnd,
};

use super::escape::{escape, escape_into};
use super::highlight;
use super::url::{self, SitePath};
use crate::index::Resolver;
use crate::markdown::note::{
    has_scheme, make_link, marker_start, mask_comment_blocks, scan_tags, task_marker,
};
use crate::markdown::{NoteLink, split};

/// How deep notes embed notes.
pub(crate) const MAX_EMBED_DEPTH: u8 = 3;

/// Characters of plain text kept per note for the search index.
const EXCERPT_CHARS: usize = 280;

/// What a note's links are resolved against.
pub(crate) struct Linker<'a> {
    /// The index's resolver (every note and attachment of the vault).
    pub(crate) resolver: &'a Resolver,
    /// The text of a note (vault path), for transclusion.
    pub(crate) load: &'a (dyn Fn(&str) -> Option<String> + Sync),
    /// The page of a published note (vault path): known already, no need to work it out again.
    pub(crate) page_of: &'a (dyn Fn(&str) -> Option<SitePath> + Sync),
}

/// A heading, for the table of contents.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct TocEntry {
    pub(crate) level: u8,
    pub(crate) text: String,
    pub(crate) id: String,
}

/// A rendered note.
#[derive(Debug, Clone, Default)]
pub(crate) struct NoteHtml {
    pub(crate) html: String,
    pub(crate) toc: Vec<TocEntry>,
    /// Whether raw HTML occurred (then the caller sanitizes `html`).
    pub(crate) raw_html: bool,
    /// Attachments (vault paths) the note shows or links to.
    pub(crate) attachments: BTreeSet<String>,
    /// Notes it transcludes (vault paths), at any depth.
    pub(crate) embeds: BTreeSet<String>,
    /// Links that resolve to nothing.
    pub(crate) broken: usize,
    /// The start of the note's plain text.
    pub(crate) excerpt: String,
    /// Its length in characters.
    excerpt_chars: usize,
    /// Whether a block boundary or line break came since the excerpt's last text, so the next
    /// text is set apart by a space (inline pieces such as a link's text join as written).
    excerpt_gap: bool,
}

/// Renders the note at vault path `path` (text `text`) for display in the page at `host`.
pub(crate) fn render_note(
    linker: &Linker<'_>,
    host: &SitePath,
    path: &str,
    text: &str,
    title: &str,
) -> NoteHtml {
    let mut out = NoteHtml::default();
    let mut chain = vec![path.to_owned()];
    out.html = render_inner(linker, host, path, text, &mut out, &mut chain, 0);
    // A note that opens with its own title as `# Title` would show it twice under the page's
    // title; the page's heading stands for it.
    if let Some(first) = out.toc.first()
        && first.level == 1
        && first.text.eq_ignore_ascii_case(title.trim())
        && out.html.starts_with("<h1 ")
        && let Some(end) = out.html.find("</h1>\n")
    {
        out.html.replace_range(..end + "</h1>\n".len(), "");
        out.toc.remove(0);
    }
    // A cut excerpt ends at a word boundary, marked as cut.
    if out.excerpt_chars >= EXCERPT_CHARS
        && let Some(space) = out.excerpt.rfind(char::is_whitespace)
    {
        out.excerpt.truncate(space);
        let kept = out.excerpt.trim_end().len();
        out.excerpt.truncate(kept);
        out.excerpt.push('…');
    }
    let kept = out.excerpt.trim_end().len();
    out.excerpt.truncate(kept);
    out
}

/// Whether `event` separates the text before it from the text after it, as a block boundary or a
/// line break does.
fn separates_text(event: &Event<'_>) -> bool {
    match event {
        Event::Start(tag) => !matches!(
            tag,
            Tag::Emphasis
                | Tag::Strong
                | Tag::Strikethrough
                | Tag::Superscript
                | Tag::Subscript
                | Tag::Link { .. }
                | Tag::Image { .. }
        ),
        Event::End(tag) => !matches!(
            tag,
            TagEnd::Emphasis
                | TagEnd::Strong
                | TagEnd::Strikethrough
                | TagEnd::Superscript
                | TagEnd::Subscript
                | TagEnd::Link
                | TagEnd::Image
        ),
        Event::SoftBreak | Event::HardBreak | Event::Rule | Event::Html(_) => true,
        _ => false,
    }
}

fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_WIKILINKS
}

/// Where a link points, in site terms.
enum Target {
    /// A published note's page (with a fragment, if any), and the note.
    Page { href: String, path: String },
    /// An attachment (its vault path) at a URL.
    File { path: String, url: String },
    /// A note that exists but is not published.
    Unpublished,
    /// Nothing.
    Broken,
}

fn render_inner(
    linker: &Linker<'_>,
    host: &SitePath,
    path: &str,
    text: &str,
    out: &mut NoteHtml,
    chain: &mut Vec<String>,
    depth: u8,
) -> String {
    let doc = split(text);
    let body = doc.body;
    let mut events: Vec<Event<'_>> = Vec::new();
    // The heading being read: its level, its events (emitted at its end, with an id) and its text.
    let mut heading: Option<HeadingLevel> = None;
    let mut heading_events: Vec<Event<'_>> = Vec::new();
    let mut heading_text = String::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut code: Option<(String, String)> = None;
    // Link rewriting: what to emit at the matching End.
    let mut link_ends: Vec<LinkEnd> = Vec::new();
    let mut skip_until_end = 0usize; // inside an embed whose inner events are replaced
    let mut callouts: Vec<bool> = Vec::new(); // per open blockquote: is it a callout?
    let mut strip_callout_title = false;
    // For a task whose status pulldown-cmark does not know (`[/]`, `[-]`): where its text starts;
    // the marker's own text events before that are dropped.
    let mut task_text_from: Option<usize> = None;
    let mut in_link = 0usize;
    // The paragraph a block embed replaced: its end is dropped too.
    let mut drop_paragraph_end = false;
    let root = host.root_prefix();

    // The same query the index makes for this link (`make_link`), so the page and `quire check`
    // agree on what it points to.
    let resolve = |link: &NoteLink| -> Target {
        let Some(resolved) = linker.resolver.resolve(path, link.kind, &link.target) else {
            return Target::Broken;
        };
        if !crate::markdown::is_note_path(&resolved) {
            let file = SitePath::file(&resolved);
            return Target::File {
                url: file.relative_from(host),
                path: resolved,
            };
        }
        let Some(target_page) = (linker.page_of)(&resolved) else {
            return Target::Unpublished;
        };
        // `[[#Heading]]` in the page itself is just the fragment; in a transcluded note it leads to
        // that note's page.
        let mut href = if link.target.is_empty() && depth == 0 {
            String::new()
        } else {
            target_page.relative_from(host)
        };
        if let Some(sub) = &link.subpath {
            href.push('#');
            href.push_str(&url::encode(&fragment_anchor(sub.trim_start_matches('#'))));
        }
        if href.is_empty() {
            href.push_str("./");
        }
        Target::Page {
            href,
            path: resolved,
        }
    };

    let masked = mask_comment_blocks(body);
    let footed = inline_footnotes(&masked);
    let masked: &str = footed.as_deref().unwrap_or(&masked);
    let mut text_state = TextState::default();
    let parser = Parser::new_ext(masked, options()).into_offset_iter();
    for (event, range) in parser {
        // A highlight left open at the end of its block was two literal `=` after all.
        if let Event::End(end) = &event
            && ends_block(end)
        {
            text_state.marks.open = None;
        }
        if separates_text(&event) {
            out.excerpt_gap = true;
        }
        if skip_until_end > 0 {
            match event {
                Event::Start(Tag::Image { .. } | Tag::Link { .. }) => skip_until_end += 1,
                Event::End(TagEnd::Image | TagEnd::Link) => skip_until_end -= 1,
                _ => {}
            }
            if skip_until_end > 0 {
                continue;
            }
            continue; // the End of the replaced embed itself
        }
        if let Some((lang, buf)) = code.as_mut() {
            match event {
                Event::Text(t) => buf.push_str(&t),
                Event::End(TagEnd::CodeBlock) => {
                    let mut html = String::with_capacity(buf.len() * 2);
                    if lang.is_empty() {
                        html.push_str("<pre><code>");
                    } else {
                        html.push_str("<pre><code class=\"language-");
                        escape_into(lang, &mut html);
                        html.push_str("\">");
                    }
                    highlight::highlight(lang, buf, &mut html);
                    html.push_str("</code></pre>\n");
                    events.push(Event::Html(CowStr::from(html)));
                    code = None;
                }
                _ => {}
            }
            continue;
        }
        // A link or code on a callout's title line ends the stripping of that line; the event
        // itself is handled as anywhere else (a link resolved, its scheme checked). Pushing it
        // as it came let `> [!note] [x](javascript:…)` through unchecked (found by fuzzing).
        if strip_callout_title && matches!(event, Event::Start(Tag::Link { .. }) | Event::Code(_)) {
            strip_callout_title = false;
        }
        let in_heading = heading.is_some();
        let sink: &mut Vec<Event<'_>> = if in_heading {
            &mut heading_events
        } else {
            &mut events
        };
        let htext = in_heading.then_some(&mut heading_text);
        match event {
            Event::Start(Tag::CodeBlock(kind)) => {
                let lang = match kind {
                    CodeBlockKind::Fenced(info) => {
                        info.split_whitespace().next().unwrap_or("").to_owned()
                    }
                    CodeBlockKind::Indented => String::new(),
                };
                code = Some((lang, String::new()));
            }
            Event::Start(Tag::Heading { level, .. }) if !in_heading => {
                heading = Some(level);
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(level) = heading.take() {
                    let inner = std::mem::take(&mut heading_events);
                    let text = std::mem::take(&mut heading_text);
                    let base = url::anchor(&text);
                    let n = ids.entry(base.clone()).or_insert(0);
                    let id = if *n == 0 {
                        base.clone()
                    } else {
                        format!("{base}-{n}")
                    };
                    *n += 1;
                    if depth == 0 {
                        out.toc.push(TocEntry {
                            level: level as u8,
                            text: text.trim().to_owned(),
                            id: id.clone(),
                        });
                    }
                    let lvl = level as u8;
                    events.push(Event::Html(CowStr::from(format!(
                        "<h{lvl} id=\"{}\">",
                        escape(&id)
                    ))));
                    events.extend(inner);
                    events.push(Event::Html(CowStr::from(format!("</h{lvl}>\n"))));
                }
            }
            Event::Start(Tag::BlockQuote(kind)) => {
                let callout = callout_at(masked, range.start).filter(|_| kind.is_none());
                match callout {
                    Some((kind, fold, title)) => {
                        let mut html = String::new();
                        html.push_str("<div class=\"callout\" data-callout=\"");
                        escape_into(&kind, &mut html);
                        html.push('"');
                        if !fold.is_empty() {
                            html.push_str(" data-fold=\"");
                            html.push_str(if fold == "+" { "open" } else { "closed" });
                            html.push('"');
                        }
                        html.push_str("><div class=\"callout-title\">");
                        let title = if title.is_empty() {
                            capitalise(&kind)
                        } else {
                            title
                        };
                        escape_into(&title, &mut html);
                        html.push_str("</div><div class=\"callout-content\">\n");
                        sink.push(Event::Html(CowStr::from(html)));
                        callouts.push(true);
                        strip_callout_title = true;
                    }
                    None => {
                        callouts.push(false);
                        sink.push(Event::Start(Tag::BlockQuote(kind)));
                    }
                }
            }
            Event::End(TagEnd::BlockQuote(k)) => {
                if callouts.pop() == Some(true) {
                    sink.push(Event::Html(CowStr::from("</div></div>\n")));
                } else {
                    sink.push(Event::End(TagEnd::BlockQuote(k)));
                }
            }
            Event::Start(Tag::Paragraph) if strip_callout_title => {
                // The callout's first line (`[!type] Title`) was shown as its title; drop it.
                sink.push(Event::Start(Tag::Paragraph));
            }
            Event::Text(_) | Event::SoftBreak | Event::HardBreak if strip_callout_title => {
                if matches!(event, Event::SoftBreak | Event::HardBreak) {
                    strip_callout_title = false;
                }
            }
            Event::End(TagEnd::Paragraph) if drop_paragraph_end => {
                drop_paragraph_end = false;
            }
            Event::End(TagEnd::Paragraph) if strip_callout_title => {
                strip_callout_title = false;
                // An empty paragraph is left when the callout has only its title line.
                if matches!(sink.last(), Some(Event::Start(Tag::Paragraph))) {
                    sink.pop();
                } else {
                    sink.push(Event::End(TagEnd::Paragraph));
                }
            }
            Event::Start(Tag::Item) => {
                let at = marker_start(masked, range.start);
                match task_marker(masked, at) {
                    Some((c, text_start)) => {
                        let mut html = String::from("<li class=\"task");
                        html.push_str(match c {
                            ' ' => " task-open",
                            'x' | 'X' => " task-done",
                            '/' => " task-in-progress",
                            '-' => " task-cancelled",
                            _ => " task-other",
                        });
                        html.push_str("\" data-task=\"");
                        escape_into(&c.to_string(), &mut html);
                        html.push_str("\"><input type=\"checkbox\" disabled");
                        if matches!(c, 'x' | 'X') {
                            html.push_str(" checked");
                        }
                        // A control needs a name (WCAG 4.1.2): the task's status; its text follows.
                        html.push_str(match c {
                            ' ' => " aria-label=\"open\"",
                            'x' | 'X' => " aria-label=\"done\"",
                            '/' => " aria-label=\"in progress\"",
                            '-' => " aria-label=\"cancelled\"",
                            _ => " aria-label=\"other status\"",
                        });
                        html.push_str("> ");
                        sink.push(Event::Html(CowStr::from(html)));
                        // pulldown-cmark marks `[ ]`/`[x]` itself; any other character is still text.
                        if !matches!(c, ' ' | 'x' | 'X') {
                            task_text_from = Some(text_start);
                        }
                    }
                    None => sink.push(Event::Start(Tag::Item)),
                }
            }
            Event::TaskListMarker(_) => {}
            Event::Text(t) if task_text_from.is_some_and(|from| range.start < from) => {
                let from = task_text_from.unwrap_or(range.start);
                if range.end > from {
                    task_text_from = None;
                    let rest = t
                        .get(t.len().saturating_sub(range.end - from)..)
                        .unwrap_or("")
                        .trim_start()
                        .to_owned();
                    if !rest.is_empty() {
                        push_event(
                            sink,
                            Event::Text(CowStr::from(rest)),
                            out,
                            in_link > 0,
                            htext,
                            &root,
                            &mut text_state,
                        );
                    }
                }
            }
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                let wiki = matches!(link_type, LinkType::WikiLink { .. });
                let dest = dest_url.to_string();
                if matches!(link_type, LinkType::Autolink | LinkType::Email)
                    || (!wiki && has_scheme(&dest))
                {
                    if safe_scheme(&dest) {
                        link_ends.push(LinkEnd::Link);
                        in_link += 1;
                        sink.push(Event::Start(Tag::Link {
                            link_type,
                            dest_url,
                            title,
                            id,
                        }));
                    } else {
                        link_ends.push(LinkEnd::Span);
                        sink.push(Event::Html(CowStr::from("<span class=\"link-unsafe\">")));
                    }
                    continue;
                }
                let Some(link) = make_link(link_type, &dest, false, 0) else {
                    // `[text]()`: a link to nothing in particular; keep the text.
                    link_ends.push(LinkEnd::Span);
                    sink.push(Event::Html(CowStr::from("<span class=\"link-empty\">")));
                    continue;
                };
                let href = match resolve(&link) {
                    Target::Page { href, .. } => Some(href),
                    Target::File { path: p, url } => {
                        out.attachments.insert(p);
                        Some(url)
                    }
                    other => {
                        push_unresolved(sink, &mut link_ends, out, other, &dest);
                        None
                    }
                };
                if let Some(href) = href {
                    link_ends.push(LinkEnd::Link);
                    in_link += 1;
                    let mut html = String::from(if wiki {
                        "<a class=\"wikilink\" href=\""
                    } else {
                        "<a class=\"internal\" href=\""
                    });
                    escape_into(&href, &mut html);
                    html.push_str("\">");
                    sink.push(Event::Html(CowStr::from(html)));
                }
            }
            Event::End(TagEnd::Link) => match link_ends.pop() {
                Some(LinkEnd::Link) => {
                    in_link = in_link.saturating_sub(1);
                    sink.push(Event::Html(CowStr::from("</a>")));
                }
                _ => sink.push(Event::Html(CowStr::from("</span>"))),
            },
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                let wiki = matches!(link_type, LinkType::WikiLink { .. });
                let dest = dest_url.to_string();
                if !wiki && has_scheme(&dest) {
                    if safe_scheme(&dest) && !dest.starts_with("mailto:") {
                        link_ends.push(LinkEnd::Image);
                        sink.push(Event::Start(Tag::Image {
                            link_type,
                            dest_url,
                            title,
                            id,
                        }));
                    } else {
                        link_ends.push(LinkEnd::Span);
                        sink.push(Event::Html(CowStr::from("<span class=\"link-unsafe\">")));
                    }
                    continue;
                }
                let Some(link) = make_link(link_type, &dest, true, 0) else {
                    link_ends.push(LinkEnd::Span);
                    sink.push(Event::Html(CowStr::from("<span class=\"link-empty\">")));
                    continue;
                };
                let target = resolve(&link);
                match target {
                    Target::File { path: p, url: href } => {
                        let image = is_image(&p);
                        out.attachments.insert(p.clone());
                        let size = image
                            .then(|| masked.get(range.clone()).and_then(embed_size))
                            .flatten();
                        if let Some((width, height)) = size {
                            // `![[a.png|100]]`, `![[a.png|100x80]]`: a size, as Obsidian reads it,
                            // not alt text.
                            let mut html = String::from("<img src=\"");
                            escape_into(&href, &mut html);
                            html.push_str("\" alt=\"");
                            escape_into(p.rsplit('/').next().unwrap_or(&p), &mut html);
                            html.push_str(&format!("\" width=\"{width}\""));
                            if let Some(h) = height {
                                html.push_str(&format!(" height=\"{h}\""));
                            }
                            html.push('>');
                            sink.push(Event::Html(CowStr::from(html)));
                            skip_until_end = 1;
                        } else if image {
                            link_ends.push(LinkEnd::Image);
                            sink.push(Event::Start(Tag::Image {
                                link_type: LinkType::Inline,
                                dest_url: CowStr::from(href),
                                title,
                                id,
                            }));
                        } else {
                            let mut html = String::from("<a class=\"embed-file\" href=\"");
                            escape_into(&href, &mut html);
                            html.push_str("\">");
                            escape_into(p.rsplit('/').next().unwrap_or(&p), &mut html);
                            html.push_str("</a>");
                            sink.push(Event::Html(CowStr::from(html)));
                            skip_until_end = 1;
                        }
                    }
                    Target::Page { href, path: note } => {
                        let html = match Some(note) {
                            Some(note) if depth < MAX_EMBED_DEPTH && !chain.contains(&note) => {
                                let inner = (linker.load)(&note).unwrap_or_default();
                                out.embeds.insert(note.clone());
                                chain.push(note.clone());
                                let rendered = render_inner(
                                    linker,
                                    host,
                                    &note,
                                    &inner,
                                    out,
                                    chain,
                                    depth + 1,
                                );
                                chain.pop();
                                let mut html = String::from(
                                    "<div class=\"embed\"><div class=\"embed-title\"><a href=\"",
                                );
                                escape_into(&href, &mut html);
                                html.push_str("\">");
                                escape_into(
                                    note.rsplit('/')
                                        .next()
                                        .unwrap_or(&note)
                                        .trim_end_matches(".md"),
                                    &mut html,
                                );
                                html.push_str("</a></div>");
                                html.push_str(&rendered);
                                html.push_str("</div>");
                                // A transcluded note is a block: `![[Note]]` opening a paragraph
                                // stands instead of it (a `<div>` cannot be inside a `<p>`).
                                if matches!(sink.last(), Some(Event::Start(Tag::Paragraph))) {
                                    sink.pop();
                                    drop_paragraph_end = true;
                                }
                                html
                            }
                            _ => {
                                let mut html = String::from("<a class=\"embed-link\" href=\"");
                                escape_into(&href, &mut html);
                                html.push_str("\">");
                                escape_into(&dest, &mut html);
                                html.push_str("</a>");
                                html
                            }
                        };
                        sink.push(Event::Html(CowStr::from(html)));
                        skip_until_end = 1;
                    }
                    Target::Unpublished => {
                        sink.push(Event::Html(CowStr::from(
                            "<span class=\"embed unpublished\"></span>",
                        )));
                        skip_until_end = 1;
                    }
                    Target::Broken => {
                        out.broken += 1;
                        let mut html = String::from("<span class=\"embed broken\">");
                        escape_into(&dest, &mut html);
                        html.push_str("</span>");
                        sink.push(Event::Html(CowStr::from(html)));
                        skip_until_end = 1;
                    }
                }
            }
            Event::End(TagEnd::Image) => match link_ends.pop() {
                Some(LinkEnd::Image) => sink.push(Event::End(TagEnd::Image)),
                _ => sink.push(Event::Html(CowStr::from("</span>"))),
            },
            Event::Html(_) | Event::InlineHtml(_) => {
                out.raw_html = true;
                sink.push(event);
            }
            other => push_event(sink, other, out, in_link > 0, htext, &root, &mut text_state),
        }
    }

    let mut html = String::with_capacity(body.len() + body.len() / 2);
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    html
}

/// Opens the `<span>` that stands in for a link to an unpublished note or to nothing.
fn push_unresolved(
    sink: &mut Vec<Event<'_>>,
    ends: &mut Vec<LinkEnd>,
    out: &mut NoteHtml,
    target: Target,
    dest: &str,
) {
    ends.push(LinkEnd::Span);
    let html = match target {
        Target::Unpublished => "<span class=\"wikilink unpublished\">".to_owned(),
        _ => {
            out.broken += 1;
            let mut html =
                String::from("<span class=\"wikilink broken\" title=\"No note or file named ");
            escape_into(dest, &mut html);
            html.push_str("\">");
            html
        }
    };
    sink.push(Event::Html(CowStr::from(html)));
}

/// How a rewritten link or image is closed.
enum LinkEnd {
    Link,
    Image,
    Span,
}

/// Pushes an ordinary event: text feeds the heading text and the excerpt, gets its `#tags` linked
/// and its `^block` id made an anchor.
#[allow(clippy::too_many_arguments)]
fn push_event<'e>(
    sink: &mut Vec<Event<'e>>,
    event: Event<'e>,
    out: &mut NoteHtml,
    in_link: bool,
    heading: Option<&mut String>,
    root: &str,
    state: &mut TextState,
) {
    match event {
        Event::Text(t) => {
            let t = strip_inline_comments(t);
            if let Some(h) = heading {
                h.push_str(&t);
            }
            if out.excerpt_chars < EXCERPT_CHARS {
                if out.excerpt_gap
                    && !out.excerpt.is_empty()
                    && !out.excerpt.ends_with(char::is_whitespace)
                    && !t.starts_with(char::is_whitespace)
                {
                    out.excerpt.push(' ');
                    out.excerpt_chars += 1;
                }
                out.excerpt_gap = false;
                let room = EXCERPT_CHARS.saturating_sub(out.excerpt_chars);
                let before = out.excerpt.len();
                out.excerpt.extend(t.chars().take(room));
                out.excerpt_chars += out.excerpt[before..].chars().count();
            }
            let (t, block) = strip_block_id(t);
            let TextState { marks, tag_links } = state;
            if t.contains("==") {
                marks.split(sink, t, |sink, piece| {
                    if in_link || !piece.contains('#') {
                        sink.push(Event::Text(piece));
                    } else {
                        link_tags(sink, piece, root, tag_links);
                    }
                });
            } else if in_link || !t.contains('#') {
                sink.push(Event::Text(t));
            } else {
                link_tags(sink, t, root, tag_links);
            }
            if let Some(id) = block {
                let mut html = String::from("<a class=\"block-id\" id=\"^");
                escape_into(&id, &mut html);
                html.push_str("\"></a>");
                sink.push(Event::Html(CowStr::from(html)));
            }
        }
        Event::Code(t) => {
            if let Some(h) = heading {
                h.push_str(&t);
            }
            sink.push(Event::Code(t));
        }
        other => sink.push(other),
    }
}

/// What the text of a note carries from one piece to the next: the open highlight, and the
/// links made for its tags (by tag; a tag's link is the same wherever it appears in the note).
#[derive(Default)]
struct TextState {
    marks: Marks,
    tag_links: HashMap<String, CowStr<'static>>,
}

/// Obsidian's `==highlights==`: a `==` that a non-space follows opens one, a `==` after a non-space
/// closes the one open in the same block. The opener is written as text first and becomes `<mark>`
/// only when its closer comes, so a lone `==` stays two equals signs.
#[derive(Default)]
struct Marks {
    /// Where in the sink the open highlight's `==` is.
    open: Option<usize>,
}

impl Marks {
    /// Pushes `text` with its highlight markers; `push` pushes the pieces between them.
    fn split<'e>(
        &mut self,
        sink: &mut Vec<Event<'e>>,
        text: CowStr<'e>,
        mut push: impl FnMut(&mut Vec<Event<'e>>, CowStr<'e>),
    ) {
        let mut last = 0;
        let mut at = 0;
        while let Some(found) = text[at..].find("==") {
            let i = at + found;
            at = i + 2;
            let before = text[..i].chars().next_back();
            let after = text[i + 2..].chars().next();
            // `===` and longer runs are not markers.
            if before == Some('=') || after == Some('=') {
                continue;
            }
            let can_close = before.is_none_or(|c| !c.is_whitespace());
            let can_open = after.is_none_or(|c| !c.is_whitespace());
            let closing = self.open.is_some() && can_close;
            if !closing && !can_open {
                continue;
            }
            if i > last {
                push(sink, CowStr::from(text[last..i].to_owned()));
            }
            last = i + 2;
            if closing {
                if let Some(o) = self.open.take()
                    && matches!(sink.get(o), Some(Event::Text(t)) if t.as_ref() == "==")
                {
                    sink[o] = Event::Html(CowStr::from("<mark>"));
                    sink.push(Event::Html(CowStr::from("</mark>")));
                } else {
                    sink.push(Event::Text(CowStr::from("==")));
                }
            } else {
                self.open = Some(sink.len());
                sink.push(Event::Text(CowStr::from("==")));
            }
        }
        if last == 0 {
            push(sink, text);
        } else if last < text.len() {
            push(sink, CowStr::from(text[last..].to_owned()));
        }
    }
}

/// Whether `end` closes a block, past which a highlight cannot continue.
fn ends_block(end: &TagEnd) -> bool {
    matches!(
        end,
        TagEnd::Paragraph
            | TagEnd::Heading(_)
            | TagEnd::Item
            | TagEnd::TableCell
            | TagEnd::BlockQuote(_)
            | TagEnd::FootnoteDefinition
            | TagEnd::CodeBlock
    )
}

/// The size of an image embed, as Obsidian reads what follows its last `|`: `![[a.png|100]]` is
/// 100 pixels wide, `![[a.png|100x80]]` also 80 high (`![alt|100](a.png)` too).
fn embed_size(source: &str) -> Option<(u32, Option<u32>)> {
    let label = if let Some(inner) = source.strip_prefix("![[") {
        inner.strip_suffix("]]")?
    } else {
        let inner = source.strip_prefix("![")?;
        &inner[..inner.find("](")?]
    };
    let size = label.rsplit_once('|')?.1.trim();
    let (w, h) = match size.split_once('x') {
        Some((w, h)) => (w, Some(h)),
        None => (size, None),
    };
    let number = |s: &str| {
        (!s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    Some((
        number(w)?,
        match h {
            Some(h) => Some(number(h)?),
            None => None,
        },
    ))
}

/// Obsidian's inline footnotes (`text^[a note]`) rewritten as the reference footnotes pulldown-cmark
/// renders (`text[^quire-inline-1]`, the definitions appended), outside code. `None` when the text
/// has none.
fn inline_footnotes(text: &str) -> Option<String> {
    if !text.contains("^[") {
        return None;
    }
    let mut out = String::with_capacity(text.len() + 64);
    let mut notes: Vec<&str> = Vec::new();
    let mut fence: Option<&str> = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(f) = fence {
            if trimmed.starts_with(f) {
                fence = None;
            }
            out.push_str(line);
            continue;
        }
        if let Some(f) = ["```", "~~~"].into_iter().find(|f| trimmed.starts_with(f)) {
            fence = Some(f);
            out.push_str(line);
            continue;
        }
        let mut i = 0;
        while i < line.len() {
            let rest = &line[i..];
            if rest.starts_with('`') {
                // A code span: copied through its closing run of backticks, untouched.
                let run = rest.len() - rest.trim_start_matches('`').len();
                let ticks = &rest[..run];
                match rest[run..].find(ticks) {
                    Some(end) => {
                        out.push_str(&rest[..run + end + run]);
                        i += run + end + run;
                    }
                    None => {
                        out.push_str(ticks);
                        i += run;
                    }
                }
                continue;
            }
            if rest.starts_with("^[") && !line[..i].ends_with('\\') {
                let mut depth = 0usize;
                let mut end = None;
                for (k, c) in rest[1..].char_indices() {
                    match c {
                        '[' => depth += 1,
                        ']' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(1 + k);
                                break;
                            }
                        }
                        '\n' => break,
                        _ => {}
                    }
                }
                if let Some(end) = end {
                    let note = &rest[2..end];
                    if !note.trim().is_empty() {
                        notes.push(note.trim());
                        out.push_str(&format!("[^quire-inline-{}]", notes.len()));
                        i += end + 1;
                        continue;
                    }
                }
            }
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    if notes.is_empty() {
        return None;
    }
    out.push_str("\n\n");
    for (n, note) in notes.iter().enumerate() {
        out.push_str(&format!("[^quire-inline-{}]: {note}\n", n + 1));
    }
    Some(out)
}

/// `text` without Obsidian's `%% comments %%` (those spanning lines are masked before parsing).
fn strip_inline_comments(text: CowStr<'_>) -> CowStr<'_> {
    if !text.contains("%%") {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest: &str = &text;
    while let Some(open) = rest.find("%%") {
        out.push_str(&rest[..open]);
        match rest[open + 2..].find("%%") {
            Some(close) => rest = &rest[open + 2 + close + 2..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    CowStr::from(out)
}

/// Splits `text` around its `#tags`, linking each to its tag page (`root` leads to the site root).
fn link_tags<'e>(
    sink: &mut Vec<Event<'e>>,
    text: CowStr<'e>,
    root: &str,
    made: &mut HashMap<String, CowStr<'static>>,
) {
    let tags = scan_tags(&text, &[]);
    if tags.is_empty() {
        sink.push(Event::Text(text));
        return;
    }
    let mut last = 0;
    for (at, tag) in tags {
        if at > last {
            sink.push(Event::Text(CowStr::from(text[last..at].to_owned())));
        }
        last = at + 1 + tag.len();
        // A note with 100,000 tasks names the same few tags over and over.
        let html = made.entry(tag).or_insert_with_key(|tag| {
            let mut html = String::from("<a class=\"tag\" href=\"");
            html.push_str(root);
            html.push_str(super::pages::tag_page(tag).as_str());
            html.push_str("\">#");
            escape_into(tag, &mut html);
            html.push_str("</a>");
            CowStr::from(html)
        });
        sink.push(Event::Html(html.clone()));
    }
    if last < text.len() {
        sink.push(Event::Text(CowStr::from(text[last..].to_owned())));
    }
}

/// A trailing ` ^block-id` on a piece of text: the text without it, and the id.
fn strip_block_id(text: CowStr<'_>) -> (CowStr<'_>, Option<String>) {
    let trimmed = text.trim_end();
    if let Some(i) = trimmed.rfind(" ^") {
        let id = &trimmed[i + 2..];
        if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return (CowStr::from(trimmed[..i].to_owned()), Some(id.to_owned()));
        }
    }
    (text, None)
}

/// The anchor a fragment points at: `^block` as is, `Heading#Sub` as the last heading's anchor.
fn fragment_anchor(fragment: &str) -> String {
    if fragment.starts_with('^') {
        return fragment.to_owned();
    }
    url::anchor(fragment.rsplit('#').next().unwrap_or(fragment))
}

fn safe_scheme(dest: &str) -> bool {
    let lower = dest.trim().to_ascii_lowercase();
    ["http://", "https://", "mailto:", "tel:"]
        .iter()
        .any(|s| lower.starts_with(s))
}

fn is_image(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    [
        ".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg", ".avif", ".bmp",
    ]
    .iter()
    .any(|e| lower.ends_with(e))
}

/// If the blockquote starting at `at` is an Obsidian callout (`> [!type]± Title`): its type, fold
/// marker and title.
fn callout_at(body: &str, at: usize) -> Option<(String, String, String)> {
    let line_end = body[at..].find('\n').map_or(body.len(), |i| at + i);
    let line = body[at..line_end]
        .trim_start()
        .strip_prefix('>')?
        .trim_start();
    let rest = line.strip_prefix("[!")?;
    let close = rest.find(']')?;
    let kind = rest[..close].trim().to_lowercase();
    if kind.is_empty()
        || !kind
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
    {
        return None;
    }
    let after = &rest[close + 1..];
    let (fold, title) = match after.chars().next() {
        Some(c @ ('+' | '-')) => (c.to_string(), after[1..].trim()),
        _ => (String::new(), after.trim()),
    };
    Some((kind, fold, title.trim_end_matches('\r').to_owned()))
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(notes: &[(&str, &str)], which: &str, published: &[&str]) -> NoteHtml {
        let note_list: Vec<(String, Vec<String>)> = notes
            .iter()
            .map(|(p, _)| ((*p).to_owned(), Vec::new()))
            .collect();
        let resolver = Resolver::new(
            &note_list,
            &["img/pic.png".to_owned(), "docs/paper.pdf".to_owned()],
        );
        let texts: HashMap<String, String> = notes
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect();
        let published: Vec<String> = published.iter().map(|s| (*s).to_owned()).collect();
        let is_pub = move |p: &str| published.iter().any(|x| x == p);
        let page_of = |p: &str| is_pub(p).then(|| url::note_page(p));
        let load = move |p: &str| texts.get(p).cloned();
        let linker = Linker {
            resolver: &resolver,
            load: &load,
            page_of: &page_of,
        };
        let text = notes.iter().find(|(p, _)| *p == which).unwrap().1;
        render_note(&linker, &url::note_page(which), which, text, "")
    }

    #[test]
    fn excerpts_read_as_plain_text_and_end_at_a_word() {
        let notes = [
            (
                "A.md",
                "# A\n\nSee [[B]] and *this*, [a link](B.md).\nNext line.\n\n- one\n- two\n",
            ),
            ("B.md", "b"),
        ];
        let out = render(&notes, "A.md", &["A.md", "B.md"]);
        assert_eq!(out.excerpt, "A See B and this, a link. Next line. one two");

        let long = format!("# Long\n\n{}", "word ".repeat(100));
        let out = render(&[("L.md", &long)], "L.md", &["L.md"]);
        assert!(out.excerpt.ends_with("word…"), "{}", out.excerpt);
        assert!(out.excerpt.chars().count() <= EXCERPT_CHARS + 1);
    }

    #[test]
    fn wikilinks_resolve_to_relative_pages_and_mark_the_rest() {
        let notes = [
            (
                "a/Note.md",
                "[[Other]] [[Other#Some Heading|alias]] [[Missing]] [[Secret]] [[#Local]] ![[pic.png]] ![[paper.pdf]]",
            ),
            ("b/Other.md", "# Other"),
            ("Secret.md", "hidden"),
        ];
        let out = render(&notes, "a/Note.md", &["a/Note.md", "b/Other.md"]);
        let h = &out.html;
        assert!(
            h.contains("<a class=\"wikilink\" href=\"../../b/other/\">Other</a>"),
            "{h}"
        );
        assert!(
            h.contains("href=\"../../b/other/#some-heading\">alias</a>"),
            "{h}"
        );
        assert!(h.contains("<span class=\"wikilink broken\""), "{h}");
        assert!(
            h.contains("<span class=\"wikilink unpublished\">Secret</span>"),
            "{h}"
        );
        assert!(h.contains("href=\"#local\""), "{h}");
        assert!(
            h.contains("<img src=\"../../img/pic.png\" alt=\"pic.png\""),
            "{h}"
        );
        assert!(
            h.contains("<a class=\"embed-file\" href=\"../../docs/paper.pdf\">paper.pdf</a>"),
            "{h}"
        );
        assert_eq!(out.broken, 1);
        assert_eq!(
            out.attachments.iter().collect::<Vec<_>>(),
            ["docs/paper.pdf", "img/pic.png"]
        );
    }

    #[test]
    fn obsidian_syntax_in_tables_sizes_highlights_and_inline_footnotes() {
        let notes = [
            (
                "a/Note.md",
                "| view | image |\n|---|---|\n| [[Other\\|the other]] | ![[pic.png\\|100]] |\n\n\
                 ![[pic.png|120x80]] ![wide|64](img/pic.png) ![[pic.png|alt text]]\n\n\
                 A ==bright== idea, ==*mixed* words==, a == b, x==y and ===.\n\n\
                 Said^[an aside with [[Other]]] and `code ^[not a note]` and \\^[escaped].\n\n\
                 ```\nfenced ^[kept]\n```\n",
            ),
            ("b/Other.md", "# Other"),
        ];
        let out = render(&notes, "a/Note.md", &["a/Note.md", "b/Other.md"]);
        let h = &out.html;
        assert_eq!(out.broken, 0, "{h}");
        assert!(
            h.contains("<a class=\"wikilink\" href=\"../../b/other/\">the other</a>"),
            "{h}"
        );
        assert!(
            h.contains("<img src=\"../../img/pic.png\" alt=\"pic.png\" width=\"100\">"),
            "{h}"
        );
        assert!(
            h.contains("alt=\"pic.png\" width=\"120\" height=\"80\">"),
            "{h}"
        );
        assert!(h.contains("width=\"64\">"), "{h}");
        assert!(
            h.contains("alt=\"alt text\""),
            "not a size, so alt text: {h}"
        );
        assert!(h.contains("A <mark>bright</mark> idea"), "{h}");
        assert!(h.contains("<mark><em>mixed</em> words</mark>"), "{h}");
        assert!(h.contains("a == b, x==y and ===."), "{h}");
        assert!(h.contains("class=\"footnote-reference\""), "{h}");
        assert!(h.contains("an aside with <a class=\"wikilink\""), "{h}");
        assert!(h.contains("<code>code ^[not a note]</code>"), "{h}");
        assert!(h.contains("^[escaped]"), "{h}");
        assert!(h.contains("fenced ^[kept]"), "{h}");
        assert!(!h.contains("^[an aside"), "{h}");
    }

    #[test]
    fn transclusion_is_depth_limited_and_cycle_free() {
        let notes = [
            ("A.md", "a ![[B]]"),
            ("B.md", "b ![[A]] ![[C]]"),
            ("C.md", "c"),
        ];
        let out = render(&notes, "A.md", &["A.md", "B.md", "C.md"]);
        assert!(out.html.contains("<div class=\"embed\">"), "{}", out.html);
        assert!(out.html.contains("<p>c</p>"), "{}", out.html);
        assert_eq!(
            out.html.matches("<p>a ").count(),
            1,
            "no cycle back into A: {}",
            out.html
        );
        assert_eq!(out.embeds.iter().collect::<Vec<_>>(), ["B.md", "C.md"]);
    }

    #[test]
    fn callouts_tasks_headings_code_tags_blocks() {
        let text = "# Title\n\n## Same\n## Same\n\n> [!warning]- Careful\n> body **bold**\n\n> [!note]\n> only\n\n> plain quote\n\n- [ ] open\n- [x] done\n- [/] doing\n- [-] dropped\n\n```rust\nfn x() {}\n```\n\ntext #tag/sub end ^blk1\n";
        let out = render(&[("N.md", text)], "N.md", &["N.md"]);
        let h = &out.html;
        assert!(
            h.contains("<h2 id=\"same\">") && h.contains("<h2 id=\"same-1\">"),
            "{h}"
        );
        assert_eq!(
            out.toc.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["title", "same", "same-1"]
        );
        assert!(h.contains("<div class=\"callout\" data-callout=\"warning\" data-fold=\"closed\"><div class=\"callout-title\">Careful</div><div class=\"callout-content\">"), "{h}");
        assert!(h.contains("<p>body <strong>bold</strong></p>"), "{h}");
        assert!(
            h.contains("<div class=\"callout-title\">Note</div>") && h.contains("<p>only</p>"),
            "{h}"
        );
        assert!(h.contains("<blockquote>"), "{h}");
        assert!(
            h.contains("data-task=\"/\"><input type=\"checkbox\" disabled aria-label=\"in progress\"> doing"),
            "{h}"
        );
        assert!(
            h.contains("data-task=\"x\"><input type=\"checkbox\" disabled checked aria-label=\"done\"> done"),
            "{h}"
        );
        assert!(
            h.contains("data-task=\"-\"><input type=\"checkbox\" disabled aria-label=\"cancelled\"> dropped"),
            "{h}"
        );
        assert!(
            h.contains("<code class=\"language-rust\"><span class=\"hl-kw\">fn</span>"),
            "{h}"
        );
        assert!(
            h.contains("<a class=\"tag\" href=\"../tags/tag/sub/\">#tag/sub</a>"),
            "{h}"
        );
        assert!(h.contains("<a class=\"block-id\" id=\"^blk1\"></a>"), "{h}");
        assert!(!out.raw_html);
    }

    #[test]
    fn unsafe_urls_are_dropped_and_raw_html_flagged() {
        let text = "[x](javascript:alert(1)) [y](https://e.org) ![i](data:text/html,x) <b onclick=\"x\">raw</b>\n";
        let out = render(&[("N.md", text)], "N.md", &["N.md"]);
        assert!(!out.html.contains("javascript:"), "{}", out.html);
        assert!(!out.html.contains("data:text"), "{}", out.html);
        assert!(out.html.contains("href=\"https://e.org\""), "{}", out.html);
        assert!(out.raw_html);
    }

    #[test]
    fn a_link_on_a_callout_title_line_is_checked_like_any_other() {
        // Found by fuzzing: the title line's link was pushed as it came, unresolved and unchecked.
        let text = "> [!note] [click](javascript:alert(1)) more\n> body\n\n> [!tip] [[Other]]\n";
        let out = render(
            &[("N.md", text), ("Other.md", "# O")],
            "N.md",
            &["N.md", "Other.md"],
        );
        assert!(!out.html.contains("href=\"javascript:"), "{}", out.html);
        assert!(
            out.html
                .contains("<a class=\"wikilink\" href=\"../other/\">Other</a>"),
            "{}",
            out.html
        );
        assert!(!out.raw_html);
    }

    fn render_one(text: &str) -> NoteHtml {
        let notes = [
            ("a/Note.md", text),
            ("b/Other.md", "# Other\n![[a/Note]]\n"),
        ];
        render(&notes, "a/Note.md", &["a/Note.md", "b/Other.md"])
    }

    proptest::proptest! {
        #![proptest_config(crate::fuzz::config(1500))]

        /// Any note renders without a panic, and what quire itself writes around it stays well
        /// formed: every `<mark>`, `<a>` and `<span>` it opens is closed.
        #[test]
        fn fuzz_any_note_renders(text in crate::fuzz::tricky_text(crate::render::MARKDOWN_PIECES, 60)) {
            let out = render_one(&text);
            // No URL quire writes has a scheme that runs code, raw HTML or not (raw HTML is
            // sanitized later, but quire's own links are not).
            for attr in ["href=\"", "src=\""] {
                for (at, _) in out.html.match_indices(attr) {
                    let url: String = out.html[at + attr.len()..]
                        .chars()
                        .take_while(|c| *c != '"')
                        .filter(|c| !c.is_whitespace() && !c.is_control())
                        .collect::<String>()
                        .to_ascii_lowercase();
                    proptest::prop_assert!(
                        !["javascript:", "vbscript:", "data:"].iter().any(|s| url.starts_with(s)),
                        "{} in {:?} → {}", url, text, out.html
                    );
                }
            }
            if !out.raw_html {
                for tag in ["mark", "a", "span", "div", "sup"] {
                    let opened = out.html.matches(&format!("<{tag}>")).count()
                        + out.html.matches(&format!("<{tag} ")).count();
                    let closed = out.html.matches(&format!("</{tag}>")).count();
                    proptest::prop_assert_eq!(opened, closed, "<{}> in {:?} → {}", tag, text, out.html);
                }
            }
        }
    }

    /// Rendering terminates in time linear in the input: a note made of a snippet repeated 64
    /// times takes at most a fixed multiple of 64 times the snippet alone. A timing, so it is not
    /// part of `cargo test`; `scripts/fuzz.sh` runs it.
    #[test]
    #[ignore = "timing: run by scripts/fuzz.sh"]
    fn fuzz_rendering_is_linear_in_the_input() {
        use proptest::strategy::{Strategy, ValueTree};
        let mut runner = proptest::test_runner::TestRunner::new(crate::fuzz::config(200));
        let strategy = crate::fuzz::tricky_text(crate::render::MARKDOWN_PIECES, 40);
        let cases = runner.config().cases;
        let (mut worst, mut worst_text) = (0.0f64, String::new());
        for _ in 0..cases {
            let Ok(tree) = strategy.new_tree(&mut runner) else {
                continue;
            };
            let snippet = tree.current() + "\n\n";
            let time = |text: &str| {
                let t = std::time::Instant::now();
                for _ in 0..3 {
                    std::hint::black_box(render_one(text));
                }
                t.elapsed().as_secs_f64() / 3.0
            };
            let small = snippet.repeat(4);
            let large = snippet.repeat(256);
            let (a, b) = (time(&small), time(&large));
            // 64 times the input; allow 4x on top for caches and allocation.
            let ratio = b / a.max(20e-6);
            if ratio > worst {
                worst = ratio;
                worst_text = snippet.clone();
            }
            assert!(
                ratio < 64.0 * 4.0,
                "rendering {snippet:?} repeated 256 times took {ratio:.0}x the time of 4 times"
            );
        }
        eprintln!("{cases} notes; worst growth {worst:.0}x for 64x the input ({worst_text:?})");
    }
}
