//! Theme packs (SPEC §6): loading, inheritance, design tokens, validation.
//!
//! A pack is a folder: `theme.toml` (name, version, description, `extends`), `tokens.json`,
//! `templates/*.html`, `components/*.html`, `static/**`. Built-in packs are embedded in the binary;
//! a vault's `themes/<name>/` replaces the built-in pack of that name (and may extend it by naming it
//! in `extends`). A pack ships only what it changes: files are merged from the root of the `extends`
//! chain (always the built-in `base`) to the pack itself, later files replacing earlier ones, and
//! tokens merged key by key.
//!
//! Everything is checked when the theme is loaded, before a page is rendered or a file written:
//! the manifest, the tokens, every template (syntax), and that every template and component the
//! renderer uses exists somewhere in the chain. Errors name the pack's file, the line and what to do.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tera::Tera;

/// The templates every theme has (own or inherited), one per kind of page.
pub const TEMPLATES: &[&str] = &[
    "base", "note", "folder", "index", "tag", "tags", "tasks", "agenda", "calendar", "missions",
    "mission", "404",
];

/// The components every theme has (own or inherited), one per file in `components/`.
pub const COMPONENTS: &[&str] = &[
    "task_list",
    "task",
    "callout",
    "backlinks",
    "toc",
    "breadcrumb",
    "tag_list",
    "mission_card",
    "calendar_month",
    "search_box",
];

/// The pack every chain ends in.
pub const BASE: &str = "base";

/// Token groups a theme may set; each becomes `--<group>-<name>` CSS custom properties.
const TOKEN_GROUPS: &[&str] = &["color", "font", "space", "radius", "size", "shadow"];

/// Where a pack comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Embedded in the binary.
    BuiltIn,
    /// The vault's `themes/<name>/`.
    Vault,
}

/// A pack's manifest, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThemeInfo {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// What it is for.
    pub description: String,
    /// The pack it extends (`None` only for `base`).
    pub parent: Option<String>,
    /// Built in or vault-local.
    pub origin: Origin,
    /// For a vault-local pack, whether it replaces a built-in one of the same name.
    pub overrides_builtin: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    extends: Option<String>,
}

/// A theme could not be used. Nothing has been written when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    /// No pack has that name.
    #[error("there is no theme `{name}`; available: {}", available.join(", "))]
    NotFound {
        /// The name asked for.
        name: String,
        /// The names that exist.
        available: Vec<String>,
    },
    /// A file of the pack is wrong.
    #[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    File {
        /// The file, as `themes/<name>/<path>` (built in) or its path in the vault.
        file: String,
        /// The line, when known.
        line: Option<usize>,
        /// What is wrong and what to do.
        message: String,
    },
    /// The chain of `extends` is wrong.
    #[error("theme `{theme}`: {message}")]
    Chain {
        /// The theme being loaded.
        theme: String,
        /// What is wrong.
        message: String,
    },
    /// A template or component the renderer needs is nowhere in the chain.
    #[error("theme `{theme}` has no {what} `{name}` (nor does any theme it extends); add {file}")]
    Missing {
        /// The theme.
        theme: String,
        /// `template` or `component`.
        what: &'static str,
        /// The missing name.
        name: String,
        /// The file to add.
        file: String,
    },
}

/// One pack's files: relative path → bytes.
struct Pack {
    info: ThemeInfo,
    /// How to show this pack's files in messages (`themes/paper` or a vault path).
    display: String,
    files: BTreeMap<String, Vec<u8>>,
}

