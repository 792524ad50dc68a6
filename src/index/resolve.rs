//! Where a link points, resolved the way Obsidian resolves it.
//!
//! Links are stored as written and resolved when asked (broken-link checks, backlinks, rendering):
//! what a link points to depends on every other note (a new note can make a broken link work), so
//! resolving at query time from one in-memory table of names is both simpler and cheaper than keeping
//! stored resolutions up to date.
//!
//! The order, all comparisons case-insensitive:
//!
//! 1. an empty target (`[[#Heading]]`) is the linking note itself;
//! 2. a Markdown link is a path relative to the linking note (`../dir/note.md`), else to the vault;
//! 3. the exact vault path (`dir/Note` or `dir/Note.md`), then the same path relative to the linking
//!    note's folder;
//! 4. a file whose name (or trailing path, for `dir/Note`) matches: the only one, or the one nearest
//!    the linking note when several do (same folder, then shortest path);
//! 5. a note with that alias (front matter `aliases`).
//!
//! Targets with an extension other than `.md` (`pic.png`) are looked up among attachments first.

use std::collections::HashMap;

use rusqlite::Connection;

use super::IndexError;
use crate::markdown::LinkKind;

/// The names of every note and attachment, for resolving links.
#[derive(Debug, Default)]
pub struct Resolver {
    /// Lowercased path without `.md` → note path.
    notes: HashMap<String, String>,
    /// Lowercased file name without `.md` → note paths.
    note_names: HashMap<String, Vec<String>>,
    /// Lowercased alias → note paths.
    aliases: HashMap<String, Vec<String>>,
    /// Lowercased path → attachment path.
    files: HashMap<String, String>,
    /// Lowercased file name → attachment paths.
    file_names: HashMap<String, Vec<String>>,
}

impl Resolver {
    /// Loads every note, alias and attachment name from the index.
    pub fn load(conn: &Connection) -> Result<Self, IndexError> {
        let mut notes = Vec::new();
        let mut stmt = conn.prepare("SELECT path, aliases FROM notes INDEXED BY notes_names")?;
        for row in stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })? {
            let (path, aliases) = row?;
            let aliases = if aliases == "[]" {
                Vec::new()
            } else {
                serde_json::from_str(&aliases).unwrap_or_default()
            };
            notes.push((path, aliases));
        }
        let mut stmt = conn.prepare("SELECT path FROM files")?;
        let files = stmt
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(&notes, &files))
    }

    /// A resolver over the given notes (vault path, aliases) and attachments (vault paths), for
    /// content that is not in the index (a commit being rendered).
    pub fn new(notes: &[(String, Vec<String>)], files: &[String]) -> Self {
        let mut r = Resolver::default();
        for (path, aliases) in notes {
            r.add_note(path);
            for alias in aliases {
                r.aliases
                    .entry(alias.to_lowercase())
                    .or_default()
                    .push(path.clone());
            }
        }
        for path in files {
            let key = path.to_lowercase();
            r.file_names
                .entry(last_segment(&key).to_owned())
                .or_default()
                .push(path.clone());
            r.files.insert(key, path.clone());
        }
        r.sort();
        r
    }

    fn sort(&mut self) {
        for list in self
            .note_names
            .values_mut()
            .chain(self.aliases.values_mut())
            .chain(self.file_names.values_mut())
        {
            list.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
        }
    }

    fn add_note(&mut self, path: &str) {
        let key = path.to_lowercase();
        let key = key.strip_suffix(".md").unwrap_or(&key).to_owned();
        self.note_names
            .entry(last_segment(&key).to_owned())
            .or_default()
            .push(path.to_owned());
        self.notes.insert(key, path.to_owned());
    }

    /// The vault path a link from the note `source` points to, or `None` when it is broken.
    pub fn resolve(&self, source: &str, kind: LinkKind, target: &str) -> Option<String> {
        let target = target.trim();
        if target.is_empty() {
            return Some(source.to_owned());
        }
        let folder = source.rsplit_once('/').map_or("", |(f, _)| f);
        let lower = target.to_lowercase();
        let lower = lower.strip_prefix('/').unwrap_or(&lower);

        if kind == LinkKind::Markdown
            && let Some(found) = join(folder, lower).and_then(|p| self.by_path(&p))
        {
            return Some(found);
        }
        if let Some(found) = self.by_path(lower) {
            return Some(found);
        }
        if !folder.is_empty()
            && let Some(found) = join(folder, lower).and_then(|p| self.by_path(&p))
        {
            return Some(found);
        }
        let as_note = lower.strip_suffix(".md").unwrap_or(lower);
        let has_ext = has_extension(lower);
        let by_file = || nearest(self.file_names.get(last_segment(lower)), lower, folder);
        let by_note = || nearest(self.note_names.get(last_segment(as_note)), as_note, folder);
        let found = if has_ext {
            by_file().or_else(by_note)
        } else {
            by_note().or_else(by_file)
        };
        found.or_else(|| {
            (!as_note.contains('/'))
                .then(|| self.aliases.get(as_note).and_then(|v| v.first().cloned()))
                .flatten()
        })
    }

    /// A note or attachment at exactly this lowercased vault path (a note with or without `.md`).
    fn by_path(&self, lower: &str) -> Option<String> {
        let as_note = lower.strip_suffix(".md").unwrap_or(lower);
        self.notes
            .get(as_note)
            .or_else(|| self.files.get(lower))
            .cloned()
    }

    /// The names whose lookups answer differently here than in `before`: file names (without `.md`
    /// for notes) and aliases, lowercased, that gained or lost a note or attachment.
    ///
    /// Every lookup [`Resolver::resolve`] makes for a target is by a key that ends in the
    /// target's last segment, so a link whose last segment is none of these (see
    /// [`Resolver::may_consult`]) resolves here as it did in `before`.
    pub fn changed_names(&self, before: &Resolver) -> std::collections::HashSet<String> {
        fn differ(
            now: &HashMap<String, Vec<String>>,
            then: &HashMap<String, Vec<String>>,
            out: &mut std::collections::HashSet<String>,
        ) {
            for (k, v) in now {
                if then.get(k) != Some(v) {
                    out.insert(k.clone());
                }
            }
            for k in then.keys() {
                if !now.contains_key(k) {
                    out.insert(k.clone());
                }
            }
        }
        let mut out = std::collections::HashSet::new();
        differ(&self.note_names, &before.note_names, &mut out);
        differ(&self.file_names, &before.file_names, &mut out);
        differ(&self.aliases, &before.aliases, &mut out);
        out
    }

    /// Whether resolving `target` may look up one of `names` (from [`Resolver::changed_names`]):
    /// its last segment, lowercased, with or without `.md`, is among them. A target whose last
    /// segment is empty, `.` or `..` may lead anywhere once joined with a folder, so it may.
    pub fn may_consult(target: &str, names: &std::collections::HashSet<String>) -> bool {
        // As `resolve` trims; most targets have nothing to trim, which two bytes tell.
        let bytes = target.as_bytes();
        let plain =
            |b: Option<&u8>| b.is_some_and(|&b| b.is_ascii() && !char::from(b).is_whitespace());
        let target = if plain(bytes.first()) && plain(bytes.last()) {
            target
        } else {
            target.trim()
        };
        if target.is_empty() {
            // The linking note itself, whatever else exists.
            return false;
        }
        let segment = last_segment(target);
        if matches!(segment, "" | "." | "..") {
            return true;
        }
        // Checked for every link of the vault after each note that comes or goes, against a
        // name or two: compared in place where lowercasing is ASCII's.
        if segment.is_ascii() && names.len() <= 8 {
            return names.iter().any(|n| {
                let s = segment.as_bytes();
                let n = n.as_bytes();
                s.eq_ignore_ascii_case(n)
                    || (s.len() == n.len() + 3
                        && s[..n.len()].eq_ignore_ascii_case(n)
                        && s[n.len()..].eq_ignore_ascii_case(b".md"))
            });
        }
        let lower = segment.to_lowercase();
        names.contains(&lower) || lower.strip_suffix(".md").is_some_and(|n| names.contains(n))
    }

    /// Whether a note with this path exists.
    pub fn has_note(&self, path: &str) -> bool {
        let key = path.to_lowercase();
        self.notes
            .contains_key(key.strip_suffix(".md").unwrap_or(&key))
    }
}

