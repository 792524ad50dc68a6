//! `VaultPath`: a path proven to name a place inside the vault that quire may write.
//!
//! Every path that arrives from outside (a bundle, an HTTP request, a CLI argument) is turned into a
//! `VaultPath` once, at the edge; code downstream takes `&VaultPath` and never re-checks. The checks
//! are purely syntactic and platform-independent on purpose: a vault is cloned onto Windows and macOS
//! machines too, so a name that is harmless on Linux but aliases `.git` on NTFS or HFS+ (`.GIT`,
//! `.git.`, `GIT~1`, `.g\u{200c}it`) is refused everywhere, as Git itself does (CVE-2014-9390).
//!
//! What the syntax cannot see, a symlink on disk, is checked by [`VaultPath::resolve_under`], which
//! walks the real file system one component at a time and refuses to pass through any link.

use std::fmt;
use std::path::{Path, PathBuf};

/// Folders at the vault root that belong to quire or Git, never to notes.
///
/// Compared case-insensitively, since on a case-insensitive file system `Contributions/` *is*
/// `contributions/`.
pub const RESERVED_ROOTS: &[&str] = &[".git", ".quire", "contributions", "sandbox", "_site"];

/// A file name that is never written, rendered or served, at any depth.
pub const SECRET_NAME: &str = ".env";

/// Longest accepted path, in bytes. Git and most file systems cope with more, but nothing a person
/// writes needs it, and a bound keeps receipts and messages readable.
pub const MAX_PATH_BYTES: usize = 1024;

/// Longest accepted file or folder name, in bytes: `NAME_MAX` of ext4, XFS, Btrfs, APFS and NTFS
/// (which counts UTF-16 units, never more than bytes). Git stores longer names, but no work tree can
/// hold them, so a bundle that makes one would be committed and then fail on disk.
pub const MAX_NAME_BYTES: usize = 255;

/// The root folders of quire's own records, which bundles may not write unless the operator opens
/// them (`[contributions] allow`).
const RECORD_ROOTS: &[&str] = &[super::RUNS_DIR, super::LOGS_DIR];

/// Why a path belongs to the vault's operator rather than to its notes (see [`VaultPath::protection`]).
///
/// A contributor may change notes and nothing else: these files decide what quire runs, where it
/// listens, what it publishes and what Git commits, so a bundle that could write them could take
/// the vault over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protected {
    /// `quire.toml`: commands quire runs, the address it listens on, what it publishes.
    Config,
    /// A hidden file or folder (a name starting with `.`): `.gitignore`, `.gitattributes`, hook
    /// folders, editor and tool configuration, quire's temporary files.
    Hidden,
    /// Under `themes/`: the vault's theme packs, which every site is rendered with.
    Themes,
    /// Under `06_RUNS/` or `07_LOGS/`: quire's run records and event logs.
    Records,
}

impl Protected {
    /// What the protected file is, for a person.
    pub fn describe(self) -> &'static str {
        match self {
            Protected::Config => {
                "quire's configuration (the commands it runs, where it listens, what it publishes)"
            }
            Protected::Hidden => {
                "a hidden file, which configures Git or another tool (Git ignore rules and attributes, hooks, editor settings) rather than holding a note"
            }
            Protected::Themes => "part of a vault theme pack, which every site is rendered with",
            Protected::Records => "part of quire's own run records and event logs",
        }
    }
}

/// A relative, `/`-separated path that stays inside the vault and avoids every reserved place.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VaultPath(String);