/// A loaded, checked theme: the merged files of its chain, compiled.
pub struct Theme {
    /// The chain, the theme itself first, `base` last.
    pub chain: Vec<ThemeInfo>,
    /// The compiled templates and components.
    pub tera: Tera,
    /// Static files (`static/…` in the pack), to copy into the site under `static/`.
    pub statics: BTreeMap<String, Vec<u8>>,
    /// The design tokens as CSS custom properties (light, and dark under `prefers-color-scheme`).
    pub tokens_css: String,
    /// A hash of everything the theme is made of, so a render knows when the theme changed.
    pub fingerprint: String,
    /// Template name → the pack file it came from, for messages.
    shown: BTreeMap<String, String>,
    /// Whether a note page may read `note.tasks` (see [`super::reads`]): when it cannot, a note
    /// page is not given them.
    pub(crate) note_tasks_read: bool,
    /// Whether the task pages (`tasks.html`) and the calendar's months (`calendar.html`) may be
    /// given their task lists as items the Rust `task_list` body already rendered
    /// ([`super::task_item::rendered`]) instead of template values.
    pub(crate) prerendered: Prerendered,
}

/// Which pages take task lists as rendered items. A page does when its template is base's own,
/// byte for byte (whose only uses of the lists are handing them to `task_list`, counting them and
/// testing them), the `task` and `task_list` components run in Rust, and no other template the
/// page goes through (a theme's own `base.html`) reads the list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Prerendered {
    /// `tasks.html`'s `tasks`.
    pub(crate) tasks: bool,
    /// `calendar.html`'s `days` (each day's `tasks`).
    pub(crate) calendar: bool,
}

impl Theme {
    /// The theme's name.
    pub fn name(&self) -> &str {
        &self.chain[0].name
    }

    /// Renders `template` (`note.html`) with `context`; an error names the pack file and line.
    pub fn render(&self, template: &str, context: &tera::Context) -> Result<String, ThemeError> {
        self.tera.render(template, context).map_err(|e| {
            tera_error(&e, &|t| {
                self.shown
                    .get(t)
                    .cloned()
                    .unwrap_or_else(|| format!("theme `{}` template {t}", self.name()))
            })
        })
    }
}

/// The pack files of the `task` and `task_list` components.
const TASK_COMPONENT: &str = "components/task.html";
const TASK_LIST_COMPONENT: &str = "components/task_list.html";

/// Whether `bytes` are the built-in `base` pack's file `rel`, byte for byte.
pub(super) fn is_builtin(rel: &str, bytes: &[u8]) -> bool {
    crate::embedded::THEMES
        .iter()
        .any(|(p, b)| p.strip_prefix("base/") == Some(rel) && *b == bytes)
}

/// The source of `base`'s file at `rel` (`templates/…`, `components/…`), as the binary carries it.
#[cfg(test)]
pub(super) fn builtin_source(rel: &str) -> &'static str {
    let path = format!("base/{rel}");
    let (_, bytes) = crate::embedded::THEMES
        .iter()
        .find(|(p, _)| *p == path)
        .expect("base ships the file");
    std::str::from_utf8(bytes).expect("base's files are UTF-8")
}

fn builtin_names() -> Vec<String> {
    let mut names: Vec<String> = crate::embedded::THEMES
        .iter()
        .filter_map(|(p, _)| p.split_once('/').map(|(n, _)| n.to_owned()))
        .collect();
    names.dedup();
    names
}

fn builtin_pack(name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let prefix = format!("{name}/");
    let files: BTreeMap<String, Vec<u8>> = crate::embedded::THEMES
        .iter()
        .filter_map(|(p, b)| {
            p.strip_prefix(&prefix)
                .map(|rel| (rel.to_owned(), b.to_vec()))
        })
        .collect();
    (!files.is_empty()).then_some(files)
}

/// A pack's files: path within the pack → bytes.
type PackFiles = BTreeMap<String, Vec<u8>>;

/// A vault's own theme packs (`themes/<name>/`), read from its work tree or from a commit.
#[derive(Default)]
pub struct LocalThemes {
    /// Name → (how to show the pack's folder in messages, its files or why they could not be read).
    packs: BTreeMap<String, (String, Result<PackFiles, String>)>,
}