/// Among `candidates` (same file name), those whose path ends with `wanted` (`dir/name`), the one
/// in `folder` if any, else the shortest path.
fn nearest(candidates: Option<&Vec<String>>, wanted: &str, folder: &str) -> Option<String> {
    let candidates = candidates?;
    let matching: Vec<&String> = candidates
        .iter()
        .filter(|path| {
            // A bare name matches every candidate; only `dir/name` needs the comparison.
            if !wanted.contains('/') {
                return true;
            }
            let key = path.to_lowercase();
            let key = key.strip_suffix(".md").unwrap_or(&key);
            key == wanted || key.ends_with(&format!("/{wanted}"))
        })
        .collect();
    let in_folder = matching.iter().find(|p| {
        p.rsplit_once('/')
            .map_or("", |(f, _)| f)
            .eq_ignore_ascii_case(folder)
    });
    in_folder.or(matching.first()).map(|p| (*p).clone())
}

fn last_segment(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn has_extension(path: &str) -> bool {
    let name = last_segment(path);
    name.rfind('.')
        .is_some_and(|i| i > 0 && i + 1 < name.len() && !name.ends_with(".md"))
}

/// `folder/relative`, with `.` and `..` worked out; `None` if it climbs out of the vault.
fn join(folder: &str, relative: &str) -> Option<String> {
    let mut parts: Vec<&str> = folder.split('/').filter(|s| !s.is_empty()).collect();
    for seg in relative.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_links_that_look_up_a_changed_name_can_resolve_differently() {
        let mut before = resolver(
            &[
                "a/Note.md",
                "b/Note.md",
                "a/Other.md",
                "c/deep/Thing.md",
                "Gone.md",
            ],
            &[("a/Other.md", "Nick"), ("Gone.md", "Old")],
            &["a/pic.png"],
        );
        let mut after = resolver(
            &[
                "a/Note.md",
                "b/Note.md",
                "a/Other.md",
                "c/deep/Thing.md",
                "c/New Note.md",
                "Ärger.md",
            ],
            &[("a/Other.md", "Nick"), ("c/New Note.md", "Fresh")],
            &["a/pic.png", "c/pic.png"],
        );
        before.sort();
        after.sort();
        let names = after.changed_names(&before);
        let mut expected: Vec<&str> = vec!["gone", "new note", "old", "fresh", "pic.png", "ärger"];
        expected.sort_unstable();
        let mut got: Vec<&str> = names.iter().map(String::as_str).collect();
        got.sort_unstable();
        assert_eq!(got, expected);

        let targets = [
            "",
            "Note",
            "note.md",
            "a/Note",
            "../b/Note.md",
            "New Note",
            "new note.MD",
            "c/New Note",
            "Gone",
            "gone.md",
            "Old",
            "Fresh",
            "Nick",
            "pic.png",
            "../c/pic.png",
            "Thing",
            "deep/Thing",
            "missing",
            "a/",
            "a/..",
            "..",
            ".",
            "/Gone",
            "  Fresh  ",
            "ÄRGER",
            "c/ärger.md",
            "\u{b}Fresh",
            "Fresh\u{a0}",
        ];
        let mut changed = 0;
        for source in ["a/x.md", "c/y.md", "z.md", "c/deep/w.md"] {
            for kind in [LinkKind::Wiki, LinkKind::Markdown, LinkKind::Embed] {
                for target in targets {
                    let then = before.resolve(source, kind, target);
                    let now = after.resolve(source, kind, target);
                    if then != now {
                        changed += 1;
                        assert!(
                            Resolver::may_consult(target, &names),
                            "`{target}` from {source} ({kind:?}) went from {then:?} to {now:?}, unseen"
                        );
                    }
                }
            }
        }
        assert!(changed > 20, "the change moved only {changed} links");
        // Compared in place for a few names, looked up among many: the same answers.
        let mut many = names.clone();
        many.extend((0..10).map(|i| format!("unrelated {i}")));
        for target in targets {
            assert_eq!(
                Resolver::may_consult(target, &names),
                Resolver::may_consult(target, &many),
                "{target}"
            );
        }
        // Names that did not change are not looked at again.
        for target in ["Note", "a/Other", "Thing", "missing", "", "Nick"] {
            assert!(!Resolver::may_consult(target, &names), "{target}");
        }
    }

    fn resolver(notes: &[&str], aliases: &[(&str, &str)], files: &[&str]) -> Resolver {
        let mut r = Resolver::default();
        for n in notes {
            r.add_note(n);
        }
        for (path, alias) in aliases {
            r.aliases
                .entry(alias.to_lowercase())
                .or_default()
                .push((*path).to_owned());
        }
        for f in files {
            let key = f.to_lowercase();
            r.file_names
                .entry(last_segment(&key).to_owned())
                .or_default()
                .push((*f).to_owned());
            r.files.insert(key, (*f).to_owned());
        }
        r
    }

    #[test]
    fn obsidian_order() {
        let r = resolver(
            &[
                "a/Note.md",
                "b/Note.md",
                "c/Unique.md",
                "Root.md",
                "a/sub/Deep.md",
            ],
            &[("c/Unique.md", "Nickname")],
            &["img/Pic.PNG"],
        );
        let w = LinkKind::Wiki;
        assert_eq!(
            r.resolve("x/y.md", w, "unique").as_deref(),
            Some("c/Unique.md")
        );
        assert_eq!(
            r.resolve("x/y.md", w, "c/Unique.md").as_deref(),
            Some("c/Unique.md")
        );
        assert_eq!(
            r.resolve("b/z.md", w, "Note").as_deref(),
            Some("b/Note.md"),
            "same folder wins"
        );
        assert_eq!(
            r.resolve("x/z.md", w, "a/note").as_deref(),
            Some("a/Note.md")
        );
        assert_eq!(
            r.resolve("x/z.md", w, "sub/Deep").as_deref(),
            Some("a/sub/Deep.md")
        );
        assert_eq!(
            r.resolve("x/z.md", w, "nickname").as_deref(),
            Some("c/Unique.md")
        );
        assert_eq!(
            r.resolve("x/z.md", LinkKind::Embed, "pic.png").as_deref(),
            Some("img/Pic.PNG")
        );
        assert_eq!(r.resolve("x/z.md", w, "").as_deref(), Some("x/z.md"));
        assert_eq!(r.resolve("x/z.md", w, "Missing"), None);
        assert_eq!(
            r.resolve("a/sub/q.md", LinkKind::Markdown, "../../Root.md")
                .as_deref(),
            Some("Root.md")
        );
        assert_eq!(
            r.resolve("a/q.md", LinkKind::Markdown, "sub/Deep.md")
                .as_deref(),
            Some("a/sub/Deep.md")
        );
        assert_eq!(
            r.resolve("q.md", LinkKind::Markdown, "../../escape.md"),
            None
        );
    }
}