/// Why a path was refused. The message says what is wrong and, where it helps, what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty.
    #[error("the path is empty; give a path relative to the vault root, like `03_NOTES/idea.md`")]
    Empty,
    /// The path is longer than [`MAX_PATH_BYTES`].
    #[error("the path is {0} bytes long; the limit is {MAX_PATH_BYTES}")]
    TooLong(usize),
    /// The path starts with `/` (absolute, or a UNC `//server/share`).
    #[error("`{0}` is absolute; give a path relative to the vault root, without a leading `/`")]
    Absolute(String),
    /// The path holds a character that is not portable or not safe in a path.
    #[error("`{path}` contains {what}; use `/` between folders and plain names")]
    BadCharacter {
        /// The path as given (control characters escaped).
        path: String,
        /// The offending character, described.
        what: &'static str,
    },
    /// `a//b`, a trailing `/`, or a `.` segment.
    #[error("`{0}` has an empty or `.` segment; remove the doubled `/`, trailing `/` or `./`")]
    EmptySegment(String),
    /// A `..` segment.
    #[error("`{0}` contains `..`; paths must stay inside the vault")]
    ParentSegment(String),
    /// A segment that is, or aliases on some file system, `.git`.
    #[error(
        "`{path}` names `{segment}`, which some file systems treat as `.git`; Git's own files are never written"
    )]
    GitAlias {
        /// The path as given.
        path: String,
        /// The segment that aliases `.git`.
        segment: String,
    },
    /// Under one of quire's or Git's own folders.
    #[error(
        "`{path}` is under `{root}/`, which belongs to quire; notes live elsewhere in the vault"
    )]
    Reserved {
        /// The path as given.
        path: String,
        /// The reserved root folder.
        root: &'static str,
    },
    /// A file or folder name longer than [`MAX_NAME_BYTES`].
    #[error(
        "`{path}` has a name of {len} bytes; file systems hold at most {MAX_NAME_BYTES}: shorten it"
    )]
    NameTooLong {
        /// The path as given.
        path: String,
        /// The length of the longest name in it, in bytes.
        len: usize,
    },
    /// A `.env` file, at any depth.
    #[error("`{0}` is a secrets file (`.env`); it is never written, rendered or served")]
    Secret(String),
    /// A component on disk is a symbolic link.
    #[error("`{path}` passes through the symbolic link `{link}`; quire never writes through links")]
    Symlink {
        /// The path as given.
        path: String,
        /// The part of the path that is a link.
        link: String,
    },
    /// A component on disk that should be a folder is a file.
    #[error("`{path}` cannot be created: `{file}` is a file, not a folder")]
    NotADirectory {
        /// The path as given.
        path: String,
        /// The part of the path that is a file.
        file: String,
    },
    /// The file system could not be read while resolving.
    #[error("could not inspect `{path}`: {message}")]
    Io {
        /// The path being resolved.
        path: String,
        /// What the file system said.
        message: String,
    },
}

impl VaultPath {
    /// Checks `raw` and returns it as a `VaultPath`, or says why it is refused.
    pub fn new(raw: &str) -> Result<Self, PathError> {
        check(raw)?;
        Ok(Self(raw.to_owned()))
    }

    /// The path as a `/`-separated string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path's segments, root first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The extension of the file name, lowercased, without the dot (`"md"`), if any.
    pub fn extension(&self) -> Option<String> {
        let name = self.file_name();
        let dot = name.rfind('.')?;
        (dot > 0 && dot + 1 < name.len()).then(|| name[dot + 1..].to_ascii_lowercase())
    }

    /// Every proper ancestor folder, shortest first: `a/b/c.md` gives `a`, `a/b`.
    pub fn ancestors(&self) -> impl Iterator<Item = &str> {
        self.0.match_indices('/').map(|(i, _)| &self.0[..i])
    }

    /// This path as a relative `Path` (for joining onto a root).
    pub fn to_relative_path(&self) -> PathBuf {
        self.segments().collect()
    }

    /// Whether the path belongs to the vault's operator (see [`Protected`]), compared as a
    /// case-insensitive file system would, so `Quire.TOML` is `quire.toml`.
    pub fn protection(&self) -> Option<Protected> {
        if self.segments().any(|s| s.starts_with('.')) {
            return Some(Protected::Hidden);
        }
        let first = fold(self.segments().next().unwrap_or(&self.0));
        if !self.0.contains('/') && first == super::CONFIG_FILE {
            return Some(Protected::Config);
        }
        if first == "themes" {
            return Some(Protected::Themes);
        }
        RECORD_ROOTS
            .iter()
            .any(|r| fold(r) == first)
            .then_some(Protected::Records)
    }