impl LocalThemes {
    /// The packs under `dir` (a vault's `themes/`): every folder with a `theme.toml`.
    pub fn from_dir(dir: &Path) -> Self {
        let mut packs = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Self { packs };
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            // A symlinked pack could pull files from anywhere into a site; only real folders count.
            let real_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if name.starts_with('.') || !real_dir || !path.join("theme.toml").is_file() {
                continue;
            }
            let files = read_pack_dir(&path).map_err(|e| format!("could not read the theme: {e}"));
            packs.insert(name, (path.display().to_string(), files));
        }
        Self { packs }
    }

    /// The packs among `files` (paths relative to `themes/`), shown as `display/<name>` in messages.
    pub fn from_files(files: BTreeMap<String, Vec<u8>>, display: &str) -> Self {
        let mut by_name: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
        for (path, bytes) in files {
            if let Some((name, rel)) = path.split_once('/')
                && !rel.split('/').any(|s| s.starts_with('.'))
            {
                by_name
                    .entry(name.to_owned())
                    .or_default()
                    .insert(rel.to_owned(), bytes);
            }
        }
        let packs = by_name
            .into_iter()
            .filter(|(_, f)| f.contains_key("theme.toml"))
            .map(|(name, f)| {
                let shown = format!("{display}/{name}");
                (name, (shown, Ok(f)))
            })
            .collect();
        Self { packs }
    }
}

fn read_pack_dir(dir: &Path) -> std::io::Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(std::io::Error::other)?;
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(dir) else {
            continue;
        };
        let rel = rel.to_string_lossy().replace('\\', "/");
        // Dotfiles (an editor's swap files, `.env`) are never part of a theme.
        if rel.split('/').any(|s| s.starts_with('.')) {
            continue;
        }
        files.insert(rel, std::fs::read(entry.path())?);
    }
    Ok(files)
}

/// Every theme: the built-in ones and the vault's own (a vault theme named like a built-in one
/// replaces it), by name.
pub fn available(local: &LocalThemes) -> Result<Vec<ThemeInfo>, ThemeError> {
    let mut names: Vec<String> = builtin_names();
    names.extend(local.packs.keys().cloned());
    names.sort();
    names.dedup();
    names
        .iter()
        .map(|n| read_pack(local, n, false).map(|p| p.info))
        .collect()
}

fn read_pack(local: &LocalThemes, name: &str, builtin_only: bool) -> Result<Pack, ThemeError> {
    let (files, origin, display) = match local.packs.get(name).filter(|_| !builtin_only) {
        Some((shown, files)) => {
            let files = files.clone().map_err(|message| ThemeError::File {
                file: shown.clone(),
                line: None,
                message,
            })?;
            (files, Origin::Vault, shown.clone())
        }
        None => match builtin_pack(name) {
            Some(files) => (files, Origin::BuiltIn, format!("themes/{name}")),
            None => {
                let mut available = builtin_names();
                available.extend(local.packs.keys().cloned());
                available.sort();
                available.dedup();
                return Err(ThemeError::NotFound {
                    name: name.to_owned(),
                    available,
                });
            }
        },
    };
    let manifest_file = format!("{display}/theme.toml");
    let text = files.get("theme.toml").ok_or_else(|| ThemeError::File {
        file: manifest_file.clone(),
        line: None,
        message: "missing; a theme needs theme.toml with at least `name`".into(),
    })?;
    let text = std::str::from_utf8(text).map_err(|_| ThemeError::File {
        file: manifest_file.clone(),
        line: None,
        message: "is not UTF-8".into(),
    })?;
    let manifest: Manifest = toml::from_str(text).map_err(|e| ThemeError::File {
        file: manifest_file.clone(),
        line: e.span().map(|s| text[..s.start].matches('\n').count() + 1),
        message: e.message().to_owned(),
    })?;
    if manifest.name != name {
        return Err(ThemeError::File {
            file: manifest_file,
            line: None,
            message: format!(
                "says `name = \"{}\"`, but the theme's folder is `{name}`; make them the same",
                manifest.name
            ),
        });
    }
    let parent = match manifest.extends {
        Some(p) => Some(p),
        None if name == BASE => None,
        None => Some(BASE.to_owned()),
    };
    Ok(Pack {
        info: ThemeInfo {
            name: name.to_owned(),
            version: manifest.version,
            description: manifest.description,
            parent,
            overrides_builtin: origin == Origin::Vault && builtin_pack(name).is_some(),
            origin,
        },
        display,
        files,
    })
}

