//! Where things are published (SPEC §6): a note `dir/My Note.md` at `dir/my-note/index.html` — each
//! path segment lowercased, runs of whitespace made `-` — and attachments at their own paths.
//!
//! URLs in pages are relative (`../../dir/my-note/`), so a site works from any prefix: served by the
//! daemon under `/site/<theme>/`, copied to a web server, or opened from disk.

/// A page's or file's place in the site, relative to its root, without a leading `/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SitePath(String);

impl SitePath {
    /// The site's root page.
    pub fn root() -> Self {
        Self(String::new())
    }

    /// A folder-style page (`dir/my-note/`), or the root for an empty string.
    pub fn page(dir: &str) -> Self {
        let dir = dir.trim_matches('/');
        if dir.is_empty() {
            Self::root()
        } else {
            Self(format!("{dir}/"))
        }
    }

    /// A file (`static/theme.css`, `img/photo.png`).
    pub fn file(path: &str) -> Self {
        Self(path.trim_start_matches('/').to_owned())
    }

    /// The path as stored (`dir/my-note/`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The file this path is written to (`dir/my-note/index.html`).
    pub fn output_file(&self) -> String {
        if self.0.is_empty() || self.0.ends_with('/') {
            format!("{}index.html", self.0)
        } else {
            self.0.clone()
        }
    }

    /// How many folders deep the page's file is (`dir/my-note/` is 2).
    fn depth(&self) -> usize {
        self.output_file().matches('/').count()
    }

    /// The prefix that leads from this page back to the site root (`../../`, or empty at the root).
    pub fn root_prefix(&self) -> String {
        "../".repeat(self.depth())
    }

    /// The shortest relative URL from a page at `from` to this path (`../seed-list/`).
    pub fn relative_from(&self, from: &SitePath) -> String {
        // The folder the page at `from` is in: `a/b/` for the page `a/b/`, `x/` for `x/y.png`.
        let from_dir = from.0.rfind('/').map_or("", |i| &from.0[..=i]);
        // The longest run of whole leading folders both share.
        let mut common = 0;
        for (i, (a, b)) in from_dir.bytes().zip(self.0.bytes()).enumerate() {
            if a != b {
                break;
            }
            if a == b'/' {
                common = i + 1;
            }
        }
        let ups = from_dir[common..].matches('/').count();
        let mut out = String::with_capacity(ups * 3 + self.0.len() - common);
        for _ in 0..ups {
            out.push_str("../");
        }
        encode_into(&self.0[common..], &mut out);
        if out.is_empty() { "./".into() } else { out }
    }
}

/// The page of the note at vault path `path` (`dir/My Note.md` → `dir/my-note/`).
pub fn note_page(path: &str) -> SitePath {
    let stem = path
        .strip_suffix(".md")
        .or_else(|| path.strip_suffix(".markdown"))
        .unwrap_or(path);
    SitePath::page(&slug_path(stem))
}

/// The page of the folder at vault path `dir`.
pub fn folder_page(dir: &str) -> SitePath {
    SitePath::page(&slug_path(dir))
}

/// Each segment lowercased, runs of whitespace made `-`.
pub fn slug_path(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(slug_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// One segment lowercased, runs of whitespace made `-`.
pub fn slug_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    let mut in_space = false;
    for c in segment.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push('-');
            }
            in_space = true;
        } else {
            out.extend(c.to_lowercase());
            in_space = false;
        }
    }
    out
}

/// An anchor id for a heading: lowercased, whitespace runs made `-`, characters that are not
/// letters, digits, `-` or `_` dropped (`"Tasks & Notes"` → `tasks-notes`).
pub fn anchor(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut dash = false;
    for c in text.chars() {
        if c.is_alphanumeric() || c == '_' {
            out.extend(c.to_lowercase());
            dash = false;
        } else if (c.is_whitespace() || c == '-') && !dash && !out.is_empty() {
            out.push('-');
            dash = true;
        }
    }
    let trimmed = out.trim_end_matches('-');
    if trimmed.is_empty() {
        "section".into()
    } else {
        trimmed.to_owned()
    }
}

/// Percent-encodes what may not stand in a URL path (keeping `/` and non-ASCII letters readable is
/// not worth the ambiguity: everything but unreserved ASCII and `/` is encoded).
pub fn encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    encode_into(path, &mut out);
    out
}

fn encode_into(path: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_url_rule() {
        assert_eq!(
            note_page("dir/My Note.md").output_file(),
            "dir/my-note/index.html"
        );
        assert_eq!(
            note_page("01_MISSIONS/m-1/mission.md").as_str(),
            "01_missions/m-1/mission/"
        );
        assert_eq!(note_page("a  b\tc.md").as_str(), "a-b-c/");
        assert_eq!(note_page("Über Café.md").as_str(), "über-café/");
        assert_eq!(folder_page("Dir/Sub Dir").as_str(), "dir/sub-dir/");
        assert_eq!(SitePath::root().output_file(), "index.html");
    }

    #[test]
    fn relative_urls() {
        let from = note_page("dir/a.md");
        assert_eq!(
            note_page("other/b.md").relative_from(&from),
            "../../other/b/"
        );
        assert_eq!(
            SitePath::file("static/theme.css").relative_from(&SitePath::root()),
            "static/theme.css"
        );
        assert_eq!(SitePath::root().relative_from(&SitePath::root()), "./");
        assert_eq!(
            note_page("Über Café.md").relative_from(&SitePath::root()),
            "%C3%BCber-caf%C3%A9/"
        );
    }

    #[test]
    fn anchors() {
        assert_eq!(anchor("Tasks & Notes"), "tasks-notes");
        assert_eq!(anchor("  Étude 2 "), "étude-2");
        assert_eq!(anchor("!!!"), "section");
    }
}