    /// Joins this path onto `root`, refusing if any existing component below `root` is a symbolic
    /// link (leading anywhere, inside the vault or out) or a file where a folder is needed.
    ///
    /// Components that do not exist yet are fine: the caller is about to create them. `root` itself
    /// is trusted (it was chosen by the person running quire).
    pub fn resolve_under(&self, root: &Path) -> Result<PathBuf, PathError> {
        let mut here = root.to_path_buf();
        let segments: Vec<&str> = self.segments().collect();
        for (i, segment) in segments.iter().enumerate() {
            here.push(segment);
            let is_last = i + 1 == segments.len();
            match std::fs::symlink_metadata(&here) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(PathError::Symlink {
                        path: self.0.clone(),
                        link: segments[..=i].join("/"),
                    });
                }
                Ok(meta) if !is_last && !meta.is_dir() => {
                    return Err(PathError::NotADirectory {
                        path: self.0.clone(),
                        file: segments[..=i].join("/"),
                    });
                }
                Ok(_) => {}
                // Nothing further down can exist either; no link can hide below a missing folder.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    here.extend(&segments[i + 1..]);
                    return Ok(here);
                }
                Err(e) => {
                    return Err(PathError::Io {
                        path: self.0.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok(here)
    }
}

impl fmt::Display for VaultPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for VaultPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for VaultPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for VaultPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl std::str::FromStr for VaultPath {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

fn check(raw: &str) -> Result<(), PathError> {
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong(raw.len()));
    }
    let shown = || raw.escape_debug().to_string();
    for c in raw.chars() {
        let what = match c {
            '\0' => "a NUL byte",
            '\\' => "a backslash (`\\`)",
            ':' => "a colon (drive letters and alternate streams are not portable)",
            c if c.is_control() => "a control character",
            _ => continue,
        };
        return Err(PathError::BadCharacter {
            path: shown(),
            what,
        });
    }
    if raw.starts_with('/') {
        return Err(PathError::Absolute(raw.to_owned()));
    }
    for segment in raw.split('/') {
        match segment {
            "" | "." => return Err(PathError::EmptySegment(raw.to_owned())),
            ".." => return Err(PathError::ParentSegment(raw.to_owned())),
            _ => {}
        }
        if segment.len() > MAX_NAME_BYTES {
            return Err(PathError::NameTooLong {
                path: shorten(raw),
                len: segment.len(),
            });
        }
        if aliases_dot_git(segment) {
            return Err(PathError::GitAlias {
                path: raw.to_owned(),
                segment: segment.to_owned(),
            });
        }
        if fold(segment) == SECRET_NAME {
            return Err(PathError::Secret(raw.to_owned()));
        }
    }
    let first = fold(raw.split('/').next().unwrap_or(raw));
    if let Some(root) = RESERVED_ROOTS.iter().find(|r| **r == first) {
        return Err(PathError::Reserved {
            path: raw.to_owned(),
            root,
        });
    }
    Ok(())
}

/// `raw`, cut to a length a message can show.
fn shorten(raw: &str) -> String {
    const SHOWN: usize = 80;
    match raw.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &raw[..cut]),
        None => raw.to_owned(),
    }
}

/// The name as a case-insensitive, dot-and-space-trimming file system would see it: lowercased,
/// Unicode "ignorable" code points dropped (HFS+ ignores them), trailing dots and spaces dropped
/// (Windows ignores them).
fn fold(segment: &str) -> String {
    let kept: String = segment
        .chars()
        .filter(|c| !is_ignorable(*c))
        .flat_map(char::to_lowercase)
        .collect();
    kept.trim_end_matches(['.', ' ']).to_owned()
}