/// Loads the theme `name` with its whole `extends` chain, merged, checked and compiled.
pub fn load(local: &LocalThemes, name: &str) -> Result<Theme, ThemeError> {
    let mut chain: Vec<Pack> = Vec::new();
    let mut next = Some((name.to_owned(), false));
    while let Some((n, builtin_only)) = next.take() {
        if chain.len() > 8 {
            return Err(ThemeError::Chain {
                theme: name.to_owned(),
                message: format!(
                    "`extends` goes more than 8 themes deep ({})",
                    chain_names(&chain)
                ),
            });
        }
        if chain
            .iter()
            .any(|p| p.info.name == n && (p.info.origin == Origin::BuiltIn || !builtin_only))
        {
            return Err(ThemeError::Chain {
                theme: name.to_owned(),
                message: format!(
                    "`extends` loops back to `{n}` ({} → {n})",
                    chain_names(&chain)
                ),
            });
        }
        let pack = read_pack(local, &n, builtin_only)?;
        // A vault theme extending the built-in theme of its own name.
        next = pack.info.parent.clone().map(|p| {
            let same = p == pack.info.name && pack.info.origin == Origin::Vault;
            (p, same)
        });
        chain.push(pack);
    }
    build(chain)
}

fn chain_names(chain: &[Pack]) -> String {
    chain
        .iter()
        .map(|p| p.info.name.as_str())
        .collect::<Vec<_>>()
        .join(" → ")
}

