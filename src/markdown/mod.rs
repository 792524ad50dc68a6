//! Markdown as Obsidian writes it: YAML front matter, headings and sections, named blocks.
//!
//! This is ground floor, like `vault`: pure functions over text, no I/O. Contributions patch notes
//! with it; the index (tasks, links, tags) and the renderer read notes with it.

pub mod frontmatter;
pub mod note;
pub mod sections;
pub mod task;
pub mod yaml;

pub use frontmatter::{Document, FrontMatter, FrontMatterError, split};
pub use note::{LinkKind, ListItem, NoteHeading, NoteLink, NoteTask, ParsedNote, parse_note};
pub use task::{DateField, Priority, Status, TaskFields, parse_fields};

/// Whether the vault path names a Markdown note (`.md` or `.markdown`): what the index parses and
/// the renderer gives a page.
pub fn is_note_path(path: &str) -> bool {
    path.ends_with(".md") || path.ends_with(".markdown")
}

/// The line ending `text` uses: `"\r\n"` when its first line ends so, else `"\n"`.
pub fn newline_of(text: &str) -> &'static str {
    match text.find('\n') {
        Some(i) if i > 0 && text.as_bytes()[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

/// `text` with every line break written as `newline`, so inserted text matches the note it goes
/// into.
pub fn with_newlines(text: &str, newline: &str) -> String {
    if newline == "\n" {
        return text.replace("\r\n", "\n");
    }
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    let mut rest = text;
    while let Some(i) = rest.find('\n') {
        let line = &rest[..i];
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push_str(newline);
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newline_conversion() {
        assert_eq!(newline_of("a\r\nb"), "\r\n");
        assert_eq!(newline_of("a\nb\r\n"), "\n");
        assert_eq!(with_newlines("a\nb\r\nc", "\r\n"), "a\r\nb\r\nc");
        assert_eq!(with_newlines("a\r\nb\n", "\n"), "a\nb\n");
    }
}