/// `.git` under any spelling a file system might map onto it, including the 8.3 short name `GIT~1`.
fn aliases_dot_git(segment: &str) -> bool {
    let folded = fold(segment);
    if folded == ".git" {
        return true;
    }
    // NTFS short names: `GIT~1`, `GIT~2`, … (git refuses `git~` followed by digits).
    folded
        .strip_prefix("git~")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Code points HFS+ drops when comparing names (the list Git checks in `is_hfs_dotgit`).
fn is_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{206A}'..='\u{206F}' | '\u{FEFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_note_paths() {
        for p in [
            "a.md",
            "03_NOTES/idea.md",
            "01_MISSIONS/m-1/mission.md",
            "Ünïcode/日本語.md",
            "with space/My Note.md",
            ".obsidian/app.json",
            "gitlike/.gitignore",
            "notes/git~x.md",
            "quire.toml",
        ] {
            assert!(VaultPath::new(p).is_ok(), "{p} should be accepted");
        }
    }

    #[test]
    fn refuses_every_unsafe_form() {
        let cases = [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("//server/share/x.md", "UNC"),
            ("\\\\server\\share", "backslash UNC"),
            ("C:/Windows/x.md", "drive"),
            ("c:x.md", "drive-relative"),
            ("a\\b.md", "backslash"),
            ("a:b.md", "NTFS stream"),
            ("a\0b.md", "NUL"),
            ("a\nb.md", "newline"),
            ("a//b.md", "empty segment"),
            ("a/", "trailing slash"),
            ("./a.md", "dot segment"),
            ("../a.md", "parent"),
            ("a/../../b.md", "parent inside"),
            (".git/config", "git dir"),
            (".GIT/config", "git dir uppercase"),
            (".git./config", "git with trailing dot"),
            (".git /config", "git with trailing space"),
            ("GIT~1/config", "8.3 short name"),
            ("sub/.git/x", "nested git"),
            (".g\u{200c}it/config", "HFS ignorable"),
            (".quire/state.db", "quire state"),
            ("contributions/pending/x.json", "drop folder"),
            ("Contributions/pending/x.json", "drop folder case"),
            ("sandbox/m/x.md", "sandbox"),
            ("_site/paper/index.html", "site"),
            (".env", "secrets"),
            (".ENV", "secrets case"),
            ("deep/.env", "nested secrets"),
        ];
        for (p, why) in cases {
            assert!(VaultPath::new(p).is_err(), "{why}: {p:?} should be refused");
        }
    }

    #[test]
    fn long_paths_are_refused() {
        let p = "a/".repeat(600) + "b.md";
        assert!(matches!(VaultPath::new(&p), Err(PathError::TooLong(_))));
    }

    #[test]
    fn names_longer_than_file_systems_hold_are_refused() {
        let name = "a".repeat(MAX_NAME_BYTES - 3) + ".md";
        assert!(VaultPath::new(&format!("03_NOTES/{name}")).is_ok());
        for p in [
            format!("03_NOTES/{}.md", "a".repeat(300)),
            format!("{}/x.md", "b".repeat(256)),
            // 86 three-byte characters: 258 bytes in 86 characters.
            format!("03_NOTES/{}", "日".repeat(86)),
        ] {
            let err = VaultPath::new(&p).unwrap_err();
            assert!(matches!(err, PathError::NameTooLong { .. }), "{p}: {err}");
            assert!(
                err.to_string().len() < 300,
                "the message shows a shortened path: {err}"
            );
        }
    }

    #[test]
    fn operator_files_are_told_apart_from_notes() {
        for (p, why) in [
            ("quire.toml", Some(Protected::Config)),
            ("Quire.TOML", Some(Protected::Config)),
            ("notes/quire.toml", None),
            (".gitignore", Some(Protected::Hidden)),
            ("03_NOTES/.gitignore", Some(Protected::Hidden)),
            (".gitattributes", Some(Protected::Hidden)),
            (".githooks/pre-commit", Some(Protected::Hidden)),
            (".obsidian/app.json", Some(Protected::Hidden)),
            ("03_NOTES/.quire-tmp-abc", Some(Protected::Hidden)),
            ("themes/paper/theme.toml", Some(Protected::Themes)),
            ("Themes/x.css", Some(Protected::Themes)),
            ("06_RUNS/20261201-pipeline.md", Some(Protected::Records)),
            ("07_logs/quire-2026-12-01.jsonl", Some(Protected::Records)),
            ("03_NOTES/themes/x.md", None),
            ("03_NOTES/a.md", None),
            ("01_MISSIONS/m/mission.md", None),
        ] {
            assert_eq!(VaultPath::new(p).unwrap().protection(), why, "{p}");
        }
    }

    #[test]
    fn extension_and_ancestors() {
        let p = VaultPath::new("a/b/C.MD").unwrap();
        assert_eq!(p.extension().as_deref(), Some("md"));
        assert_eq!(p.ancestors().collect::<Vec<_>>(), ["a", "a/b"]);
        assert_eq!(VaultPath::new(".hidden").unwrap().extension(), None);
    }

    const PATH_PIECES: &[&str] = &[
        "/",
        "/",
        "/",
        ".",
        "..",
        ".git",
        ".GIT",
        ".git.",
        ".git ",
        "git~1",
        "GIT~12",
        "\u{200c}",
        "\u{feff}",
        "\\",
        ":",
        "\0",
        "\n",
        " ",
        "a",
        "note.md",
        "é",
        "日本",
        ".env",
        ".ENV",
        "contributions",
        "Contributions",
        "_site",
        "sandbox",
        ".quire",
        "quire.toml",
        "themes",
        "06_RUNS",
        ".gitignore",
        "%2e%2e",
        "~",
        "C:",
        "//",
    ];

    proptest::proptest! {
        #![proptest_config(crate::fuzz::config(2000))]

        /// Whatever the string, checking it never panics; a path accepted stays inside the vault
        /// however it is joined, avoids every reserved place, and resolves under the root.
        #[test]
        fn fuzz_an_accepted_path_stays_inside_the_vault(
            raw in crate::fuzz::tricky_text(PATH_PIECES, 24)
        ) {
            let Ok(path) = VaultPath::new(&raw) else { return Ok(()) };
            let rel = path.to_relative_path();
            proptest::prop_assert!(rel.is_relative());
            for c in rel.components() {
                proptest::prop_assert!(
                    matches!(c, std::path::Component::Normal(_)),
                    "{raw:?} has a component {c:?}"
                );
            }
            for segment in path.segments() {
                proptest::prop_assert!(!aliases_dot_git(segment) && fold(segment) != SECRET_NAME);
                proptest::prop_assert!(segment.len() <= MAX_NAME_BYTES);
            }
            let first = fold(path.segments().next().unwrap_or_default());
            proptest::prop_assert!(!RESERVED_ROOTS.contains(&first.as_str()), "{raw:?}");
            let root = std::path::Path::new("/vault/root");
            let joined = root.join(&rel);
            proptest::prop_assert!(joined.starts_with(root));
            // Checked again, it is the same path (the check is a function of the text).
            proptest::prop_assert_eq!(VaultPath::new(path.as_str()), Ok(path.clone()));
        }
    }

    #[cfg(unix)]
    #[test]
    fn resolve_refuses_links_inside_and_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("inside")).unwrap();
        std::os::unix::fs::symlink("/tmp", root.join("outside")).unwrap();
        std::fs::write(root.join("file.md"), "x").unwrap();
        std::os::unix::fs::symlink(root.join("file.md"), root.join("leaf.md")).unwrap();

        let ok = VaultPath::new("real/new/deeper.md").unwrap();
        assert_eq!(
            ok.resolve_under(root).unwrap(),
            root.join("real/new/deeper.md")
        );
        for p in ["inside/x.md", "outside/x.md", "leaf.md"] {
            let err = VaultPath::new(p).unwrap().resolve_under(root).unwrap_err();
            assert!(matches!(err, PathError::Symlink { .. }), "{p}: {err}");
        }
        let err = VaultPath::new("file.md/x.md")
            .unwrap()
            .resolve_under(root)
            .unwrap_err();
        assert!(matches!(err, PathError::NotADirectory { .. }));
    }
}