fn build(chain: Vec<Pack>) -> Result<Theme, ThemeError> {
    let theme_name = chain[0].info.name.clone();
    // Merge from the root of the chain to the theme: later files replace earlier ones.
    let mut files: BTreeMap<String, (Vec<u8>, String)> = BTreeMap::new();
    let mut tokens = Map::new();
    for pack in chain.iter().rev() {
        for (rel, bytes) in &pack.files {
            if rel == "tokens.json" {
                let file = format!("{}/tokens.json", pack.display);
                let text = std::str::from_utf8(bytes).map_err(|_| ThemeError::File {
                    file: file.clone(),
                    line: None,
                    message: "is not UTF-8".into(),
                })?;
                let value: Value = serde_json::from_str(text).map_err(|e| ThemeError::File {
                    file: file.clone(),
                    line: Some(e.line()),
                    message: format!("is not valid JSON: {e}"),
                })?;
                let Value::Object(map) = value else {
                    return Err(ThemeError::File {
                        file,
                        line: None,
                        message: "must be a JSON object of token groups (`color`, `font`, …)"
                            .into(),
                    });
                };
                check_tokens(&file, &map)?;
                merge(&mut tokens, map);
            } else if rel.starts_with("templates/")
                || rel.starts_with("components/")
                || rel.starts_with("static/")
            {
                files.insert(
                    rel.clone(),
                    (bytes.clone(), format!("{}/{rel}", pack.display)),
                );
            }
        }
    }

    let mut tera = Tera::default();
    tera.register_function(super::task_item::TASK, super::task_item::task_function);
    tera.register_function(
        super::task_item::TASK_LIST,
        super::task_item::task_list_function,
    );
    tera.autoescape_on([".html"]);
    tera.set_escape_fn(super::escape::escape_to);
    let mut sources: Vec<(String, String)> = Vec::new();
    let mut fast_components = 0;
    for (rel, (bytes, shown)) in files
        .iter()
        .filter(|(r, _)| r.starts_with("components/") || r.starts_with("templates/"))
    {
        if !rel.ends_with(".html") {
            return Err(ThemeError::File {
                file: shown.clone(),
                line: None,
                message: "templates and components must be `.html` files, so that autoescaping is always on; rename it".into(),
            });
        }
        let text = String::from_utf8(bytes.clone()).map_err(|_| ThemeError::File {
            file: shown.clone(),
            line: None,
            message: "is not UTF-8".into(),
        })?;
        let name = rel.strip_prefix("templates/").unwrap_or(rel).to_owned();
        // The built-in `task` and `task_list` components, kept as they are, run their bodies
        // in Rust (same output). The list's only when the task's is the built-in one too.
        let fast = if rel == TASK_COMPONENT && is_builtin(rel, bytes) {
            super::task_item::fast_task(&text)
        } else if rel == TASK_LIST_COMPONENT
            && is_builtin(rel, bytes)
            && files
                .get(TASK_COMPONENT)
                .is_some_and(|(task, _)| is_builtin(TASK_COMPONENT, task))
        {
            super::task_item::fast_task_list(&text)
        } else {
            None
        };
        fast_components += usize::from(fast.is_some());
        let text = fast.unwrap_or(text);
        sources.push((name, text));
    }
    let shown_of = |template: &str| -> String {
        let rel = if template.starts_with("components/") {
            template.to_owned()
        } else {
            format!("templates/{template}")
        };
        files.get(&rel).map(|(_, s)| s.clone()).unwrap_or(rel)
    };
    tera.add_raw_templates(sources.iter().map(|(n, t)| (n.as_str(), t.as_str())))
        .map_err(|e| tera_error(&e, &shown_of))?;

    for t in TEMPLATES {
        let file = format!("{t}.html");
        if !tera.contains_template(&file) {
            return Err(ThemeError::Missing {
                theme: theme_name,
                what: "template",
                name: (*t).to_owned(),
                file: format!("templates/{file}"),
            });
        }
    }
    for c in COMPONENTS {
        if !tera.contains_component(c) {
            return Err(ThemeError::Missing {
                theme: theme_name,
                what: "component",
                name: (*c).to_owned(),
                file: format!("components/{c}.html (defining `{{% component {c}(…) %}}`)"),
            });
        }
    }

    let statics: BTreeMap<String, Vec<u8>> = files
        .iter()
        .filter_map(|(rel, (bytes, _))| {
            rel.strip_prefix("static/")
                .map(|r| (r.to_owned(), bytes.clone()))
        })
        .collect();
    let tokens_css = tokens_to_css(&tokens);
    let fingerprint = {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for (rel, (bytes, _)) in &files {
            h.update(rel.as_bytes());
            h.update([0]);
            h.update(bytes);
        }
        h.update(tokens_css.as_bytes());
        crate::hex(&h.finalize()[..12])
    };
    let shown = sources
        .iter()
        .map(|(name, _)| {
            let rel = if name.starts_with("components/") {
                name.clone()
            } else {
                format!("templates/{name}")
            };
            (
                name.clone(),
                files.get(&rel).map(|(_, s)| s.clone()).unwrap_or(rel),
            )
        })
        .collect();
    let by_name: BTreeMap<&str, &str> = sources
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let note_tasks_read = super::reads::may_read(&by_name, "note.html", "note", "tasks");
    let takes_items = |page: &str, var: &str| {
        fast_components == 2
            && files
                .get(&format!("templates/{page}"))
                .is_some_and(|(bytes, _)| is_builtin(&format!("templates/{page}"), bytes))
            && !super::reads::others_may_read(&by_name, page, var)
    };
    let prerendered = Prerendered {
        tasks: takes_items("tasks.html", "tasks"),
        calendar: takes_items("calendar.html", "days"),
    };
    Ok(Theme {
        note_tasks_read,
        prerendered,
        chain: chain.into_iter().map(|p| p.info).collect(),
        tera,
        statics,
        tokens_css,
        fingerprint,
        shown,
    })
}

/// A Tera error as a theme error, naming the pack file and line.
pub(crate) fn tera_error(e: &tera::Error, shown_of: &dyn Fn(&str) -> String) -> ThemeError {
    match e.kind() {
        tera::ErrorKind::SyntaxError(r) | tera::ErrorKind::RenderingError(r) => ThemeError::File {
            file: shown_of(r.filename()),
            line: Some(r.span().start_line),
            message: r.message().to_owned(),
        },
        tera::ErrorKind::MissingParent { current, parent } => ThemeError::File {
            file: shown_of(current),
            line: None,
            message: format!("extends `{parent}`, which no theme in the chain has"),
        },
        other => ThemeError::File {
            file: "templates".into(),
            line: None,
            message: other.to_string(),
        },
    }
}

fn check_tokens(file: &str, map: &Map<String, Value>) -> Result<(), ThemeError> {
    let bad = |message: String| ThemeError::File {
        file: file.to_owned(),
        line: None,
        message,
    };
    for (group, value) in map {
        if group == "dark" {
            let Value::Object(inner) = value else {
                return Err(bad(
                    "`dark` must be an object of token groups, like the top level".into(),
                ));
            };
            if inner.contains_key("dark") {
                return Err(bad("`dark` cannot contain `dark`".into()));
            }
            check_tokens(file, inner)?;
            continue;
        }
        if !TOKEN_GROUPS.contains(&group.as_str()) {
            return Err(bad(format!(
                "unknown token group `{group}`; use {}",
                TOKEN_GROUPS.join(", ")
            )));
        }
        let Value::Object(tokens) = value else {
            return Err(bad(format!("`{group}` must be an object of name → value")));
        };
        for (name, v) in tokens {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(bad(format!(
                    "token name `{group}.{name}` may hold only letters, digits and `-`"
                )));
            }
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => {
                    return Err(bad(format!(
                        "token `{group}.{name}` must be a string or a number"
                    )));
                }
            };
            if text.contains([';', '{', '}', '<', '>']) || text.contains("/*") {
                return Err(bad(format!(
                    "token `{group}.{name}` = `{text}` holds `;`, braces, `<`, `>` or a comment, which could break out of its CSS"
                )));
            }
            // Found by fuzzing: a line break or other control character goes into the CSS raw,
            // a backslash escapes the `;` that ends the declaration (swallowing the next one),
            // and an unclosed quote turns the rest of its line into a broken string.
            let unclosed = |q: char| text.matches(q).count() % 2 == 1;
            if text.contains(|c: char| c.is_control() || c == '\\')
                || unclosed('"')
                || unclosed('\'')
            {
                return Err(bad(format!(
                    "token `{group}.{name}` = `{}` holds a control character, a backslash or an unclosed quote; write the value plainly",
                    text.escape_debug()
                )));
            }
        }
    }
    Ok(())
}

fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => merge(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

fn tokens_to_css(tokens: &Map<String, Value>) -> String {
    let mut css = String::from(":root {\n");
    push_vars(&mut css, tokens);
    css.push_str("}\n");
    if let Some(Value::Object(dark)) = tokens.get("dark") {
        css.push_str("@media (prefers-color-scheme: dark) {\n  :root {\n");
        push_vars(&mut css, dark);
        css.push_str("  }\n}\n");
    }
    css
}

fn push_vars(css: &mut String, tokens: &Map<String, Value>) {
    for (group, value) in tokens {
        let Value::Object(map) = value else { continue };
        if group == "dark" {
            continue;
        }
        for (name, v) in map {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            css.push_str(&format!("  --{group}-{name}: {text};\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_themes_load() {
        for name in builtin_names() {
            let theme =
                load(&LocalThemes::default(), &name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(theme.chain.last().unwrap().name, BASE);
            assert!(theme.tokens_css.contains("--color-"), "{name}");
            assert!(
                theme
                    .tokens_css
                    .contains("@media (prefers-color-scheme: dark)"),
                "{name}"
            );
        }
        assert!(builtin_names().len() >= 3, "base and at least two themes");
    }

    /// A theme's own `task` component is what `task_list` calls, whether or not the list is
    /// the built-in one; a theme keeping both built-in components gets their Rust bodies.
    #[test]
    fn a_theme_changing_the_task_component_sees_it_used() {
        let dir = tempfile::tempdir().unwrap();
        let pack = dir.path().join("mine");
        std::fs::create_dir_all(pack.join("components")).unwrap();
        std::fs::create_dir_all(pack.join("templates")).unwrap();
        std::fs::write(
            pack.join("theme.toml"),
            "name = \"mine\"\nversion = \"1.0.0\"\ndescription = \"t\"\nextends = \"paper\"\n",
        )
        .unwrap();
        let probe = "{{ <task_list tasks={tasks} /> }}";
        std::fs::write(pack.join("templates/probe.html"), probe).unwrap();
        let task = serde_json::json!({
            "path": "a.md", "line": 1, "status": "open", "text": "write", "due": null,
            "scheduled": null, "start": null, "created": null, "done": null, "cancelled": null,
            "priority": null, "recurrence": null, "id": null, "depends_on": [], "tags": [],
            "mission": null, "heading": null, "block_id": null, "url": "a/", "note_title": "A",
            "date": null,
        });
        let mut context = tera::Context::new();
        context.insert("tasks", &[task]);
        let rendered = || {
            let theme = load(&LocalThemes::from_dir(dir.path()), "mine").unwrap();
            theme.render("probe.html", &context).unwrap()
        };
        let built_in = rendered();
        assert!(
            built_in.contains("<span class=\"task-text\">write</span>"),
            "{built_in}"
        );
        std::fs::write(
            pack.join("components/task.html"),
            "{% component task(task, show_note=true) %}<li>mine: {{ task.text }}</li>{% endcomponent task %}",
        )
        .unwrap();
        let own = rendered();
        assert!(own.contains("<li>mine: write</li>"), "{own}");
    }

    /// Task pages take rendered items only while everything that could read their lists is
    /// base's own: a theme that changes the page, the task component, or a layout that reads the
    /// list gets template values.
    #[test]
    fn task_pages_take_rendered_items_only_while_nothing_else_reads_the_list() {
        for name in builtin_names() {
            let theme = load(&LocalThemes::default(), &name).unwrap();
            let all = Prerendered {
                tasks: true,
                calendar: true,
            };
            assert_eq!(theme.prerendered, all, "{name}");
        }
        let dir = tempfile::tempdir().unwrap();
        let pack = dir.path().join("mine");
        let with = |files: &[(&str, &str)]| {
            let _ = std::fs::remove_dir_all(&pack);
            std::fs::create_dir_all(&pack).unwrap();
            std::fs::write(
                pack.join("theme.toml"),
                "name = \"mine\"\nversion = \"1.0.0\"\ndescription = \"t\"\nextends = \"paper\"\n",
            )
            .unwrap();
            for (rel, text) in files {
                let file = pack.join(rel);
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(file, text).unwrap();
            }
            load(&LocalThemes::from_dir(dir.path()), "mine")
                .unwrap()
                .prerendered
        };
        let base = builtin_source;
        // A layout of its own that does not read the lists changes nothing.
        let layout = base("templates/base.html").replace("<main", "<main data-mine");
        assert_eq!(
            with(&[("templates/base.html", &layout)]),
            Prerendered {
                tasks: true,
                calendar: true
            }
        );
        // One that reads them, or a page of its own, or a task component of its own.
        let reads = base("templates/base.html").replace(
            "<main",
            "{% for t in tasks %}{{ t.text }}{% endfor %}{{ days | length }}<main",
        );
        assert_eq!(
            with(&[("templates/base.html", &reads)]),
            Prerendered::default()
        );
        let page = base("templates/tasks.html").replace("<h1>", "<h1 class=\"mine\">");
        assert_eq!(
            with(&[("templates/tasks.html", &page)]),
            Prerendered {
                tasks: false,
                calendar: true
            }
        );
        let task = base("components/task.html").replace("task-text", "task-words");
        assert_eq!(
            with(&[("components/task.html", &task)]),
            Prerendered::default()
        );
    }

    #[test]
    fn tokens_are_checked() {
        let ok: Map<String, Value> = serde_json::from_str(
            r##"{"color": {"bg": "#fff"}, "dark": {"color": {"bg": "#000"}}}"##,
        )
        .unwrap();
        check_tokens("t", &ok).unwrap();
        for bad in [
            r#"{"colour": {"bg": "x"}}"#,
            r#"{"color": {"bg": "red; } body { display: none"}}"#,
            r#"{"color": {"b g": "x"}}"#,
            r#"{"color": {"bg": [1]}}"#,
            r#"{"color": "x"}"#,
        ] {
            let map: Map<String, Value> = serde_json::from_str(bad).unwrap();
            assert!(check_tokens("t", &map).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #![proptest_config(crate::fuzz::config(2000))]

        /// Tokens that pass the check become exactly one declaration each, inside the blocks
        /// quire writes: no value can end its declaration early, swallow the next one, or leave
        /// its block.
        #[test]
        fn fuzz_tokens_stay_inside_their_declaration(
            entries in proptest::collection::vec(
                ("[a-z]{1,6}", crate::fuzz::tricky_text(
                    &["#fff", "red", " ", "\\", "\"", "'", ";", "}", "{", "/*", "*/", "\n", "\r",
                      "\u{c}", "<", ">", "(", ")", "url(", "1px", "var(--x)", ":", "!important", "@"],
                    8,
                )),
                1..6,
            ),
            dark in proptest::bool::ANY,
        ) {
            let group: Map<String, Value> = entries
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let mut tokens = Map::new();
            tokens.insert("color".into(), Value::Object(group.clone()));
            if dark {
                let mut d = Map::new();
                d.insert("color".into(), Value::Object(group.clone()));
                tokens.insert("dark".into(), Value::Object(d));
            }
            if check_tokens("tokens.json", &tokens).is_err() {
                return Ok(());
            }
            let css = tokens_to_css(&tokens);
            let declarations = css_declarations(&css);
            let blocks = if dark { 2 } else { 1 };
            proptest::prop_assert_eq!(declarations.len(), group.len() * blocks, "{}", css);
            for (name, value) in &declarations {
                let token = name.strip_prefix("--color-").unwrap_or(name);
                // Whitespace around a value is not part of it in CSS.
                proptest::prop_assert_eq!(
                    group.get(token).and_then(Value::as_str).map(str::trim),
                    Some(value.as_str()),
                    "{}",
                    css
                );
            }
        }
    }

    /// The custom-property declarations of `css` as a CSS tokenizer reads them (CSS Syntax §4):
    /// strings, escapes and comments honoured; a declaration ends at an unescaped `;` or `}`
    /// outside a string. Braces must balance.
    fn css_declarations(css: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut depth = 0i32;
        let mut current = String::new();
        let mut chars = css.chars().peekable();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            if let Some(q) = quote {
                current.push(c);
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            current.push(n);
                        }
                    }
                    '\n' => quote = None, // a bad string ends at the line's end
                    c if c == q => quote = None,
                    _ => {}
                }
                continue;
            }
            match c {
                '\\' => {
                    current.push(c);
                    if let Some(n) = chars.next() {
                        current.push(n);
                    }
                }
                '"' | '\'' => {
                    quote = Some(c);
                    current.push(c);
                }
                '{' => {
                    depth += 1;
                    current.clear();
                }
                ';' | '}' => {
                    let decl = current.trim();
                    if let Some((name, value)) = decl.split_once(':')
                        && name.trim().starts_with("--")
                    {
                        out.push((name.trim().to_owned(), value.trim().to_owned()));
                    }
                    current.clear();
                    if c == '}' {
                        depth -= 1;
                        assert!(depth >= 0, "unbalanced braces in {css}");
                    }
                }
                _ => current.push(c),
            }
        }
        assert_eq!(depth, 0, "unbalanced braces in {css}");
        out
    }
}
